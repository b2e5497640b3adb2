"""Seeded, on-the-fly data for the paper's experiments.

Every source owns a ``torch.Generator``: the same seed gives the same sequence
of batches, and ``state_dict()`` / ``load_state_dict()`` save and restore the
position in that sequence. Ground-truth inputs ``x*`` are generated here
(random fields, no physics); the observations ``y* = P(x*)`` come from the
physgrad op itself, looked up only when a batch is sampled.

Conventions: fields are ``[B, ny, nx]``, one cell has unit size, wavelengths
and sizes are in cells.

Data-parallel training: ``sample(batch_size, part=slice(i, j))`` returns only
the examples ``i..j-1`` of the next batch. The generator still draws the random
inputs of the whole batch (so it advances exactly as without ``part``, and the
parts of all ranks are the batch one process gets), but the physics op that
makes ``y*`` runs on the part only.
"""
import math
from typing import Any, Dict, NamedTuple, Optional, Tuple

import torch

__all__ = ["FieldPair", "smooth_noise", "PoissonData", "HeatData",
           "PHIFLOW_NOISE_MAX_WAVELENGTH"]

#: PhiFlow's ``Noise(scale=10)`` (used by SIP for the Poisson data) drops all
#: frequencies with ``(k * scale)^2 < 0.1``, k in cycles per cell, i.e. every
#: wavelength longer than ``sqrt(10) * 10`` cells.
PHIFLOW_NOISE_MAX_WAVELENGTH = 10.0 * math.sqrt(10.0)


class FieldPair(NamedTuple):
    """One batch of an inverse problem: ground truth ``x_star`` and observation
    ``y_star = P(x_star)``, both ``[B, ny, nx]``."""
    x_star: torch.Tensor
    y_star: torch.Tensor


