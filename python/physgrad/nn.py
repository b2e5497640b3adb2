"""Physics ops as ``torch.nn.Module`` layers with a per-layer ``grad_mode``.

A module's ``grad_mode`` attribute can be changed at any time; inside a
:func:`physgrad.grad_mode` block the block's mode wins (eager mode only).
Modules are scriptable: scripted, they use the attribute.
"""
from __future__ import annotations

from typing import Tuple

import torch

from . import ops


class Poisson(torch.nn.Module):
    """``y = laplace^-1 x`` (see :func:`physgrad.poisson`). x, y: ``[B, ny, nx]`` or ``[B, 1, ny, nx]``."""

    def __init__(self, grad_mode: str = "physical", y_step: float = 1.0,
                 spacing: Tuple[float, float] = (1.0, 1.0), rtol: float = 1e-10, max_iterations: int = 10000,
                 lbfgs_iterations: int = 32, on_failure: str = "raise") -> None:
        super().__init__()
        self.grad_mode = grad_mode
        self.y_step = y_step
        self.spacing = (float(spacing[0]), float(spacing[1]))
        self.rtol = rtol
        self.max_iterations = max_iterations
        self.lbfgs_iterations = lbfgs_iterations
        self.on_failure = on_failure

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.physgrad.poisson(x, ops._mode(None, self.grad_mode), self.y_step,
                                       [self.spacing[0], self.spacing[1]], self.rtol,
                                       self.max_iterations, self.lbfgs_iterations, self.on_failure)
        ops._after_forward("poisson", self.on_failure)
        return y

    def extra_repr(self) -> str:
        return f"grad_mode={self.grad_mode!r}, spacing={self.spacing}"
