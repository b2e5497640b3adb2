"""Set-up of a training run (:func:`set_up`): its settings, network, optimizer,
data source and log, and on ``resume`` the state of its checkpoint.

:class:`Run` holds everything the loop (:mod:`physgrad.training_loop`) works
with. Data-parallel runs (several ``torch.distributed`` ranks) get their
rank's slice of every batch, SyncBatchNorm and the DistributedDataParallel
wrapper here; only rank 0 writes files.
"""
import dataclasses
import sys
from typing import Any, Dict, Optional, Union

import torch
from torch import nn

from . import distributed
from .checkpoints import checkpoint_path, read_checkpoint_on_rank0, resume_state
from .experiments import DataSource, Experiment, get_experiment
from .history import History
from .methods import Method, get_method, make_optimizer

__all__ = ["Run", "make_network", "set_up"]


def make_network(experiment: Experiment, seed: int) -> nn.Module:
    """The experiment's network initialized from ``seed`` (caller's RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return experiment.make_network()


@dataclasses.dataclass
class Run:
    """One training run, as :func:`set_up` prepares it for the loop."""
    experiment: Experiment
    method: Method
    #: updates in all, a resumed run's earlier ones included
    iterations: int
    #: the global batch (all ranks together)
    batch_size: int
    #: the settings a checkpoint records (and a resumed run must share)
    config: Dict[str, Any]
    rank: int
    world_size: int
    #: this rank's examples of every batch (None: all of them)
    part: Optional[slice]
    out_dir: Optional[str]
    #: the network being trained
    network: nn.Module
    optimizer: torch.optim.Optimizer
    data: DataSource
    history: History
    checkpoint_file: Optional[str]
    #: what the forward pass calls: the network, or its DistributedDataParallel wrapper
    model: Optional[nn.Module] = None
    #: iterations done before this process started (a resumed run's checkpoint)
    done: int = 0
    #: iteration of the last checkpoint written or resumed from (0: none)
    last_checkpoint: int = 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    @property
    def writes(self) -> bool:
        """Whether this process writes the run's files (rank 0, with ``out_dir``)."""
        return self.out_dir is not None and self.rank == 0

    @property
    def label(self) -> str:
        return f"{self.experiment.name} {self.method.name}"


def set_up(experiment: Union[str, Experiment], method: Union[str, Method], iterations: Optional[int],
           batch_size: Optional[int], seed: int, out_dir: Optional[str], *, data_seed: Optional[int],
           learning_rate: Optional[float], initial_state: Optional[Dict[str, torch.Tensor]],
           checkpoint_every: int, resume: bool, sync_batchnorm: bool) -> Run:
    """The run :func:`physgrad.training.train` describes with these arguments (see
    there), resumed from ``out_dir``'s checkpoint when ``resume`` and there is one."""
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
    part = distributed.batch_part(batch_size, rank, world_size) if world_size > 1 else None
    data_seed = seed if data_seed is None else data_seed
    config = {"experiment": experiment.name, "options": experiment.options(),
              "method": method.name, "batch_size": batch_size, "seed": seed,
              "data_seed": data_seed, "learning_rate": learning_rate, "iterations": iterations,
              "world_size": world_size, "sync_batchnorm": bool(sync_batchnorm),
              "checkpoint_every": checkpoint_every, "threads": torch.get_num_threads()}

    network = make_network(experiment, seed)
    if initial_state is not None:
        network.load_state_dict(initial_state)
    if world_size > 1 and sync_batchnorm and distributed.has_batchnorm(network):
        network = distributed.convert_sync_batchnorm(network)
    network.train()
    optimizer = make_optimizer(method, network.parameters(), learning_rate)
    data = experiment.make_data(data_seed)
    history = History(experiment=experiment.name, method=method.name, network=network)
    history.checkpoint_path = checkpoint_path(out_dir, method.name) if out_dir is not None else None
    run = Run(experiment=experiment, method=method, iterations=iterations, batch_size=batch_size,
              config=config, rank=rank, world_size=world_size, part=part, out_dir=out_dir,
              network=network, optimizer=optimizer, data=data, history=history,
              checkpoint_file=history.checkpoint_path)
    if resume and run.checkpoint_file is not None:
        _resume(run)
    run.model = network
    if run.parallel:
        from torch.nn.parallel import DistributedDataParallel
        run.model = DistributedDataParallel(network)
        run.model.register_comm_hook(None, distributed.sum_allreduce_hook)
    return run


def _resume(run: Run) -> None:
    """Put back the state of the run's checkpoint, if there is one (read on rank 0,
    sent to every rank)."""
    checkpoint = read_checkpoint_on_rank0(run.checkpoint_file)
    if checkpoint is None:
        return
    done, columns = resume_state(checkpoint, run.checkpoint_file, run.config, run.network,
                                 run.optimizer, run.data)
    for key, values in columns.items():
        setattr(run.history, key, values)
    run.history.resumed_from = run.done = run.last_checkpoint = done
    saved_world_size = checkpoint["config"].get("world_size")
    if saved_world_size != run.world_size and run.rank == 0:
        print(f"{run.label}: resuming a {saved_world_size}-process run with "
              f"{run.world_size} process(es): the curve continues, equal up to rounding",
              file=sys.stderr)
