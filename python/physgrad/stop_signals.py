"""Stop requests of a training run: SIGINT / SIGTERM handlers (:class:`StopSignals`)
and the exception a stopped run raises (:class:`TrainingInterrupted`).

A first signal asks the loop of :func:`physgrad.training.train` to finish the
current iteration and write a checkpoint; a second one stops at once.
"""
import signal
import sys
import threading
from typing import Any, Dict, Optional

__all__ = ["TrainingInterrupted", "EXIT_STOPPED", "StopSignals"]


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


class StopSignals:
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

    def __enter__(self) -> "StopSignals":
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
