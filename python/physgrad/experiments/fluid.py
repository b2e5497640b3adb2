"""Navier-Stokes marker transport (paper 3.4, B.5): learn ``v0`` from ``[m0, m_t]``.

An example is a marker pair: ``m0`` at t = 0 and ``m_t = P(v0*; m0)`` at
``t = steps * dt`` (8 steps of 0.25), transported by incompressible flow on a
periodic 64x64 grid of cells of size 2 (a 128x128 box). The network, the
paper's U-net with 5 levels and 16 filters (49,570 parameters), gets
``[m0, m_t]`` as two channels and predicts the initial cell-centred velocity
``v0`` (two channels, x then y); the physics op maps it back to ``m_t``.

Data: :class:`physgrad.data.fluid.FluidData` (after SIP's ``generate_example``:
a box of thresholded smooth noise as ``m0``, ``v0*`` uniform flow to the box
centre plus a Gaussian vortex plus small-scale noise; see its module).

The simulation rescales the kinetic energy per velocity component after each
projection (``energy="per_component"``), as the authors' code that made the
paper's figures does; ``energy="total"`` (the op's default, the paper's text)
is an option (:func:`physgrad.fluid`).

Training (paper B.5): Adam, learning rate 5e-3, batch 64. ``adam`` trains on
the paper's objective ``|F(P(x) - y*)| . w`` (:func:`physgrad.losses.frequency_loss`
with the authors' settings n=1, falloff 80 on the 64x64 grid (scaled with the
grid elsewhere: ``80 * min(ny, nx) / 64``), mean ignored; ``objective="l2"``
trains on ``physgrad.losses.l2`` instead); the inverse modes train on the
sum-reduced L2, whose gradient makes their step target ``m_t`` exactly. The
logged y-loss of every method is the objective (frequency loss per example).
The reported accuracy is the paper's v0 error (SIP's ``gt_v0_l1``): per
example, the sum over cells of ``|P_div(v0) - v0*|``, the magnitude of the
difference between the projected (divergence-free) prediction and the truth.
``adam+pg`` uses the op's reverse-simulation inverse (uniform flow plus one
vortex), ``adam+lbfgs`` ``lbfgs_iterations`` L-BFGS steps through the adjoint
(16, as SIP's fluid code). After training, :meth:`FluidExperiment.evaluate`
scores the networks on fixed test examples and plots one of them
(:mod:`physgrad.fluid_plots`, the paper's figure 13).
"""
import os
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

# the data generator lives in physgrad.data.fluid; its names stay importable from here
from ..data.fluid import FluidBatch, FluidData, centre_of_mass, unit_vortex  # noqa: F401
from ..nets import UNet
from .base import Experiment

__all__ = ["FluidBatch", "FluidData", "FluidExperiment", "unit_vortex", "centre_of_mass"]

#: the fluid experiment's y-space objectives: the paper's frequency-weighted L1 (B.5) or plain L2
OBJECTIVES = ("frequency", "l2")
#: the frequency objective's falloff on the paper's 64x64 grid (SIP: frequency_falloff=80)
PAPER_FREQUENCY_FALLOFF = 80.0
#: the op's energy-rescale conventions (physgrad.fluid's ``energy``)
ENERGY_CONVENTIONS = ("per_component", "total", "none")


