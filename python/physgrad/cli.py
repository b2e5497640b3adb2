"""Command line: ``python3 -m physgrad {train,compare,evaluate,optimize,list} ...``.

Examples::

    python3 -m physgrad train poisson --method adam+pg --iterations 1000 --out runs/p
    python3 -m physgrad compare poisson --methods adam,adam+pg --iterations 5000 \\
        --checkpoints 60,1000,5000 --out runs/poisson
    python3 -m physgrad compare sin --methods adam,adam+pg --seeds 5,6,7 --out runs/sin
    python3 -m physgrad evaluate wave-packet --run runs/wave-packet/compare
    python3 -m physgrad optimize heat --methods gd,lbfgs,pg --iterations 100 --out runs/heat/optimize
    python3 -m physgrad train poisson --resume runs/poisson/adam+pg      # after Ctrl-C / SIGTERM
    torchrun --nproc_per_node=4 -m physgrad train poisson --out runs/p4  # data-parallel

Exit status: 0 done; 1 a run stopped on a non-finite prediction, loss or
gradient; 2 bad arguments (nothing is written), an output folder in use by
another run, not writable or holding a run's checkpoint (without ``--resume`` or
``--overwrite``), or a checkpoint that cannot be resumed (damaged, malformed,
of other settings); 74 an output file could not be written (disk full: the
last checkpoint is kept, ``--resume`` continues once there is space); 130 / 143
stopped by SIGINT / SIGTERM after writing a checkpoint (``--resume``
continues); 75 stopped by ``--stop-after``.
"""
import argparse
import contextlib
import glob
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from . import cli_tools
from .cli_arguments import build_parser
from .experiments import get_experiment

__all__ = ["main", "build_parser"]


def _experiment(args: argparse.Namespace, parser: argparse.ArgumentParser,
                saved_options: Optional[Dict[str, Any]] = None) -> Any:
    options: Dict[str, Any] = dict(saved_options or {})
    if args.shape is not None:
        if "shape" in options and list(options["shape"]) != list(args.shape):
            parser.error(f"--shape {args.shape[0]}x{args.shape[1]} differs from the resumed run's "
                         f"{'x'.join(map(str, options['shape']))}")
        options["shape"] = tuple(args.shape)
    try:
        experiment = get_experiment(args.experiment, **options)
    except ValueError as error:
        parser.error(str(error))
    problem = _shape_problem(experiment)
    if problem:
        parser.error(problem)
    return experiment


#: largest grid axis the CLI trains on
MAX_GRID_SIZE = 4096


def _shape_problem(experiment: Any) -> str:
    """Why the experiment's grid cannot be trained on ("" if it can): each axis
    at least what its network needs (a U-net of L levels pools L - 1 times:
    2^(L-1) cells) and at most :data:`MAX_GRID_SIZE`."""
    shape = getattr(experiment, "shape", None)
    if shape is None:
        return ""
    import torch
    with torch.random.fork_rng(devices=[]):
        levels = getattr(experiment.make_network(), "levels", 1)
    smallest = max(3, 2 ** (levels - 1))
    text = "x".join(map(str, shape))
    if min(shape) < smallest:
        return (f"--shape {text} is too small for experiment {experiment.name!r}: its network "
                f"needs at least {smallest} cells per axis")
    if max(shape) > MAX_GRID_SIZE:
        return f"--shape {text} is too large: at most {MAX_GRID_SIZE} cells per axis"
    return ""


def _rank() -> int:
    from .distributed import rank_and_world
    return rank_and_world()[0]


def _say(*lines: str) -> None:
    """Print on rank 0 only (every rank of a data-parallel run has the same results)."""
    if _rank() == 0:
        print("\n".join(lines), flush=True)


def _on_rank0(read: Any) -> Any:
    """``read()`` on rank 0, its value (or its error, raised) on every rank."""
    from .distributed import broadcast_object
    answer: Any = None
    if _rank() == 0:
        try:
            answer = ("ok", read())
        except Exception as error:  # noqa: BLE001 - raised on every rank below
            answer = ("error", str(error))
    answer = broadcast_object(answer)
    if answer[0] == "error":
        raise ValueError(answer[1])
    return answer[1]


