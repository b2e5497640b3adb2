"""Checkpoints and stop requests of :func:`physgrad.training.train`.

A checkpoint (``<out_dir>/<method>.ckpt``: network, optimizer, RNG and
data-source states, iteration, history) is written atomically (temporary file,
fsync, ``os.replace``; :func:`atomic_write`). SIGINT and SIGTERM ask a running
training loop to stop after the current iteration and write one
(:class:`TrainingInterrupted`); ``resume`` reads it back.
"""
import os
import random
import signal
import sys
import tempfile
import threading
from typing import Any, Callable, Dict, Optional, Tuple

import torch

__all__ = ["TrainingInterrupted", "checkpoint_path", "save_checkpoint", "load_checkpoint",
           "atomic_write", "DEFAULT_CHECKPOINT_EVERY", "EXIT_STOPPED", "CHECKPOINT_SUFFIX"]


class TrainingInterrupted(Exception):
    """Training stopped on request (SIGINT, SIGTERM or ``stop_after``) after
    writing a checkpoint; resume with ``train(..., resume=True)`` (CLI: ``--resume``).

    Attributes:
        signal_number: the signal received, or None for ``stop_after``.
        iteration: the last completed (and checkpointed) iteration.
        checkpoint_path: the checkpoint written (None without ``out_dir``).
        exit_code: the CLI's exit status: 128 + the signal (130 SIGINT,
            143 SIGTERM), or 75 (``EX_TEMPFAIL``: try again later) for ``stop_after``.
    """

    def __init__(self, message: str, *, signal_number: Optional[int], iteration: int,
                 checkpoint_path: Optional[str], method: str):
        super().__init__(message)
        self.signal_number = signal_number
        self.iteration = iteration
        self.checkpoint_path = checkpoint_path
        self.method = method
        self.exit_code = 128 + signal_number if signal_number is not None else EXIT_STOPPED


#: exit status of a run stopped by ``stop_after`` (sysexits.h ``EX_TEMPFAIL``)
EXIT_STOPPED = 75
#: default of ``checkpoint_every`` (iterations between checkpoints)
DEFAULT_CHECKPOINT_EVERY = 100
#: checkpoint file of a method: ``<out_dir>/<method><CHECKPOINT_SUFFIX>``
CHECKPOINT_SUFFIX = ".ckpt"
_CHECKPOINT_FORMAT = "physgrad-training-checkpoint"
_CHECKPOINT_VERSION = 1
#: settings a resumed run must share with its checkpoint
_RESUME_KEYS = ("experiment", "options", "method", "batch_size", "seed", "data_seed",
                "learning_rate")


def checkpoint_path(out_dir: str, method: str) -> str:
    """Where :func:`train` keeps the checkpoint of ``method`` in ``out_dir``."""
    return os.path.join(out_dir, f"{method}{CHECKPOINT_SUFFIX}")


def _fsync_directory(directory: str) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` all or nothing: ``write(stream)`` fills a temporary file in
    the same folder, which is flushed, fsynced and renamed over ``path``
    (``os.replace``); a crash leaves the old file or the new one, never a mix."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                             dir=directory)
    try:
        with os.fdopen(descriptor, mode, **({} if "b" in mode else {"newline": ""})) as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def save_checkpoint(path: str, checkpoint: Dict[str, Any]) -> None:
    """``torch.save`` ``checkpoint`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda stream: torch.save(checkpoint, stream))


def load_checkpoint(path: str) -> Dict[str, Any]:
    """A checkpoint written by :func:`train`.

    Raises:
        ValueError: if ``path`` is not such a checkpoint.
    """
    checkpoint = torch.load(path, map_location="cpu")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a physgrad training checkpoint")
    if checkpoint.get("version") != _CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {checkpoint.get('version')} is not "
                         f"{_CHECKPOINT_VERSION}, the one this physgrad reads")
    return checkpoint


def _rng_states() -> Dict[str, Any]:
    states: Dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    try:
        import numpy
        states["numpy"] = numpy.random.get_state()
    except ImportError:
        pass
    return states


def _set_rng_states(states: Dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    if "numpy" in states:
        import numpy
        numpy.random.set_state(states["numpy"])


def _read_checkpoint_on_rank0(path: str) -> Optional[Dict[str, Any]]:
    """Rank 0 reads ``path`` (None if missing) and every rank gets it; an error
    on rank 0 is raised on every rank (no rank is left waiting)."""
    from . import distributed
    rank, _ = distributed.rank_and_world()
    answer: Tuple[str, Any] = ("missing", None)
    if rank == 0 and os.path.exists(path):
        try:
            answer = ("ok", load_checkpoint(path))
        except Exception as error:  # noqa: BLE001 - reported on every rank below
            answer = ("error", f"cannot resume from {path}: {error}")
    answer = distributed.broadcast_object(answer)
    if answer[0] == "error":
        raise ValueError(answer[1])
    return answer[1]


class _StopSignals:
    """SIGINT and SIGTERM handlers for the duration of a training run: the first
    signal asks the loop to stop after the current iteration (it then writes a
    checkpoint); a second one stops at once (KeyboardInterrupt for SIGINT, exit
    status 128 + signal otherwise; the last checkpoint stays). The previous
    handlers come back on exit. Only in the main thread (Python's rule)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool, label: str):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.label = label
        self.received: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    def _handle(self, number: int, frame: Any) -> None:
        name = signal.Signals(number).name
        if self.received is not None:
            self._restore()
            sys.stderr.write(f"\n{self.label}: second {name}: stopping now without a checkpoint "
                             "(the last checkpoint is kept)\n")
            if number == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + number)
        self.received = number
        sys.stderr.write(f"\n{self.label}: {name} received: finishing the current iteration, "
                         "then writing a checkpoint (send it again to stop at once)\n")
        sys.stderr.flush()

    def __enter__(self) -> "_StopSignals":
        if self.enabled:
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _restore(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def __exit__(self, *exc: Any) -> None:
        self._restore()
