"""The arguments of ``python3 -m physgrad`` (:func:`build_parser`); the
commands themselves are in :mod:`physgrad.cli`."""
import argparse
from typing import List

from .experiments import available_experiments

__all__ = ["build_parser"]


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
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the network initialization (default 0)")
    parser.add_argument("--data-seed", type=int, default=None,
                        help="seed of the data sequence (default: --seed)")
    parser.add_argument("--shape", type=_shape, default=None, metavar="NYxNX",
                        help="grid cells of field experiments, e.g. 60x80 (default: the experiment's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (torch.set_num_threads)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is shown only on a terminal anyway)")
    reliability = parser.add_argument_group(
        "checkpoints",
        "A checkpoint (<out>/<method>.ckpt: network, optimizer, RNG and data states, "
        "iteration, log) is written atomically every --checkpoint-every iterations, at the "
        "end, and on SIGINT/SIGTERM (after the current iteration; exit status 130/143). "
        "--resume continues the run with the learning curve an uninterrupted run has.")
    reliability.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                             help="iterations between checkpoints (default 100; 0: only at the "
                                  "end and on a signal)")
    reliability.add_argument("--resume", default=None, metavar="DIR",
                             help="continue the run in DIR (its output folder) from its "
                                  "checkpoint(s); settings not given come from the run")
    reliability.add_argument("--stop-after", type=int, default=None, metavar="N",
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
    parallel.add_argument("--batchnorm", choices=("sync", "local"), default="sync",
                          help="BatchNorm statistics over the global batch, as one process "
                               "computes them (sync, default) or over each rank's slice (local, "
                               "DDP's default, fewer messages)")


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
    train.add_argument("--method", default=None,
                       help="adam, adam+pg, adam+lbfgs, sgd, supervised, ... (default adam+pg; "
                            "with --resume: the run's)")
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
    compare.add_argument("--methods", default=None,
                         help="comma-separated methods, the first is the reference "
                              "(default adam,adam+pg)")
    compare.add_argument("--checkpoints", type=_int_list, default=None,
                         help="iterations to report, e.g. 10,60,1000 "
                              "(default: 10,30,60,100,300,1000,... up to --iterations)")
    compare.add_argument("--window", type=int, default=None,
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
