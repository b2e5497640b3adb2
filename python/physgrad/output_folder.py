"""A run's output folder: the lock that keeps a second run out of it
(:func:`output_lock`, :func:`holding_output_lock`), the removal of temporary
files that killed writes left in it (:func:`remove_stale_temporaries`), and the
error for a file that cannot be written into it (:class:`OutputWriteError`,
:func:`write_failure`; the CLI exits with :data:`EXIT_WRITE_FAILED`).
Files are written atomically by :func:`physgrad.checkpoints.atomic_write`.
"""
import contextlib
import errno
import fcntl
import functools
import os
import re
import shutil
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

__all__ = ["OutputWriteError", "write_failure", "EXIT_WRITE_FAILED", "remove_stale_temporaries",
           "LOCK_NAME", "OutputFolderInUse", "output_lock", "holding_output_lock"]

#: exit status of a run that could not write an output file (sysexits.h ``EX_IOERR``)
EXIT_WRITE_FAILED = 74


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


#: how :func:`physgrad.checkpoints.atomic_write_bytes` names its temporary files:
#: ``.<name>.<8 characters>.tmp`` (``tempfile.mkstemp`` with that prefix and suffix)
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def remove_stale_temporaries(folder: str) -> List[str]:
    """Remove the temporary files that writes of :func:`physgrad.checkpoints.atomic_write` killed
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
