"""Command line: ``python3 -m physgrad {train,compare,evaluate,list} ...``.

Examples::

    python3 -m physgrad train poisson --method adam+pg --iterations 1000 --out runs/p
    python3 -m physgrad compare poisson --methods adam,adam+pg --iterations 5000 \\
        --checkpoints 60,1000,5000 --out runs/poisson
    python3 -m physgrad compare sin --methods adam,adam+pg --seeds 5,6,7 --out runs/sin
    python3 -m physgrad evaluate wave-packet --run runs/wave-packet/compare
"""
import argparse
import os
from typing import Any, Dict, List, Optional, Sequence

from .experiments import available_experiments, get_experiment

__all__ = ["main", "build_parser"]


def _int_list(text: str) -> List[int]:
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _shape(text: str) -> List[int]:
    parts = text.replace("x", ",").split(",")
    try:
        ny, nx = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a grid shape NYxNX such as 64x64, got {text!r}")
    return [ny, nx]


def _experiment_name(text: str) -> str:
    """Experiment names take ``-`` or ``_`` (``wave-packet`` is module ``wave_packet``)."""
    return text.replace("-", "_")


def _add_experiment(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", type=_experiment_name, choices=available_experiments(),
                        metavar="EXPERIMENT", help=f"one of: {', '.join(available_experiments())}")


