"""Checkpoints and stop requests of :func:`physgrad.training.train`.

A checkpoint (``<out_dir>/<method>.ckpt``: network, optimizer, RNG and
data-source states, iteration, history) is written atomically (serialized in
memory, then a temporary file, fsync, ``os.replace``; :func:`atomic_write`)
with its SHA-256 in a header, checked when it is read back
(:func:`load_checkpoint`). SIGINT and SIGTERM ask a running training loop to
stop after the current iteration and write one (:class:`TrainingInterrupted`);
``resume`` reads it back. A failed write (full disk, read-only folder) is an
:class:`OutputWriteError` naming the file and the space needed; the previous
file stays. :func:`output_lock` keeps a second run out of an output folder.
"""
import contextlib
import errno
import fcntl
import functools
import hashlib
import io
import math
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch

__all__ = ["TrainingInterrupted", "checkpoint_path", "save_checkpoint", "load_checkpoint",
           "atomic_write", "DEFAULT_CHECKPOINT_EVERY", "EXIT_STOPPED", "CHECKPOINT_SUFFIX",
           "OutputWriteError", "OutputFolderInUse", "output_lock", "EXIT_WRITE_FAILED",
           "LOCK_NAME", "remove_stale_temporaries"]


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
#: exit status of a run that could not write an output file (sysexits.h ``EX_IOERR``)
EXIT_WRITE_FAILED = 74
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


class OutputWriteError(OSError):
    """An output file of a run could not be written (disk full, quota, file
    size limit, read-only or missing folder). The message names the file, the
    system's reason and, when space ran out, the bytes needed and free; the
    previous version of the file is intact. ``errno`` and ``filename`` are the
    failed call's; the CLI exits with :data:`EXIT_WRITE_FAILED`."""

    def __init__(self, message: str, path: str, error_number: Optional[int] = None):
        super().__init__(error_number, message, path)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def write_failure(path: str, error: OSError, needed: Optional[int] = None) -> OutputWriteError:
    """The :class:`OutputWriteError` for ``error`` (raised writing ``path``; ``needed``:
    the bytes the write needed, if known)."""
    if isinstance(error, OutputWriteError):
        return error
    reason = error.strerror or str(error)
    details = []
    if needed is not None:
        details.append(f"{_size(needed)} needed")
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
            details.append(f"{_size(free)} free")
        except OSError:
            pass
    return OutputWriteError(f"cannot write {path}: {reason}"
                            + (f" ({', '.join(details)})" if details else ""), path, error.errno)


#: how :func:`atomic_write` names its temporary files: ``.<name>.<8 characters>.tmp``
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


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


def remove_stale_temporaries(folder: str) -> List[str]:
    """Remove the temporary files that writes of :func:`atomic_write` killed
    midway left in ``folder`` (call it holding :func:`output_lock`); returns
    their paths."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if _TEMPORARY.match(name):
            path = os.path.join(folder, name)
            try:
                if os.path.isfile(path) and not os.path.islink(path):
                    os.unlink(path)
                    removed.append(path)
            except OSError:
                pass
    return removed


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


#: the lock file :func:`output_lock` holds in an output folder while a run writes there
LOCK_NAME = ".physgrad.lock"


class OutputFolderInUse(ValueError):
    """Another run (another process) is writing the output folder."""


#: output folders this process holds: real path -> [lock file descriptor, depth]
_held_locks: Dict[str, List[Any]] = {}
_held_locks_guard = threading.Lock()


def _describe_holder(descriptor: int) -> str:
    try:
        text = os.pread(descriptor, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "a process that has not yet written its name"


def _lock_folder(folder: str) -> int:
    path = os.path.join(folder, LOCK_NAME)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(descriptor)
            os.close(descriptor)
            raise OutputFolderInUse(
                f"output folder {folder} is in use by another run ({holder}); wait for it to "
                f"finish or choose another folder (a crashed run's lock is released with its "
                f"process)") from None
        except BaseException:
            os.close(descriptor)
            raise
        # the previous holder removes the file when it is done: lock the file that is there
        try:
            mine, there = os.fstat(descriptor), os.stat(path)
            current = (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(descriptor)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (f"pid {os.getpid()} on {socket.gethostname()} since "
                               f"{time.strftime('%Y-%m-%d %H:%M:%S')}: "
                               f"{' '.join(sys.argv)}\n").encode("utf-8", "replace"), 0)
    except OSError:
        pass  # the lock holds without the note
    return descriptor


def _unlock_folder(folder: str, descriptor: int) -> None:
    try:
        os.unlink(os.path.join(folder, LOCK_NAME))
    except OSError:
        pass
    os.close(descriptor)


@contextlib.contextmanager
def output_lock(folder: str) -> Iterator[None]:
    """Hold ``folder`` (created if missing) for one run: ``fcntl.flock`` on
    ``folder/.physgrad.lock``, which names the holder. Another process asking
    for the same folder gets :class:`OutputFolderInUse`; the same process may
    nest (compare holds the folder, each of its methods' ``train`` too). The
    lock is released on exit and, being an open file's lock, when the process
    dies however it dies; the file is removed on a normal exit. Temporary files
    of writes killed midway are removed when the folder is taken
    (:func:`remove_stale_temporaries`).

    Raises:
        OutputFolderInUse: another process holds the folder.
        OutputWriteError: the folder cannot be created or written.
    """
    key = os.path.realpath(folder)
    with _held_locks_guard:
        held = _held_locks.get(key)
        if held is not None:
            held[1] += 1
        else:
            try:
                os.makedirs(folder, exist_ok=True)
                descriptor = _lock_folder(folder)
            except OutputFolderInUse:
                raise
            except OSError as error:
                raise OutputWriteError(f"cannot write in output folder {folder}: "
                                       f"{error.strerror or error}", folder, error.errno) from error
            _held_locks[key] = [descriptor, 1]
            remove_stale_temporaries(folder)
    try:
        yield
    finally:
        with _held_locks_guard:
            held = _held_locks[key]
            held[1] -= 1
            if held[1] == 0:
                del _held_locks[key]
                _unlock_folder(folder, held[0])


def holding_output_lock(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``function`` (:func:`train`) holding :func:`output_lock` on its
    ``out_dir`` argument, if given, on the rank that writes files (rank 0)."""
    import inspect
    signature = inspect.signature(function)

    @functools.wraps(function)
    def locked(*args: Any, **kwargs: Any) -> Any:
        from . import distributed
        out_dir = signature.bind(*args, **kwargs).arguments.get("out_dir")
        if out_dir is None:
            return function(*args, **kwargs)
        rank, world_size = distributed.rank_and_world()
        with contextlib.ExitStack() as stack:
            failure: Optional[Tuple[type, str]] = None
            if rank == 0:
                try:
                    stack.enter_context(output_lock(out_dir))
                except (OutputFolderInUse, OutputWriteError) as error:
                    if world_size == 1:
                        raise
                    failure = (type(error), str(error))
            if world_size > 1:  # every rank stops if rank 0 cannot have the folder
                failure = distributed.broadcast_object(failure)
                if failure is not None:
                    raise (OutputFolderInUse(failure[1]) if failure[0] is OutputFolderInUse
                           else OutputWriteError(failure[1], out_dir))
            return function(*args, **kwargs)
    return locked


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
