"""Data of the heat experiment (paper B.4): hot rectangles ``x*``, ``y* = heat(x*, nu_t)``."""
from typing import Optional, Tuple

import torch

from .. import ops
from .base import FieldPair, SeededSource

__all__ = ["HeatData"]


class HeatData(SeededSource):
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
        (with ``part``: only those examples, see :mod:`physgrad.data`)."""
        x_star = self.hot_rectangles(batch_size)
        if part is not None:
            x_star = x_star[part].clone()
        with torch.no_grad():
            y_star = ops.heat(x_star, nu_t=self.nu_t)
        return FieldPair(x_star, y_star)