def _add_common(parser: argparse.ArgumentParser) -> None:
    _add_experiment(parser)
    parser.add_argument("--iterations", type=int, default=None,
                        help="number of updates (default: the experiment's)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="examples per update (default: the experiment's)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the network initialization (default 0)")
    parser.add_argument("--data-seed", type=int, default=None,
                        help="seed of the data sequence (default: --seed)")
    parser.add_argument("--shape", type=_shape, default=None, metavar="NYxNX",
                        help="grid cells of field experiments, e.g. 60x80 (default: the experiment's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (torch.set_num_threads)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is shown only on a terminal anyway)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python3 -m physgrad``."""
    parser = argparse.ArgumentParser(
        prog="python3 -m physgrad",
        description="Train networks through physics ops with physical gradients "
                    "(the experiments of 'Physical Gradients for Deep Learning').")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train one method",
                                description="Train one experiment with one method; "
                                            "log a CSV and save the final weights.")
    _add_common(train)
    train.set_defaults(subparser=train)
    train.add_argument("--method", default="adam+pg",
                       help="adam, adam+pg, adam+lbfgs, sgd, supervised, ... (default adam+pg)")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default: the experiment's for the method)")
    train.add_argument("--out", default=None,
                       help="output folder (default runs/<experiment>/<method>)")

    compare = commands.add_parser(
        "compare", help="train several methods from identical weights and data",
        description="Train each method from identical initial weights on identical data, "
                    "print x-MAE at checkpoints and the ratio to the first method, "
                    "write CSVs, results.json and a PNG of the learning curves.")
    _add_common(compare)
    compare.set_defaults(subparser=compare)
    compare.add_argument("--methods", default="adam,adam+pg",
                         help="comma-separated methods, the first is the reference "
                              "(default adam,adam+pg)")
    compare.add_argument("--checkpoints", type=_int_list, default=None,
                         help="iterations to report, e.g. 10,60,1000 "
                              "(default: 10,30,60,100,300,1000,... up to --iterations)")
    compare.add_argument("--window", type=int, default=10,
                         help="x-MAE at a checkpoint is averaged over up to this many "
                              "iterations (default 10)")
    compare.add_argument("--seeds", type=_int_list, default=None,
                         help="repeat the comparison for these network initializations, e.g. "
                              "5,6,7 (one folder seed<k> each; results.json gets the mean)")
    compare.add_argument("--no-evaluate", action="store_true",
                         help="skip the experiment's own report on the trained networks "
                              "(e.g. wave-packet: the L-BFGS-B comparison)")
    compare.add_argument("--out", default=None,
                         help="output folder (default runs/<experiment>/compare)")

    evaluate = commands.add_parser(
        "evaluate", help="the experiment's report on a finished comparison",
        description="Load the networks of a compare (or train) output folder and run the "
                    "experiment's own evaluation, e.g. wave-packet: the trained networks "
                    "against per-example L-BFGS-B on a fixed seeded test set, and figure 1.")
    _add_experiment(evaluate)
    evaluate.set_defaults(subparser=evaluate)
    evaluate.add_argument("--run", required=True,
                          help="folder with <method>.pt (and <method>.csv) files, e.g. a compare --out")
    evaluate.add_argument("--methods", default=None,
                          help="comma-separated methods (default: every <method>.pt in --run)")
    evaluate.add_argument("--out", default=None, help="where to write the report (default: --run)")
    evaluate.add_argument("--threads", type=int, default=None,
                          help="torch intra-op threads (torch.set_num_threads)")

    commands.add_parser("list", help="list experiments, their methods and defaults",
                        description="List experiments, their methods and defaults.")
    return parser


def _experiment(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
    options: Dict[str, Any] = {}
    if args.shape is not None:
        options["shape"] = tuple(args.shape)
    try:
        return get_experiment(args.experiment, **options)
    except ValueError as error:
        parser.error(str(error))


def _run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .training import get_method, train
    experiment = _experiment(args, parser)
    try:
        method = get_method(args.method, experiment)
    except ValueError as error:
        parser.error(str(error))
    out_dir = args.out or os.path.join("runs", experiment.name, method.name)
    history = train(experiment, method, args.iterations, args.batch_size, args.seed, out_dir,
                    data_seed=args.data_seed, learning_rate=args.lr,
                    progress=False if args.no_progress else None)
    if history.x_mae:
        print(f"{experiment.name} {method.name}: {len(history.x_mae)} iterations in "
              f"{history.wall_seconds[-1]:.1f} s; final x-MAE {history.x_mae[-1]:.4g}, "
              f"y-loss {history.y_loss[-1]:.4g} per example"
              + (" (diverged)" if history.diverged else ""))
    print(f"log:     {history.csv_path}\nweights: {history.weights_path}")
    return 1 if history.diverged else 0


def _run_compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .training import compare, format_table, get_method
    experiment = _experiment(args, parser)
    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    try:
        for name in methods:
            get_method(name, experiment)
    except ValueError as error:
        parser.error(str(error))
    out_dir = args.out or os.path.join("runs", experiment.name, "compare")
    results = compare(experiment, methods, args.iterations, args.batch_size, args.seed, out_dir,
                      data_seed=args.data_seed, checkpoints=args.checkpoints,
                      window=args.window, progress=False if args.no_progress else None,
                      seeds=args.seeds, evaluate=not args.no_evaluate)
    print(format_table(results))
    if "seeds" in results:
        for seed, seconds in results["wall_seconds"].items():
            print(f"seed {seed}: " + ", ".join(f"{m} {s:.1f} s" for m, s in seconds.items())
                  + f"; results {results['runs'][seed]}")
        for seed, evaluation in results.get("evaluation_per_seed", {}).items():
            print(f"seed {seed}:\n{evaluation.get('text', '')}")
    else:
        for method in results["methods"]:
            state = " (diverged)" if results["diverged"][method] else ""
            print(f"{method}: {results['wall_seconds'][method]:.1f} s{state}; "
                  f"log {results['csv'][method]}, weights {results['weights'][method]}")
        if "evaluation" in results:
            print(results["evaluation"].get("text", ""))
    print(f"results: {results['results_json']}\nplot:    {results['plot']}")
    return 0


def _run_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import glob
    import json
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


def _run_list() -> int:
    for name in available_experiments():
        experiment = get_experiment(name)
        print(f"{name}: {experiment.description}")
        print(f"  defaults: {experiment.default_iterations} iterations, batch "
              f"{experiment.default_batch_size}, options {experiment.options()}")
        for method, rate in experiment.learning_rates.items():
            print(f"  {method:<12} learning rate {rate:g}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        return _run_list()
    if args.threads is not None:
        import torch
        torch.set_num_threads(args.threads)
    if args.command == "train":
        return _run_train(args, args.subparser)
    if args.command == "evaluate":
        return _run_evaluate(args, args.subparser)
    return _run_compare(args, args.subparser)
