"""Data of the single-parameter experiment (paper B.2): ``a ~ U[0.1, 10.1)`` and
the supervised label, the minimum of ``sin(a/x)`` nearest to ``x0 = 1``."""
from typing import NamedTuple, Optional

import torch

from .. import ops
from .base import SeededSource

__all__ = ["A_RANGE", "SUPERVISED_GUESS", "SinBatch", "SinData"]

#: the range of a (paper: a in [0.1, 10.1))
A_RANGE = (0.1, 10.1)
#: the supervised labels are the minimum nearest to this guess (paper B.2)
SUPERVISED_GUESS = 1.0


class SinBatch(NamedTuple):
    """One batch: the given ``a`` and the supervised label ``x_star`` (the
    minimum of ``sin(a/x)`` nearest to ``x0 = 1``), both ``[B]``."""
    a: torch.Tensor
    x_star: torch.Tensor


class SinData(SeededSource):
    """Endless seeded batches of ``a ~ U[low, high)`` (float32) with their labels."""

    def __init__(self, seed: int = 0, a_range=A_RANGE, dtype: torch.dtype = torch.float32):
        super().__init__(seed)
        self.a_range = tuple(a_range)
        self.dtype = dtype

    def sample(self, batch_size: int, part: Optional[slice] = None) -> SinBatch:
        """Next batch; with ``part`` only those examples (data-parallel training)."""
        low, high = self.a_range
        a = (low + (high - low) * torch.rand(batch_size, generator=self.generator,
                                             dtype=torch.float64)).to(self.dtype)
        if part is not None:
            a = a[part].clone()
        guess = torch.full((a.shape[0],), SUPERVISED_GUESS, dtype=torch.float64)
        x_star = ops.sine_nearest_minimum(a.double(), guess)
        return SinBatch(a, x_star.to(self.dtype))
