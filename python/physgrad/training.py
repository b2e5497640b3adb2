"""Training runs and method comparisons for the paper's experiments: the public API.

Everything a user or the CLI needs is importable from here; the code lives in
modules of one job each:

==============================  ==============================================
:mod:`physgrad.methods`         the methods (below) and their optimizers
:mod:`physgrad.training_loop`   :func:`train`, step by step
:mod:`physgrad.training_setup`  a run's set-up: settings, network, optimizer,
                                data, resumed state (:func:`make_network`)
:mod:`physgrad.training_step`   one iteration: forward, non-finite checks,
                                agreement across ranks, backward
:mod:`physgrad.training_log`    the log as it is written: CSV and progress bar
:mod:`physgrad.history`         :class:`History` and reading a log back
:mod:`physgrad.checkpoints`     checkpoint files and atomic writes
:mod:`physgrad.output_folder`   the output folder's lock and write errors
:mod:`physgrad.stop_signals`    SIGINT / SIGTERM and :class:`TrainingInterrupted`
:mod:`physgrad.comparison`      :func:`compare` and its table
==============================  ==============================================

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

and, for the ops that have these modes, ``adam+newton`` (``newton``) and
``adam+inverse-gradient`` (``inverse_gradient``).

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
from .checkpoints import (CHECKPOINT_SUFFIX, DEFAULT_CHECKPOINT_EVERY, EXIT_STOPPED,
                          EXIT_WRITE_FAILED, OutputFolderInUse, OutputWriteError,
                          TrainingInterrupted, atomic_write, checkpoint_path, holding_output_lock,
                          load_checkpoint, output_lock, save_checkpoint, write_failure)
from .comparison import (COMPARE_SETTINGS, compare, default_checkpoints, format_table,
                         smoothed_metric)
from .experiments import Experiment, get_experiment
from .history import History, read_history
from .methods import METHODS, Method, get_method, make_optimizer, register_method
from .training_loop import train
from .training_setup import make_network

__all__ = ["Method", "METHODS", "register_method", "get_method", "History",
           "make_network", "make_optimizer", "train", "smoothed_metric",
           "default_checkpoints", "compare", "format_table", "read_history",
           "TrainingInterrupted", "checkpoint_path", "save_checkpoint", "load_checkpoint",
           "atomic_write", "DEFAULT_CHECKPOINT_EVERY", "EXIT_STOPPED", "EXIT_WRITE_FAILED",
           "OutputWriteError", "OutputFolderInUse", "output_lock",
           # also importable from here, as before
           "CHECKPOINT_SUFFIX", "COMPARE_SETTINGS", "Experiment", "get_experiment",
           "holding_output_lock", "write_failure"]
