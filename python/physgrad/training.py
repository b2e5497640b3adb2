"""Training loop and method comparison for the paper's experiments.

A *method* is a backward mode of the physics op plus an optimizer:

==============  ==============  ==========================================
method          op grad_mode    optimizer
==============  ==============  ==========================================
``adam``        ``adjoint``     Adam (plain backprop through the physics)
``adam+pg``     ``physical``    Adam (physical gradients)
``adam+lbfgs``  ``lbfgs``       Adam (the op's L-BFGS inverse as gradient)
``sgd``         ``adjoint``     SGD, momentum 0.9
``supervised``  (none)          Adam on ``0.5 ||x - x*||^2``, physics only
                                evaluated for the log
==============  ==============  ==========================================

The physics methods minimize the experiment's sum-reduced y-space loss
(``physgrad.losses.l2(y, y*)``); with ``y_step = 1`` the physical gradient then
points exactly at the target. The learning rate comes from the experiment's
table. Reproducibility: for a given ``seed`` every method starts from the
same weights (drawn from torch's RNG seeded with ``seed`` inside
``fork_rng``, so the caller's RNG is untouched) and sees the same batches
(the experiment's data source, its own ``torch.Generator`` seeded with
``data_seed``, default ``seed``).
"""
import csv
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch import nn

from .experiments import Experiment, get_experiment

__all__ = ["Method", "METHODS", "register_method", "get_method", "History",
           "make_network", "make_optimizer", "train", "smoothed_metric",
           "default_checkpoints", "compare", "format_table", "read_history"]


@dataclasses.dataclass(frozen=True)
class Method:
    """How the network is trained.

    Attributes:
        name: registry name, e.g. ``"adam+pg"``.
        grad_mode: backward mode of the physics op; ``None`` for supervised
            training (x-space loss, no physics in the backward).
        optimizer: ``"adam"`` or ``"sgd"``.
        description: one line for ``--help`` and logs.
        momentum: SGD momentum (ignored by Adam).
    """
    name: str
    grad_mode: Optional[str]
    optimizer: str
    description: str = ""
    momentum: float = 0.9


METHODS: Dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add (or replace) a method, e.g. from an experiment module:
    ``register_method(Method("adam+newton", "newton", "adam"))``."""
    if method.optimizer not in ("adam", "sgd"):
        raise ValueError(f"method {method.name!r}: unknown optimizer {method.optimizer!r}; "
                         "choose adam or sgd")
    METHODS[method.name] = method
    return method


for _method in (
        Method("adam", "adjoint", "adam", "Adam through the adjoint (true gradient)"),
        Method("adam+pg", "physical", "adam", "Adam with physical gradients"),
        Method("adam+lbfgs", "lbfgs", "adam", "Adam with the op's L-BFGS inverse step"),
        Method("sgd", "adjoint", "sgd", "SGD with momentum 0.9 through the adjoint"),
        Method("supervised", None, "adam", "Adam on 0.5*||x - x*||^2, no physics in backward")):
    register_method(_method)


def get_method(name: str, experiment: Optional[Experiment] = None) -> Method:
    """The method ``name``; with ``experiment``, also check the experiment offers it.

    Raises:
        ValueError: listing the choices, for an unknown or unoffered method.
    """
    offered = list(experiment.learning_rates) if experiment is not None else list(METHODS)
    if name not in METHODS or name not in offered:
        where = f" for experiment {experiment.name!r}" if experiment is not None else ""
        raise ValueError(f"unknown method {name!r}{where}; choose one of: {', '.join(offered)}")
    return METHODS[name]


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
    network: Optional[nn.Module] = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready copy without the network."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "network"}


def make_network(experiment: Experiment, seed: int) -> nn.Module:
    """The experiment's network initialized from ``seed`` (caller's RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return experiment.make_network()


def make_optimizer(method: Method, parameters: Iterable[nn.Parameter],
                   learning_rate: float) -> torch.optim.Optimizer:
    """The optimizer of ``method`` over ``parameters``."""
    if method.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=learning_rate, momentum=method.momentum)
    return torch.optim.Adam(parameters, lr=learning_rate)


