"""The commands of ``python3 -m physgrad`` that do not train one run: ``evaluate``,
``optimize``, ``reproduce`` and ``list`` (:mod:`physgrad.cli` dispatches to them;
``train`` and ``compare`` are there)."""
import argparse
import glob
import json
import os
from typing import Any, Dict

from .experiments import available_experiments, get_experiment

__all__ = ["run_evaluate", "run_optimize", "run_reproduce", "run_list"]


def run_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import torch
    from .training import make_network, read_history
    options: Dict[str, Any] = {}
    results_path = os.path.join(args.run, "results.json")
    if os.path.isfile(results_path):
        with open(results_path) as stream:
            options = json.load(stream).get("options", {})
    try:
        experiment = get_experiment(args.experiment, **options)
    except ValueError as error:
        parser.error(str(error))
    if args.methods:
        methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    else:
        methods = sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(args.run, "*.pt")))
    if not methods:
        parser.error(f"no <method>.pt weights in {args.run}")
    networks, histories = {}, {}
    for method in methods:
        weights = os.path.join(args.run, f"{method}.pt")
        if not os.path.isfile(weights):
            parser.error(f"no weights {weights}")
        networks[method] = make_network(experiment, 0)
        networks[method].load_state_dict(torch.load(weights))
        log = os.path.join(args.run, f"{method}.csv")
        if os.path.isfile(log):
            histories[method] = read_history(log, experiment.name, method)
    evaluation = experiment.evaluate(networks, args.out or args.run, histories)
    if evaluation is None:
        print(f"experiment {experiment.name!r} has no evaluation of its own")
        return 1
    print(evaluation.get("text", json.dumps(evaluation, indent=2)))
    return 0


def run_optimize(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import optimize
    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    try:
        experiment = optimize.experiment_for(args.experiment, args.shape, args.network)
        results = optimize.optimize(experiment, methods, args.iterations, args.examples,
                                    optimize.DEFAULT_SEED if args.seed is None else args.seed, args.out,
                                    args.network, args.lr, report=print)
    except ValueError as error:
        parser.error(str(error))
    print(results["table"])
    print(f"results: {results['results_json']}\ntable:   {results['table_md']}\nplot:    {results['plot']}")
    return 0


def run_reproduce(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import tempfile
    from . import reproduce, reproduce_report
    names = list(reproduce.NAMES) if "all" in args.names else [n.replace("-", "_") for n in args.names]
    for name in names:
        if name not in reproduce.NAMES:
            parser.error(f"unknown experiment {name!r}; choose from {', '.join(reproduce.NAMES)} or all")
    if args.checkpoint_every < 0:
        parser.error(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    runs = args.runs or (tempfile.mkdtemp(prefix="physgrad-reproduce-") if args.quick else reproduce.DEFAULT_RUNS)
    results = args.results or (os.path.join(runs, "results") if args.quick else "results")
    if not args.report_only:
        summary = reproduce.run_plan(names, runs, quick=args.quick, checkpoint_every=args.checkpoint_every,
                                     progress=False if args.no_progress else None, seeds=args.seeds)
        diverged = [f"{name} seed {row['seed']} {row['method']}" for name, rows in summary.items()
                    for row in rows if row["status"] == "diverged"]
        for run in diverged:
            print(f"diverged: {run}")
        for name, rows in summary.items():
            for row in rows:
                if row["status"] == "busy":
                    print(f"busy: {name} seed {row['seed']} {row['method']} (another process trains it)")
    report = reproduce_report.write_report(names, runs, results, quick=args.quick)
    for name, entry in report.items():
        print(f"{name}: " + ("no runs yet" if entry.get("missing") else os.path.join(results, name, "table.md")))
    print(f"index: {os.path.join(results, 'README.md')}")
    if args.pack:
        packed = reproduce.pack_runs(names, runs, quick=args.quick)
        print(f"packed {len(packed['packed'])} finished runs in {runs}; in progress: "
              + (", ".join(packed["in_progress"]) or "none"))
    return 0


def run_list() -> int:
    for name in available_experiments():
        experiment = get_experiment(name)
        print(f"{name}: {experiment.description}")
        print(f"  defaults: {experiment.default_iterations} iterations, batch "
              f"{experiment.default_batch_size}, options {experiment.options()}")
        for method, rate in experiment.learning_rates.items():
            print(f"  {method:<12} learning rate {rate:g}")
    return 0
