"""Method comparison (:func:`compare`): every method trained from identical
initial weights on identical data, the experiment's metric at checkpoints,
``results.json``, learning-curve plots and the text table (:func:`format_table`)."""
import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Optional, Tuple, Union

from . import plots
from .checkpoints import DEFAULT_CHECKPOINT_EVERY, atomic_write
from .distributed import rank_and_world
from .experiments import Experiment, get_experiment
from .history import History
from .methods import get_method
from .training_loop import train
from .training_setup import make_network

__all__ = ["smoothed_metric", "default_checkpoints", "compare", "format_table",
           "COMPARE_SETTINGS"]


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
            evaluate: bool = True, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
            resume: bool = False, stop_after: Optional[int] = None,
            handle_signals: bool = True, sync_batchnorm: bool = True) -> Dict[str, Any]:
    """Train every method from identical initial weights on identical data.

    Writes ``out_dir/compare.json`` (the settings, first), ``out_dir/<method>.csv``,
    ``.ckpt`` and ``.pt`` per method, ``out_dir/results.json`` and the learning
    curves ``out_dir/learning_curves.png``. With ``evaluate``, the experiment's
    own report on the trained networks (:meth:`Experiment.evaluate`, if it has
    one) goes to ``results["evaluation"]`` and its files to ``out_dir``.

    ``checkpoint_every``, ``stop_after``, ``handle_signals`` and
    ``sync_batchnorm`` are :func:`train`'s, for every method. With ``resume``,
    each method continues from its checkpoint (a finished one is only read
    back, one never started starts afresh), so an interrupted comparison
    completes with the curves an uninterrupted one has. In data-parallel runs
    only rank 0 writes files and evaluates.

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
    options = {"checkpoint_every": checkpoint_every, "resume": resume, "stop_after": stop_after,
               "handle_signals": handle_signals, "sync_batchnorm": sync_batchnorm}
    if rank_and_world()[0] == 0:
        settings = {"experiment": experiment.name, "options": experiment.options(),
                    "methods": list(methods), "iterations": iterations, "batch_size": batch_size,
                    "seed": seed, "seeds": list(seeds) if seeds else None, "data_seed": data_seed,
                    "checkpoints": checkpoints, "window": window, "evaluate": evaluate}
        atomic_write(os.path.join(out_dir, COMPARE_SETTINGS),
                     lambda stream: json.dump(settings, stream, indent=2), mode="w")
    if seeds:
        return _compare_seeds(experiment, methods, iterations, batch_size, list(seeds), out_dir,
                              data_seed=data_seed, checkpoints=checkpoints, window=window,
                              progress=progress, evaluate=evaluate, options=options)
    return _compare_one(experiment, methods, iterations, batch_size, seed, out_dir,
                        data_seed=data_seed, checkpoints=checkpoints, window=window,
                        progress=progress, evaluate=evaluate, options=options)[0]


#: the settings file :func:`compare` writes first (``compare --resume`` reads it)
COMPARE_SETTINGS = "compare.json"


def _ratios(table: Dict[str, List[float]], first: str) -> Dict[str, List[float]]:
    return {name: [a / b if b > 0 else math.nan for a, b in zip(table[first], values)]
            for name, values in table.items()}


def _json_list(values: List[float]) -> List[Optional[float]]:
    return [_json_number(v) for v in values]


def _compare_one(experiment: Experiment, methods: List[str], iterations: Optional[int],
                 batch_size: Optional[int], seed: int, out_dir: str, *, data_seed: Optional[int],
                 checkpoints: Optional[List[int]], window: int, progress: Optional[bool],
                 evaluate: bool, options: Dict[str, Any]) -> Tuple[Dict[str, Any], List[History]]:
    """One seed of :func:`compare`: (results, histories)."""
    main_rank = rank_and_world()[0] == 0
    resolved = [get_method(name, experiment) for name in methods]
    iterations = experiment.default_iterations if iterations is None else iterations
    batch_size = experiment.default_batch_size if batch_size is None else batch_size
    checkpoints = sorted(set(checkpoints or default_checkpoints(iterations)))
    initial_state = make_network(experiment, seed).state_dict()
    histories = [train(experiment, method, iterations, batch_size, seed, out_dir,
                       data_seed=data_seed, progress=progress, initial_state=initial_state,
                       **options)
                 for method in resolved]
    table = {h.method: [smoothed_metric(h.x_mae, c, window) for c in checkpoints]
             for h in histories}
    ratios = _ratios(table, histories[0].method)
    plot_path = plots.plot_learning_curves(
        histories, os.path.join(out_dir, "learning_curves.png"),
        title=f"{experiment.name}: batch {batch_size}, seed {seed}",
        smoothing=experiment.plot_smoothing,
        metric_label=experiment.metric_description) if main_rank else None
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
        "messages": {h.method: h.message for h in histories if h.message},
        "resumed_from": {h.method: h.resumed_from for h in histories},
        "csv": {h.method: h.csv_path for h in histories},
        "weights": {h.method: h.weights_path for h in histories},
        "plot": plot_path,
        "results_json": os.path.join(out_dir, "results.json"),
    }
    if evaluate and main_rank:
        evaluation = experiment.evaluate({h.method: h.network for h in histories}, out_dir,
                                         {h.method: h for h in histories})
        if evaluation is not None:
            results["evaluation"] = evaluation
    if main_rank:
        atomic_write(results["results_json"],
                     lambda stream: json.dump(results, stream, indent=2), mode="w")
    return results, histories


def _compare_seeds(experiment: Experiment, methods: List[str], iterations: Optional[int],
                   batch_size: Optional[int], seeds: List[int], out_dir: str, *,
                   data_seed: Optional[int], checkpoints: Optional[List[int]], window: int,
                   progress: Optional[bool], evaluate: bool, options: Dict[str, Any]
                   ) -> Dict[str, Any]:
    """:func:`compare` repeated for several network initializations, and the mean."""
    main_rank = rank_and_world()[0] == 0
    runs = [_compare_one(experiment, methods, iterations, batch_size, seed,
                         os.path.join(out_dir, f"seed{seed}"), data_seed=data_seed,
                         checkpoints=checkpoints, window=window, progress=progress,
                         evaluate=evaluate, options=options) for seed in seeds]
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
            colors=[f"C{names.index(h.method)}" for run in runs for h in run[1]]) if main_rank else None,
        "results_json": os.path.join(out_dir, "results.json"),
    })
    evaluations = {str(seed): run[0]["evaluation"] for seed, run in zip(seeds, runs)
                   if "evaluation" in run[0]}
    if evaluations:
        results["evaluation_per_seed"] = evaluations
    if main_rank:
        atomic_write(results["results_json"],
                     lambda stream: json.dump(results, stream, indent=2), mode="w")
    return results


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
