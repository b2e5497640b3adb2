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


class Heat(torch.nn.Module):
    """Periodic diffusion (see :func:`physgrad.heat`). x, y: ``[B, ny, nx]`` or ``[B, 1, ny, nx]``."""

    def __init__(self, nu_t: float = 8.0, grad_mode: str = "physical", y_step: float = 1.0,
                 spacing: Tuple[float, float] = (1.0, 1.0), lbfgs_iterations: int = 32,
                 on_failure: str = "raise") -> None:
        super().__init__()
        self.nu_t = nu_t
        self.grad_mode = grad_mode
        self.y_step = y_step
        self.spacing = (float(spacing[0]), float(spacing[1]))
        self.lbfgs_iterations = lbfgs_iterations
        self.on_failure = on_failure

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.physgrad.heat(x, self.nu_t, ops._mode(None, self.grad_mode), self.y_step,
                                    [self.spacing[0], self.spacing[1]], self.lbfgs_iterations, self.on_failure)
        ops._after_forward("heat", self.on_failure)
        return y

    def extra_repr(self) -> str:
        return f"nu_t={self.nu_t}, grad_mode={self.grad_mode!r}"


class Sine(torch.nn.Module):
    """``y = sin(a / x)`` (see :func:`physgrad.sine`); call as ``layer(x, a)``."""

    def __init__(self, grad_mode: str = "physical", y_step: float = 1.0, adjoint_clip: float = 0.0,
                 step_clip: float = 1.0) -> None:
        super().__init__()
        self.grad_mode = grad_mode
        self.y_step = y_step
        self.adjoint_clip = adjoint_clip
        self.step_clip = step_clip

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.ops.physgrad.sine(x, a, ops._mode(None, self.grad_mode), self.y_step, self.adjoint_clip,
                                       self.step_clip)

    def extra_repr(self) -> str:
        return f"grad_mode={self.grad_mode!r}, adjoint_clip={self.adjoint_clip}"


class WavePacket(torch.nn.Module):
    """Wave packets from ``[B, 2]`` (xi0, A) parameters (see :func:`physgrad.wave_packet`)."""

    def __init__(self, grad_mode: str = "newton", y_step: float = 1.0, samples: int = 256,
                 frequency: float = 4.0, sigma: float = 20.0, lbfgs_iterations: int = 32,
                 on_failure: str = "raise") -> None:
        super().__init__()
        self.grad_mode = grad_mode
        self.y_step = y_step
        self.samples = samples
        self.frequency = frequency
        self.sigma = sigma
        self.lbfgs_iterations = lbfgs_iterations
        self.on_failure = on_failure

    def forward(self, params: torch.Tensor) -> torch.Tensor:
        y = torch.ops.physgrad.wave_packet(params, ops._mode(None, self.grad_mode), self.y_step, self.samples,
                                           self.frequency, self.sigma, self.lbfgs_iterations, self.on_failure)
        ops._after_forward("wave_packet", self.on_failure)
        return y


class Fluid(torch.nn.Module):
    """Marker transport by Navier-Stokes flow (see :func:`physgrad.fluid`); call as ``layer(v0, m0)``."""

    def __init__(self, steps: int = 8, dt: float = 0.25, spacing: Tuple[float, float] = (2.0, 2.0),
                 grad_mode: str = "physical", y_step: float = 1.0, pressure_atol: float = 1e-4,
                 pressure_max_iterations: int = 1000, lbfgs_iterations: int = 32,
                 on_failure: str = "raise", energy: str = "total") -> None:
        super().__init__()
        self.steps = steps
        self.dt = dt
        self.spacing = (float(spacing[0]), float(spacing[1]))
        self.grad_mode = grad_mode
        self.y_step = y_step
        self.pressure_atol = pressure_atol
        self.pressure_max_iterations = pressure_max_iterations
        self.lbfgs_iterations = lbfgs_iterations
        self.on_failure = on_failure
        self.energy = energy

    def forward(self, v0: torch.Tensor, m0: torch.Tensor) -> torch.Tensor:
        y = torch.ops.physgrad.fluid(v0, m0, self.steps, self.dt, [self.spacing[0], self.spacing[1]],
                                     ops._mode(None, self.grad_mode), self.y_step, self.pressure_atol,
                                     self.pressure_max_iterations, self.lbfgs_iterations, self.on_failure,
                                     self.energy)
        ops._after_forward("fluid", self.on_failure)
        return y