def _resume_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Dict[str, Any]:
    """The settings of the run to resume (``--resume DIR``): for ``train`` the
    checkpoint's (the method from --method or the folder's only checkpoint), for
    ``compare`` its ``compare.json``."""
    from .training import CHECKPOINT_SUFFIX, COMPARE_SETTINGS, load_checkpoint
    folder = args.resume
    if args.out is not None and os.path.abspath(args.out) != os.path.abspath(folder):
        parser.error("--resume DIR continues the run in DIR; leave out --out (or give the same folder)")
    if args.overwrite:
        parser.error("--resume continues a run, --overwrite replaces it: give one of them")

    def run_settings(path: str) -> Dict[str, Any]:
        try:
            return dict(load_checkpoint(path)["config"])
        except ValueError as error:
            raise ValueError(f"cannot resume: {error}") from None

    def read() -> Dict[str, Any]:
        if not os.path.isdir(folder):
            raise ValueError(f"--resume {folder}: no such folder")
        if args.command == "compare":
            path = os.path.join(folder, COMPARE_SETTINGS)
            if not os.path.isfile(path):
                raise ValueError(f"--resume {folder}: no {COMPARE_SETTINGS} (not a compare output folder)")
            try:
                with open(path) as stream:
                    settings = json.load(stream)
            except (OSError, ValueError) as error:
                raise ValueError(f"cannot resume: {path} is not readable: {error}") from None
            problem = _compare_settings_problem(settings)
            if problem:
                raise ValueError(f"cannot resume: {path} is malformed: {problem}")
            # the options compare.json does not keep are each method's checkpoint's
            found = sorted(glob.glob(os.path.join(glob.escape(folder), f"*{CHECKPOINT_SUFFIX}"))
                           + glob.glob(os.path.join(glob.escape(folder), "seed*",
                                                    f"*{CHECKPOINT_SUFFIX}")))
            if found:
                saved = run_settings(found[0])
                for key in _RUN_OPTIONS:
                    settings.setdefault(key, saved.get(key))
            return settings
        if args.method is not None:
            path = os.path.join(folder, f"{args.method}{CHECKPOINT_SUFFIX}")
            if not os.path.isfile(path):
                raise ValueError(f"--resume {folder}: no checkpoint {os.path.basename(path)} of "
                                 f"method {args.method}")
        else:
            found = sorted(glob.glob(os.path.join(glob.escape(folder), f"*{CHECKPOINT_SUFFIX}")))
            if len(found) != 1:
                raise ValueError(f"--resume {folder}: {'no' if not found else 'several'} "
                                 f"checkpoints (*{CHECKPOINT_SUFFIX}); "
                                 + ("name one with --method" if found else "nothing to resume"))
            path = found[0]
        return run_settings(path)

    try:
        settings = _on_rank0(read)
    except ValueError as error:
        parser.error(str(error))
    named = get_experiment(args.experiment).name
    if settings["experiment"] != named:
        parser.error(f"--resume {folder} is a run of experiment {settings['experiment']!r}, "
                     f"not {named!r}: give {settings['experiment']!r} or another folder")
    return settings


#: options of a run that are not its training settings proper, restored by
#: ``--resume`` from the checkpoint unless given again
_RUN_OPTIONS = ("checkpoint_every", "threads", "sync_batchnorm")

#: compare.json keys and their types (None allowed where the default applies)
_COMPARE_KEYS = {"experiment": str, "options": dict, "methods": list, "iterations": int,
                 "batch_size": int, "seed": int, "seeds": list, "data_seed": int,
                 "checkpoints": list, "window": int, "evaluate": bool}


def _compare_settings_problem(settings: Any) -> str:
    if not isinstance(settings, dict):
        return "not a JSON object"
    for key in ("experiment", "options"):
        if key not in settings:
            return f"no {key!r}"
    for key, kind in _COMPARE_KEYS.items():
        value = settings.get(key)
        if value is not None and (not isinstance(value, kind) or
                                  (kind is int and isinstance(value, bool))):
            return f"{key!r} is {value!r}, not a {kind.__name__}"
    return ""


def _pick(given: Any, saved: Dict[str, Any], key: str, default: Any) -> Any:
    """The command line's value, else the resumed run's, else the default."""
    if given is not None:
        return given
    return saved.get(key, default) if saved.get(key) is not None else default


