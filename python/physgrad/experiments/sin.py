"""Single-parameter optimization (paper section 3.1, figure 3, appendix B.2).

Given ``a ~ U[0.1, 10.1)``, find ``x`` with ``sin(a / x) = -1`` (any minimum).
The network is the paper's MLP 1-10-20-10-1 with ReLU (461 parameters),
mapping ``a`` to ``x``; it is trained with Adam (lr 2e-3) on batches of 1000
values of ``a`` drawn on the fly, minimizing the y-space loss
``0.5 * sum((sin(a/x) + 1)^2)`` (:func:`physgrad.losses.l2` against -1).

Methods (the op's backward in brackets):

=========================  ==========================================================
``adam``                   (``adjoint``, ``dP/dx`` clipped to [-1, 1]: the paper's
                           stabilized baseline; unclipped, it overflows near x = 0)
``adam+pg``                (``physical``: the analytic inverse, the nearest minimum)
``adam+newton``            (``newton``: Newton's step towards a minimum, clipped to 1)
``adam+inverse-gradient``  (``inverse_gradient``: ``h / dP/dx``, clipped to 1)
``supervised``             Adam on ``0.5 ||x - x*||^2`` with ``x*`` the minimum
                           nearest to ``x0 = 1`` (:func:`physgrad.sine_nearest_minimum`)
=========================  ==========================================================

Metric: the objective ``sin(a/x) + 1`` (the height above the minimum, >= 0)
averaged over the batch, the quantity of the paper's figure 3. The training
log's ``x_mae`` column holds it (``metric_name = "objective"``): the problem has
infinitely many solutions, so there is no single ``x*`` to measure against.
"""
from typing import Any, Dict, Optional

import torch
from torch import nn

# the data generator lives in physgrad.data.sin; its names stay importable from here
from ..data.sin import A_RANGE, SUPERVISED_GUESS, SinBatch, SinData  # noqa: F401
from ..nets import mlp
from .base import Experiment

__all__ = ["SinExperiment", "EXPERIMENT", "SinData", "SinBatch", "A_RANGE", "SUPERVISED_GUESS"]


class SinExperiment(Experiment):
    """Learn ``a -> x`` with ``sin(a/x) = -1``; ``adjoint_clip`` bounds ``dP/dx``
    for ``adam``, ``step_clip`` the Newton / inverse-gradient steps."""

    name = "sin"
    description = "single-parameter sin(a/x) -> -1, a in [0.1, 10.1) (paper 3.1, B.2)"
    default_iterations = 3000
    default_batch_size = 1000
    learning_rates = {"adam": 2e-3, "adam+pg": 2e-3, "adam+newton": 2e-3,
                      "adam+inverse-gradient": 2e-3, "supervised": 2e-3}
    metric_name = "objective"
    metric_description = "objective  sin(a/x) + 1 (batch mean)"
    plot_smoothing = 100

    def __init__(self, adjoint_clip: float = 1.0, step_clip: float = 1.0):
        self.adjoint_clip = adjoint_clip
        self.step_clip = step_clip

    def make_network(self) -> nn.Module:
        return mlp([1, 10, 20, 10, 1])

    def make_data(self, seed: int) -> SinData:
        return SinData(seed)

    def network_input(self, batch: SinBatch) -> torch.Tensor:
        """``a`` as one feature: ``[B, 1]``; the prediction is ``x``, ``[B]``."""
        return batch.a.unsqueeze(1)

    def simulate(self, x: torch.Tensor, batch: SinBatch, grad_mode: Optional[str]) -> torch.Tensor:
        import physgrad
        return physgrad.sine(x, batch.a, grad_mode=grad_mode, adjoint_clip=self.adjoint_clip,
                             step_clip=self.step_clip)

    def y_loss(self, y: torch.Tensor, batch: SinBatch) -> torch.Tensor:
        """``0.5 * sum((y + 1)^2)``: the target is the minimum, ``sin = -1``."""
        from physgrad import losses
        return losses.l2(y, torch.full_like(y, -1.0))

    def x_metric(self, x: torch.Tensor, batch: SinBatch) -> torch.Tensor:
        """The objective ``sin(a/x) + 1`` averaged over the batch (0 at a minimum)."""
        import physgrad
        with torch.no_grad():
            return (physgrad.sine(x.double(), batch.a.double()) + 1.0).mean()

    def options(self) -> Dict[str, Any]:
        return {"adjoint_clip": self.adjoint_clip, "step_clip": self.step_clip}


EXPERIMENT = SinExperiment
