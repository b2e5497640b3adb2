"""Learning-curve plots (PNG, matplotlib's Agg canvas: no display needed)."""
import os
from typing import TYPE_CHECKING, List, Optional, Sequence

if TYPE_CHECKING:
    from .training import History

__all__ = ["plot_learning_curves", "running_mean"]


def running_mean(values: Sequence[float], window: int) -> List[float]:
    """Trailing mean over up to ``window`` values (shorter at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_learning_curves(histories: Sequence["History"], path: str,
                         title: str = "", smoothing: int = 0,
                         metric_label: str = "x MAE  |x - x*| (mean)",
                         colors: Optional[Sequence[str]] = None) -> str:
    """Plot x-MAE (or the experiment's metric) and y-loss against iteration, one
    line per history, log y-axes.

    Args:
        histories: training histories (:class:`physgrad.training.History`).
        path: PNG file to write (folders are created).
        title: figure title.
        smoothing: trailing running-mean window in iterations (0: about 1% of
            the longest run, at least 1), drawn over the raw curve.
        metric_label: axis label of the ``x_mae`` panel (the experiment's metric).
        colors: one matplotlib color per history (default C0, C1, ...), e.g. to
            draw several seeds of a method in one color.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    longest = max((len(h.iteration) for h in histories), default=1)
    window = smoothing or max(1, longest // 100)
    figure = Figure(figsize=(11, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    panels = (("x_mae", metric_label), ("y_loss", "y loss  0.5||y - y*||^2 per example"))
    for ax, (metric, label) in zip(axes, panels):
        for index, history in enumerate(histories):
            values = getattr(history, metric)
            if not values:
                continue
            color = colors[index] if colors is not None else f"C{index}"
            if window > 1:
                ax.plot(history.iteration, values, color=color, alpha=0.25, linewidth=0.6)
            ax.plot(history.iteration, running_mean(values, window), color=color,
                    linewidth=1.4, label=history.method + (" (diverged)" if history.diverged else ""))
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small" if len(histories) > 6 else None)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    return path