class FluidExperiment(Experiment):
    """The fluid inverse problem on a periodic ``shape`` grid of ``spacing``-sized cells."""

    name = "fluid"
    description = "Navier-Stokes marker transport, [m0, m_t] -> initial velocity v0 (paper 3.4, B.5)"
    default_iterations = 20000
    default_batch_size = 64
    learning_rates = {"adam": 5e-3, "adam+pg": 5e-3, "adam+lbfgs": 5e-3}
    metric_name = "v0-L1"
    metric_description = "v0 error  sum over cells |P(v0) - v0*| (projected prediction)"

    def __init__(self, shape: Tuple[int, int] = (64, 64), spacing: Tuple[float, float] = (2.0, 2.0),
                 steps: int = 8, dt: float = 0.25, pressure_atol: float = 1e-4, lbfgs_iterations: int = 16,
                 objective: str = "frequency", energy: str = "per_component"):
        if objective not in OBJECTIVES:
            raise ValueError(f"fluid: objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if energy not in ENERGY_CONVENTIONS:
            raise ValueError(f"fluid: energy must be one of {', '.join(ENERGY_CONVENTIONS)}, got {energy!r}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.spacing = (float(spacing[0]), float(spacing[1]))
        self.steps, self.dt = steps, dt
        self.pressure_atol = pressure_atol
        self.lbfgs_iterations = lbfgs_iterations
        self.objective = objective
        self.energy = energy
        #: SIP's falloff 80 is per cell on its 64x64 grid; other grids keep the weight of
        #: each wave number per box (80 * n / 64, n the smaller cell count)
        self.frequency_falloff = PAPER_FREQUENCY_FALLOFF * min(self.shape) / 64.0

    def make_network(self) -> nn.Module:
        return UNet(in_channels=2, out_channels=2, levels=5, filters=16)

    def make_data(self, seed: int) -> FluidData:
        return FluidData(shape=self.shape, spacing=self.spacing, seed=seed, steps=self.steps, dt=self.dt,
                         pressure_atol=self.pressure_atol, energy=self.energy)

    def network_input(self, batch: FluidBatch) -> torch.Tensor:
        """``[m0, m_t]`` as two channels: ``[B, 2, ny, nx]``."""
        return torch.stack([batch.m0, batch.y_star], dim=1)

    def predict(self, network: nn.Module, batch: FluidBatch) -> torch.Tensor:
        """The predicted cell-centred ``v0``: ``[B, 2, ny, nx]`` (channel 0: x)."""
        return self.postprocess(network(self.network_input(batch)), batch)

    def simulate(self, x: torch.Tensor, batch: FluidBatch, grad_mode: Optional[str]) -> torch.Tensor:
        import physgrad
        return physgrad.fluid(x, batch.m0, steps=self.steps, dt=self.dt, spacing=self.spacing,
                              grad_mode=grad_mode, pressure_atol=self.pressure_atol,
                              lbfgs_iterations=self.lbfgs_iterations, energy=self.energy)

    def y_loss(self, y: torch.Tensor, batch: FluidBatch) -> torch.Tensor:
        """The logged y-space loss of every method: the paper's objective
        (:func:`physgrad.losses.frequency_loss`, SIP's settings) with
        ``objective="frequency"``, else ``physgrad.losses.l2``; summed over the batch."""
        from physgrad import losses
        if self.objective == "frequency":
            return losses.frequency_loss(y, batch.y_star, falloff=self.frequency_falloff)
        return losses.l2(y, batch.y_star)

    def training_loss(self, y: torch.Tensor, batch: FluidBatch, grad_mode: Optional[str]) -> torch.Tensor:
        """``adjoint`` trains on :meth:`y_loss` (the paper's frequency objective);
        the inverse modes on ``physgrad.losses.l2``, whose gradient ``y - m_t`` makes
        their target ``m_t`` (SIP's PG ignores the loss: its update is the inverse's)."""
        from physgrad import losses
        if grad_mode == "adjoint":
            return self.y_loss(y, batch)
        return losses.l2(y, batch.y_star)

    def x_metric(self, x: torch.Tensor, batch: FluidBatch) -> torch.Tensor:
        """The paper's v0 error (SIP ``gt_v0_l1``): per example the sum over cells of
        the magnitude of ``P_div(v0) - v0*``, the prediction made divergence-free by the
        simulation's initial projection (resampled to the cell centres), mean over the batch."""
        import physgrad
        with torch.no_grad():
            _, velocities = physgrad.fluid_sequence(x.detach().double(), batch.m0.double(), steps=1, dt=self.dt,
                                                    spacing=self.spacing, pressure_atol=self.pressure_atol,
                                                    energy=self.energy)
            difference = velocities[:, 0] - batch.x_star.double()
            return difference.pow(2).sum(1).sqrt().sum((1, 2)).mean()

    def x_mae(self, x: torch.Tensor, batch: FluidBatch) -> torch.Tensor:
        """Mean absolute error of the raw prediction's components against ``v0*``
        (physgrad's earlier fluid metric)."""
        return (x.detach().double() - batch.x_star.double()).abs().mean()

    def options(self) -> Dict[str, Any]:
        return {"shape": list(self.shape), "spacing": list(self.spacing), "steps": self.steps, "dt": self.dt,
                "pressure_atol": self.pressure_atol, "lbfgs_iterations": self.lbfgs_iterations,
                "objective": self.objective, "energy": self.energy}

    def evaluate(self, networks: Dict[str, nn.Module], out_dir: Optional[str] = None,
                 histories: Optional[Dict[str, Any]] = None, test_size: int = 16,
                 test_seed: int = 12345) -> Optional[Dict[str, Any]]:
        """Report on trained networks (method -> network): x-MAE and y-loss per example
        of each on ``test_size`` fixed test examples (data seed ``test_seed``, eval mode),
        and, with ``out_dir``, the plot of the first of them (``fluid_example.png``:
        marker sequences of the ground truth and of each prediction, paper figure 13)."""
        from .. import fluid_plots, losses
        if not networks:
            return None
        batch = self.make_data(test_seed).sample(test_size)
        report: Dict[str, Any] = {"test_size": test_size, "test_seed": test_seed, "v0_l1": {}, "x_mae": {},
                                  "y_loss": {}, "l2_loss": {}}
        for method, network in networks.items():
            was_training = network.training
            network.eval()
            try:
                with torch.no_grad():
                    x = self.predict(network, batch)
                    y = self.simulate(x, batch, None)
            finally:
                network.train(was_training)
            report["v0_l1"][method] = float(self.x_metric(x, batch))
            report["x_mae"][method] = float(self.x_mae(x, batch))
            report["y_loss"][method] = float(self.y_loss(y, batch)) / test_size
            report["l2_loss"][method] = float(losses.l2(y, batch.y_star)) / test_size
        lines = [f"fluid test set ({test_size} examples, data seed {test_seed}; y-loss: the {self.objective} "
                 "objective, per example):"]
        lines += [f"  {method:<12} v0-L1 {report['v0_l1'][method]:.4g}   x-MAE {report['x_mae'][method]:.4g}   "
                  f"y-loss {report['y_loss'][method]:.4g}   L2 {report['l2_loss'][method]:.4g}"
                  for method in networks]
        if out_dir is not None:
            path = os.path.join(out_dir, "fluid_example.png")
            report["plot"] = fluid_plots.plot_predictions(self, networks, path, seed=test_seed)
            lines.append(f"example plot: {report['plot']}")
        report["text"] = "\n".join(lines)
        return report


EXPERIMENT = FluidExperiment