def smooth_noise(generator: torch.Generator, batch: int, shape: Tuple[int, int],
                 power: float = 2.0,
                 max_wavelength: float = PHIFLOW_NOISE_MAX_WAVELENGTH,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random fields whose Fourier amplitude falls off as ``1 / k**power``.

    Complex standard-normal Fourier coefficients are weighted by
    ``|k|**-power`` (``|k|`` in cycles per cell), frequencies with a wavelength
    above ``max_wavelength`` cells (and the mean, k = 0) are removed, and the
    real part of the inverse FFT is normalized per sample to mean 0 and
    standard deviation 1. With the defaults this is PhiFlow's ``Noise()``
    (scale 10, smoothness 1: amplitude ``1/k^2``) that SIP uses for Poisson.

    Args:
        generator: source of randomness; advanced by the call.
        batch: number of fields B.
        shape: ``(ny, nx)`` cells.
        power: exponent of the amplitude spectrum (the power spectrum falls as
            ``k**(-2 * power)``).
        max_wavelength: longest wavelength kept, in cells.
        dtype: dtype of the result (computed in float64).

    Returns:
        ``[batch, ny, nx]``, each sample with mean 0 and (population) std 1.
    """
    ny, nx = shape
    k_y = torch.fft.fftfreq(ny, dtype=torch.float64)[:, None]
    k_x = torch.fft.fftfreq(nx, dtype=torch.float64)[None, :]
    k = torch.sqrt(k_y ** 2 + k_x ** 2)
    kept = k > 1.0 / max_wavelength
    if not bool(kept.any()):
        raise ValueError(f"smooth_noise: no frequency of a {ny}x{nx} grid has a wavelength "
                         f"below max_wavelength={max_wavelength} cells")
    amplitude = torch.where(kept, k.clamp(min=1e-300) ** -power, torch.zeros_like(k))
    size = (batch, ny, nx)
    coefficients = torch.complex(torch.randn(size, generator=generator, dtype=torch.float64),
                                 torch.randn(size, generator=generator, dtype=torch.float64))
    field = torch.fft.ifft2(coefficients * amplitude).real
    field = field - field.mean(dim=(-2, -1), keepdim=True)
    field = field / field.std(dim=(-2, -1), unbiased=False, keepdim=True)
    return field.to(dtype)


class _SeededSource:
    """Owns the generator of a data source and saves/restores its state."""

    def __init__(self, seed: int):
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> Dict[str, Any]:
        """The position in the batch sequence (seed and generator state)."""
        return {"seed": self.seed, "generator": self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue the batch sequence saved by ``state_dict()``."""
        self.seed = state["seed"]
        self.generator.set_state(state["generator"])


class PoissonData(_SeededSource):
    """Poisson inverse problem (paper B.3): ``x*`` smooth noise, ``y* = poisson(x*)``.

    The default grid is SIP's 64x64 (its published training code; batch 128);
    the paper's text states 80x60 cells, i.e. ``shape=(60, 80)``. Both work
    with the U-net.

    Args:
        shape: ``(ny, nx)`` cells.
        seed: seed of this source's generator.
        power: amplitude spectrum exponent of ``x*`` (``1/k^2``).
        max_wavelength: longest wavelength in ``x*``, in cells.
        dtype: dtype of ``x*`` and ``y*``.
    """

    def __init__(self, shape: Tuple[int, int] = (64, 64), seed: int = 0, power: float = 2.0,
                 max_wavelength: float = PHIFLOW_NOISE_MAX_WAVELENGTH,
                 dtype: torch.dtype = torch.float32):
        super().__init__(seed)
        self.shape = tuple(shape)
        self.power = power
        self.max_wavelength = max_wavelength
        self.dtype = dtype

    def sample(self, batch_size: int, part: Optional[slice] = None) -> FieldPair:
        """Next batch: ``x_star, y_star`` of shape ``[batch_size, ny, nx]``
        (with ``part``: only those examples, see the module docstring)."""
        import physgrad  # the op, looked up at sampling time only
        x_star = smooth_noise(self.generator, batch_size, self.shape, self.power,
                              self.max_wavelength, self.dtype)
        if part is not None:
            x_star = x_star[part].clone()
        with torch.no_grad():
            y_star = physgrad.poisson(x_star)
        return FieldPair(x_star, y_star)


class HeatData(_SeededSource):
    """Heat inverse problem (paper B.4): hot rectangles, ``y* = heat(x*, nu_t)``.

    Following SIP's ``generate_heat_example``: each sample has a uniformly
    drawn number of rectangles in ``[min_rectangles, max_rectangles]``, each
    with a centre uniform in the middle 80% of the domain, half sizes uniform
    in ``[0, max_half_size)`` cells per axis (the rectangle is then shifted to
    lie inside the domain), and strength uniform in ``[0, 1)``. Edges are soft:
    a cell gets the fraction of its area the rectangle covers (exact for
    axis-aligned boxes), times the strength; rectangles add up.

    Args:
        shape: ``(ny, nx)`` cells of the periodic grid (paper: 64x64).
        seed: seed of this source's generator.
        nu_t: diffusivity times time, cells^2 (paper: 8).
        min_rectangles, max_rectangles: range of rectangle counts (4 to 10).
        max_half_size: largest half side length, cells (10).
        dtype: dtype of ``x*`` and ``y*``.
    """

    def __init__(self, shape: Tuple[int, int] = (64, 64), seed: int = 0, nu_t: float = 8.0,
                 min_rectangles: int = 4, max_rectangles: int = 10,
                 max_half_size: float = 10.0, dtype: torch.dtype = torch.float32):
        super().__init__(seed)
        if not 0 <= min_rectangles <= max_rectangles:
            raise ValueError(f"HeatData needs 0 <= min_rectangles <= max_rectangles, "
                             f"got {min_rectangles}, {max_rectangles}")
        self.shape = tuple(shape)
        self.nu_t = nu_t
        self.min_rectangles = min_rectangles
        self.max_rectangles = max_rectangles
        self.max_half_size = max_half_size
        self.dtype = dtype

    def hot_rectangles(self, batch_size: int) -> torch.Tensor:
        """Ground-truth initial temperatures ``x*``: ``[batch_size, ny, nx]``."""
        g, n, f64 = self.generator, self.max_rectangles, torch.float64
        extent = torch.tensor(self.shape, dtype=f64)                        # [2] (y, x)
        counts = torch.randint(self.min_rectangles, self.max_rectangles + 1, (batch_size, 1),
                               generator=g)
        centres = (torch.rand(batch_size, n, 2, generator=g, dtype=f64) * 0.8 + 0.1) * extent
        half = torch.rand(batch_size, n, 2, generator=g, dtype=f64) * self.max_half_size
        half = torch.minimum(half, extent / 2)
        strength = torch.rand(batch_size, n, generator=g, dtype=f64)
        strength = strength * (torch.arange(n)[None, :] < counts)           # [B, n]
        centres = torch.maximum(torch.minimum(centres, extent - half), half)
        lower, upper = centres - half, centres + half                       # [B, n, 2]

        def coverage(axis: int) -> torch.Tensor:
            """Covered fraction of each cell's extent along ``axis``: [B, n, cells]."""
            cell_lower = torch.arange(self.shape[axis], dtype=f64)
            overlap = (torch.minimum(cell_lower + 1, upper[..., axis, None])
                       - torch.maximum(cell_lower, lower[..., axis, None]))
            return overlap.clamp(0.0, 1.0)

        field = torch.einsum("br,bry,brx->byx", strength, coverage(0), coverage(1))
        return field.to(self.dtype)

    def sample(self, batch_size: int, part: Optional[slice] = None) -> FieldPair:
        """Next batch: ``x_star, y_star`` of shape ``[batch_size, ny, nx]``
        (with ``part``: only those examples, see the module docstring)."""
        import physgrad  # the op, looked up at sampling time only
        x_star = self.hot_rectangles(batch_size)
        if part is not None:
            x_star = x_star[part].clone()
        with torch.no_grad():
            y_star = physgrad.heat(x_star, nu_t=self.nu_t)
        return FieldPair(x_star, y_star)
