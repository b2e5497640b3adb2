"""The log of a training run: :class:`History` and its CSV file
(``<out_dir>/<method>.csv``: iteration, wall_seconds, y_loss, x_mae)."""
import csv
import dataclasses
import io
from typing import Any, Dict, List, Optional

from torch import nn

from .checkpoints import atomic_write

__all__ = ["History", "read_history", "CSV_HEADER", "csv_row", "rewrite_csv"]


@dataclasses.dataclass
class History:
    """Per-iteration log of one training run (iterations count from 1).

    ``y_loss`` is the y-space loss per example (the sum-reduced loss divided
    by the batch size), ``x_mae`` the mean absolute error of the prediction
    against ``x*``, both measured on the batch of that iteration before the
    update. ``wall_seconds`` is the time since training started.
    """
    experiment: str
    method: str
    iteration: List[int] = dataclasses.field(default_factory=list)
    wall_seconds: List[float] = dataclasses.field(default_factory=list)
    y_loss: List[float] = dataclasses.field(default_factory=list)
    x_mae: List[float] = dataclasses.field(default_factory=list)
    diverged: bool = False
    csv_path: Optional[str] = None
    weights_path: Optional[str] = None
    #: why the run stopped early (non-finite values), else None
    message: Optional[str] = None
    checkpoint_path: Optional[str] = None
    #: the checkpoint iteration a resumed run continued from, else None
    resumed_from: Optional[int] = None
    network: Optional[nn.Module] = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready copy without the network."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "network"}


def csv_row(iteration: int, seconds: float, y_loss: float, x_mae: float) -> List[str]:
    """One CSV row, as :func:`physgrad.training.train` writes it."""
    return [str(iteration), f"{seconds:.4f}", f"{y_loss:.8g}", f"{x_mae:.8g}"]


#: the CSV log's columns
CSV_HEADER = ["iteration", "wall_seconds", "y_loss", "x_mae"]


def rewrite_csv(path: str, history: "History") -> None:
    """The log cut back to ``history`` (a resumed run's checkpoint): rows after
    the checkpoint, written before an interruption, are dropped."""
    def write(stream: Any) -> None:
        writer = csv.writer(stream)
        writer.writerow(CSV_HEADER)
        for row in zip(history.iteration, history.wall_seconds, history.y_loss, history.x_mae):
            writer.writerow(csv_row(*row))
    atomic_write(path, write, mode="w")


def read_history(csv_path: str, experiment: str = "", method: str = "") -> History:
    """A :class:`History` from a training log written by :func:`train` (no network).

    The log of a run still in progress may end in a row being written: a last
    line without its line end is left out. A malformed complete row is a
    ValueError naming the file and the line."""
    history = History(experiment=experiment, method=method, csv_path=csv_path)
    with open(csv_path, newline="") as stream:
        text = stream.read()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]  # the row being written
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for row in reader:
        try:
            iteration, seconds = int(row["iteration"]), float(row["wall_seconds"])
            y_loss, x_mae = float(row["y_loss"]), float(row["x_mae"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{csv_path}, line {reader.line_num}: not a row of a training log "
                             f"(iteration, wall_seconds, y_loss, x_mae): {row}") from error
        history.iteration.append(iteration)
        history.wall_seconds.append(seconds)
        history.y_loss.append(y_loss)
        history.x_mae.append(x_mae)
    return history
