"""Functional physics ops: thin wrappers of ``torch.ops.physgrad.*``.

Every op takes float32 or float64 CPU tensors with a leading batch dimension,
computes in float64 and returns the input's dtype. ``grad_mode=None`` means the
mode of an enclosing :func:`physgrad.grad_mode` block, else ``"physical"``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numbers
import re
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
    """Turns a forward solve's non-convergence into a warning: a RuntimeWarning in
    eager mode; in scripted code (TorchScript, C++) the op library's TORCH_WARN,
    a UserWarning under Python and c10's warning handler (stderr) in C++."""
    if on_failure == "warn":
        if torch.jit.is_scripting():
            torch.ops.physgrad.warn_unconverged(op)
        else:
            _warn_unconverged(op)


@torch.jit.unused
def _refuse_grad(value: Any, op: str, name: str) -> None:
    """A number option given as a tensor (or a sequence holding one) that requires
    grad: the op reads a number, so the gradient would be lost silently."""
    values = value if isinstance(value, (tuple, list)) else (value,)
    if torch.is_grad_enabled() and any(isinstance(v, torch.Tensor) and v.requires_grad for v in values):
        raise ValueError(f"physgrad.{op}: {name} requires grad, but physgrad does not differentiate {name} "
                         f"(the op reads it as a number, and its gradient would be lost); pass a number or "
                         f"{name}.detach()")


@torch.jit.unused
def _option_number(value: float, op: str, name: str) -> float:
    """A number option given in eager mode: a one-element tensor that does not
    require grad is its number; anything else is passed on as it is (the op's
    schema refuses what is not a number)."""
    _refuse_grad(value, op, name)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"physgrad.{op}: {name} must be a number, got a {value.dtype} tensor of shape "
                            f"{list(value.shape)}")
        return float(value.item())
    return value


def _number(value: float, op: str, name: str) -> float:
    """A number option of ``op`` (scripted: typed by TorchScript already)."""
    if torch.jit.is_scripting():
        return value
    return _option_number(value, op, name)


@torch.jit.unused
def _spacing_values(spacing: Any, op: str, dims: int = 2) -> List[float]:
    """A ``spacing`` given in eager mode as ``dims`` floats: one number for every
    axis, or one per axis (a sequence or a 1-D tensor). ``dims = 0``: one number
    is one value, a sequence any number of values (the op checks them against
    its grid)."""
    axes = "(dy, dx)" if dims == 2 else "one per axis"
    _refuse_grad(spacing, op, "spacing")
    if isinstance(spacing, torch.Tensor) and spacing.dim() <= 1:
        spacing = spacing.detach().tolist()
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        return [float(spacing)] * max(dims, 1)
    if isinstance(spacing, (str, bytes, bool, dict, torch.Tensor)) or not hasattr(spacing, "__iter__"):
        raise TypeError(f"physgrad.{op}: spacing must be a number or {axes}, got {type(spacing).__name__} "
                        f"{spacing!r}")
    values = [_option_number(h, op, "spacing") for h in spacing]
    for h in values:
        if isinstance(h, bool) or not isinstance(h, numbers.Real):
            raise TypeError(f"physgrad.{op}: spacing must be a number or {axes} of numbers, got "
                            f"{type(h).__name__} {h!r} in {spacing!r}")
    values = [float(h) for h in values]
    if (dims and len(values) != dims) or not values:
        raise ValueError(f"physgrad.{op}: spacing must be a number or {axes}, got {len(values)} values "
                         f"{spacing!r}")
    return values


def _spacing(spacing: Tuple[float, float], op: str) -> List[float]:
    """``spacing`` of a 2-D op as ``[dy, dx]``; in eager mode one number is both."""
    if torch.jit.is_scripting():
        return [float(spacing[0]), float(spacing[1])]
    return _spacing_values(spacing, op)


@torch.jit.unused
def _eager_spacing(spacing: Tuple[float, float]) -> List[float]:
    """Eager mode: one number, or one per axis (any sequence)."""
    return _spacing_values(spacing, "poisson", 0)


