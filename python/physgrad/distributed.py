"""Data-parallel training across processes: ``torch.distributed``, gloo backend.

:func:`physgrad.training.train` trains data-parallel by itself whenever a
process group is initialized (``torch.distributed.is_initialized()``) with
more than one rank; the CLI initializes one under ``torchrun`` (or with
``--distributed``). This module holds the pieces, each usable alone:

* **Data** (:func:`batch_part`): every rank draws the *whole* global batch's
  random inputs ``x*`` from the same seeded generator and keeps the contiguous
  slice ``[rank * B // W, (rank + 1) * B // W)``; the physics op that makes the
  observations ``y*`` runs on that slice only (the data sources'
  ``sample(batch_size, part=...)``). The ranks' slices, in rank order, are then
  exactly the batch one process draws with the same seed, every rank's
  generator stays at the same position (so rank 0's checkpoint holds the data
  state of all), and the expensive part of data generation is divided.
* **Loss and gradient** (:func:`sum_allreduce_hook`): the training losses are
  sums over examples (:func:`physgrad.losses.l2`), so the global-batch loss is
  the sum of the ranks' local losses and its gradient the sum of the local
  gradients. DistributedDataParallel averages gradients by default; the sum
  hook replaces the average by the plain sum, so the update equals the
  one-process update on the global batch (up to the order of float additions)
  without rescaling the loss.
* **BatchNorm** (:class:`SyncBatchNorm`): with per-rank statistics (DDP's
  default) a network with BatchNorm normalizes each slice by its own mean and
  variance, which is not the one-process computation. torch 1.13's
  ``nn.SyncBatchNorm`` is CUDA-only, so this module has a CPU version that
  all-reduces the per-channel sums (autograd-aware, so the backward is the
  one-process backward too); :func:`convert_sync_batchnorm` swaps it in.
* **Metrics** (:func:`all_reduce_sum`): logged values are global.

Each process keeps its own physics stack: cphys starts PETSc (and with it MPI
as a singleton) lazily in each process, and every solver lives on
``PETSC_COMM_SELF``; physics ops never communicate.
"""
import os
from typing import Any, List, Sequence, Tuple

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["TORCHRUN_VARIABLES", "torchrun_environment", "init_process_group", "rank_and_world",
           "batch_part", "take_part", "sum_allreduce_hook", "all_reduce_sum", "broadcast_object",
           "SyncBatchNorm", "convert_sync_batchnorm", "has_batchnorm"]

