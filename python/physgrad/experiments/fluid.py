"""Navier-Stokes marker transport (paper 3.4, B.5): learn ``v0`` from ``[m0, m_t]``.

An example is a marker pair: ``m0`` at t = 0 and ``m_t = P(v0*; m0)`` at
``t = steps * dt`` (8 steps of 0.25), transported by incompressible flow on a
periodic 64x64 grid of cells of size 2 (a 128x128 box). The network, the
paper's U-net with 5 levels and 16 filters (49,570 parameters), gets
``[m0, m_t]`` as two channels and predicts the initial cell-centred velocity
``v0`` (two channels, x then y); the physics op maps it back to ``m_t``.

Data (:class:`FluidData`, after SIP's ``generate_example``, lengths scaled with
the box so that other grids keep the proportions; a 128x128 box gives SIP's):

* the marker: smooth noise (PhiFlow's ``Noise(scale=10)``: amplitude ``1/k^2``,
  wavelengths above 31.6 length units removed) inside an axis-aligned box of
  56x56 length units centred at a uniform position in the middle half of the
  domain; the ``fill`` fraction of the domain's cells with the largest noise
  (``fill ~ U[0.05, 0.15)`` per example) is set to 1 where it lies in the box,
  every other cell is 0;
* ``v0* = u + s W + 0.1 n``: the uniform velocity ``u`` that carries the
  marker's centre of mass to the box centre in time t, a Gaussian vortex ``W``
  at the box centre (``exp(-r^2 / (2 * 20^2)) (-r_y, r_x)``, the op's physical
  inverse's prior) of strength ``s ~ U[-2, 2)`` (angular velocity), and smooth
  noise ``n`` (same spectrum, std 1 over both channels);
* ``m_t = physgrad.fluid(v0*, m0)``.

Centres of mass are circular means on the periodic domain, as in the op's
inverse (for a marker inside the middle of the box they equal SIP's plain mean
up to the discretization); SIP draws one fill fraction per batch, here each
example draws its own.

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
from typing import Any, Dict, NamedTuple, Optional, Tuple

import torch
from torch import nn

from ..data import PHIFLOW_NOISE_MAX_WAVELENGTH, smooth_noise
from ..nets import UNet
from .base import Experiment

__all__ = ["FluidBatch", "FluidData", "FluidExperiment", "unit_vortex", "centre_of_mass"]

#: the fluid experiment's y-space objectives: the paper's frequency-weighted L1 (B.5) or plain L2
OBJECTIVES = ("frequency", "l2")
#: the frequency objective's falloff on the paper's 64x64 grid (SIP: frequency_falloff=80)
PAPER_FREQUENCY_FALLOFF = 80.0
#: the op's energy-rescale conventions (physgrad.fluid's ``energy``)
ENERGY_CONVENTIONS = ("per_component", "total", "none")

#: SIP's proportions on its 128x128 box: marker box half size 28 (the vortex, sigma 20, is cphys's).
_BOX_HALF_FRACTION = 28.0 / 128.0


class FluidBatch(NamedTuple):
    """One batch: ``x_star`` the true v0 ``[B, 2, ny, nx]`` (channel 0: x),
    ``y_star`` the observed ``m_t`` ``[B, ny, nx]``, ``m0`` the initial marker ``[B, ny, nx]``."""
    x_star: torch.Tensor
    y_star: torch.Tensor
    m0: torch.Tensor


def _cell_centres(n: int, spacing: float) -> torch.Tensor:
    return (torch.arange(n, dtype=torch.float64) + 0.5) * spacing


def _periodic_delta(d: torch.Tensor, period: float) -> torch.Tensor:
    """Minimal-image offset, in ``[-period/2, period/2]``."""
    return d - period * torch.round(d / period)


def unit_vortex(shape: Tuple[int, int], spacing: Tuple[float, float]) -> torch.Tensor:
    """The op's unit vortex at the cell centres, ``[2, ny, nx]`` float64 (channel 0: x):
    ``W(x) = exp(-|r|^2 / (2 sigma^2)) (-r_y, r_x)``, sigma = 20 length units, ``r`` the
    minimal-image offset of the cell centre from the box centre; counter-clockwise,
    ``s W`` has angular velocity ``s`` at the centre.  Computed by cphys, so that the
    data and the physical inverse (which fits ``s``) share one definition."""
    import physgrad  # the op library, loaded at use
    return physgrad.ops.fluid_unit_vortex(shape, spacing)


def centre_of_mass(marker: torch.Tensor, spacing: Tuple[float, float]) -> torch.Tensor:
    """Circular-mean centre of mass of ``[B, ny, nx]`` markers: ``[B, 2]`` (x, y) in
    length units, in ``[0, L)`` per axis; a marker without a first Fourier component
    gets the box centre.  The physical inverse's own (cphys) definition."""
    import physgrad
    return physgrad.ops.fluid_centre_of_mass(marker.to(torch.float64), spacing)