@torch.jit.unused
def _eager_boundary(boundary: str) -> str:
    """Eager mode: a name, or one per axis (any sequence of names)."""
    return boundary if isinstance(boundary, str) else ",".join(boundary)


_SIDES = ("z-", "z+", "y-", "y+", "x-", "x+")


@torch.jit.unused
def _side_conditions(boundary: str, dims: int) -> List[str]:
    """The condition of each side (``_SIDES`` order, the grid's axes) of a boundary
    text, or [] when the text is not valid (the op then says why)."""
    axes = [name.strip() for name in boundary.split(",")]
    if len(axes) == 1:
        axes = axes * dims
    if len(axes) != dims:
        return []
    conditions = []
    for name in axes:
        lower, _, upper = name.partition("/")
        conditions += [lower.strip(), (upper or lower).strip()]
    return conditions


@torch.jit.unused
def _eager_boundary_values(values: Any, x: torch.Tensor, boundary: str) -> torch.Tensor:
    """Eager mode: the ring grid of ``boundary_values`` (see :func:`poisson`) from a
    dict of sides; anything else as it is."""
    dims = _grid_dims(x)
    if not isinstance(values, dict):
        return values
    if dims == 0:
        return torch.empty(0)  # the op names x's wrong shape
    shape = list(x.shape[-dims:])
    sides = _SIDES[6 - 2 * dims:]
    unknown = [side for side in values if side not in sides]
    if unknown:
        raise ValueError(f"physgrad.poisson: boundary_values has no side {unknown[0]!r}; the sides of a "
                         f"{dims}-D grid are {', '.join(repr(s) for s in sides)}")
    conditions = _side_conditions(boundary, dims)
    for side in values if conditions else ():
        condition = conditions[sides.index(side)]
        if condition != "dirichlet":
            raise ValueError(f"physgrad.poisson: boundary_values[{side!r}] is given, but side {side} has the "
                             f"boundary {condition!r}: only Dirichlet sides take values")
    dtype = x.dtype
    for face in values.values():
        if isinstance(face, torch.Tensor):
            dtype = torch.promote_types(dtype, face.dtype)
    ring = torch.zeros([x.shape[0]] + [n + 2 for n in shape], dtype=dtype)
    for side, face in values.items():
        axis = sides.index(side) // 2
        face_shape = [x.shape[0]] + [n for a, n in enumerate(shape) if a != axis]
        index: List[Any] = [slice(None)] + [slice(1, n + 1) for n in shape]
        index[1 + axis] = 0 if side.endswith("-") else shape[axis] + 1
        face = torch.as_tensor(face, dtype=dtype)
        try:
            ring[tuple(index)] = face.expand(face_shape)
        except RuntimeError:
            raise ValueError(f"physgrad.poisson: boundary_values[{side!r}] must be a number or a tensor "
                             f"broadcastable to {face_shape} (batch, then the other axes), got shape "
                             f"{list(face.shape)}") from None
    return ring


def _boundary_lift(x: torch.Tensor, boundary_values: torch.Tensor, spacing: List[float], boundary: str,
                   grad_mode: str) -> torch.Tensor:
    """``x - B g``: the source whose zero-boundary solution has the values g on the Dirichlet sides."""
    values = boundary_values if torch.jit.is_scripting() else _eager_boundary_values(boundary_values, x, boundary)
    if values.dim() >= 1 and x.dim() >= 1 and values.shape[0] == 1 and x.shape[0] > 1:
        values = values.expand([x.shape[0]] + list(values.shape[1:]))  # one ring grid for every sample
    return torch.ops.physgrad.poisson_boundary_lift(x, values, spacing, boundary, grad_mode)


