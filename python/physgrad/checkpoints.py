"""Checkpoints of :func:`physgrad.training.train`, and the atomic writes of a run's files.

A checkpoint (``<out_dir>/<method>.ckpt``: network, optimizer, RNG and
data-source states, iteration, settings, history; :func:`run_checkpoint`) is
written atomically (serialized in memory, then a temporary file, fsync,
``os.replace``; :func:`atomic_write`) with its SHA-256 in a header, checked
when it is read back (:func:`load_checkpoint`); ``resume`` puts the run's state
back (:func:`resume_state`). A failed write (full disk, read-only folder) is an
:class:`OutputWriteError` naming the file and the space needed; the previous
file stays.

The output folder's lock (:func:`output_lock`) and the write errors live in
:mod:`physgrad.output_folder`, the stop requests (:class:`TrainingInterrupted`)
in :mod:`physgrad.stop_signals`; their names stay importable from here.
"""
import hashlib
import io
import math
import os
import random
import re
import tempfile
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .output_folder import (EXIT_WRITE_FAILED, LOCK_NAME, OutputFolderInUse,  # noqa: F401
                            OutputWriteError, holding_output_lock, output_lock,
                            remove_stale_temporaries, write_failure)
from .stop_signals import EXIT_STOPPED, TrainingInterrupted  # noqa: F401

__all__ = ["TrainingInterrupted", "checkpoint_path", "save_checkpoint", "load_checkpoint",
           "atomic_write", "DEFAULT_CHECKPOINT_EVERY", "EXIT_STOPPED", "CHECKPOINT_SUFFIX",
           "OutputWriteError", "OutputFolderInUse", "output_lock", "EXIT_WRITE_FAILED",
           "LOCK_NAME", "remove_stale_temporaries", "atomic_write_bytes", "write_failure",
           "holding_output_lock", "run_checkpoint", "resume_state", "read_checkpoint_on_rank0"]

