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

Nothing is lost when a run stops: :func:`train` writes a checkpoint
(``<out_dir>/<method>.ckpt``: network, optimizer, RNG and data-source states,
iteration, history; written atomically: temporary file, fsync, ``os.replace``)
every ``checkpoint_every`` iterations, at the end, and when SIGINT or SIGTERM
arrives (the current iteration is finished first, the CSV flushed, then
:class:`TrainingInterrupted` is raised; the CLI exits with 130 / 143).
``resume=True`` continues from it with the same curve an uninterrupted run
gives: single-threaded CPU training and the physics ops are deterministic, so
the logged y_loss and x_mae are bitwise equal. An update whose prediction,
loss or gradient is not finite is not applied: the run stops there
(``history.diverged``, ``history.message``) and its last checkpoint stays.

Data-parallel training (``torchrun``; see :mod:`physgrad.distributed`): with a
``torch.distributed`` process group of several ranks, :func:`train` gives
each rank a slice of every global batch, sums gradients across ranks and logs
global metrics, so N processes follow the one-process learning curve up to
floating-point rounding. Only rank 0 writes files.
"""
import csv
import dataclasses
import inspect
import json
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch import nn

from .experiments import Experiment, get_experiment

__all__ = ["Method", "METHODS", "register_method", "get_method", "History",
           "make_network", "make_optimizer", "train", "smoothed_metric",
           "default_checkpoints", "compare", "format_table", "read_history",
           "TrainingInterrupted", "checkpoint_path", "save_checkpoint", "load_checkpoint",
           "atomic_write", "DEFAULT_CHECKPOINT_EVERY", "EXIT_STOPPED"]


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
    #: why the run stopped early (non-finite values), else None
    message: Optional[str] = None
    checkpoint_path: Optional[str] = None
    #: the checkpoint iteration a resumed run continued from, else None
    resumed_from: Optional[int] = None
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


class TrainingInterrupted(Exception):
    """Training stopped on request (SIGINT, SIGTERM or ``stop_after``) after
    writing a checkpoint; resume with ``train(..., resume=True)`` (CLI: ``--resume``).

    Attributes:
        signal_number: the signal received, or None for ``stop_after``.
        iteration: the last completed (and checkpointed) iteration.
        checkpoint_path: the checkpoint written (None without ``out_dir``).
        exit_code: the CLI's exit status: 128 + the signal (130 SIGINT,
            143 SIGTERM), or 75 (``EX_TEMPFAIL``: try again later) for ``stop_after``.
    """

    def __init__(self, message: str, *, signal_number: Optional[int], iteration: int,
                 checkpoint_path: Optional[str], method: str):
        super().__init__(message)
        self.signal_number = signal_number
        self.iteration = iteration
        self.checkpoint_path = checkpoint_path
        self.method = method
        self.exit_code = 128 + signal_number if signal_number is not None else EXIT_STOPPED


#: exit status of a run stopped by ``stop_after`` (sysexits.h ``EX_TEMPFAIL``)
EXIT_STOPPED = 75
#: default of ``checkpoint_every`` (iterations between checkpoints)
DEFAULT_CHECKPOINT_EVERY = 100
#: checkpoint file of a method: ``<out_dir>/<method><CHECKPOINT_SUFFIX>``
CHECKPOINT_SUFFIX = ".ckpt"
_CHECKPOINT_FORMAT = "physgrad-training-checkpoint"
_CHECKPOINT_VERSION = 1
#: settings a resumed run must share with its checkpoint
_RESUME_KEYS = ("experiment", "options", "method", "batch_size", "seed", "data_seed",
                "learning_rate")


def checkpoint_path(out_dir: str, method: str) -> str:
    """Where :func:`train` keeps the checkpoint of ``method`` in ``out_dir``."""
    return os.path.join(out_dir, f"{method}{CHECKPOINT_SUFFIX}")


def _fsync_directory(directory: str) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` all or nothing: ``write(stream)`` fills a temporary file in
    the same folder, which is flushed, fsynced and renamed over ``path``
    (``os.replace``); a crash leaves the old file or the new one, never a mix."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                             dir=directory)
    try:
        with os.fdopen(descriptor, mode, **({} if "b" in mode else {"newline": ""})) as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def save_checkpoint(path: str, checkpoint: Dict[str, Any]) -> None:
    """``torch.save`` ``checkpoint`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda stream: torch.save(checkpoint, stream))


def load_checkpoint(path: str) -> Dict[str, Any]:
    """A checkpoint written by :func:`train`.

    Raises:
        ValueError: if ``path`` is not such a checkpoint.
    """
    checkpoint = torch.load(path, map_location="cpu")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a physgrad training checkpoint")
    if checkpoint.get("version") != _CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {checkpoint.get('version')} is not "
                         f"{_CHECKPOINT_VERSION}, the one this physgrad reads")
    return checkpoint


def _rng_states() -> Dict[str, Any]:
    states: Dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    try:
        import numpy
        states["numpy"] = numpy.random.get_state()
    except ImportError:
        pass
    return states


def _set_rng_states(states: Dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    if "numpy" in states:
        import numpy
        numpy.random.set_state(states["numpy"])


def _read_checkpoint_on_rank0(path: str) -> Optional[Dict[str, Any]]:
    """Rank 0 reads ``path`` (None if missing) and every rank gets it; an error
    on rank 0 is raised on every rank (no rank is left waiting)."""
    from . import distributed
    rank, _ = distributed.rank_and_world()
    answer: Tuple[str, Any] = ("missing", None)
    if rank == 0 and os.path.exists(path):
        try:
            answer = ("ok", load_checkpoint(path))
        except Exception as error:  # noqa: BLE001 - reported on every rank below
            answer = ("error", f"cannot resume from {path}: {error}")
    answer = distributed.broadcast_object(answer)
    if answer[0] == "error":
        raise ValueError(answer[1])
    return answer[1]


class _StopSignals:
    """SIGINT and SIGTERM handlers for the duration of a training run: the first
    signal asks the loop to stop after the current iteration (it then writes a
    checkpoint); a second one stops at once (KeyboardInterrupt for SIGINT, exit
    status 128 + signal otherwise; the last checkpoint stays). The previous
    handlers come back on exit. Only in the main thread (Python's rule)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool, label: str):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.label = label
        self.received: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    def _handle(self, number: int, frame: Any) -> None:
        name = signal.Signals(number).name
        if self.received is not None:
            self._restore()
            sys.stderr.write(f"\n{self.label}: second {name}: stopping now without a checkpoint "
                             "(the last checkpoint is kept)\n")
            if number == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + number)
        self.received = number
        sys.stderr.write(f"\n{self.label}: {name} received: finishing the current iteration, "
                         "then writing a checkpoint (send it again to stop at once)\n")
        sys.stderr.flush()

    def __enter__(self) -> "_StopSignals":
        if self.enabled:
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _restore(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def __exit__(self, *exc: Any) -> None:
        self._restore()


def _sample(data: Any, batch_size: int, part: Optional[slice]) -> Any:
    """The batch (or this rank's ``part`` of it) from a data source."""
    if part is None:
        return data.sample(batch_size)
    try:
        takes_part = "part" in inspect.signature(data.sample).parameters
    except (TypeError, ValueError):
        takes_part = False
    if takes_part:
        return data.sample(batch_size, part=part)
    from .distributed import take_part
    return take_part(data.sample(batch_size), part)


def _batch_length(x: torch.Tensor) -> int:
    return int(x.shape[0])


def _forward(experiment: Experiment, method: Method, model: nn.Module, batch: Any
             ) -> Tuple[Optional[torch.Tensor], List[float], str]:
    """Forward of one iteration: ``(loss or None, [y_loss sum, x metric, examples], problem)``;
    ``problem`` names what was not finite ("" when all is)."""
    x = experiment.predict(model, batch)
    examples = _batch_length(x)
    if not bool(torch.isfinite(x).all()):
        return None, [math.nan, math.nan, float(examples)], "prediction"
    if method.grad_mode is None:
        loss = experiment.supervised_loss(x, batch)
        with torch.no_grad():
            y_loss = experiment.y_loss(experiment.simulate(x.detach(), batch, None), batch)
    else:
        loss = y_loss = experiment.y_loss(experiment.simulate(x, batch, method.grad_mode), batch)
    values = [float(y_loss.detach()), float(experiment.x_metric(x.detach(), batch)), float(examples)]
    if not bool(torch.isfinite(loss.detach())):
        return None, values, "loss"
    if not all(math.isfinite(v) for v in values):
        return None, values, "y-loss or metric"
    return loss, values, ""


def _gradients_finite(network: nn.Module) -> bool:
    return all(bool(torch.isfinite(p.grad).all()) for p in network.parameters()
               if p.grad is not None)


def _is_tty() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def _csv_row(iteration: int, seconds: float, y_loss: float, x_mae: float) -> List[str]:
    return [str(iteration), f"{seconds:.4f}", f"{y_loss:.8g}", f"{x_mae:.8g}"]


_CSV_HEADER = ["iteration", "wall_seconds", "y_loss", "x_mae"]


def _rewrite_csv(path: str, history: "History") -> None:
    """The log cut back to ``history`` (a resumed run's checkpoint): rows after
    the checkpoint, written before an interruption, are dropped."""
    def write(stream: Any) -> None:
        writer = csv.writer(stream)
        writer.writerow(_CSV_HEADER)
        for row in zip(history.iteration, history.wall_seconds, history.y_loss, history.x_mae):
            writer.writerow(_csv_row(*row))
    atomic_write(path, write, mode="w")


def train(experiment: Union[str, Experiment], method: Union[str, Method],
          iterations: Optional[int] = None, batch_size: Optional[int] = None, seed: int = 0,
          out_dir: Optional[str] = None, *, data_seed: Optional[int] = None,
          learning_rate: Optional[float] = None, progress: Optional[bool] = None,
          flush_every: int = 20, initial_state: Optional[Dict[str, torch.Tensor]] = None,
          checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY, resume: bool = False,
          stop_after: Optional[int] = None, handle_signals: bool = True,
          sync_batchnorm: bool = True) -> History:
    """Train the experiment's network with ``method``.

    Args:
        experiment: an :class:`Experiment` or a registry name (default options).
        method: a :class:`Method` or a name from :data:`METHODS`.
        iterations: number of updates in all, a resumed run's earlier ones
            included (default: the experiment's).
        batch_size: examples per update, the global batch in data-parallel
            training (default: the experiment's).
        seed: seed of the network initialization (and of the data by default).
        out_dir: if given, the log goes to ``out_dir/<method>.csv`` (columns
            iteration, wall_seconds, y_loss, x_mae; flushed every
            ``flush_every`` iterations and at every checkpoint), the final
            weights to ``out_dir/<method>.pt`` and checkpoints to
            ``out_dir/<method>.ckpt``.
        data_seed: seed of the data sequence (default ``seed``).
        learning_rate: overrides the experiment's rate for this method.
        progress: show a tqdm bar (default: when stderr is a terminal).
        flush_every: CSV rows between flushes.
        initial_state: network ``state_dict`` to start from instead of the
            seeded initialization.
        checkpoint_every: iterations between checkpoints (0: none but the final
            one and the one on a signal). A checkpoint holds the network, the
            optimizer, the RNG states (torch, Python, numpy, the data source's
            generator), the iteration and the history; it is written atomically.
        resume: continue from ``out_dir``'s checkpoint of this method if there is
            one (else start afresh). The continued run's log is the one an
            uninterrupted run writes (bitwise the same y_loss and x_mae with the
            same threads and process count; wall_seconds go on from the
            checkpoint's). The settings must be the checkpoint's, except
            ``iterations``.
        stop_after: debugging: stop after this iteration as a signal would
            (checkpoint, then :class:`TrainingInterrupted`).
        handle_signals: while training, SIGINT and SIGTERM stop the run after
            the current iteration with a checkpoint and
            :class:`TrainingInterrupted` (main thread only).
        sync_batchnorm: data-parallel runs only: BatchNorm statistics over the
            global batch (:class:`physgrad.distributed.SyncBatchNorm`, the
            one-process computation) instead of each rank's slice.

    Data-parallel training: with an initialized ``torch.distributed`` process
    group of several ranks, each rank trains on its slice of every global batch
    (:mod:`physgrad.distributed`), the network is wrapped in
    DistributedDataParallel with gradients summed across ranks (the gradient of
    the global-batch loss), logged metrics are global, and only rank 0 writes
    files.

    Returns:
        The :class:`History`; ``history.network`` is the trained network.
        A run whose prediction, loss, gradient or BatchNorm statistics become
        non-finite stops before applying that update (the network as after the
        last applied one), with ``history.diverged = True`` and
        ``history.message`` saying where; its last checkpoint is not replaced.

    Raises:
        TrainingInterrupted: on SIGINT / SIGTERM or ``stop_after``, after the
            checkpoint is written.
        ValueError: resuming from a checkpoint of other settings.
    """
    from . import distributed
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
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
    rank, world_size = distributed.rank_and_world()
    parallel = world_size > 1
    part = distributed.batch_part(batch_size, rank, world_size) if parallel else None
    writes = out_dir is not None and rank == 0
    label = f"{experiment.name} {method.name}"
    data_seed = seed if data_seed is None else data_seed
    config = {"experiment": experiment.name, "options": experiment.options(),
              "method": method.name, "batch_size": batch_size, "seed": seed,
              "data_seed": data_seed, "learning_rate": learning_rate, "iterations": iterations,
              "world_size": world_size, "sync_batchnorm": bool(sync_batchnorm)}

    network = make_network(experiment, seed)
    if initial_state is not None:
        network.load_state_dict(initial_state)
    if parallel and sync_batchnorm and distributed.has_batchnorm(network):
        network = distributed.convert_sync_batchnorm(network)
    network.train()
    optimizer = make_optimizer(method, network.parameters(), learning_rate)
    data = experiment.make_data(data_seed)
    history = History(experiment=experiment.name, method=method.name, network=network)
    checkpoint_file = checkpoint_path(out_dir, method.name) if out_dir is not None else None
    history.checkpoint_path = checkpoint_file
    done = 0
    if resume and checkpoint_file is not None:
        checkpoint = _read_checkpoint_on_rank0(checkpoint_file)
        if checkpoint is not None:
            saved = checkpoint["config"]
            different = [f"{key} {saved.get(key)!r} (now {config[key]!r})" for key in _RESUME_KEYS
                         if saved.get(key) != config[key]]
            if different:
                raise ValueError(f"cannot resume {checkpoint_file}: it was written with other "
                                 f"settings: {'; '.join(different)}")
            done = int(checkpoint["iteration"])
            if done > iterations:
                raise ValueError(f"cannot resume {checkpoint_file} at iteration {done} for a run "
                                 f"of {iterations} iterations; pass at least {done}")
            network.load_state_dict(checkpoint["network"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            data.load_state_dict(checkpoint["data"])
            _set_rng_states(checkpoint["rng"])
            for key in ("iteration", "wall_seconds", "y_loss", "x_mae"):
                setattr(history, key, list(checkpoint["history"][key]))
            history.resumed_from = done
            if saved.get("world_size") != world_size and rank == 0:
                print(f"{label}: resuming a {saved.get('world_size')}-process run with "
                      f"{world_size} process(es): the curve continues, equal up to rounding",
                      file=sys.stderr)
    model: nn.Module = network
    if parallel:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(network)
        model.register_comm_hook(None, distributed.sum_allreduce_hook)

    last_checkpoint = [done]

    def make_checkpoint(iteration: int) -> None:
        if not writes:
            return
        last_checkpoint[0] = iteration
        save_checkpoint(checkpoint_file, {
            "format": _CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION, "config": config,
            "iteration": iteration, "complete": iteration >= iterations,
            "network": network.state_dict(), "optimizer": optimizer.state_dict(),
            "data": data.state_dict(), "rng": _rng_states(),
            "history": {key: list(getattr(history, key))
                        for key in ("iteration", "wall_seconds", "y_loss", "x_mae")},
            "torch_version": torch.__version__})

    from tqdm import tqdm
    bar = tqdm(total=iterations, initial=done, desc=label, unit="it", file=sys.stderr,
               disable=rank != 0 or not (_is_tty() if progress is None else progress))
    csv_file = None
    if writes:
        os.makedirs(out_dir, exist_ok=True)
        history.csv_path = os.path.join(out_dir, f"{method.name}.csv")
        if done > 0:
            _rewrite_csv(history.csv_path, history)
            csv_file = open(history.csv_path, "a", newline="")
        else:
            csv_file = open(history.csv_path, "w", newline="")
    elif out_dir is not None:
        history.csv_path = os.path.join(out_dir, f"{method.name}.csv")

    def flush_csv() -> None:
        if csv_file is not None:
            csv_file.flush()
            os.fsync(csv_file.fileno())

    time_offset = history.wall_seconds[-1] if history.wall_seconds else 0.0
    interrupted: Optional[TrainingInterrupted] = None
    try:
        writer = csv.writer(csv_file) if csv_file is not None else None
        if writer is not None and done == 0:
            writer.writerow(_CSV_HEADER)
        start = time.perf_counter()
        with _StopSignals(handle_signals, f"{label} [rank {rank}]" if parallel else label) as signals:
            for iteration in range(done + 1, iterations + 1):
                batch = _sample(data, batch_size, part)
                # the forward updates BatchNorm's running statistics: keep them to put
                # back if this iteration is not applied
                buffers = [b.detach().clone() for b in network.buffers()]
                loss, values, problem = _forward(experiment, method, model, batch)
                if not problem and not all(bool(torch.isfinite(b).all())
                                           for b in network.buffers() if b.is_floating_point()):
                    problem = "BatchNorm running statistics (buffers)"
                agreed_signal: Optional[int] = None
                if parallel:
                    # one all-reduce per iteration: the global metrics and every
                    # rank's verdicts (non-finite values, a stop signal), so that
                    # all ranks stop at the same iteration
                    received = signals.received
                    totals = distributed.all_reduce_sum([
                        0.0 if problem else values[0], 0.0 if problem else values[1] * values[2],
                        values[2], 1.0 if problem else 0.0,
                        0.0 if received is None else 1.0, float(received or 0)])
                    y_loss, x_mae = totals[0] / totals[2], totals[1] / totals[2]
                    if totals[3] > 0 and not problem:
                        problem = "prediction, loss or metric on another rank"
                    if totals[4] > 0:
                        agreed_signal = received if received is not None else round(totals[5] / totals[4])
                else:
                    y_loss, x_mae = values[0] / values[2], values[1]
                if not problem:
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if not _gradients_finite(network):
                        problem = "gradient"
                if problem:
                    history.diverged = True
                    with torch.no_grad():
                        for buffer, before in zip(network.buffers(), buffers):
                            buffer.copy_(before)
                    if out_dir is None:
                        kept = "no out_dir, no checkpoint"
                    elif last_checkpoint[0]:
                        kept = (f"last good checkpoint {checkpoint_file}, iteration "
                                f"{last_checkpoint[0]}, kept")
                    else:
                        kept = "no checkpoint written yet"
                    history.message = (f"{label}: non-finite {problem} at iteration {iteration}; "
                                       f"stopped without applying that update ({kept})")
                    if rank == 0:
                        bar.write(history.message, file=sys.stderr)
                    break
                optimizer.step()
                seconds = time_offset + time.perf_counter() - start
                history.iteration.append(iteration)
                history.wall_seconds.append(seconds)
                history.y_loss.append(y_loss)
                history.x_mae.append(x_mae)
                if writer is not None:
                    writer.writerow(_csv_row(iteration, seconds, y_loss, x_mae))
                    if iteration % flush_every == 0:
                        csv_file.flush()
                bar.update(1)
                if iteration % 10 == 0 or iteration == iterations:
                    bar.set_postfix(x_mae=f"{x_mae:.4g}", y_loss=f"{y_loss:.3g}")
                if not parallel and signals.received is not None:
                    agreed_signal = signals.received
                stop_now = agreed_signal is not None or (
                    stop_after is not None and stop_after <= iteration < iterations)
                if stop_now or (checkpoint_every and iteration % checkpoint_every == 0) \
                        or iteration == iterations:
                    flush_csv()
                    make_checkpoint(iteration)
                if stop_now:
                    number = agreed_signal
                    why = (f"{signal.Signals(number).name} received" if number is not None
                           else f"stop_after={stop_after}")
                    where = (f"checkpoint {checkpoint_file}" if out_dir is not None
                             else "no out_dir, so no checkpoint")
                    interrupted = TrainingInterrupted(
                        f"{label}: {why}; stopped after iteration {iteration} of {iterations} "
                        f"({where})", signal_number=number, iteration=iteration,
                        checkpoint_path=checkpoint_file, method=method.name)
                    break
    finally:
        bar.close()
        if csv_file is not None:
            flush_csv()
            csv_file.close()
    if interrupted is not None and interrupted.iteration < iterations:
        raise interrupted
    if writes:
        history.weights_path = os.path.join(out_dir, f"{method.name}.pt")
        atomic_write(history.weights_path, lambda stream: torch.save(network.state_dict(), stream))
    elif out_dir is not None:
        history.weights_path = os.path.join(out_dir, f"{method.name}.pt")
    if interrupted is not None:  # a signal during the last iteration: the run is complete,
        raise interrupted        # but the caller (a comparison, the CLI) must stop as asked
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
    from .distributed import rank_and_world
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
    from . import plots
    from .distributed import rank_and_world
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
    from . import plots
    from .distributed import rank_and_world
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
