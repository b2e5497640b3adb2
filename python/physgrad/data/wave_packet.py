"""Data of the wave-packet experiment (paper B.1): noisy packets and their parameters.

``xi0 ~ U[25.6, 230.4)``, ``A ~ U[1, 4)``, the packet
``A sin(4 xi) exp(-(xi - xi0)^2 / (2 * 20^2))`` at ``xi = 0 .. 255``
(:func:`physgrad.wave_packet`) plus Gaussian noise of std ``noise_std`` on
every sample.
"""
from typing import NamedTuple, Optional

import torch

from .. import ops
from .base import SeededSource

__all__ = ["XI0_RANGE", "AMPLITUDE_RANGE", "INITIAL_GUESS", "SAMPLES", "SIGMA",
           "WavePacketBatch", "WavePacketData"]

XI0_RANGE = (25.6, 230.4)
AMPLITUDE_RANGE = (1.0, 4.0)
#: L-BFGS-B's start and the network's output offset (B.1)
INITIAL_GUESS = (128.0, 2.0)
SAMPLES = 256
SIGMA = 20.0


class WavePacketBatch(NamedTuple):
    """``x_star``: true ``(xi0, A)``, ``[B, 2]``; ``y_star``: the noisy observation, ``[B, 256]``."""
    x_star: torch.Tensor
    y_star: torch.Tensor


class WavePacketData(SeededSource):
    """Endless seeded batches of noisy wave packets (B.1)."""

    def __init__(self, seed: int = 0, noise_std: float = 1.0, dtype: torch.dtype = torch.float32):
        super().__init__(seed)
        self.noise_std = noise_std
        self.dtype = dtype

    def sample(self, batch_size: int, part: Optional[slice] = None) -> WavePacketBatch:
        """Next batch; with ``part`` only those examples (data-parallel training:
        the random numbers are drawn for the whole batch, the packets computed
        for the part)."""
        g, f64 = self.generator, torch.float64
        xi0 = XI0_RANGE[0] + (XI0_RANGE[1] - XI0_RANGE[0]) * torch.rand(batch_size, generator=g, dtype=f64)
        amplitude = AMPLITUDE_RANGE[0] + (AMPLITUDE_RANGE[1] - AMPLITUDE_RANGE[0]) * torch.rand(
            batch_size, generator=g, dtype=f64)
        x_star = torch.stack([xi0, amplitude], 1)
        if part is not None:
            x_star = x_star[part].clone()
        with torch.no_grad():
            clean = ops.wave_packet(x_star, samples=SAMPLES, sigma=SIGMA)
        noise = torch.randn(batch_size, SAMPLES, generator=g, dtype=f64)
        if part is not None:
            noise = noise[part]
        noisy = clean + self.noise_std * noise
        return WavePacketBatch(x_star.to(self.dtype), noisy.to(self.dtype))
