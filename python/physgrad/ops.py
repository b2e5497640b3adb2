"""Functional physics ops: thin wrappers of ``torch.ops.physgrad.*``.

Every op takes float32 or float64 CPU tensors with a leading batch dimension,
computes in float64 and returns the input's dtype. ``grad_mode=None`` means the
mode of an enclosing :func:`physgrad.grad_mode` block, else ``"physical"``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import warnings

import torch

from . import modes


@torch.jit.unused
def _eager_mode(grad_mode: Optional[str], module_mode: Optional[str]) -> str:
    return modes.resolve(grad_mode, module_mode)


def _mode(grad_mode: Optional[str], module_mode: Optional[str] = None) -> str:
    if torch.jit.is_scripting():
        # TorchScript has no thread-local override: the explicit or module mode counts.
        if grad_mode is not None:
            return grad_mode
        return module_mode if module_mode is not None else "physical"
    return _eager_mode(grad_mode, module_mode)


@torch.jit.unused
def _warn_unconverged(op: str) -> None:
    stats = solve_stats(op)
    if not stats.all_converged:
        failed = [i for i, ok in enumerate(stats.converged) if not ok]
        warnings.warn(f"physgrad.{op}: the {stats.phase} solve did not converge for samples {failed} "
                      f"({', '.join(stats.reasons[i] for i in failed)}); on_failure='warn' returned the last "
                      f"iterate", RuntimeWarning, stacklevel=3)


def _after_forward(op: str, on_failure: str) -> None:
    """Turns a forward solve's non-convergence into a Python warning (eager mode;
    scripted code reads :func:`solve_stats`)."""
    if on_failure == "warn" and not torch.jit.is_scripting():
        _warn_unconverged(op)


def poisson(x: torch.Tensor, grad_mode: Optional[str] = None, y_step: float = 1.0,
            spacing: Tuple[float, float] = (1.0, 1.0), rtol: float = 1e-10, max_iterations: int = 10000,
            lbfgs_iterations: int = 32, on_failure: str = "raise") -> torch.Tensor:
    """Solves Poisson's equation ``laplace(y) = x`` with zero Dirichlet boundary.

    x: ``[B, ny, nx]`` or ``[B, 1, ny, nx]``, the source on the grid's interior
    nodes (boundary nodes, one spacing outside, are 0). spacing: node spacing
    ``(dy, dx)`` in length units. Returns y of x's shape, in x's units times
    length squared. The solve is PETSc CG to relative tolerance ``rtol``
    (options prefix ``physgrad_poisson_``).

    Backward modes: ``"adjoint"`` (one more solve), ``"physical"`` (``laplace(y_step * g)``,
    no solve), ``"lbfgs"`` (``lbfgs_iterations`` TAO L-BFGS steps). ``on_failure``:
    ``"raise"`` on a solve that does not converge, or ``"warn"`` once and return
    the last iterate (see :func:`solve_stats`).
    """
    y = torch.ops.physgrad.poisson(x, _mode(grad_mode), y_step, [float(spacing[0]), float(spacing[1])],
                                   rtol, max_iterations, lbfgs_iterations, on_failure)
    _after_forward("poisson", on_failure)
    return y


@dataclass
class SolveStats:
    """Per-sample statistics of an op's last solve on this thread.

    phase: ``"forward"``, ``"adjoint"`` or ``"lbfgs"``; iterations, residual_norms,
    converged and reasons (the solver's reason names, e.g. ``"CONVERGED_RTOL"``)
    have one entry per sample.
    """
    phase: str
    iterations: List[int]
    residual_norms: List[float]
    converged: List[bool]
    reasons: List[str]

    @property
    def all_converged(self) -> bool:
        return all(self.converged)


def solve_stats(op: str) -> SolveStats:
    """Statistics of the last solve (forward, adjoint or lbfgs backward) of op ``op`` on this thread."""
    phase, iterations, residuals, converged, reasons = torch.ops.physgrad.solve_stats(op)
    return SolveStats(phase, list(iterations), list(residuals), list(converged), list(reasons))


def set_solver_options(options: str) -> None:
    """Adds PETSc options, e.g. ``"-physgrad_poisson_pc_type gamg"``; they apply to
    solvers created afterwards (physgrad recreates its cached solvers). The
    environment variable ``PETSC_OPTIONS`` is read when PETSc starts."""
    torch.ops.physgrad.set_solver_options(options)


def clear_solver_options() -> None:
    """Removes every PETSc option set so far."""
    torch.ops.physgrad.clear_solver_options()


def library_version() -> str:
    """The version the op library was built as."""
    return torch.ops.physgrad.version()
