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

The runs live in ``results/logs`` (``--runs``), which is committed: a finished
run as its gzipped log (and seed 0's weights), an unfinished one as its log and
checkpoint, so that the next ``reproduce`` on any machine resumes it
(``--pack`` tidies the folder for a commit: :func:`pack_runs`).

The settings (batch, iterations, seeds) are the paper's where it states them and
the authors' code's where it does not; each :class:`Stage` names its source.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["Stage", "PLAN", "QUICK", "EXPERIMENT_OPTIONS", "run_plan", "runs_of", "run_folder", "plan_for",
           "log_path", "read_log", "pack_runs", "DEFAULT_RUNS"]

#: where the runs are kept (committed; see the module docstring)
DEFAULT_RUNS = os.path.join("results", "logs")


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


def log_path(folder: str, method: str) -> Optional[str]:
    """The run's log: ``<method>.csv`` while it trains, ``<method>.csv.gz`` once
    packed (:func:`pack_runs`); None if neither exists."""
    for path in (os.path.join(folder, f"{method}.csv"), os.path.join(folder, f"{method}.csv.gz")):
        if os.path.isfile(path):
            return path
    return None


def read_log(path: str, experiment: str = "", method: str = "") -> Any:
    """A :class:`physgrad.history.History` from a plain or gzipped training log."""
    from .history import read_history
    if not path.endswith(".gz"):
        return read_history(path, experiment, method)
    import gzip
    import tempfile
    with gzip.open(path, "rt", newline="") as packed, \
            tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as plain:
        plain.write(packed.read())
    try:
        history = read_history(plain.name, experiment, method)
    finally:
        os.unlink(plain.name)
    history.csv_path = path
    return history


def _done(folder: str, method: str) -> int:
    """Iterations logged by the run (0 if none)."""
    path = log_path(folder, method)
    return len(read_log(path).iteration) if path else 0


def pack_runs(names: Sequence[str], runs: str, quick: bool = False) -> Dict[str, List[str]]:
    """Makes ``runs`` fit for committing (see the module docstring): a finished run
    keeps only its log, gzipped (``<method>.csv.gz``), and for seed 0 its final
    weights (the report's figures use them); an unfinished one keeps its log and
    checkpoint (to resume) and drops its weights file. Lock and temporary files
    go. Returns ``{"packed": [...], "in_progress": [...]}`` run names."""
    import gzip
    import glob
    summary: Dict[str, List[str]] = {"packed": [], "in_progress": []}
    for name in names:
        stages, _ = plan_for(name, quick)
        for seed, method, iterations, _batch in runs_of(stages):
            folder = run_folder(runs, name, seed)
            if not os.path.isdir(folder):
                continue
            for leftover in glob.glob(os.path.join(glob.escape(folder), ".physgrad.lock")) + \
                    glob.glob(os.path.join(glob.escape(folder), "*.tmp*")):
                os.unlink(leftover)
            plain = os.path.join(folder, f"{method}.csv")
            label = f"{name}/seed{seed}/{method}"
            done = _done(folder, method)
            if done >= iterations:
                if os.path.isfile(plain):
                    with open(plain, "rb") as source, gzip.GzipFile(plain + ".gz", "wb", mtime=0) as target:
                        target.write(source.read())
                    os.unlink(plain)
                for suffix in (".ckpt",) + ((".pt",) if seed != 0 else ()):
                    path = os.path.join(folder, method + suffix)
                    if os.path.isfile(path):
                        os.unlink(path)
                summary["packed"].append(label)
            elif done:
                weights = os.path.join(folder, f"{method}.pt")
                if os.path.isfile(weights):
                    os.unlink(weights)
                summary["in_progress"].append(f"{label} ({done} of {iterations})")
    return summary


def run_plan(names: Sequence[str], runs: str, quick: bool = False, checkpoint_every: int = 50,
             progress: Optional[bool] = None, say: Any = print,
             seeds: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Train every unfinished run of ``names`` into ``runs`` (resuming checkpoints);
    with ``seeds``, only the runs of those seeds.

    Several processes may share ``runs``: a run whose seed folder another
    process holds (:class:`physgrad.output_folder.OutputFolderInUse`) is left
    to it. Returns ``{name: [{"seed", "method", "iterations", "batch_size",
    "folder", "seconds", "status"}]}`` where status is "done" (already
    finished), "trained", "diverged" or "busy" (another process trains it).
    """
    from .experiments import get_experiment
    from .output_folder import OutputFolderInUse
    from .training import get_method, train
    summary: Dict[str, Any] = {}
    for name in names:
        stages, options = plan_for(name, quick)
        experiment = get_experiment(name, **options)
        rows = []
        for seed, method_name, iterations, batch_size in runs_of(stages):
            if seeds is not None and seed not in seeds:
                continue
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
            try:
                history = train(experiment, get_method(method_name, experiment), iterations, batch_size, seed,
                                folder, progress=progress, checkpoint_every=checkpoint_every, resume=True)
            except OutputFolderInUse as busy:
                say(f"reproduce {name}: seed {seed} {method_name} left to another process: {busy}")
                row.update(status="busy", seconds=0.0)
                rows.append(row)
                continue
            row.update(status="diverged" if history.diverged else "trained", seconds=time.monotonic() - started)
            rows.append(row)
        summary[name] = rows
    return summary