class FluidData:
    """Seeded marker pairs of the paper's fluid data set (see the module docstring).

    Args:
        shape: ``(ny, nx)`` cells (paper: 64x64).
        spacing: cell size ``(dy, dx)`` in length units (paper: 2).
        seed: seed of this source's ``torch.Generator``.
        steps, dt: simulated steps and time step of ``m_t`` (paper: 8 of 0.25).
        pressure_atol: tolerance of the op's pressure solves.
        max_vortex: vortex strengths are uniform in ``[-max_vortex, max_vortex)`` (2).
        fluctuation: std of the small-scale velocity noise (0.1).
        fill: range of the filled fraction of cells (``(0.05, 0.15)``).
        dtype: dtype of the batch tensors (simulated in float64).
        energy: the op's energy-rescale convention of the simulation of ``m_t``
            (``"per_component"``, the authors' code; see :func:`physgrad.fluid`).
    """

    def __init__(self, shape: Tuple[int, int] = (64, 64), spacing: Tuple[float, float] = (2.0, 2.0),
                 seed: int = 0, steps: int = 8, dt: float = 0.25, pressure_atol: float = 1e-4,
                 max_vortex: float = 2.0, fluctuation: float = 0.1,
                 fill: Tuple[float, float] = (0.05, 0.15), dtype: torch.dtype = torch.float32,
                 energy: str = "per_component"):
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.shape = (int(shape[0]), int(shape[1]))
        self.spacing = (float(spacing[0]), float(spacing[1]))
        self.steps, self.dt, self.pressure_atol = steps, dt, pressure_atol
        self.max_vortex, self.fluctuation, self.fill = max_vortex, fluctuation, fill
        self.dtype = dtype
        self.energy = energy
        # PhiFlow's noise cut-off is in length units; smooth_noise wants cells.
        self.max_wavelength = PHIFLOW_NOISE_MAX_WAVELENGTH / min(self.spacing)

    def state_dict(self) -> Dict[str, Any]:
        """The position in the batch sequence (seed and generator state)."""
        return {"seed": self.seed, "generator": self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue the batch sequence saved by ``state_dict()``."""
        self.seed = state["seed"]
        self.generator.set_state(state["generator"])

    def _noise(self, count: int) -> torch.Tensor:
        return smooth_noise(self.generator, count, self.shape, 2.0, self.max_wavelength, torch.float64)

    def markers(self, batch_size: int) -> torch.Tensor:
        """Initial markers ``m0``: ``[batch_size, ny, nx]`` float64 of 0 and 1."""
        g, (ny, nx), (dy, dx) = self.generator, self.shape, self.spacing
        extent = torch.tensor([nx * dx, ny * dy], dtype=torch.float64)                  # (x, y)
        position = (torch.rand(batch_size, 2, generator=g, dtype=torch.float64) * 0.5 + 0.25) * extent
        half = _BOX_HALF_FRACTION * extent
        fill = self.fill[0] + (self.fill[1] - self.fill[0]) * torch.rand(batch_size, generator=g,
                                                                         dtype=torch.float64)
        noise = self._noise(batch_size)
        x, y = _cell_centres(nx, dx), _cell_centres(ny, dy)
        inside_x = ((x[None, :] >= position[:, :1] - half[0]) & (x[None, :] < position[:, :1] + half[0]))
        inside_y = ((y[None, :] >= position[:, 1:] - half[1]) & (y[None, :] < position[:, 1:] + half[1]))
        box = inside_y[:, :, None] & inside_x[:, None, :]                                # [B, ny, nx]
        values = noise * box
        # SIP's discretize: the `fill` fraction of all cells with the largest values (cells
        # outside the box count as 0), then restricted to the box.
        count = torch.round(fill * ny * nx).long().clamp(1, ny * nx)
        ranked = values.flatten(1).sort(dim=1, descending=True).values
        threshold = ranked.gather(1, (count - 1)[:, None])[:, :, None]
        return (box & (values >= threshold) & (values > 0)).to(torch.float64)

    def velocities(self, m0: torch.Tensor) -> torch.Tensor:
        """Ground-truth ``v0*`` for markers ``m0``: ``[B, 2, ny, nx]`` float64."""
        batch_size, (ny, nx), (dy, dx) = m0.shape[0], self.shape, self.spacing
        lx, ly, time = nx * dx, ny * dy, self.steps * self.dt
        centre = centre_of_mass(m0, self.spacing)
        uniform = torch.stack([_periodic_delta(0.5 * lx - centre[:, 0], lx),
                               _periodic_delta(0.5 * ly - centre[:, 1], ly)], dim=1) / time   # [B, 2]
        strength = (torch.rand(batch_size, generator=self.generator, dtype=torch.float64) - 0.5) \
            * (2.0 * self.max_vortex)
        swirl = strength[:, None, None, None] * unit_vortex(self.shape, self.spacing)[None]
        fluctuations = self.fluctuation * self._noise(2 * batch_size).view(batch_size, 2, ny, nx)
        return uniform[:, :, None, None] + swirl + fluctuations

    def sample(self, batch_size: int, part: Optional[slice] = None) -> FluidBatch:
        """Next batch (:class:`FluidBatch`), tensors in ``dtype``; with ``part``
        only those examples (the random inputs are drawn for the whole batch, the
        simulation runs on the part: data-parallel training)."""
        import physgrad  # the op, looked up at sampling time only
        m0 = self.markers(batch_size)
        v0 = self.velocities(m0)
        if part is not None:
            m0, v0 = m0[part].clone(), v0[part].clone()
        with torch.no_grad():
            m_t = physgrad.fluid(v0, m0, steps=self.steps, dt=self.dt, spacing=self.spacing,
                                 grad_mode="physical", pressure_atol=self.pressure_atol, energy=self.energy)
        return FluidBatch(v0.to(self.dtype), m_t.to(self.dtype), m0.to(self.dtype))


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
