"""The log of a training run as it trains (:class:`TrainingLog`): the
:class:`physgrad.history.History` in memory, the CSV file
``<out_dir>/<method>.csv`` (written by rank 0; a resumed run's log is first cut
back to its checkpoint) and the progress bar."""
import csv
import os
import sys
from typing import Any, Optional

from .history import CSV_HEADER, csv_row, rewrite_csv
from .output_folder import write_failure
from .training_setup import Run

__all__ = ["TrainingLog"]


def _is_tty() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class TrainingLog:
    """Opens the run's CSV log (rank 0 with ``out_dir``) and its tqdm bar (rank 0;
    ``progress``: shown, default when stderr is a terminal); rows are flushed
    every ``flush_every`` iterations and by :meth:`flush`.

    Raises:
        OutputWriteError: the CSV file cannot be opened.
    """

    def __init__(self, run: Run, progress: Optional[bool], flush_every: int):
        from tqdm import tqdm
        self.history = run.history
        self.iterations = run.iterations
        self.flush_every = flush_every
        self.done = run.done
        self.bar = tqdm(total=run.iterations, initial=run.done, desc=run.label, unit="it",
                        file=sys.stderr,
                        disable=run.rank != 0 or not (_is_tty() if progress is None else progress))
        self.stream: Any = None
        self.writer: Any = None
        if run.out_dir is not None:
            self.history.csv_path = os.path.join(run.out_dir, f"{run.method.name}.csv")
        if run.writes:
            try:
                if run.done > 0:
                    rewrite_csv(self.history.csv_path, self.history)
                    self.stream = open(self.history.csv_path, "a", newline="")
                else:
                    self.stream = open(self.history.csv_path, "w", newline="")
            except OSError as error:
                self.bar.close()
                raise write_failure(self.history.csv_path, error) from error

    def start(self) -> None:
        """The CSV header, for a run that starts at iteration 1."""
        if self.stream is not None:
            self.writer = csv.writer(self.stream)
            if self.done == 0:
                self.writer.writerow(CSV_HEADER)

    def record(self, iteration: int, seconds: float, y_loss: float, x_mae: float) -> None:
        """An applied update: into the history, the CSV and the bar."""
        self.history.iteration.append(iteration)
        self.history.wall_seconds.append(seconds)
        self.history.y_loss.append(y_loss)
        self.history.x_mae.append(x_mae)
        if self.writer is not None:
            self.writer.writerow(csv_row(iteration, seconds, y_loss, x_mae))
            if iteration % self.flush_every == 0:
                self.stream.flush()
        self.bar.update(1)
        if iteration % 10 == 0 or iteration == self.iterations:
            self.bar.set_postfix(x_mae=f"{x_mae:.4g}", y_loss=f"{y_loss:.3g}")

    def flush(self) -> None:
        """Flush and fsync the CSV (before every checkpoint: the log never lags behind one)."""
        if self.stream is not None:
            self.stream.flush()
            os.fsync(self.stream.fileno())

    def write(self, message: str) -> None:
        """A message on stderr that does not break the bar."""
        self.bar.write(message, file=sys.stderr)

    def close(self, raise_errors: bool) -> None:
        """Close the bar, then flush, fsync and close the CSV; a failure is an
        OutputWriteError, or ignored (``raise_errors=False``: an error is already
        on its way)."""
        self.bar.close()
        if self.stream is None:
            return
        try:
            self.stream.flush()
            os.fsync(self.stream.fileno())
        except OSError as error:
            try:
                self.stream.close()
            except OSError:
                pass
            if raise_errors:
                raise write_failure(self.history.csv_path, error) from error
            return
        self.stream.close()