def _training_step(experiment: Experiment, method: Method, network: nn.Module,
                   optimizer: torch.optim.Optimizer, batch: Any) -> Optional[Dict[str, float]]:
    """One update; returns the logged metrics, or None when the prediction is not finite."""
    x = experiment.predict(network, batch)
    if not bool(torch.isfinite(x).all()):
        return None
    if method.grad_mode is None:
        loss = experiment.supervised_loss(x, batch)
        with torch.no_grad():
            y_loss = experiment.y_loss(experiment.simulate(x.detach(), batch, None), batch)
    else:
        loss = y_loss = experiment.y_loss(experiment.simulate(x, batch, method.grad_mode), batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"y_loss": float(y_loss.detach()) / x.shape[0],
            "x_mae": float(experiment.x_metric(x.detach(), batch))}


def _is_tty() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def train(experiment: Union[str, Experiment], method: Union[str, Method],
          iterations: Optional[int] = None, batch_size: Optional[int] = None, seed: int = 0,
          out_dir: Optional[str] = None, *, data_seed: Optional[int] = None,
          learning_rate: Optional[float] = None, progress: Optional[bool] = None,
          flush_every: int = 20, initial_state: Optional[Dict[str, torch.Tensor]] = None
          ) -> History:
    """Train the experiment's network with ``method``.

    Args:
        experiment: an :class:`Experiment` or a registry name (default options).
        method: a :class:`Method` or a name from :data:`METHODS`.
        iterations: number of updates (default: the experiment's).
        batch_size: examples per update (default: the experiment's).
        seed: seed of the network initialization (and of the data by default).
        out_dir: if given, the log goes to ``out_dir/<method>.csv`` (columns
            iteration, wall_seconds, y_loss, x_mae; flushed every
            ``flush_every`` iterations) and the final weights to
            ``out_dir/<method>.pt``.
        data_seed: seed of the data sequence (default ``seed``).
        learning_rate: overrides the experiment's rate for this method.
        progress: show a tqdm bar (default: when stderr is a terminal).
        flush_every: CSV rows between flushes.
        initial_state: network ``state_dict`` to start from instead of the
            seeded initialization.

    Returns:
        The :class:`History`; ``history.network`` is the trained network.
        A run whose prediction becomes non-finite stops early with
        ``history.diverged = True``.
    """
    if isinstance(experiment, str):
        experiment = get_experiment(experiment)
    if isinstance(method, str):
        method = get_method(method, experiment)
    iterations = experiment.default_iterations if iterations is None else iterations
    batch_size = experiment.default_batch_size if batch_size is None else batch_size
    if learning_rate is None:
        learning_rate = experiment.learning_rates.get(method.name)
    if learning_rate is None:
        raise ValueError(f"experiment {experiment.name!r} has no learning rate for method "
                         f"{method.name!r}; pass learning_rate")
    network = make_network(experiment, seed)
    if initial_state is not None:
        network.load_state_dict(initial_state)
    network.train()
    optimizer = make_optimizer(method, network.parameters(), learning_rate)
    data = experiment.make_data(seed if data_seed is None else data_seed)
    history = History(experiment=experiment.name, method=method.name, network=network)

    from tqdm import tqdm
    bar = tqdm(total=iterations, desc=f"{experiment.name} {method.name}", unit="it",
               disable=not (_is_tty() if progress is None else progress), file=sys.stderr)
    csv_file = None
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        history.csv_path = os.path.join(out_dir, f"{method.name}.csv")
        csv_file = open(history.csv_path, "w", newline="")
    try:
        writer = csv.writer(csv_file) if csv_file is not None else None
        if writer is not None:
            writer.writerow(["iteration", "wall_seconds", "y_loss", "x_mae"])
        start = time.perf_counter()
        for iteration in range(1, iterations + 1):
            metrics = _training_step(experiment, method, network, optimizer,
                                     data.sample(batch_size))
            if metrics is None or not all(math.isfinite(v) for v in metrics.values()):
                history.diverged = True
                bar.write(f"{method.name}: non-finite prediction or loss at iteration "
                          f"{iteration}; stopping")
                break
            seconds = time.perf_counter() - start
            history.iteration.append(iteration)
            history.wall_seconds.append(seconds)
            history.y_loss.append(metrics["y_loss"])
            history.x_mae.append(metrics["x_mae"])
            if writer is not None:
                writer.writerow([iteration, f"{seconds:.4f}", f"{metrics['y_loss']:.8g}",
                                 f"{metrics['x_mae']:.8g}"])
                if iteration % flush_every == 0:
                    csv_file.flush()
            bar.update(1)
            if iteration % 10 == 0 or iteration == iterations:
                bar.set_postfix(x_mae=f"{metrics['x_mae']:.4g}", y_loss=f"{metrics['y_loss']:.3g}")
    finally:
        bar.close()
        if csv_file is not None:
            csv_file.close()
    if out_dir is not None:
        history.weights_path = os.path.join(out_dir, f"{method.name}.pt")
        torch.save(network.state_dict(), history.weights_path)
    return history


