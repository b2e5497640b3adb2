"""One iteration of a training run (:func:`run_iteration`), up to the optimizer step.

The iteration samples its batch (this rank's part of it in data-parallel runs),
predicts, simulates and computes the loss, checks that nothing it would apply
is non-finite (prediction, loss, metric, BatchNorm's running statistics, then
the gradient), agrees with the other ranks on the metrics and on whether to go
on (one all-reduce), and runs the backward pass. The caller applies the update
(``optimizer.step()``) only when :attr:`Step.problem` is empty.
"""
import dataclasses
import inspect
import math
from typing import Any, List, Optional, Tuple

import torch
from torch import nn

from . import distributed
from .experiments import DataSource, Experiment
from .methods import Method
from .stop_signals import StopSignals
from .training_setup import Run

__all__ = ["Step", "run_iteration"]


@dataclasses.dataclass
class Step:
    """What an iteration measured and decided."""
    #: y-space loss per example and the experiment's metric, on the (global) batch
    y_loss: float
    x_mae: float
    #: what was not finite ("" when all was): the update must not be applied
    problem: str
    #: a stop signal some rank received, agreed by all ranks (data-parallel runs only)
    signal: Optional[int]


def run_iteration(run: Run, signals: StopSignals) -> Step:
    """Forward, checks and backward of one iteration of ``run``; the gradients are
    in the network's parameters unless :attr:`Step.problem` says why not (the
    BatchNorm statistics the forward changed are then put back)."""
    batch = sample(run.data, run.batch_size, run.part)
    # the forward updates BatchNorm's running statistics: keep them to put
    # back if this iteration is not applied
    buffers = [b.detach().clone() for b in run.network.buffers()]
    loss, values, problem = forward(run.experiment, run.method, run.model, batch)
    if not problem and not all(bool(torch.isfinite(b).all())
                               for b in run.network.buffers() if b.is_floating_point()):
        problem = "BatchNorm running statistics (buffers)"
    agreed_signal: Optional[int] = None
    if run.parallel:
        y_loss, x_mae, problem, agreed_signal = _agree(values, problem, signals.received)
    else:
        y_loss, x_mae = values[0] / values[2], values[1]
    if not problem:
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not _gradients_finite(run.network):
            problem = "gradient"
    if problem:
        with torch.no_grad():
            for buffer, before in zip(run.network.buffers(), buffers):
                buffer.copy_(before)
    return Step(y_loss, x_mae, problem, agreed_signal)


def sample(data: DataSource, batch_size: int, part: Optional[slice]) -> Any:
    """The batch (or this rank's ``part`` of it) from a data source."""
    if part is None:
        return data.sample(batch_size)
    try:
        takes_part = "part" in inspect.signature(data.sample).parameters
    except (TypeError, ValueError):
        takes_part = False
    if takes_part:
        return data.sample(batch_size, part=part)
    return distributed.take_part(data.sample(batch_size), part)


def forward(experiment: Experiment, method: Method, model: nn.Module, batch: Any
            ) -> Tuple[Optional[torch.Tensor], List[float], str]:
    """Forward of one iteration: ``(loss or None, [y_loss sum, x metric, examples], problem)``;
    ``problem`` names what was not finite ("" when all is)."""
    x = experiment.predict(model, batch)
    examples = int(x.shape[0])
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


def _agree(values: List[float], problem: str, received: Optional[int]
           ) -> Tuple[float, float, str, Optional[int]]:
    """Data-parallel runs: one all-reduce for the global metrics and every rank's
    verdicts (non-finite values, a stop signal), so that all ranks stop at the same
    iteration. Returns (y_loss, x_mae, problem, agreed signal)."""
    totals = distributed.all_reduce_sum([
        0.0 if problem else values[0], 0.0 if problem else values[1] * values[2],
        values[2], 1.0 if problem else 0.0,
        0.0 if received is None else 1.0, float(received or 0)])
    y_loss, x_mae = totals[0] / totals[2], totals[1] / totals[2]
    if totals[3] > 0 and not problem:
        problem = "prediction, loss or metric on another rank"
    agreed_signal = None
    if totals[4] > 0:
        agreed_signal = received if received is not None else round(totals[5] / totals[4])
    return y_loss, x_mae, problem, agreed_signal


def _gradients_finite(network: nn.Module) -> bool:
    return all(bool(torch.isfinite(p.grad).all()) for p in network.parameters()
               if p.grad is not None)