def _training_options(args: argparse.Namespace, saved: Dict[str, Any]) -> Dict[str, Any]:
    """train's and compare's run options: the command line's, else the resumed run's."""
    import torch
    from .training import DEFAULT_CHECKPOINT_EVERY
    threads = saved.get("threads")
    if args.threads is None and isinstance(threads, int) and not isinstance(threads, bool) \
            and threads >= 1:
        torch.set_num_threads(threads)
    every = _pick(args.checkpoint_every, saved, "checkpoint_every", DEFAULT_CHECKPOINT_EVERY)
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
        every = DEFAULT_CHECKPOINT_EVERY
    sync = (args.batchnorm == "sync" if args.batchnorm is not None
            else saved.get("sync_batchnorm") is not False)
    return {"checkpoint_every": every, "resume": args.resume is not None,
            "stop_after": args.stop_after, "sync_batchnorm": sync}


def _take_output_folder(args: argparse.Namespace, parser: argparse.ArgumentParser,
                        folder: str, methods: List[str], seeds: Optional[List[int]]) -> None:
    """Hold ``folder`` for this run until :func:`main` returns (rank 0; every
    rank stops if it cannot); without --resume, refuse a folder that holds a
    checkpoint of these methods unless --overwrite, which removes their
    checkpoints and weights first (so that a new run never mixes with the old)."""
    from .training import CHECKPOINT_SUFFIX, COMPARE_SETTINGS, output_lock

    def take() -> None:
        args.held_folders.enter_context(output_lock(folder))
        if args.resume is not None:
            return
        folders = [folder] + [os.path.join(folder, f"seed{seed}") for seed in seeds or []]
        old = [os.path.join(where, f"{method}{suffix}") for where in folders for method in methods
               for suffix in (CHECKPOINT_SUFFIX, ".pt")]
        found = [path for path in old if os.path.exists(path)]
        if not any(path.endswith(CHECKPOINT_SUFFIX) for path in found):
            return
        if not args.overwrite:
            names = ", ".join(os.path.relpath(path, folder) for path in found
                              if path.endswith(CHECKPOINT_SUFFIX))
            raise ValueError(f"output folder {folder} holds a run ({names}): continue it with "
                             f"--resume {folder}, or pass --overwrite to replace it")
        for path in found:
            os.unlink(path)
        if args.command == "compare" and os.path.exists(os.path.join(folder, COMPARE_SETTINGS)):
            os.unlink(os.path.join(folder, COMPARE_SETTINGS))

    try:
        _on_rank0(take)
    except ValueError as error:
        parser.error(str(error))


def _run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .training import get_method, train
    saved = _resume_settings(args, parser) if args.resume is not None else {}
    experiment = _experiment(args, parser, saved.get("options"))
    try:
        method = get_method(_pick(args.method, saved, "method", "adam+pg"), experiment)
    except ValueError as error:
        parser.error(str(error))
    out_dir = args.resume or args.out or os.path.join("runs", experiment.name, method.name)
    args.run_folder, args.run_method = out_dir, method.name
    options = _training_options(args, saved)
    _take_output_folder(args, parser, out_dir, [method.name], None)
    try:
        history = train(experiment, method, _pick(args.iterations, saved, "iterations", None),
                        _pick(args.batch_size, saved, "batch_size", None),
                        _pick(args.seed, saved, "seed", 0), out_dir,
                        data_seed=_pick(args.data_seed, saved, "data_seed", None),
                        learning_rate=_pick(args.lr, saved, "learning_rate", None),
                        progress=False if args.no_progress else None, **options)
    except ValueError as error:
        if args.resume is None or not str(error).startswith("cannot resume"):
            raise
        parser.error(str(error))
    if history.x_mae:
        resumed = f" (resumed at {history.resumed_from})" if history.resumed_from else ""
        _say(f"{experiment.name} {method.name}: {len(history.x_mae)} iterations{resumed} in "
             f"{history.wall_seconds[-1]:.1f} s; final x-MAE {history.x_mae[-1]:.4g}, "
             f"y-loss {history.y_loss[-1]:.4g} per example"
             + (" (diverged)" if history.diverged else ""))
    _say(f"log:     {history.csv_path}", f"weights: {history.weights_path}",
         f"checkpoint: {history.checkpoint_path}")
    return 1 if history.diverged else 0


