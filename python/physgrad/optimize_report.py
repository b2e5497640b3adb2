"""The outputs of :func:`physgrad.optimize.optimize`: each method's curve as CSV,
the loss and x error against iteration (the paper's Fig. 4b, 5b, 6b), and the
table of final values with, for a trained network, the iterations and time each
solver needs to reach its accuracy (the paper's Table 1)."""
import csv
import math
import os
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

from .experiments import Experiment

if TYPE_CHECKING:
    from .optimize import Curve

__all__ = ["iterations_to_reach", "write_curve_csv", "plot_curves", "format_table", "training_record"]


def iterations_to_reach(curve: "Curve", x_error: float) -> Optional[Tuple[int, float]]:
    """The first iteration whose mean x error is at most ``x_error`` and the wall time
    per example until then; None if the run never gets there."""
    for k, value in enumerate(curve.x_error):
        if value <= x_error:
            return curve.iteration[k], curve.wall_seconds[k]
    return None


def write_curve_csv(curve: "Curve", path: str) -> str:
    """``path``: iteration, evaluations, wall_seconds, loss, x_error (means over examples)."""
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["iteration", "evaluations", "wall_seconds", "loss", "x_error"])
        for row in zip(curve.iteration, curve.evaluations, curve.wall_seconds, curve.loss, curve.x_error):
            writer.writerow([row[0], f"{row[1]:.6g}", f"{row[2]:.6g}", f"{row[3]:.8g}", f"{row[4]:.8g}"])
    return path


def plot_curves(curves: Sequence["Curve"], path: str, experiment: Experiment, examples: int,
                network: Optional[Dict[str, Any]] = None) -> str:
    """PNG of loss and x error against iteration, one line per method, log y axes (as the
    paper's Fig. 4b, 5b, 6b); the network's x error as a horizontal line when given."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    panels = (("loss", "y loss per example"), ("x_error", f"{experiment.metric_name} per example"))
    for ax, (name, label) in zip(axes, panels):
        for index, curve in enumerate(curves):
            values = [v if v > 0 else math.nan for v in getattr(curve, name)]
            ax.plot(curve.iteration, values, color=f"C{index}", linewidth=1.4, label=curve.method)
        if name == "x_error" and network is not None:
            ax.axhline(network["x_error"], color="k", linestyle="--", linewidth=1.0, label="network")
        ax.set_yscale("log")
        ax.set_xlabel("optimization iteration")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    figure.suptitle(f"{experiment.name}: single-example optimization from x = 0, mean over {examples} "
                    f"example{'s' if examples != 1 else ''}")
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    figure.savefig(path)
    return path


def duration(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1.0 else f"{seconds:.4g} s"


def format_table(experiment: Experiment, curves: Sequence["Curve"], examples: int,
                 network: Optional[Dict[str, Any]] = None) -> str:
    """Markdown: each method's result after its iterations; with ``network``, Table 1's
    comparison (iterations and time per example to reach the network's x error)."""
    metric = experiment.metric_name
    lines = [f"{experiment.name}, {examples} example{'s' if examples != 1 else ''} (means per example)", "",
             f"| method | iterations | time per example | loss | {metric} | best {metric} (iteration) |",
             "|---|---|---|---|---|---|"]
    for curve in curves:
        best = min(range(len(curve.x_error)), key=lambda k: curve.x_error[k])
        lines.append(f"| {curve.method} | {curve.iteration[-1]} | {duration(curve.wall_seconds[-1])} | "
                     f"{curve.loss[-1]:.4g} | {curve.x_error[-1]:.4g} | {curve.x_error[best]:.4g} ({best}) |")
    if network is None:
        return "\n".join(lines) + "\n"
    lines += ["", f"Time to reach the network's {metric} (paper Table 1)", "",
              f"| method | iterations | time per example | {metric} |", "|---|---|---|---|",
              f"| network ({network['name']}) | one forward pass | {duration(network['seconds_per_example'])} | "
              f"{network['x_error']:.4g} |"]
    for curve in curves:
        reached = iterations_to_reach(curve, network["x_error"])
        if reached is None:
            lines.append(f"| {curve.method} | not reached in {curve.iteration[-1]} | "
                         f"> {duration(curve.wall_seconds[-1])} | {min(curve.x_error):.4g} (best) |")
        else:
            k = curve.iteration.index(reached[0])
            lines.append(f"| {curve.method} | {reached[0]} | {duration(reached[1])} | {curve.x_error[k]:.4g} |")
    if network.get("training"):
        training = network["training"]
        lines += ["", f"network training: {training['iterations']} iterations of {training['method']} in "
                      f"{duration(training['wall_seconds'])}"]
    return "\n".join(lines) + "\n"


def training_record(path: str) -> Optional[Dict[str, Any]]:
    """Iterations and wall time of the run that saved ``<dir>/<method>.pt``, from its
    ``<dir>/<method>.csv`` log; None when there is no log."""
    from .history import read_history
    log = os.path.splitext(path)[0] + ".csv"
    if not os.path.isfile(log):
        return None
    history = read_history(log)
    if not history.iteration:
        return None
    return {"method": os.path.basename(os.path.splitext(path)[0]), "iterations": history.iteration[-1],
            "wall_seconds": history.wall_seconds[-1], "log": log}