def smoothed_metric(values: List[float], checkpoint: int, window: int = 10) -> float:
    """Mean of ``values[i]`` (iteration ``i + 1``) over the last
    ``max(1, min(window, checkpoint // 10))`` iterations up to ``checkpoint``;
    NaN if the run stopped before ``checkpoint``."""
    if checkpoint < 1 or checkpoint > len(values):
        return math.nan
    width = max(1, min(window, checkpoint // 10))
    tail = values[checkpoint - width:checkpoint]
    return sum(tail) / len(tail)


def default_checkpoints(iterations: int) -> List[int]:
    """The paper's reporting points below ``iterations``, plus ``iterations``."""
    marks = (10, 30, 60, 100, 300, 1000, 3000, 5000, 10000, 20000)
    return [mark for mark in marks if mark < iterations] + [iterations]


def _json_number(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


def compare(experiment: Union[str, Experiment], methods: List[str],
            iterations: Optional[int] = None, batch_size: Optional[int] = None, seed: int = 0,
            out_dir: str = "runs/compare", *, data_seed: Optional[int] = None,
            checkpoints: Optional[List[int]] = None, window: int = 10,
            progress: Optional[bool] = None, seeds: Optional[List[int]] = None,
            evaluate: bool = True) -> Dict[str, Any]:
    """Train every method from identical initial weights on identical data.

    Writes ``out_dir/<method>.csv`` and ``.pt`` per method,
    ``out_dir/results.json`` and the learning curves
    ``out_dir/learning_curves.png``. With ``evaluate``, the experiment's own
    report on the trained networks (:meth:`Experiment.evaluate`, if it has
    one) goes to ``results["evaluation"]`` and its files to ``out_dir``.

    With ``seeds`` (several network initializations, as the paper's figure
    10), each seed is a comparison of its own in ``out_dir/seed<k>`` (data seed
    ``data_seed`` if given, else the seed); ``out_dir/results.json`` then holds
    the mean over seeds in ``x_mae`` and the per-seed values in
    ``x_mae_per_seed``, and ``out_dir/learning_curves.png`` every seed's curves.

    Returns:
        The results (as in ``results.json``): per method the experiment's
        metric (the log's ``x_mae`` column, named ``results["metric"]``) at each
        checkpoint (:func:`smoothed_metric` with ``window``; None where a run
        stopped early) and ``ratio_to_first``, the first method's value divided
        by this method's (> 1: this method is more accurate).
    """
    if isinstance(experiment, str):
        experiment = get_experiment(experiment)
    if not methods:
        raise ValueError("compare needs at least one method")
    if seeds:
        return _compare_seeds(experiment, methods, iterations, batch_size, list(seeds), out_dir,
                              data_seed=data_seed, checkpoints=checkpoints, window=window,
                              progress=progress, evaluate=evaluate)
    return _compare_one(experiment, methods, iterations, batch_size, seed, out_dir,
                        data_seed=data_seed, checkpoints=checkpoints, window=window,
                        progress=progress, evaluate=evaluate)[0]


def _ratios(table: Dict[str, List[float]], first: str) -> Dict[str, List[float]]:
    return {name: [a / b if b > 0 else math.nan for a, b in zip(table[first], values)]
            for name, values in table.items()}


def _json_list(values: List[float]) -> List[Optional[float]]:
    return [_json_number(v) for v in values]


def _compare_one(experiment: Experiment, methods: List[str], iterations: Optional[int],
                 batch_size: Optional[int], seed: int, out_dir: str, *, data_seed: Optional[int],
                 checkpoints: Optional[List[int]], window: int, progress: Optional[bool],
                 evaluate: bool) -> Tuple[Dict[str, Any], List[History]]:
    """One seed of :func:`compare`: (results, histories)."""
    from . import plots
    resolved = [get_method(name, experiment) for name in methods]
    iterations = experiment.default_iterations if iterations is None else iterations
    batch_size = experiment.default_batch_size if batch_size is None else batch_size
    checkpoints = sorted(set(checkpoints or default_checkpoints(iterations)))
    initial_state = make_network(experiment, seed).state_dict()
    histories = [train(experiment, method, iterations, batch_size, seed, out_dir,
                       data_seed=data_seed, progress=progress, initial_state=initial_state)
                 for method in resolved]
    table = {h.method: [smoothed_metric(h.x_mae, c, window) for c in checkpoints]
             for h in histories}
    ratios = _ratios(table, histories[0].method)
    plot_path = plots.plot_learning_curves(
        histories, os.path.join(out_dir, "learning_curves.png"),
        title=f"{experiment.name}: batch {batch_size}, seed {seed}",
        smoothing=experiment.plot_smoothing, metric_label=experiment.metric_description)
    results = {
        "experiment": experiment.name, "options": experiment.options(),
        "methods": [h.method for h in histories], "iterations": iterations,
        "batch_size": batch_size, "seed": seed,
        "data_seed": seed if data_seed is None else data_seed,
        "learning_rates": {m.name: experiment.learning_rates[m.name] for m in resolved},
        "metric": experiment.metric_name,
        "checkpoints": checkpoints, "smoothing_window": window,
        "x_mae": {name: _json_list(values) for name, values in table.items()},
        "ratio_to_first": {name: _json_list(values) for name, values in ratios.items()},
        "wall_seconds": {h.method: (h.wall_seconds[-1] if h.wall_seconds else 0.0)
                         for h in histories},
        "diverged": {h.method: h.diverged for h in histories},
        "csv": {h.method: h.csv_path for h in histories},
        "weights": {h.method: h.weights_path for h in histories},
        "plot": plot_path,
        "results_json": os.path.join(out_dir, "results.json"),
    }
    if evaluate:
        evaluation = experiment.evaluate({h.method: h.network for h in histories}, out_dir,
                                         {h.method: h for h in histories})
        if evaluation is not None:
            results["evaluation"] = evaluation
    with open(results["results_json"], "w") as stream:
        json.dump(results, stream, indent=2)
    return results, histories


def _compare_seeds(experiment: Experiment, methods: List[str], iterations: Optional[int],
                   batch_size: Optional[int], seeds: List[int], out_dir: str, *,
                   data_seed: Optional[int], checkpoints: Optional[List[int]], window: int,
                   progress: Optional[bool], evaluate: bool) -> Dict[str, Any]:
    """:func:`compare` repeated for several network initializations, and the mean."""
    from . import plots
    runs = [_compare_one(experiment, methods, iterations, batch_size, seed,
                         os.path.join(out_dir, f"seed{seed}"), data_seed=data_seed,
                         checkpoints=checkpoints, window=window, progress=progress,
                         evaluate=evaluate) for seed in seeds]
    first = runs[0][0]
    names = first["methods"]

    def value(v: Optional[float]) -> float:
        return math.nan if v is None else v

    per_seed = {str(seed): run[0]["x_mae"] for seed, run in zip(seeds, runs)}
    mean = {name: [sum(value(run[0]["x_mae"][name][i]) for run in runs) / len(runs)
                   for i in range(len(first["checkpoints"]))] for name in names}
    results = {key: first[key] for key in ("experiment", "options", "methods", "iterations",
                                           "batch_size", "learning_rates", "metric",
                                           "checkpoints", "smoothing_window")}
    # one legend entry per method (matplotlib skips labels starting with "_")
    seed_list = ", ".join(map(str, seeds))
    labelled = [dataclasses.replace(h, method=f"{h.method} (seeds {seed_list})" if i == 0 else f"_{h.method}")
                for i, run in enumerate(runs) for h in run[1]]
    results.update({
        "seeds": seeds, "data_seed": data_seed,
        "x_mae": {name: _json_list(values) for name, values in mean.items()},
        "ratio_to_first": {name: _json_list(values)
                           for name, values in _ratios(mean, names[0]).items()},
        "x_mae_per_seed": per_seed,
        "wall_seconds": {str(seed): run[0]["wall_seconds"] for seed, run in zip(seeds, runs)},
        "diverged": {name: [run[0]["diverged"][name] for run in runs] for name in names},
        "runs": {str(seed): run[0]["results_json"] for seed, run in zip(seeds, runs)},
        "plot": plots.plot_learning_curves(
            labelled, os.path.join(out_dir, "learning_curves.png"),
            title=f"{experiment.name}: seeds {', '.join(map(str, seeds))}",
            smoothing=experiment.plot_smoothing, metric_label=experiment.metric_description,
            colors=[f"C{names.index(h.method)}" for run in runs for h in run[1]]),
        "results_json": os.path.join(out_dir, "results.json"),
    })
    evaluations = {str(seed): run[0]["evaluation"] for seed, run in zip(seeds, runs)
                   if "evaluation" in run[0]}
    if evaluations:
        results["evaluation_per_seed"] = evaluations
    with open(results["results_json"], "w") as stream:
        json.dump(results, stream, indent=2)
    return results


def read_history(csv_path: str, experiment: str = "", method: str = "") -> History:
    """A :class:`History` from a training log written by :func:`train` (no network)."""
    history = History(experiment=experiment, method=method, csv_path=csv_path)
    with open(csv_path, newline="") as stream:
        for row in csv.DictReader(stream):
            history.iteration.append(int(row["iteration"]))
            history.wall_seconds.append(float(row["wall_seconds"]))
            history.y_loss.append(float(row["y_loss"]))
            history.x_mae.append(float(row["x_mae"]))
    return history


def format_table(results: Dict[str, Any]) -> str:
    """The metric / ratio table of :func:`compare`'s results as text (with
    ``seeds``: the mean, then one block per seed)."""
    checkpoints = results["checkpoints"]
    methods = results["methods"]
    metric = results.get("metric", "x-MAE")
    label_width = max(12, *(len(m) + 2 for m in methods), len(methods[0]) + 8)

    def row(label: str, values: List[Optional[float]], fmt: str) -> str:
        cells = [("-" if v is None else format(v, fmt)).rjust(10) for v in values]
        return label.ljust(label_width) + "".join(cells)

    over = f"mean over seeds {', '.join(map(str, results['seeds']))} of the " if "seeds" in results else ""
    lines = [f"{over}{metric} at iteration (mean over the last <= {results['smoothing_window']} "
             f"iterations up to each checkpoint):",
             "iteration".ljust(label_width) + "".join(str(c).rjust(10) for c in checkpoints)]
    lines += [row(m, results["x_mae"][m], ".4g") for m in methods]
    if len(methods) > 1:
        lines.append(f"ratio {methods[0]} / method (> 1: method more accurate):")
        lines += [row(m, results["ratio_to_first"][m], ".3g") for m in methods[1:]]
    for seed, table in results.get("x_mae_per_seed", {}).items():
        lines.append(f"seed {seed}:")
        lines += [row(m, table[m], ".4g") for m in methods]
    return "\n".join(lines)
