"""Data of the Poisson experiment (paper B.3): smooth noise ``x*``, ``y* = poisson(x*)``."""
from typing import Optional, Tuple

import torch

from .. import ops
from .base import PHIFLOW_NOISE_MAX_WAVELENGTH, FieldPair, SeededSource, smooth_noise

__all__ = ["PoissonData"]


class PoissonData(SeededSource):
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
        (with ``part``: only those examples, see :mod:`physgrad.data`)."""
        x_star = smooth_noise(self.generator, batch_size, self.shape, self.power,
                              self.max_wavelength, self.dtype)
        if part is not None:
            x_star = x_star[part].clone()
        with torch.no_grad():
            y_star = ops.poisson(x_star)
        return FieldPair(x_star, y_star)
