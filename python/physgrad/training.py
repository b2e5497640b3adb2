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
import inspect
import math
import os
import signal
import sys
import time
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

# methods, logs, checkpoints and comparisons live in their own modules; their
# names stay importable from here
from .checkpoints import (CHECKPOINT_SUFFIX, DEFAULT_CHECKPOINT_EVERY, EXIT_STOPPED,  # noqa: F401
                          EXIT_WRITE_FAILED, _CHECKPOINT_FORMAT, _CHECKPOINT_VERSION,
                          _RESUME_KEYS, OutputFolderInUse, OutputWriteError,
                          TrainingInterrupted, _read_checkpoint_on_rank0, _rng_states,
                          _set_rng_states, _StopSignals, atomic_write, checkpoint_path,
                          holding_output_lock, load_checkpoint, output_lock, save_checkpoint,
                          write_failure)
from .comparison import (COMPARE_SETTINGS, compare, default_checkpoints,  # noqa: F401
                         format_table, smoothed_metric)
from .experiments import Experiment, get_experiment
from .history import _CSV_HEADER, History, _csv_row, _rewrite_csv, read_history  # noqa: F401
from .methods import METHODS, Method, get_method, make_optimizer, register_method  # noqa: F401

__all__ = ["Method", "METHODS", "register_method", "get_method", "History",
           "make_network", "make_optimizer", "train", "smoothed_metric",
           "default_checkpoints", "compare", "format_table", "read_history",
           "TrainingInterrupted", "checkpoint_path", "save_checkpoint", "load_checkpoint",
           "atomic_write", "DEFAULT_CHECKPOINT_EVERY", "EXIT_STOPPED", "EXIT_WRITE_FAILED",
           "OutputWriteError", "OutputFolderInUse", "output_lock"]


def make_network(experiment: Experiment, seed: int) -> nn.Module:
    """The experiment's network initialized from ``seed`` (caller's RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return experiment.make_network()


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
        y = experiment.simulate(x, batch, method.grad_mode)
        loss = experiment.training_loss(y, batch, method.grad_mode)
        if type(experiment).training_loss is Experiment.training_loss:
            y_loss = loss
        else:
            with torch.no_grad():
                y_loss = experiment.y_loss(y.detach(), batch)
    values = [float(y_loss.detach()), float(experiment.x_metric(x.detach(), batch)), float(examples)]
    if not bool(torch.isfinite(loss.detach())):
        return None, values, "loss"
    if not all(math.isfinite(v) for v in values):
        return None, values, "y-loss or metric"
    return loss, values, ""


def _gradients_finite(network: nn.Module) -> bool:
    return all(bool(torch.isfinite(p.grad).all()) for p in network.parameters()
               if p.grad is not None)


def _close_log(stream: Any, path: str, raise_errors: bool) -> None:
    """Flush, fsync and close the CSV log; a failure is an OutputWriteError, or
    ignored (``raise_errors=False``: an error is already on its way)."""
    try:
        stream.flush()
        os.fsync(stream.fileno())
    except OSError as error:
        try:
            stream.close()
        except OSError:
            pass
        if raise_errors:
            raise write_failure(path, error) from error
        return
    stream.close()


def _is_tty() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


@holding_output_lock
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
            While it writes, the run holds ``out_dir``
            (:func:`physgrad.checkpoints.output_lock`): another process training
            into the same folder gets :class:`OutputFolderInUse`.
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
        ValueError: resuming from a checkpoint of other settings, or from one
            that is damaged or malformed (the message starts with "cannot resume").
        OutputFolderInUse: another process is training into ``out_dir``.
        OutputWriteError: a log, checkpoint or weights file could not be written
            (disk full, ...); the previous checkpoint is kept.
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
              "world_size": world_size, "sync_batchnorm": bool(sync_batchnorm),
              "checkpoint_every": checkpoint_every, "threads": torch.get_num_threads()}

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
            try:
                network.load_state_dict(checkpoint["network"])
                optimizer.load_state_dict(checkpoint["optimizer"])
                data.load_state_dict(checkpoint["data"])
                _set_rng_states(checkpoint["rng"])
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError,
                    AttributeError) as error:
                raise ValueError(f"cannot resume {checkpoint_file}: its state does not fit "
                                 f"this run: {type(error).__name__}: {error}") from error
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
        history.csv_path = os.path.join(out_dir, f"{method.name}.csv")
        try:
            if done > 0:
                _rewrite_csv(history.csv_path, history)
                csv_file = open(history.csv_path, "a", newline="")
            else:
                csv_file = open(history.csv_path, "w", newline="")
        except OSError as error:
            bar.close()
            raise write_failure(history.csv_path, error) from error
    elif out_dir is not None:
        history.csv_path = os.path.join(out_dir, f"{method.name}.csv")

    def flush_csv() -> None:
        if csv_file is not None:
            csv_file.flush()
            os.fsync(csv_file.fileno())

    time_offset = history.wall_seconds[-1] if history.wall_seconds else 0.0
    interrupted: Optional[TrainingInterrupted] = None
    loop_done = False
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
        loop_done = True
    except OSError as error:
        # the loop's only other file is the checkpoint, whose writer names its path
        if isinstance(error, OutputWriteError) or error.filename is not None or csv_file is None:
            raise
        raise write_failure(history.csv_path, error) from error
    finally:
        bar.close()
        if csv_file is not None:
            _close_log(csv_file, history.csv_path, raise_errors=loop_done)
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