#: default of ``checkpoint_every`` (iterations between checkpoints)
DEFAULT_CHECKPOINT_EVERY = 100
#: checkpoint file of a method: ``<out_dir>/<method><CHECKPOINT_SUFFIX>``
CHECKPOINT_SUFFIX = ".ckpt"
_CHECKPOINT_FORMAT = "physgrad-training-checkpoint"
#: 2: the file is a header with the payload's SHA-256, then the payload (a
#: ``torch.save`` zip); 1 (still read, nothing to verify): the bare zip
_CHECKPOINT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
#: first line of a version-2 checkpoint file; the second is ``sha256 <hex> bytes <n>``
_CHECKPOINT_MAGIC = b"PHYSGRAD-CHECKPOINT\n"
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


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing: a temporary file in the same
    folder is written, fsynced and renamed over ``path`` (``os.replace``); a
    crash leaves the old file or the new one, never a mix. A failure removes the
    temporary file and raises :class:`OutputWriteError` (``path`` unchanged)."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = None
    try:
        os.makedirs(directory, exist_ok=True)
        # the name remove_stale_temporaries (physgrad.output_folder) recognizes
        descriptor, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.",
                                                 suffix=".tmp", dir=directory)
        try:
            _write_all(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass
        if isinstance(error, OSError):
            raise write_failure(path, error, len(data)) from error
        raise
    _fsync_directory(directory)


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` all or nothing: ``write(stream)`` fills an in-memory stream
    (bytes for ``mode="wb"``, text written as UTF-8 for ``"w"``, newlines as
    written), whose content :func:`atomic_write_bytes` writes. Serializing in
    memory first keeps writers such as ``torch.save`` away from a failing disk."""
    if "b" in mode:
        buffer: Any = io.BytesIO()
        write(buffer)
        data = buffer.getvalue()
    else:
        buffer = io.StringIO(newline="")
        write(buffer)
        data = buffer.getvalue().encode("utf-8")
    atomic_write_bytes(path, data)


def save_checkpoint(path: str, checkpoint: Dict[str, Any]) -> None:
    """Write ``checkpoint`` to ``path`` atomically (:func:`atomic_write_bytes`):
    a header line with the SHA-256 and length of the payload, then the payload,
    ``torch.save(checkpoint)`` (serialized in memory first).

    Raises:
        OutputWriteError: the file could not be written (the previous one stays).
    """
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    payload = buffer.getvalue()
    header = f"sha256 {hashlib.sha256(payload).hexdigest()} bytes {len(payload)}\n".encode()
    atomic_write_bytes(path, _CHECKPOINT_MAGIC + header + payload)


def _read_payload(path: str) -> Tuple[bytes, bool]:
    """The ``torch.save`` payload of a checkpoint file, its checksum verified;
    and whether it had one (False: a version-1 file, a bare zip)."""
    with open(path, "rb") as stream:
        content = stream.read()
    if content.startswith(_CHECKPOINT_MAGIC):
        end = content.find(b"\n", len(_CHECKPOINT_MAGIC))
        match = re.fullmatch(rb"sha256 ([0-9a-f]{64}) bytes ([0-9]{1,15})",
                             content[len(_CHECKPOINT_MAGIC):end] if end >= 0 else b"")
        if match is None:
            raise ValueError("damaged checkpoint header (no 'sha256 <hex> bytes <n>' line)")
        payload = content[end + 1:]
        expected_size = int(match.group(2))
        if len(payload) != expected_size:
            raise ValueError(f"the file is damaged or truncated: {len(payload)} bytes of data, "
                             f"the header says {expected_size}")
        actual = hashlib.sha256(payload).hexdigest()
        if actual != match.group(1).decode():
            raise ValueError(f"the file is damaged: its SHA-256 is {actual}, the header "
                             f"says {match.group(1).decode()}")
        return payload, True
    if content.startswith(b"PK\x03\x04"):
        return content, False
    raise ValueError("not a physgrad training checkpoint")


def load_checkpoint(path: str) -> Dict[str, Any]:
    """A checkpoint written by :func:`train`, its checksum and content checked.

    Raises:
        ValueError: if ``path`` is not such a checkpoint, cannot be read, is
            damaged (checksum) or malformed (missing or invalid entries).
    """
    try:
        payload, _ = _read_payload(path)
    except OSError as error:
        raise ValueError(f"{path}: cannot read it: {error.strerror or error}") from error
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    try:
        checkpoint = torch.load(io.BytesIO(payload), map_location="cpu")
    except Exception as error:  # noqa: BLE001 - unpickling fails in many ways
        raise ValueError(f"{path} is not a readable physgrad training checkpoint "
                         f"({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a physgrad training checkpoint")
    if checkpoint.get("version") not in _READABLE_VERSIONS:
        raise ValueError(f"{path}: checkpoint version {checkpoint.get('version')!r} is not "
                         f"one this physgrad reads ({', '.join(map(str, _READABLE_VERSIONS))})")
    problem = _checkpoint_problem(checkpoint)
    if problem:
        raise ValueError(f"{path} is malformed: {problem}")
    return checkpoint


#: entries of a checkpoint and their types
_CHECKPOINT_ENTRIES = {"config": dict, "iteration": int, "complete": bool, "network": dict,
                       "optimizer": dict, "data": dict, "rng": dict, "history": dict}
_HISTORY_COLUMNS = ("iteration", "wall_seconds", "y_loss", "x_mae")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _checkpoint_problem(checkpoint: Dict[str, Any]) -> str:
    """What is wrong with a loaded checkpoint's content ("" if nothing)."""
    for key, kind in _CHECKPOINT_ENTRIES.items():
        if key not in checkpoint:
            return f"no {key!r} entry"
        value = checkpoint[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"{key!r} is a {type(value).__name__}, not a {kind.__name__}"
    config, iteration = checkpoint["config"], checkpoint["iteration"]
    missing = [key for key in _RESUME_KEYS + ("iterations",) if key not in config]
    if missing:
        return f"its settings lack {', '.join(missing)}"
    if not isinstance(config["options"], dict):
        return "its experiment options are not a dict"
    if iteration < 0:
        return f"iteration {iteration} is negative"
    if not (isinstance(config["iterations"], int) and iteration <= config["iterations"]):
        return f"iteration {iteration} is beyond the run's {config['iterations']!r} iterations"
    if not all(isinstance(t, torch.Tensor) for t in checkpoint["network"].values()):
        return "the network state holds non-tensors"
    optimizer = checkpoint["optimizer"]
    if not (isinstance(optimizer.get("state"), dict) and isinstance(optimizer.get("param_groups"), list)):
        return "the optimizer state lacks 'state' or 'param_groups'"
    rng = checkpoint["rng"]
    if not isinstance(rng.get("torch"), torch.Tensor) or rng["torch"].dtype != torch.uint8:
        return "the torch RNG state is missing or not a byte tensor"
    if not isinstance(rng.get("python"), tuple):
        return "the Python RNG state is missing"
    history = checkpoint["history"]
    for column in _HISTORY_COLUMNS:
        values = history.get(column)
        if not isinstance(values, list) or len(values) != iteration:
            return (f"the history's {column!r} column has "
                    f"{len(values) if isinstance(values, list) else 'no'} entries, not {iteration}")
        if not all(_is_number(value) for value in values):
            return f"the history's {column!r} column holds a value that is not a finite number"
    if history["iteration"] != list(range(1, iteration + 1)):
        return "the history's iterations are not 1, 2, ... in order"
    return ""


# ---- a training run's state ---------------------------------------------------------

def run_checkpoint(config: Dict[str, Any], iteration: int, network: nn.Module,
                   optimizer: torch.optim.Optimizer, data: Any, history: Any) -> Dict[str, Any]:
    """The checkpoint of a run at ``iteration`` (what :func:`save_checkpoint` writes and
    :func:`load_checkpoint` checks): the run's settings ``config`` (``iterations``
    included), the network, optimizer and data-source states, the RNG states and the
    log so far (``history``'s columns)."""
    return {"format": _CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION, "config": config,
            "iteration": iteration, "complete": iteration >= config["iterations"],
            "network": network.state_dict(), "optimizer": optimizer.state_dict(),
            "data": data.state_dict(), "rng": _rng_states(),
            "history": {key: list(getattr(history, key)) for key in _HISTORY_COLUMNS},
            "torch_version": torch.__version__}


def resume_state(checkpoint: Dict[str, Any], path: str, config: Dict[str, Any],
                 network: nn.Module, optimizer: torch.optim.Optimizer, data: Any
                 ) -> Tuple[int, Dict[str, List[float]]]:
    """Put a run's state back from ``checkpoint`` (read from ``path``): the network,
    optimizer, data-source and RNG states; returns the checkpoint's iteration and
    its log columns (iteration, wall_seconds, y_loss, x_mae).

    Raises:
        ValueError: "cannot resume ...": the checkpoint was written with other
            settings than ``config`` (``iterations`` may grow), or its state
            does not fit the run.
    """
    saved = checkpoint["config"]
    different = [f"{key} {saved.get(key)!r} (now {config[key]!r})" for key in _RESUME_KEYS
                 if saved.get(key) != config[key]]
    if different:
        raise ValueError(f"cannot resume {path}: it was written with other "
                         f"settings: {'; '.join(different)}")
    done = int(checkpoint["iteration"])
    if done > config["iterations"]:
        raise ValueError(f"cannot resume {path} at iteration {done} for a run "
                         f"of {config['iterations']} iterations; pass at least {done}")
    try:
        network.load_state_dict(checkpoint["network"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        data.load_state_dict(checkpoint["data"])
        _set_rng_states(checkpoint["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError,
            AttributeError) as error:
        raise ValueError(f"cannot resume {path}: its state does not fit "
                         f"this run: {type(error).__name__}: {error}") from error
    return done, {key: list(checkpoint["history"][key]) for key in _HISTORY_COLUMNS}


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


def read_checkpoint_on_rank0(path: str) -> Optional[Dict[str, Any]]:
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
