"""What the data generators share: the seeded source, the field batch, smooth noise.

Every source owns a ``torch.Generator`` (:class:`SeededSource`): the same seed
gives the same sequence of batches, and ``state_dict()`` / ``load_state_dict()``
save and restore the position in that sequence (a checkpoint holds it).
"""
import math
from typing import Any, Dict, NamedTuple, Tuple

import torch

__all__ = ["SeededSource", "FieldPair", "smooth_noise", "PHIFLOW_NOISE_MAX_WAVELENGTH"]

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


class SeededSource:
    """Owns the generator of a data source and saves/restores its state
    (``{"seed": ..., "generator": ...}``, the ``data`` entry of a checkpoint)."""

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
