"""Data and figures of :mod:`physgrad.reproduce_report`: the runs' logs read back
(:func:`collect`), their running means, the subsampled curves (``curves.csv``),
the learning-curve panel and the sine's gradient field (figure 9)."""
from __future__ import annotations

import csv
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .reproduce import plan_for, run_folder, runs_of

__all__ = ["collect", "write_curves", "plot_curves", "plot_sine_gradients", "smoothed", "value_at", "mean",
           "geometric_mean", "first_at_or_below", "fmt"]


def running_mean_of(values: Sequence[float], window: int) -> List[float]:
    from .plots import running_mean
    return running_mean(list(values), max(1, window))


def collect(name: str, runs: str, quick: bool = False) -> Dict[str, Any]:
    """Every run of ``name``'s plan found under ``runs``: ``{"runs": [{seed, method,
    target, batch_size, done, history}], "methods": [...], "seeds": [...]}``."""
    from .reproduce import log_path, read_log
    stages, options = plan_for(name, quick)
    found = []
    for seed, method, iterations, batch_size in runs_of(stages):
        path = log_path(run_folder(runs, name, seed), method)
        history = read_log(path, name, method) if path else None
        found.append({"seed": seed, "method": method, "target": iterations, "batch_size": batch_size,
                      "done": len(history.iteration) if history else 0, "history": history})
    methods = list(dict.fromkeys(r["method"] for r in found))
    seeds = sorted({r["seed"] for r in found})
    return {"name": name, "runs": found, "methods": methods, "seeds": seeds, "options": options, "stages": stages}


def smoothed(run: Dict[str, Any], window: int, column: str = "x_mae") -> List[float]:
    return running_mean_of(getattr(run["history"], column), window) if run["history"] else []


def value_at(values: Sequence[float], iteration: int) -> Optional[float]:
    """The smoothed value at ``iteration`` (from 1), None when the run is shorter."""
    return values[iteration - 1] if 0 < iteration <= len(values) else None


def mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def geometric_mean(values: Sequence[float]) -> Optional[float]:
    values = [v for v in values if v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def first_at_or_below(values: Sequence[float], level: Optional[float]) -> Optional[int]:
    if level is None:
        return None
    for i, value in enumerate(values):
        if value <= level:
            return i + 1
    return None


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def _subsample_indices(length: int, points: int = 400) -> List[int]:
    """Iterations (0-based) kept in curves.csv: every one of the first 100, then
    about ``points`` more, evenly spaced on a log scale, and the last."""
    if length <= 0:
        return []
    keep = set(range(min(length, 100)))
    if length > 100:
        for k in range(points):
            keep.add(min(length - 1, int(round(100 * (length / 100) ** (k / (points - 1)))) - 1))
    keep.add(length - 1)
    return sorted(keep)


def write_curves(data: Dict[str, Any], out_dir: str, window: int) -> str:
    path = os.path.join(out_dir, "curves.csv")
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["method", "seed", "iteration", f"metric_mean{window}", f"y_loss_mean{window}",
                         "wall_seconds"])
        for run in data["runs"]:
            if not run["done"]:
                continue
            metric, loss = smoothed(run, window), smoothed(run, window, "y_loss")
            for i in _subsample_indices(run["done"]):
                writer.writerow([run["method"], run["seed"], i + 1, f"{metric[i]:.6g}", f"{loss[i]:.6g}",
                                 f"{run['history'].wall_seconds[i]:.2f}"])
    return path


def plot_curves(data: Dict[str, Any], out_dir: str, window: int, metric_label: str, title: str,
                references: Optional[Dict[str, Tuple[float, float]]] = None) -> str:
    """Mean over seeds (line) and range (band) of each method's smoothed metric
    and y-loss, log y axes; ``references``: label -> (metric, y-loss) drawn as
    horizontal lines (e.g. the wave packet's fitters, as the paper's figure 8)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(11, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for ax, column, label in ((axes[0], "x_mae", metric_label), (axes[1], "y_loss", "y-space loss per example")):
        for index, method in enumerate(data["methods"]):
            curves = [smoothed(r, window, column) for r in data["runs"] if r["method"] == method and r["done"]]
            if not curves:
                continue
            length = max(len(c) for c in curves)
            iterations, means, lows, highs = [], [], [], []
            for i in range(length):
                values = [c[i] for c in curves if i < len(c) and math.isfinite(c[i]) and c[i] > 0]
                if not values:
                    continue
                iterations.append(i + 1)
                means.append(geometric_mean(values))
                lows.append(min(values))
                highs.append(max(values))
            color = f"C{index}"
            ax.plot(iterations, means, color=color, linewidth=1.4,
                    label=f"{method} ({len(curves)} seed{'s' if len(curves) > 1 else ''})")
            if len(curves) > 1:
                ax.fill_between(iterations, lows, highs, color=color, alpha=0.2, linewidth=0)
        for number, (reference, values) in enumerate((references or {}).items()):
            ax.axhline(values[0 if column == "x_mae" else 1], color="0.3", linewidth=1.0,
                       linestyle=("--", ":", "-.")[number % 3], label=reference)
        ax.set_yscale("log")
        ax.set_xlabel("training iteration")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(f"{title} (running mean over {window} iterations; line: geometric mean over seeds, "
                    "band: range)", fontsize=9)
    figure.tight_layout()
    path = os.path.join(out_dir, "learning_curves.png")
    figure.savefig(path)
    return path


def plot_sine_gradients(path: str, a: float = 1.0) -> str:
    """Figure 9: the update ``-dx`` of each backward of the sine op for ``a = 1``
    against x, with the objective ``sin(a/x) + 1`` (the supervised update points
    to the minimum nearest x0 = 1)."""
    import torch
    import physgrad
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    x = torch.linspace(0.04, 2.0, 4000, dtype=torch.float64)  # several minima near 0, as figure 9
    aa = torch.full_like(x, a)
    panels = [("supervised (x0 = 1)", None), ("gradient descent (adjoint, clipped)", "adjoint"),
              ("inverse gradient", "inverse_gradient"), ("Newton", "newton"), ("physical gradient", "physical")]
    figure = Figure(figsize=(7, 10), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels) + 1, 1, sharex=True)
    for ax, (label, mode) in zip(axes, panels):
        if mode is None:
            update = physgrad.sine_nearest_minimum(aa, torch.ones_like(x)) - x
        else:
            xv = x.clone().requires_grad_()
            y = physgrad.sine(xv, aa, grad_mode=mode, adjoint_clip=1.0 if mode == "adjoint" else 0.0)
            (grad,) = torch.autograd.grad(0.5 * (y + 1).pow(2).sum(), (xv,))
            update = -grad
        ax.plot(x.tolist(), update.tolist(), linewidth=0.9)
        ax.axhline(0, color="0.6", linewidth=0.6)
        ax.set_ylabel("-dx")
        ax.set_title(label, fontsize=9)
    axes[-1].plot(x.tolist(), (torch.sin(aa / x) + 1).tolist(), color="k", linewidth=0.9)
    axes[-1].set_title("objective sin(a/x) + 1, a = 1", fontsize=9)
    axes[-1].set_xlabel("x")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    return path
