"""Data of the fluid experiment (paper 3.4, B.5): marker pairs ``m0``, ``m_t`` and the true ``v0``.

An example is a marker pair on a periodic grid: ``m0`` at t = 0 and
``m_t = P(v0*; m0)`` after ``steps`` steps of ``dt``, transported by
incompressible flow (:func:`physgrad.fluid`).

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
"""
from typing import NamedTuple, Optional, Tuple

import torch

from .. import ops
from .base import PHIFLOW_NOISE_MAX_WAVELENGTH, SeededSource, smooth_noise

__all__ = ["FluidBatch", "FluidData", "unit_vortex", "centre_of_mass"]

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
    return ops.fluid_unit_vortex(shape, spacing)


def centre_of_mass(marker: torch.Tensor, spacing: Tuple[float, float]) -> torch.Tensor:
    """Circular-mean centre of mass of ``[B, ny, nx]`` markers: ``[B, 2]`` (x, y) in
    length units, in ``[0, L)`` per axis; a marker without a first Fourier component
    gets the box centre.  The physical inverse's own (cphys) definition."""
    return ops.fluid_centre_of_mass(marker.to(torch.float64), spacing)


class FluidData(SeededSource):
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
        super().__init__(seed)
        self.shape = (int(shape[0]), int(shape[1]))
        self.spacing = (float(spacing[0]), float(spacing[1]))
        self.steps, self.dt, self.pressure_atol = steps, dt, pressure_atol
        self.max_vortex, self.fluctuation, self.fill = max_vortex, fluctuation, fill
        self.dtype = dtype
        self.energy = energy
        # PhiFlow's noise cut-off is in length units; smooth_noise wants cells.
        self.max_wavelength = PHIFLOW_NOISE_MAX_WAVELENGTH / min(self.spacing)

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
        m0 = self.markers(batch_size)
        v0 = self.velocities(m0)
        if part is not None:
            m0, v0 = m0[part].clone(), v0[part].clone()
        with torch.no_grad():
            m_t = ops.fluid(v0, m0, steps=self.steps, dt=self.dt, spacing=self.spacing,
                            grad_mode="physical", pressure_atol=self.pressure_atol, energy=self.energy)
        return FluidBatch(v0.to(self.dtype), m_t.to(self.dtype), m0.to(self.dtype))
