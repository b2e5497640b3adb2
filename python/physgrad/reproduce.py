"""The paper's experiments at the paper's settings: the runs (:func:`run_plan`) and
the figures and tables made from them (:mod:`physgrad.reproduce_report`).

``python3 -m physgrad reproduce <name|all>`` trains every run of :data:`PLAN`
that is not finished yet (each with checkpoints, resumed where one exists, so
an interrupted command continues where it stopped), then writes the report into
``--results`` (default ``results/``). ``--quick`` runs every experiment tiny (a
few iterations on small grids, into a temporary folder): the tests use it.

A run is one (experiment, seed, method): ``<runs>/<experiment>/seed<k>/<method>.csv``
(+ ``.ckpt``, ``.pt``), trained with :func:`physgrad.training.train` from the
seed's initial weights on the seed's data, so the methods of a seed start from
identical weights and see identical batches, as ``compare`` does.

The settings (batch, iterations, seeds) are the paper's where it states them and
the authors' code's where it does not; each :class:`Stage` names its source.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["Stage", "PLAN", "QUICK", "EXPERIMENT_OPTIONS", "run_plan", "runs_of", "run_folder", "plan_for"]


@dataclasses.dataclass(frozen=True)
class Stage:
    """Runs of one experiment: every method for every seed, ``iterations`` long."""
    methods: Tuple[str, ...]
    seeds: Tuple[int, ...]
    iterations: int
    batch_size: int
    #: where the setting comes from (paper section / the authors' code)
    source: str = ""


#: The paper's settings (issue "reproduce", section 2). Stages of one experiment
#: run in order; a later stage may extend a seed of an earlier one.
PLAN: Dict[str, List[Stage]] = {
    "sin": [Stage(("adam", "adam+pg", "adam+newton", "adam+inverse-gradient", "supervised"), (0, 1, 2, 3, 4),
                  10_000, 1000, "B.2: batch 1000, figure 3: 10k+ iterations; 5 seeds (figure 10 shows 4)")],
    "wave_packet": [Stage(("adam", "adam+pg", "adam+newton"), (0, 1, 2), 1000, 100,
                          "B.1: Adam lr 1e-3, batch 100; figure 8: 1000 iterations")],
    "poisson": [Stage(("adam", "adam+pg"), (0,), 5000, 128,
                      "3.2: 5k iterations; batch 128 from the authors' code (the paper states none)"),
                Stage(("adam", "adam+pg"), (1, 2), 1000, 128, "more seeds to 1000 iterations"),
                Stage(("sgd",), (0,), 1000, 128, "3.2: SGD with momentum")],
    "heat": [Stage(("adam", "adam+pg", "adam+lbfgs"), (0, 1), 3000, 128,
                   "3.3 / B.4: batch 128, 10k iterations in the paper (3000 here: the CPU budget)")],
    "fluid": [Stage(("adam", "adam+pg"), (0,), 1000, 64, "3.4 / B.5: batch 64; crossovers at 200 and 55"),
              Stage(("adam", "adam+pg"), (1, 2), 200, 64, "more seeds to 200 iterations")],
}

#: Experiment options of the reproduction (the paper's grid and conventions).
EXPERIMENT_OPTIONS: Dict[str, Dict[str, Any]] = {
    "sin": {},
    "wave_packet": {},
    "poisson": {"shape": (60, 80)},          # B.3: 80 by 60 cells
    "heat": {},
    "fluid": {"objective": "frequency", "energy": "per_component"},
}

#: ``--quick``: every experiment tiny, for the tests.
QUICK: Dict[str, List[Stage]] = {
    "sin": [Stage(("adam", "adam+pg"), (0, 1), 6, 32)],
    "wave_packet": [Stage(("adam", "adam+pg"), (0,), 6, 8)],
    "poisson": [Stage(("adam", "adam+pg"), (0,), 6, 4), Stage(("adam",), (1,), 4, 4)],
    "heat": [Stage(("adam", "adam+pg"), (0,), 5, 4)],
    "fluid": [Stage(("adam", "adam+pg"), (0,), 3, 2)],
}
QUICK_OPTIONS: Dict[str, Dict[str, Any]] = {
    "sin": {},
    "wave_packet": {"test_size": 20},
    "poisson": {"shape": (16, 20)},
    "heat": {"shape": (16, 16)},
    "fluid": {"shape": (16, 16), "objective": "frequency", "energy": "per_component"},
}

NAMES = tuple(PLAN)


def plan_for(name: str, quick: bool = False) -> Tuple[List[Stage], Dict[str, Any]]:
    """The stages and experiment options of ``name`` (``wave-packet`` or ``wave_packet``)."""
    key = name.replace("-", "_")
    if key not in PLAN:
        raise ValueError(f"reproduce: unknown experiment {name!r}; one of {', '.join(NAMES)} or all")
    return (QUICK if quick else PLAN)[key], dict((QUICK_OPTIONS if quick else EXPERIMENT_OPTIONS)[key])


def run_folder(runs: str, name: str, seed: int) -> str:
    return os.path.join(runs, name.replace("-", "_"), f"seed{seed}")


def runs_of(stages: Sequence[Stage]) -> List[Tuple[int, str, int, int]]:
    """``(seed, method, iterations, batch)`` of every run, the longest target of a
    (seed, method) that several stages name; in the order of the stages."""
    order: List[Tuple[int, str]] = []
    target: Dict[Tuple[int, str], Tuple[int, int]] = {}
    for stage in stages:
        for seed in stage.seeds:
            for method in stage.methods:
                key = (seed, method)
                if key not in target:
                    order.append(key)
                    target[key] = (stage.iterations, stage.batch_size)
                elif stage.iterations > target[key][0]:
                    target[key] = (stage.iterations, stage.batch_size)
    return [(seed, method, *target[(seed, method)]) for seed, method in order]


def _done(folder: str, method: str) -> int:
    """Iterations logged in ``folder/<method>.csv`` (0 if none)."""
    from .history import read_history
    path = os.path.join(folder, f"{method}.csv")
    if not os.path.isfile(path):
        return 0
    return len(read_history(path).iteration)


def run_plan(names: Sequence[str], runs: str, quick: bool = False, checkpoint_every: int = 50,
             progress: Optional[bool] = None, say: Any = print) -> Dict[str, Any]:
    """Train every unfinished run of ``names`` into ``runs`` (resuming checkpoints).

    Returns ``{name: [{"seed", "method", "iterations", "batch_size", "folder",
    "seconds", "status"}]}`` where status is "done" (already finished),
    "trained" or "diverged".
    """
    from .experiments import get_experiment
    from .training import get_method, train
    summary: Dict[str, Any] = {}
    for name in names:
        stages, options = plan_for(name, quick)
        experiment = get_experiment(name, **options)
        rows = []
        for seed, method_name, iterations, batch_size in runs_of(stages):
            folder = run_folder(runs, name, seed)
            row = {"seed": seed, "method": method_name, "iterations": iterations, "batch_size": batch_size,
                   "folder": folder}
            if _done(folder, method_name) >= iterations:
                row.update(status="done", seconds=0.0)
                rows.append(row)
                continue
            say(f"reproduce {name}: seed {seed} {method_name}, {iterations} iterations at batch {batch_size} "
                f"-> {folder}")
            started = time.monotonic()
            history = train(experiment, get_method(method_name, experiment), iterations, batch_size, seed, folder,
                            progress=progress, checkpoint_every=checkpoint_every, resume=True)
            row.update(status="diverged" if history.diverged else "trained", seconds=time.monotonic() - started)
            rows.append(row)
        summary[name] = rows
    return summary