def _run_compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .training import compare, format_table, get_method
    saved = _resume_settings(args, parser) if args.resume is not None else {}
    experiment = _experiment(args, parser, saved.get("options"))
    methods_text = args.methods if args.methods is not None else ",".join(
        saved.get("methods") or ["adam", "adam+pg"])
    methods = [name.strip() for name in methods_text.split(",") if name.strip()]
    try:
        for name in methods:
            get_method(name, experiment)
    except ValueError as error:
        parser.error(str(error))
    out_dir = args.resume or args.out or os.path.join("runs", experiment.name, "compare")
    args.run_folder = out_dir
    options = _training_options(args, saved)
    _take_output_folder(args, parser, out_dir, methods, _pick(args.seeds, saved, "seeds", None))
    try:
        results = compare(experiment, methods, _pick(args.iterations, saved, "iterations", None),
                          _pick(args.batch_size, saved, "batch_size", None),
                          _pick(args.seed, saved, "seed", 0), out_dir,
                          data_seed=_pick(args.data_seed, saved, "data_seed", None),
                          checkpoints=_pick(args.checkpoints, saved, "checkpoints", None),
                          window=_pick(args.window, saved, "window", 10),
                          progress=False if args.no_progress else None,
                          seeds=_pick(args.seeds, saved, "seeds", None),
                          evaluate=not args.no_evaluate and saved.get("evaluate", True),
                          **options)
    except ValueError as error:
        if args.resume is None or not str(error).startswith("cannot resume"):
            raise
        parser.error(str(error))
    if _rank() != 0:
        return 1 if _any_diverged(results) else 0
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
    for message in _messages(results):
        print(f"error: {message}")
    print(f"results: {results['results_json']}\nplot:    {results['plot']}")
    return 1 if _any_diverged(results) else 0


def _any_diverged(results: Dict[str, Any]) -> bool:
    flags = results.get("diverged", {}).values()
    return any(any(flag) if isinstance(flag, list) else flag for flag in flags)


def _messages(results: Dict[str, Any]) -> List[str]:
    if "runs" in results:  # several seeds: read each seed's results
        messages: List[str] = []
        for path in results["runs"].values():
            with open(path) as stream:
                messages += list(json.load(stream).get("messages", {}).values())
        return messages
    return list(results.get("messages", {}).values())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        return cli_tools.run_list()
    if args.threads is not None:
        import torch
        torch.set_num_threads(args.threads)
    if args.command == "evaluate":
        return cli_tools.run_evaluate(args, args.subparser)
    if args.command == "optimize":
        return cli_tools.run_optimize(args, args.subparser)
    if args.command == "reproduce":
        return cli_tools.run_reproduce(args, args.subparser)
    from . import distributed
    started_group = False
    if args.distributed or distributed.torchrun_environment():
        import torch.distributed as dist
        if not dist.is_initialized():
            try:
                distributed.init_process_group("gloo")
            except RuntimeError as error:
                args.subparser.error(str(error))
            started_group = True
    args.held_folders = contextlib.ExitStack()  # output folders this run holds
    launcher = "torchrun ... -m physgrad" if started_group else "python3 -m physgrad"

    def resume_hint() -> str:
        # every other option of the run is restored from its checkpoint
        return (f"resume with: {launcher} {args.command} {args.experiment} "
                f"--resume {args.run_folder}"
                + (f" --method {args.run_method}" if args.command == "train" else ""))

    try:
        run = _run_train if args.command == "train" else _run_compare
        return run(args, args.subparser)
    except _interrupted_type() as interrupted:
        if _rank() == 0:
            print(f"interrupted: {interrupted}", file=sys.stderr)
            if interrupted.checkpoint_path:
                print(resume_hint(), file=sys.stderr)
        return interrupted.exit_code
    except OSError as error:  # a file could not be written (disk full, ...)
        from .training import EXIT_WRITE_FAILED, OutputWriteError
        if not isinstance(error, OutputWriteError) and error.filename is None:
            raise
        if _rank() == 0:
            message = (str(error) if isinstance(error, OutputWriteError) else
                       f"cannot write {error.filename}: {error.strerror or error}")
            print(f"error: {message}", file=sys.stderr)
            if getattr(args, "run_folder", None):
                print(f"the last checkpoint is kept; once there is space, {resume_hint()}",
                      file=sys.stderr)
        return EXIT_WRITE_FAILED
    finally:
        args.held_folders.close()
        if started_group:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()


def _interrupted_type() -> type:
    from .training import TrainingInterrupted
    return TrainingInterrupted
