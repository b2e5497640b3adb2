"""The training loop: :func:`train`, step by step.

``train`` sets the run up (:func:`physgrad.training_setup.set_up`: settings,
network, optimizer, data, a resumed checkpoint's state), opens its log
(:class:`physgrad.training_log.TrainingLog`), and repeats one iteration
(:func:`physgrad.training_step.run_iteration`) and the update, writing a
checkpoint every ``checkpoint_every`` iterations, at the end and when asked to
stop (:class:`physgrad.stop_signals.StopSignals`, ``stop_after``). It stops
early without applying an update whose values are not finite. At the end it
writes the final weights. Public names: :mod:`physgrad.training`.
"""
import os
import signal
import time
from typing import Dict, Optional, Union

import torch

from .checkpoints import (DEFAULT_CHECKPOINT_EVERY, OutputWriteError, atomic_write, run_checkpoint,
                          save_checkpoint)
from .experiments import Experiment
from .history import History
from .methods import Method
from .output_folder import holding_output_lock, write_failure
from .stop_signals import StopSignals, TrainingInterrupted
from .training_log import TrainingLog
from .training_setup import Run, set_up
from .training_step import run_iteration

__all__ = ["train"]


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
        handle_signals: while training, SIGINT and SIGTERM stop the run after
            the current iteration with a checkpoint and
            :class:`TrainingInterrupted` (main thread only).
        sync_batchnorm: data-parallel runs only: BatchNorm statistics over the
            global batch (:class:`physgrad.distributed.SyncBatchNorm`, the
            one-process computation) instead of each rank's slice.

    While it writes, the run holds ``out_dir``
    (:func:`physgrad.output_folder.output_lock`): another process training into
    the same folder gets :class:`OutputFolderInUse`.

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
    run = set_up(experiment, method, iterations, batch_size, seed, out_dir, data_seed=data_seed,
                 learning_rate=learning_rate, initial_state=initial_state,
                 checkpoint_every=checkpoint_every, resume=resume, sync_batchnorm=sync_batchnorm)
    log = TrainingLog(run, progress, flush_every)
    interrupted: Optional[TrainingInterrupted] = None
    loop_done = False
    try:
        log.start()
        interrupted = _iterate(run, log, checkpoint_every, stop_after, handle_signals)
        loop_done = True
    except OSError as error:
        # the loop's only other file is the checkpoint, whose writer names its path
        if isinstance(error, OutputWriteError) or error.filename is not None or log.stream is None:
            raise
        raise write_failure(run.history.csv_path, error) from error
    finally:
        log.close(raise_errors=loop_done)
    return _finish(run, interrupted)


def _iterate(run: Run, log: TrainingLog, checkpoint_every: int, stop_after: Optional[int],
             handle_signals: bool) -> Optional[TrainingInterrupted]:
    """The iterations after ``run.done``: each one's update, log row and checkpoint.
    Returns the interruption to raise when asked to stop (a signal, ``stop_after``),
    else None (done, or stopped by a non-finite value: ``history.diverged``)."""
    time_offset = run.history.wall_seconds[-1] if run.history.wall_seconds else 0.0
    start = time.perf_counter()
    label = f"{run.label} [rank {run.rank}]" if run.parallel else run.label
    with StopSignals(handle_signals, label) as signals:
        for iteration in range(run.done + 1, run.iterations + 1):
            step = run_iteration(run, signals)
            if step.problem:
                _stop_diverged(run, log, step.problem, iteration)
                return None
            run.optimizer.step()
            log.record(iteration, time_offset + time.perf_counter() - start, step.y_loss, step.x_mae)
            signal_number = step.signal
            if not run.parallel and signals.received is not None:
                signal_number = signals.received
            stop_now = signal_number is not None or (
                stop_after is not None and stop_after <= iteration < run.iterations)
            if stop_now or (checkpoint_every and iteration % checkpoint_every == 0) \
                    or iteration == run.iterations:
                log.flush()
                _write_checkpoint(run, iteration)
            if stop_now:
                return _interruption(run, iteration, signal_number, stop_after)
    return None


def _write_checkpoint(run: Run, iteration: int) -> None:
    """The run's checkpoint after ``iteration`` (by the rank that writes files)."""
    if not run.writes:
        return
    run.last_checkpoint = iteration
    save_checkpoint(run.checkpoint_file, run_checkpoint(run.config, iteration, run.network,
                                                        run.optimizer, run.data, run.history))


def _stop_diverged(run: Run, log: TrainingLog, problem: str, iteration: int) -> None:
    """Record why the run stops before applying ``iteration``'s update."""
    history = run.history
    history.diverged = True
    if run.out_dir is None:
        kept = "no out_dir, no checkpoint"
    elif run.last_checkpoint:
        kept = (f"last good checkpoint {run.checkpoint_file}, iteration "
                f"{run.last_checkpoint}, kept")
    else:
        kept = "no checkpoint written yet"
    history.message = (f"{run.label}: non-finite {problem} at iteration {iteration}; "
                       f"stopped without applying that update ({kept})")
    if run.rank == 0:
        log.write(history.message)


def _interruption(run: Run, iteration: int, signal_number: Optional[int],
                  stop_after: Optional[int]) -> TrainingInterrupted:
    why = (f"{signal.Signals(signal_number).name} received" if signal_number is not None
           else f"stop_after={stop_after}")
    where = (f"checkpoint {run.checkpoint_file}" if run.out_dir is not None
             else "no out_dir, so no checkpoint")
    return TrainingInterrupted(
        f"{run.label}: {why}; stopped after iteration {iteration} of {run.iterations} "
        f"({where})", signal_number=signal_number, iteration=iteration,
        checkpoint_path=run.checkpoint_file, method=run.method.name)


def _finish(run: Run, interrupted: Optional[TrainingInterrupted]) -> History:
    """The final weights (``<out_dir>/<method>.pt``) of a run that got to its end or
    stopped on a non-finite value; an interruption before the end is raised instead."""
    if interrupted is not None and interrupted.iteration < run.iterations:
        raise interrupted
    if run.out_dir is not None:
        run.history.weights_path = os.path.join(run.out_dir, f"{run.method.name}.pt")
        if run.writes:
            network = run.network
            atomic_write(run.history.weights_path, lambda stream: torch.save(network.state_dict(), stream))
    if interrupted is not None:  # a signal during the last iteration: the run is complete,
        raise interrupted        # but the caller (a comparison, the CLI) must stop as asked
    return run.history
