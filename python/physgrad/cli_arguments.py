"""The arguments of ``python3 -m physgrad`` (:func:`build_parser`); the
commands themselves are in :mod:`physgrad.cli`."""
import argparse
import math
import re
from typing import Callable, List

from .experiments import available_experiments

__all__ = ["build_parser"]


#: largest seed (torch takes 64-bit seeds; this keeps them signed and JSON-exact)
MAX_SEED = 2**63 - 1
#: most torch threads ``--threads`` takes
MAX_THREADS = 1024


def _integer(text: str, minimum: int, maximum: int = 0) -> int:
    """``text`` as an integer in [minimum, maximum] (maximum 0: no upper bound)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum or (maximum and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum else f">= {minimum}"
        raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {text}")
    return value


def _at_least(minimum: int, maximum: int = 0) -> Callable[[str], int]:
    """An argparse type: an integer >= minimum (and <= maximum, if given)."""
    return lambda text: _integer(text, minimum, maximum)


def _seed(text: str) -> int:
    return _integer(text, 0, MAX_SEED)


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _int_list(text: str, minimum: int = 1, maximum: int = 0) -> List[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    for value in values:
        _integer(str(value), minimum, maximum)
    return values


def _seed_list(text: str) -> List[int]:
    return _int_list(text, 0, MAX_SEED)


def _shape(text: str) -> List[int]:
    parts = text.replace("x", ",").split(",")
    try:
        ny, nx = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a grid shape NYxNX such as 64x64, got {text!r}")
    if ny < 1 or nx < 1:
        raise argparse.ArgumentTypeError(f"grid sizes must be positive, got {text}")
    return [ny, nx]


#: argparse takes an argument that starts with "-" for an option unless it
#: looks like a negative number; this adds negative shapes (-4x8) and -inf, so
#: that ``--shape -4x8`` and ``--lr -inf`` are reported as bad values
_NEGATIVE_VALUE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+x-?\d+$|^-(inf|infinity|nan)$",
                             re.IGNORECASE)


def _experiment_name(text: str) -> str:
    """Experiment names take ``-`` or ``_`` (``wave-packet`` is module ``wave_packet``)."""
    return text.replace("-", "_")


def _add_experiment(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", type=_experiment_name, choices=available_experiments(),
                        metavar="EXPERIMENT", help=f"one of: {', '.join(available_experiments())}")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser._negative_number_matcher = _NEGATIVE_VALUE  # see _NEGATIVE_VALUE
    _add_experiment(parser)
    parser.add_argument("--iterations", type=_at_least(1), default=None,
                        help="number of updates (default: the experiment's)")
    parser.add_argument("--batch-size", type=_at_least(1), default=None,
                        help="examples per update (default: the experiment's)")
    parser.add_argument("--seed", type=_seed, default=None,
                        help=f"seed of the network initialization, 0 to {MAX_SEED} (default 0)")
    parser.add_argument("--data-seed", type=_seed, default=None,
                        help="seed of the data sequence (default: --seed)")
    parser.add_argument("--shape", type=_shape, default=None, metavar="NYxNX",
                        help="grid cells of field experiments, e.g. 60x80 (default: the experiment's)")
    parser.add_argument("--threads", type=_at_least(1, MAX_THREADS), default=None,
                        help="torch intra-op threads (torch.set_num_threads)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is shown only on a terminal anyway)")
    reliability = parser.add_argument_group(
        "checkpoints",
        "A checkpoint (<out>/<method>.ckpt: network, optimizer, RNG and data states, "
        "iteration, log) is written atomically every --checkpoint-every iterations, at the "
        "end, and on SIGINT/SIGTERM (after the current iteration; exit status 130/143). "
        "--resume continues the run with the learning curve an uninterrupted run has. "
        "A run holds its output folder (lock file .physgrad.lock): a second run into it "
        "is refused.")
    reliability.add_argument("--checkpoint-every", type=_at_least(0), default=None, metavar="N",
                             help="iterations between checkpoints (default 100; 0: only at the "
                                  "end and on a signal)")
    reliability.add_argument("--resume", default=None, metavar="DIR",
                             help="continue the run in DIR (its output folder) from its "
                                  "checkpoint(s); every setting not given (iterations, batch, "
                                  "seeds, shape, checkpoint interval, threads, ...) is the run's")
    reliability.add_argument("--overwrite", action="store_true",
                             help="start afresh in an output folder that holds a run's "
                                  "checkpoint, replacing it (without it, such a folder is "
                                  "refused: use --resume to continue the run)")
    reliability.add_argument("--stop-after", type=_at_least(1), default=None, metavar="N",
                             help="debugging: stop after iteration N as a signal would "
                                  "(checkpoint, exit status 75)")
    parallel = parser.add_argument_group(
        "data-parallel training",
        "Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set) training "
        "is data-parallel over the gloo backend: every rank takes a slice of each global "
        "--batch-size batch, gradients are summed across ranks, logs are global and only rank "
        "0 writes files. E.g. torchrun --nproc_per_node=4 -m physgrad train poisson ...")
    parallel.add_argument("--distributed", action="store_true",
                          help="require torchrun's environment (fail if it is missing) instead "
                               "of detecting it")
    parallel.add_argument("--batchnorm", choices=("sync", "local"), default=None,
                          help="BatchNorm statistics over the global batch, as one process "
                               "computes them (sync, default) or over each rank's slice (local, "
                               "DDP's default, fewer messages)")


#: the exit statuses of train and compare (``--help``)
EXIT_STATUSES = ("exit status (train, compare): 0 done; 1 a run stopped on a non-finite value; "
                 "2 bad arguments, an output folder in use, not writable or holding a run (without "
                 "--resume/--overwrite), or a checkpoint that cannot be resumed; 74 an output file "
                 "could not be written (disk full: the last checkpoint is kept, --resume continues); "
                 "75 stopped by --stop-after; 130/143 stopped by SIGINT/SIGTERM")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python3 -m physgrad``."""
    parser = argparse.ArgumentParser(
        prog="python3 -m physgrad",
        description="Train networks through physics ops with physical gradients "
                    "(the experiments of 'Physical Gradients for Deep Learning').",
        epilog=EXIT_STATUSES)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train one method",
                                description="Train one experiment with one method; "
                                            "log a CSV and save the final weights.")
    train.epilog = EXIT_STATUSES
    _add_common(train)
    train.set_defaults(subparser=train)
    train.add_argument("--method", default=None,
                       help="adam, adam+pg, adam+lbfgs, sgd, supervised, ... (default adam+pg; "
                            "with --resume: the run's)")
    train.add_argument("--lr", type=_learning_rate, default=None,
                       help="learning rate, positive (default: the experiment's for the method)")
    train.add_argument("--out", default=None,
                       help="output folder (default runs/<experiment>/<method>)")

    compare = commands.add_parser(
        "compare", help="train several methods from identical weights and data",
        description="Train each method from identical initial weights on identical data, "
                    "print x-MAE at checkpoints and the ratio to the first method, "
                    "write CSVs, results.json and a PNG of the learning curves.")
    compare.epilog = EXIT_STATUSES
    _add_common(compare)
    compare.set_defaults(subparser=compare)
    compare.add_argument("--methods", default=None,
                         help="comma-separated methods, the first is the reference "
                              "(default adam,adam+pg)")
    compare.add_argument("--checkpoints", type=_int_list, default=None,
                         help="iterations to report, e.g. 10,60,1000 "
                              "(default: 10,30,60,100,300,1000,... up to --iterations)")
    compare.add_argument("--window", type=_at_least(1), default=None,
                         help="x-MAE at a checkpoint is averaged over up to this many "
                              "iterations (default 10)")
    compare.add_argument("--seeds", type=_seed_list, default=None,
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
    evaluate.add_argument("--threads", type=_at_least(1, MAX_THREADS), default=None,
                          help="torch intra-op threads (torch.set_num_threads)")

    optimize = commands.add_parser(
        "optimize", help="single-example optimization: gd, L-BFGS-B, inverse physics (poisson, heat, fluid)",
        description="Solve examples one by one from x = 0 with gradient descent, L-BFGS-B and the "
                    "inverse-physics iteration x <- x - PG (paper Fig. 4b, 5b, 6b); write a CSV per "
                    "method, optimize.png, table.md and results.json; with --network, the network's "
                    "accuracy and time against the iterations the solvers need (paper Table 1).")
    _add_experiment(optimize)
    optimize.set_defaults(subparser=optimize)
    optimize.add_argument("--methods", default="gd,lbfgs,pg", help="comma-separated, of gd, lbfgs, pg")
    optimize.add_argument("--iterations", type=_at_least(1, 10_000_000), default=None,
                          help="iterations per method (default 100)")
    optimize.add_argument("--examples", type=_at_least(1, 100_000), default=None,
                          help="examples (default: the paper's figure, 1 for poisson and heat, 4 for fluid)")
    optimize.add_argument("--seed", type=_seed, default=None, help="data seed of the examples (default 12345)")
    optimize.add_argument("--shape", type=_shape, default=None, metavar="NYxNX",
                          help="grid cells (default: the --network run's, else the experiment's)")
    optimize.add_argument("--lr", type=float, default=None,
                          help="gd step size (default: the paper's, see physgrad.optimize.STEP_SIZES)")
    optimize.add_argument("--network", default=None, metavar="PATH.pt",
                          help="weights saved by 'train' (<out>/<method>.pt): compare its prediction "
                               "on the same examples with the solvers (paper Table 1)")
    optimize.add_argument("--out", default=None, help="output folder (default runs/<experiment>/optimize)")
    optimize.add_argument("--threads", type=_at_least(1, MAX_THREADS), default=None,
                          help="torch intra-op threads (torch.set_num_threads)")

    reproduce = commands.add_parser(
        "reproduce", help="the paper's experiments at its settings: runs, figures and tables",
        description="Train every run of the paper's settings (physgrad.reproduce.PLAN: batch, iterations, "
                    "seeds per experiment) that is not finished in --runs (checkpointed, resumed where a "
                    "checkpoint exists), then write each experiment's learning curves (PNG), subsampled "
                    "curves (CSV), the table beside the paper's numbers (Markdown, CSV), its figures and "
                    "provenance into --results, and --results/README.md.")
    reproduce.set_defaults(subparser=reproduce)
    reproduce.add_argument("names", nargs="+", metavar="NAME",
                           help="experiments (sin, wave-packet, poisson, heat, fluid) or all")
    reproduce.add_argument("--runs", default=None,
                           help="folder of the training runs (default results/logs, committed; --quick: a "
                                "temporary one)")
    reproduce.add_argument("--pack", action="store_true",
                           help="afterwards make --runs fit for a commit: finished runs keep their gzipped log "
                                "(and seed 0 its weights), unfinished ones their log and checkpoint")
    reproduce.add_argument("--results", default=None,
                           help="folder of the figures and tables (default results; --quick: <runs>/results)")
    reproduce.add_argument("--report-only", action="store_true",
                           help="write the report from the runs as they are; train nothing")
    reproduce.add_argument("--quick", action="store_true",
                           help="every experiment tiny (a few iterations, small grids): a smoke test")
    reproduce.add_argument("--checkpoint-every", type=_at_least(0), default=50, metavar="N",
                           help="iterations between checkpoints of each run (default 50)")
    reproduce.add_argument("--threads", type=_at_least(1, MAX_THREADS), default=None,
                           help="torch intra-op threads (torch.set_num_threads)")
    reproduce.add_argument("--no-progress", action="store_true", help="no progress bars")
    reproduce.add_argument("--seeds", type=_seed_list, default=None, metavar="K[,K...]",
                           help="train only these seeds of the plan (e.g. 2 or 1,2), so that several "
                                "processes or machines share the runs; the report covers every seed")

    commands.add_parser("list", help="list experiments, their methods and defaults",
                        description="List experiments, their methods and defaults.")
    return parser