def poisson(x: torch.Tensor, grad_mode: Optional[str] = None, y_step: float = 1.0,
            spacing: Optional[Tuple[float, float]] = None, rtol: float = 1e-10, max_iterations: int = 10000,
            lbfgs_iterations: int = 32, on_failure: str = "raise", boundary: str = "dirichlet",
            solver: str = "auto", boundary_values: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Solves Poisson's equation ``laplace(y) = x`` on a 2-D or 3-D grid.

    x: the source on the grid's nodes, ``[B, ny, nx]`` or ``[B, 1, ny, nx]`` (2-D),
    ``[B, nz, ny, nx]`` (nz > 1) or ``[B, 1, nz, ny, nx]`` (3-D). spacing: node
    spacing in length units, one value for every axis or one per axis
    (``(dy, dx)``, ``(dz, dy, dx)``); default 1. Returns y of x's shape, in x's
    units times length squared (5- or 7-point Laplacian).

    boundary: ``"dirichlet"`` (zero value at boundary nodes one spacing beyond
    the outermost nodes; the default), ``"neumann"`` (zero flux through a wall
    half a spacing beyond them) or ``"periodic"``, for every axis, or one per
    axis in axis order (``("neumann", "periodic")`` or ``"neumann,periodic"``
    for (y, x)), or one per side of an axis, the end before index 0 first
    (``"dirichlet/neumann,periodic"``: Dirichlet below y's first node, Neumann
    beyond its last; periodic only at both ends). Without a Dirichlet side the
    Laplacian has the constants as null space: y is then the zero-mean
    solution, and the mean of x, which no y can produce, is projected away
    (``laplace(y) = x - mean(x)``).

    solver: ``"spectral"`` (FFTW transforms: direct, exact up to rounding, every
    boundary and dimension), ``"petsc"`` (CG to relative tolerance ``rtol``,
    at most ``max_iterations``, options prefix ``physgrad_poisson_``; 2-D
    Dirichlet only) or ``"auto"``: spectral, unless PETSc options with that
    prefix are set (:func:`set_solver_options`, ``PETSC_OPTIONS``) and PETSc
    can solve the problem.

    boundary_values: prescribed values on the boundary nodes of the Dirichlet
    sides (default: zero), ``y = g`` there. Either a dict of sides, ``"x-"``,
    ``"x+"``, ``"y-"``, ``"y+"`` (and ``"z-"``, ``"z+"`` in 3-D), ``-`` the end
    before index 0 and ``+`` the one after the last node, each a number or a
    tensor broadcastable to ``[B, <the other axes>]`` (a missing side is 0); or
    one tensor, the grid with a ring of one node per side, ``[B, ny + 2, nx + 2]``
    (``[B, nz + 2, ny + 2, nx + 2]``; batch 1 is expanded), of which only the
    faces of the Dirichlet sides are read (the interior, edges and corners are
    ignored, and so are the faces of Neumann and periodic sides: a function
    sampled on the whole ring grid can be passed as is). A dict entry for a
    Neumann or periodic side is an error, a NaN or Inf value on a Dirichlet
    face too. The problem is affine: y solves
    ``laplace(y) = x - B g`` with zero values, ``(B g)`` being ``g / h^2`` at the
    nodes next to the boundary. Gradients w.r.t. the values: ``"adjoint"`` mode
    only (``-B^T`` of x's adjoint); in the other modes the inverse solver holds
    them fixed, so values that require grad are an error there. x's gradient
    is the same as without values in every mode.

    Backward modes: ``"adjoint"`` (one more solve), ``"physical"`` (``laplace(y_step * g)``,
    no solve), ``"lbfgs"`` (``lbfgs_iterations`` TAO L-BFGS steps). ``on_failure``:
    ``"raise"`` on a solve that fails (CG not converged; a NaN or Inf input),
    or ``"warn"`` once and return the last iterate (see :func:`solve_stats`).
    """
    if torch.jit.is_scripting():
        spacing_list = [1.0] if spacing is None else [spacing[0], spacing[1]]
        boundary_text = boundary
    else:
        spacing_list = [1.0] if spacing is None else _eager_spacing(spacing)
        boundary_text = _eager_boundary(boundary)
    mode = _mode(grad_mode)
    if boundary_values is not None:
        x = _boundary_lift(x, boundary_values, spacing_list, boundary_text, mode)
    y = torch.ops.physgrad.poisson(x, mode, y_step, spacing_list, rtol, max_iterations, lbfgs_iterations,
                                   on_failure, boundary_text, solver)
    _after_forward("poisson", on_failure)
    return y


_HEAT_SPACING = (1.0, 1.0)


@torch.jit.unused
def _grid_dims(x: torch.Tensor) -> int:
    """Axes of a grid op's input (2 or 3; 0 when the shape is none of the layouts: the op says why)."""
    if x.dim() == 3 or (x.dim() == 4 and x.shape[1] == 1):
        return 2
    return 3 if x.dim() == 4 or (x.dim() == 5 and x.shape[1] == 1) else 0


def heat(x: torch.Tensor, nu_t: float = 8.0, grad_mode: Optional[str] = None, y_step: float = 1.0,
         spacing: Tuple[float, float] = _HEAT_SPACING, lbfgs_iterations: int = 32,
         on_failure: str = "raise", boundary: str = "periodic", noise_floor: float = 0.0) -> torch.Tensor:
    """Diffuses x on a 2-D or 3-D grid: ``y = F^-1(F(x) exp(-|k|^2 nu_t))`` (FFTW3).

    x: ``[B, ny, nx]`` or ``[B, 1, ny, nx]`` (2-D), ``[B, nz, ny, nx]`` (nz > 1) or
    ``[B, 1, nz, ny, nx]`` (3-D), cell values. nu_t: diffusivity times time, in
    length units squared (the paper: 8 on 64x64 unit cells). spacing: cell size,
    one value for every axis or one per axis (``(dy, dx)``, ``(dz, dy, dx)``); default 1.
    Returns y of x's shape.

    boundary: ``"periodic"`` (the default; F the DFT, ``k = 2 pi fftfreq(n, h)``,
    the mean is preserved), ``"dirichlet"`` (zero value at boundary nodes one
    spacing beyond the outermost cells; F the sine transform, DST-I,
    ``k = pi (m+1) / ((n+1) h)``) or ``"neumann"`` (zero flux through a wall half
    a spacing beyond them, the mean is preserved; F the cosine transform, DCT-II,
    ``k = pi m / (n h)``), for every axis, or one per axis in axis order
    (``("dirichlet", "periodic")`` or ``"dirichlet,periodic"``). ``|k|^2`` is the
    continuous Laplacian's eigenvalue of each basis function, so a single mode
    decays by exactly ``exp(-|k|^2 nu_t)``.

    Backward modes: ``"adjoint"`` (the operator is self-adjoint), ``"physical"``
    (the stable probabilistic inverse of the y-space step, paper B.4: frequencies
    that carry signal are un-diffused, those that carry only noise damped),
    ``"lbfgs"`` (``lbfgs_iterations`` TAO L-BFGS steps; the paper uses 32).
    noise_floor: the physical mode's absolute noise per cell (y units, >= 0;
    default 0), besides the noise relative to the step (``1e-6 |dy|``): a step
    whose residual is at rounding level is then judged noise, not signal
    (the authors' single-example script uses ``1e-8``; docs/heat-inverse.md).
    """
    if torch.jit.is_scripting():
        # Equal values are one for every axis (also those of a 3-D grid).
        spacing_list = [spacing[0]] if spacing[0] == spacing[1] else [spacing[0], spacing[1]]
        boundary_text = boundary
    else:
        # The default is 1 for every axis, also of a 3-D grid.
        spacing_list = [1.0] if spacing is _HEAT_SPACING else _spacing_values(spacing, "heat", _grid_dims(x))
        boundary_text = _eager_boundary(boundary)
    y = torch.ops.physgrad.heat(x, _number(nu_t, "heat", "nu_t"), _mode(grad_mode), y_step, spacing_list,
                                lbfgs_iterations, on_failure, boundary_text,
                                _number(noise_floor, "heat", "noise_floor"))
    _after_forward("heat", on_failure)
    return y


def sine(x: torch.Tensor, a: torch.Tensor, grad_mode: Optional[str] = None, y_step: float = 1.0,
         adjoint_clip: float = 0.0, step_clip: float = 1.0) -> torch.Tensor:
    """``y = sin(a / x)`` per element (the paper's single-parameter problem).

    x, a: equal shapes ``[B, ...]``; a must not be 0. Only ``"adjoint"``
    differentiates a: in the other modes a is data, and one that requires grad is
    a ValueError (pass ``a.detach()``). Near ``x = 0`` the op evaluates at ``|x| >= |a| / 1e8`` so
    outputs and gradients stay finite.

    Backward modes, with the y-space target ``t = y - y_step * g``:
    ``"adjoint"`` (``dP/dx * g``, ``dP/dx`` clipped to ``[-adjoint_clip, adjoint_clip]``
    when ``adjoint_clip > 0``), ``"physical"`` (``x - x'`` for the solution ``x'``
    of ``sin(a/x') = t`` nearest to x; the nearest minimum when ``t <= -1``),
    ``"newton"`` (Newton's step towards a minimum, clipped to ``step_clip``),
    ``"inverse_gradient"`` (``(y - t) / dP/dx``, clipped to ``step_clip``).
    """
    return torch.ops.physgrad.sine(x, a, _mode(grad_mode), y_step, adjoint_clip, step_clip)


def sine_nearest_minimum(a: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The minimum of ``sin(a/x)`` (``sin = -1``) nearest to ``x0``, per element
    (the supervised labels of the sin experiment, with ``x0 = 1``)."""
    return torch.ops.physgrad.sine_nearest_minimum(a, x0)


def wave_packet(params: torch.Tensor, grad_mode: Optional[str] = None, y_step: float = 1.0,
                samples: int = 256, frequency: float = 4.0, sigma: float = 20.0, lbfgs_iterations: int = 32,
                on_failure: str = "raise") -> torch.Tensor:
    """A wave packet ``y(xi) = A sin(frequency xi) exp(-(xi - xi0)^2 / (2 sigma^2))``, ``xi = 0 .. samples-1``.

    params: ``[B, 2]`` = (position xi0 in samples, amplitude A). Returns ``[B, samples]``.
    Backward modes: ``"adjoint"``, ``"newton"`` (one damped, safeguarded
    Gauss-Newton step towards ``y - y_step * g``), ``"physical"`` (Gauss-Newton
    iterated to convergence: the op's inverse solver), ``"lbfgs"``.
    """
    y = torch.ops.physgrad.wave_packet(params, _mode(grad_mode), y_step, samples,
                                       _number(frequency, "wave_packet", "frequency"),
                                       _number(sigma, "wave_packet", "sigma"), lbfgs_iterations, on_failure)
    _after_forward("wave_packet", on_failure)
    return y


def wave_packet_fit(target: torch.Tensor, initial: Tuple[float, float] = (128.0, 2.0),
                    lower: Tuple[float, float] = (25.6, 1.0), upper: Tuple[float, float] = (230.4, 4.0),
                    max_iterations: int = 1000, samples: int = 256, frequency: float = 4.0,
                    sigma: float = 20.0, bounded: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fits a wave packet to each row of ``target`` (``[B, samples]``) with L-BFGS
    from ``initial``: the paper's classical baseline. ``bounded=True``: L-BFGS-B
    (PETSc TAO BLMVM) within ``lower``/``upper``; ``bounded=False``: unbounded
    L-BFGS (TAO LMVM; ``lower``/``upper`` ignored), as the paper's baseline ran
    (its fitter "diverges in 0.12% of cases", which bounds would prevent).
    Returns ``(params [B, 2], converged [B] bool)``."""
    return torch.ops.physgrad.wave_packet_fit(target, [float(v) for v in initial], [float(v) for v in lower],
                                              [float(v) for v in upper], max_iterations, samples, frequency,
                                              sigma, bool(bounded))


def _fluid_boundary(boundary: str) -> str:
    """The fluid's ``boundary``; in eager mode also a sequence of names, one per axis (y, x)."""
    if torch.jit.is_scripting():
        return boundary
    return _eager_boundary(boundary)


def fluid(v0: torch.Tensor, m0: torch.Tensor, steps: int = 8, dt: float = 0.25,
          spacing: Tuple[float, float] = (2.0, 2.0), grad_mode: Optional[str] = None, y_step: float = 1.0,
          pressure_atol: float = 1e-4, pressure_max_iterations: int = 1000, lbfgs_iterations: int = 32,
          on_failure: str = "raise", energy: str = "total", viscosity: float = 0.0,
          boundary: str = "periodic") -> torch.Tensor:
    """Transports a marker with incompressible Navier-Stokes flow on a MAC grid (periodic or walled box).

    v0: ``[B, 2, ny, nx]`` initial cell-centred velocity (channel 0: x, channel 1: y),
    length units per time unit; m0: ``[B, ny, nx]`` initial marker. Runs ``steps``
    steps of ``dt``: MacCormack self-advection, pressure projection (PETSc CG to
    ``pressure_atol``), kinetic-energy rescale, MacCormack marker advection.
    spacing: cell size ``(dy, dx)`` (the paper: 64x64 cells of size 2). Returns
    the marker ``m_t``, ``[B, ny, nx]``.

    energy: how each step restores the kinetic energy after the projection:
    ``"total"`` (one factor ``sqrt(E0 / E)`` for the whole field, E the sum of
    squared face velocities: the paper's text, "energy-conserving"),
    ``"per_component"`` (one factor for ``vx`` and one for ``vy``: what the
    authors' code does, since PhiFlow's ``field.mean(velocity ** 2)`` on a
    staggered grid keeps the vector channel) or ``"none"``.

    viscosity: kinematic viscosity nu (length^2 / time, >= 0; default 0, the
    paper's inviscid flow, bitwise the results without the term). nu > 0 adds
    one implicit diffusion step ``v = (1 - nu dt laplace)^-1 v`` (periodic 5-point
    Laplacian of each face component, solved exactly by FFT: stable for any nu
    and dt) after the self-advection, before the projection; it needs
    ``energy="none"`` (the rescale would restore the dissipated energy). The
    adjoint includes the term; the physical mode's reverse run is inviscid
    (reverse diffusion is ill-posed), its forward run not.

    boundary: the box's sides, ``"periodic"`` (the default, the paper's box),
    ``"free_slip"`` or ``"no_slip"`` walls, for both axes or one per axis in the
    order (y, x) (``"free_slip,periodic"`` or ``("free_slip", "periodic")``: walls
    at the bottom and top, periodic in x). Walls stop the flow through them
    (the projection is Neumann there); free-slip lets the velocity slide along
    them, no-slip holds it at zero on them; the marker cannot cross them. The
    physical mode fits no uniform flow across walls (a closed box has none) and
    measures centres by the plain mean along walled axes (see the user guide).

    Backward modes: ``"adjoint"`` (the discrete adjoint, gradients for v0 and m0),
    ``"physical"`` (reverse-simulation estimate of v0, paper B.5), ``"lbfgs"``.
    Only the adjoint differentiates m0: in the other modes m0 is data, and one
    that requires grad is a ValueError (pass ``m0.detach()``).
    """
    y = torch.ops.physgrad.fluid(v0, m0, steps, _number(dt, "fluid", "dt"), _spacing(spacing, "fluid"),
                                 _mode(grad_mode), y_step, pressure_atol, pressure_max_iterations,
                                 lbfgs_iterations, on_failure, energy,
                                 _number(viscosity, "fluid", "viscosity"), _fluid_boundary(boundary))
    _after_forward("fluid", on_failure)
    return y


def fluid_sequence(v0: torch.Tensor, m0: torch.Tensor, steps: int = 8, dt: float = 0.25,
                   spacing: Tuple[float, float] = (2.0, 2.0), pressure_atol: float = 1e-4,
                   pressure_max_iterations: int = 1000, energy: str = "total",
                   viscosity: float = 0.0, boundary: str = "periodic") -> Tuple[torch.Tensor, torch.Tensor]:
    """Every state of the run :func:`fluid` makes, for plots (not differentiable).

    v0: ``[B, 2, ny, nx]`` initial cell-centred velocity (channel 0: x, channel 1: y),
    length units per time unit; m0: ``[B, ny, nx]`` or ``[B, 1, ny, nx]`` initial marker;
    the other arguments as in :func:`fluid`. Returns ``(markers, velocities)``:
    markers ``[B, steps + 1, ny, nx]`` and velocities ``[B, steps + 1, 2, ny, nx]``,
    state k at time ``k * dt`` (state 0: m0 and the projected, divergence-free v0;
    ``markers[:, -1]`` is ``fluid(v0, m0)``). The simulation keeps the velocity on
    the staggered grid; the returned one is resampled to the cell centres (the
    mean of the two faces of each cell). In v0's dtype.
    """
    return torch.ops.physgrad.fluid_sequence(v0, m0, steps, dt, _spacing(spacing, "fluid_sequence"),
                                             pressure_atol, pressure_max_iterations, energy,
                                             _number(viscosity, "fluid_sequence", "viscosity"),
                                             _fluid_boundary(boundary))


def fluid_centre_of_mass(marker: torch.Tensor, spacing: Tuple[float, float] = (2.0, 2.0),
                         boundary: str = "periodic") -> torch.Tensor:
    """The centre of mass ``[B, 2]`` (x, y, length units in ``[0, L)``) of markers
    ``[B, ny, nx]``, as the fluid's physical inverse computes it (cphys): the circular
    mean along a periodic axis (the box centre where a marker has no first Fourier
    component), the plain mean along an axis between walls (``boundary`` as in
    :func:`fluid`).  Not differentiable."""
    return torch.ops.physgrad.fluid_centre_of_mass(marker, _spacing(spacing, "fluid_centre_of_mass"),
                                                   _fluid_boundary(boundary))


def fluid_unit_vortex(shape: Tuple[int, int], spacing: Tuple[float, float] = (2.0, 2.0)) -> torch.Tensor:
    """The fluid's physical-inverse unit vortex at the cell centres, ``[2, ny, nx]``
    float64 (cphys: Gaussian falloff of sigma 20 about the box centre, counter-clockwise)."""
    return torch.ops.physgrad.fluid_unit_vortex(int(shape[0]), int(shape[1]),
                                                _spacing(spacing, "fluid_unit_vortex"))


@dataclass
class SolveStats:
    """Per-sample statistics of an op's last solve on this thread.

    phase: ``"forward"``, ``"adjoint"``, ``"physical"``, ``"newton"``, ``"lbfgs"`` or ``"fit"``;
    iterations, residual_norms, converged and reasons (the solver's reason names, e.g. ``"CONVERGED_RTOL"``)
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


def solver_option_prefixes() -> Tuple[str, ...]:
    """The options prefixes of the PETSc objects of every declared op (each op's
    ``OpDescriptor``: ``physgrad_<op>_``, its ``lbfgs`` mode under
    ``physgrad_<op>_lbfgs_``), the ops of loaded extensions included. An option
    under none of them configures no solver."""
    read = torch.ops.physgrad.op_catalog()[5]
    return tuple(sorted({prefix for prefixes in read for prefix in prefixes.split(",") if prefix}))


#: the built-in ops' options prefixes (:func:`solver_option_prefixes` at import)
SOLVER_OPTION_PREFIXES = solver_option_prefixes()


@torch.jit.unused
def _options_for_no_solver(options: str) -> List[str]:
    """The option names in ``options`` (PETSc's rules: ``-`` or ``--`` and a letter;
    ``-prefix_push``/``-prefix_pop``) that start like a physgrad prefix
    (``physgrad``) or a PETSc solver option (``ksp_``, ``pc_``, ``tao_``) but lie
    under none of :func:`solver_option_prefixes`."""
    known = solver_option_prefixes()
    found, prefixes, tokens = [], [""], options.split()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if not re.match(r"--?[A-Za-z]", token) or re.match(r"--?(inf|infinity|nan)\b", token, re.I):
            continue
        name = token.lstrip("-").lower()
        if name in ("prefix_push", "options_file", "options_file_yaml", "options_string_yaml"):
            if name == "prefix_push" and index < len(tokens):
                prefixes.append(prefixes[-1] + tokens[index].lower())
            index += 1
            continue
        if name == "prefix_pop":
            prefixes = prefixes[:-1] or [""]
            continue
        name = prefixes[-1] + name
        if (name.startswith(("physgrad", "ksp_", "pc_", "tao_"))
                and not name.startswith(known)):
            found.append("-" + name)
    return found


def set_solver_options(options: str) -> None:
    """Adds PETSc options, e.g. ``"-physgrad_poisson_pc_type gamg"``; they apply to
    solvers created afterwards (physgrad recreates its cached solvers). The
    environment variable ``PETSC_OPTIONS`` is read when PETSc starts.

    A call sets all of its options or, raising, none. A name under none of
    physgrad's prefixes (:func:`solver_option_prefixes`) that looks meant for
    one (``-physgrad_poison_pc_type``, an unprefixed ``-ksp_type``) gives a
    UserWarning; :func:`unused_solver_options` lists every option no solver has
    read. PETSc 3.18 holds at most 512 option names: a call that would add more
    is a ValueError (:func:`clear_solver_options` removes them all)."""
    torch.ops.physgrad.set_solver_options(options)
    _warn_options_for_no_solver(options)


@torch.jit.unused
def _warn_options_for_no_solver(options: str) -> None:
    names = _options_for_no_solver(options)
    if names:
        warnings.warn(f"physgrad.set_solver_options: {', '.join(names)} configure no physgrad solver: "
                      f"physgrad's solvers read options under the prefixes "
                      f"{', '.join('-' + p for p in solver_option_prefixes())} (a misspelt prefix?); "
                      f"see physgrad.unused_solver_options()", UserWarning, stacklevel=3)


def unused_solver_options() -> List[str]:
    """The options (``"-name"``) in PETSc's database that no solver has read so far:
    a misspelt name or prefix, an option of a solver that ignores it, or one
    for a solver not created yet (physgrad creates its solvers at an op's
    first call with a configuration, and again after the options change). Call
    it after the ops ran."""
    return list(torch.ops.physgrad.unused_solver_options())


def clear_solver_options() -> None:
    """Removes every PETSc option set so far."""
    torch.ops.physgrad.clear_solver_options()


def set_cache_limit(limit: int) -> None:
    """Keep at most ``limit`` solver objects per op (default 16): each new
    configuration (grid, spacing, tolerance, ``nu_t``, ...) creates an object
    (for Poisson a sparse Cholesky factor, ~6.5 MB at 128x128) and, beyond the
    limit, the least recently used one is dropped (an object still in use by a
    call lives until that call returns)."""
    torch.ops.physgrad.set_cache_limit(int(limit))


def cache_info() -> Tuple[int, int]:
    """``(limit, objects)``: the per-op limit of :func:`set_cache_limit` and the
    solver objects all ops hold now."""
    limit, objects = torch.ops.physgrad.cache_info()
    return int(limit), int(objects)


def library_version() -> str:
    """The version the op library was built as."""
    return torch.ops.physgrad.version()