#: the variables ``torchrun`` sets for every worker (``env://`` rendezvous)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def torchrun_environment() -> bool:
    """Whether this process was started by ``torchrun`` (or has its variables set by hand)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def init_process_group(backend: str = "gloo") -> Tuple[int, int]:
    """Initialize the default process group from ``torchrun``'s environment
    (``env://``: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``);
    returns ``(rank, world_size)``. Does nothing if a group is already initialized.

    Raises:
        RuntimeError: when torch.distributed is missing or a variable is unset.
    """
    import torch.distributed as dist
    if not dist.is_available():
        raise RuntimeError("this torch has no torch.distributed; data-parallel training needs it")
    if not dist.is_initialized():
        missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
        if missing:
            raise RuntimeError(
                f"distributed training needs the environment torchrun sets; {', '.join(missing)} "
                "unset. Launch with e.g. 'torchrun --nproc_per_node=2 -m physgrad train ...'")
        dist.init_process_group(backend=backend, init_method="env://")
    return dist.get_rank(), dist.get_world_size()


def rank_and_world() -> Tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def batch_part(batch_size: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s examples of a global batch: ``[rank*B//W, (rank+1)*B//W)``.

    The parts of ranks 0..W-1 are contiguous, disjoint and cover the batch (sizes
    differ by at most one when ``W`` does not divide ``B``)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size}")
    if batch_size < world_size:
        raise ValueError(f"a global batch of {batch_size} cannot be shared by {world_size} ranks "
                         "(each needs at least one example)")
    return slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)


def take_part(batch: Any, part: slice) -> Any:
    """The examples ``part`` of a batch: a tensor, or a tuple / NamedTuple of
    tensors whose first dimension is the batch."""
    if isinstance(batch, torch.Tensor):
        return batch[part].clone()
    if isinstance(batch, tuple):
        items = [take_part(item, part) for item in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    raise TypeError(f"cannot split a batch of type {type(batch).__name__}; give the data "
                    "source's sample() a 'part' argument")


def sum_allreduce_hook(process_group, bucket):  # type: ignore[no-untyped-def]
    """DistributedDataParallel communication hook: all-reduce the gradient
    bucket as a **sum** (DDP's default averages). With sum-reduced losses the
    result is the gradient of the global-batch loss.
    ``ddp.register_comm_hook(None, sum_allreduce_hook)``.
    (No annotations: DDP accepts only the exact types ``dist.GradBucket`` and
    ``torch.futures.Future[torch.Tensor]`` there.)"""
    import torch.distributed as dist
    group = process_group if process_group is not None else dist.group.WORLD
    future = dist.all_reduce(bucket.buffer(), group=group, async_op=True).get_future()
    return future.then(lambda done: done.value()[0])


def all_reduce_sum(values: Sequence[float]) -> List[float]:
    """Element-wise sum over ranks of a list of numbers (float64); the input
    unchanged without a process group."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_object(obj: Any, source: int = 0) -> Any:
    """``obj`` of rank ``source`` on every rank (pickled; ``obj`` as given without
    a process group). Used for checkpoints and run settings that only rank 0 reads,
    so nodes need no shared file system."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=source)
    return box[0]


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training-mode statistics are those of the global batch,
    on CPU with any backend (torch 1.13's ``nn.SyncBatchNorm`` needs CUDA).

    Per channel, the ranks all-reduce the example count and the sum (giving the
    mean), then the sum of squared deviations from that mean (the biased
    variance used to normalize; the running variance gets the unbiased one, as
    ``nn.BatchNorm``). The all-reduces are ``torch.distributed.nn`` functions, so
    the backward includes the other ranks' contributions: with the loss a sum
    over ranks and gradients summed across ranks (:func:`sum_allreduce_hook`),
    the gradient is the one-process gradient. Without a process group, in eval
    mode, or with one rank, it is ``F.batch_norm``. State dict keys are those of
    ``nn.BatchNorm2d``.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            assert self.num_batches_tracked is not None
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        _, world = rank_and_world()
        if not (use_batch and self.training and world > 1):
            running = not self.training or self.track_running_stats
            return F.batch_norm(input, self.running_mean if running else None,
                                self.running_var if running else None, self.weight, self.bias,
                                use_batch, factor, self.eps)
        from torch.distributed.nn.functional import all_reduce
        dims = [0] + list(range(2, input.dim()))
        shape = [1, -1] + [1] * (input.dim() - 2)
        local_count = input.numel() // input.shape[1]
        f64 = torch.float64  # sums in double precision, as nn.BatchNorm's CPU kernel
        sums = all_reduce(torch.cat([input.sum(dims, dtype=f64),
                                     torch.tensor([float(local_count)], dtype=f64)]))
        count = sums[-1].detach()
        mean = (sums[:-1] / count).to(input.dtype)
        centred = input - mean.view(shape)
        variance = (all_reduce(centred.pow(2).sum(dims, dtype=f64)) / count).to(input.dtype)
        output = centred * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                total = float(count)
                unbiased = variance * (total / max(total - 1.0, 1.0))
                self.running_mean.mul_(1.0 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1.0 - factor).add_(unbiased.detach(), alpha=factor)
        return output


def has_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` contains a BatchNorm layer."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.BatchNorm1d/2d/3d`` replaced by a
    :class:`SyncBatchNorm` holding the same parameters and buffers (in place
    for children; the converted module is returned)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        converted = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                  module.track_running_stats)
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module
