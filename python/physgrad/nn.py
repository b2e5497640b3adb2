"""Physics ops as ``torch.nn.Module`` layers with a per-layer ``grad_mode``.

A module's ``grad_mode`` attribute can be changed at any time; inside a
:func:`physgrad.grad_mode` block the block's mode wins (eager mode only).
Modules are scriptable: scripted, they use the attribute.

A module's settings (its constructor arguments: ``grad_mode``, ``spacing``,
``nu_t``, ...) are part of its ``state_dict`` (``get_extra_state``), so
``load_state_dict`` restores them, and its ``repr`` shows them. A
``state_dict`` without them (saved before they were kept) loads too and leaves
the module's settings as they are.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from . import ops

#: the state_dict key of a module's settings (torch's name for extra state)
_EXTRA_STATE = "_extra_state"


class _PhysicsModule(torch.nn.Module):
    """Settings in the state_dict and the repr: ``_settings`` names them."""

    #: the settings' attribute names (no class annotation: TorchScript reads those)
    _settings = ()  # type: Tuple[str, ...]

    def __setattr__(self, name: str, value: Any) -> None:
        # A setting is a number the op reads: a tensor that requires grad there (an
        # nn.Parameter, say) would lose its gradient silently.
        if name in type(self)._settings:
            ops._refuse_grad(value, f"nn.{type(self).__name__}", name)
        super().__setattr__(name, value)

    def get_extra_state(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self._settings}

    def set_extra_state(self, state: Any) -> None:
        where = f"physgrad.nn.{type(self).__name__}.load_state_dict"
        if not isinstance(state, dict):
            raise TypeError(f"{where}: the settings entry must be a dict, got {type(state).__name__}")
        unknown = sorted(set(state) - set(self._settings))
        if unknown:
            raise ValueError(f"{where}: unknown settings {unknown}; this module has "
                             f"{list(self._settings)}")
        values = {}
        for name, value in state.items():
            current = getattr(self, name)
            if isinstance(current, tuple):
                if not (isinstance(value, (tuple, list)) and len(value) == len(current)
                        and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                for v in value)):
                    raise TypeError(f"{where}: setting {name} must be {len(current)} numbers, "
                                    f"got {value!r}")
                value = tuple(float(v) for v in value)
            elif isinstance(current, float):
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise TypeError(f"{where}: setting {name} must be a number, got {value!r}")
                value = float(value)
            elif type(value) is not type(current):
                raise TypeError(f"{where}: setting {name} must be a {type(current).__name__}, "
                                f"got {value!r}")
            values[name] = value
        for name, value in values.items():
            setattr(self, name, value)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, local_metadata: Any, strict: bool,
                              missing_keys: Any, unexpected_keys: Any, error_msgs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if prefix + _EXTRA_STATE not in state_dict and prefix + _EXTRA_STATE in missing_keys:
            missing_keys.remove(prefix + _EXTRA_STATE)  # saved without settings: keep the current

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in self._settings)


class Poisson(_PhysicsModule):
    """``y = laplace^-1 x`` (see :func:`physgrad.poisson`). x, y: ``[B, ny, nx]`` or ``[B, 1, ny, nx]``
    (2-D), ``[B, nz, ny, nx]`` or ``[B, 1, nz, ny, nx]`` (3-D). ``spacing``: one value for every
    axis or one per axis; ``boundary``: one name, or one per axis; ``solver``: "auto", "spectral"
    or "petsc"."""

    _settings = ("grad_mode", "y_step", "spacing", "rtol", "max_iterations", "lbfgs_iterations",
                 "on_failure", "boundary", "solver")

    def __init__(self, grad_mode: str = "physical", y_step: float = 1.0,
                 spacing: Tuple[float, ...] = (1.0, 1.0), rtol: float = 1e-10, max_iterations: int = 10000,
                 lbfgs_iterations: int = 32, on_failure: str = "raise", boundary: str = "dirichlet",
                 solver: str = "auto") -> None:
        super().__init__()
        self.grad_mode = grad_mode
        self.y_step = y_step
        self.spacing = tuple(ops._spacing_values(spacing, "nn.Poisson", 0))
        self.rtol = rtol
        self.max_iterations = max_iterations
        self.lbfgs_iterations = lbfgs_iterations
        self.on_failure = on_failure
        self.boundary = boundary if isinstance(boundary, str) else ",".join(boundary)
        self.solver = solver

    def forward(self, x: torch.Tensor, boundary_values: Optional[torch.Tensor] = None) -> torch.Tensor:
        """boundary_values: prescribed Dirichlet values (see :func:`physgrad.poisson`): the ring grid
        ``[B, ny + 2, nx + 2]`` (``[B, nz + 2, ny + 2, nx + 2]``), or in eager mode also a dict of sides."""
        spacing = torch.jit.annotate(List[float], [])
        for h in self.spacing:
            spacing.append(h)
        mode = ops._mode(None, self.grad_mode)
        if boundary_values is not None:
            x = ops._boundary_lift(x, boundary_values, spacing, self.boundary, mode)
        y = torch.ops.physgrad.poisson(x, mode, self.y_step, spacing, self.rtol, self.max_iterations,
                                       self.lbfgs_iterations, self.on_failure, self.boundary, self.solver)
        ops._after_forward("poisson", self.on_failure)
        return y


class Heat(_PhysicsModule):
    """Diffusion (see :func:`physgrad.heat`). x, y: ``[B, ny, nx]`` or ``[B, 1, ny, nx]`` (2-D),
    ``[B, nz, ny, nx]`` or ``[B, 1, nz, ny, nx]`` (3-D). ``spacing``: one number or ``(dy, dx)``; a
    3-D grid needs equal values (one spacing for every axis); ``boundary``: one name, or one per axis."""

    _settings = ("nu_t", "grad_mode", "y_step", "spacing", "lbfgs_iterations", "on_failure", "boundary",
                 "noise_floor")

    def __init__(self, nu_t: float = 8.0, grad_mode: str = "physical", y_step: float = 1.0,
                 spacing: Tuple[float, float] = (1.0, 1.0), lbfgs_iterations: int = 32,
                 on_failure: str = "raise", boundary: str = "periodic", noise_floor: float = 0.0) -> None:
        super().__init__()
        self.nu_t = nu_t
        self.grad_mode = grad_mode
        self.y_step = y_step
        self.spacing = tuple(ops._spacing_values(spacing, "nn.Heat"))
        self.lbfgs_iterations = lbfgs_iterations
        self.on_failure = on_failure
        self.boundary = boundary if isinstance(boundary, str) else ",".join(boundary)
        self.noise_floor = float(noise_floor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Equal values are one for every axis (also those of a 3-D grid).
        spacing = [self.spacing[0]] if self.spacing[0] == self.spacing[1] else [self.spacing[0], self.spacing[1]]
        y = torch.ops.physgrad.heat(x, self.nu_t, ops._mode(None, self.grad_mode), self.y_step, spacing,
                                    self.lbfgs_iterations, self.on_failure, self.boundary, self.noise_floor)
        ops._after_forward("heat", self.on_failure)
        return y


class Sine(_PhysicsModule):
    """``y = sin(a / x)`` (see :func:`physgrad.sine`); call as ``layer(x, a)``."""

    _settings = ("grad_mode", "y_step", "adjoint_clip", "step_clip")

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


class WavePacket(_PhysicsModule):
    """Wave packets from ``[B, 2]`` (xi0, A) parameters (see :func:`physgrad.wave_packet`)."""

    _settings = ("grad_mode", "y_step", "samples", "frequency", "sigma", "lbfgs_iterations",
                 "on_failure")

    def __init__(self, grad_mode: str = "physical", y_step: float = 1.0, samples: int = 256,
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


class Fluid(_PhysicsModule):
    """Marker transport by Navier-Stokes flow (see :func:`physgrad.fluid`); call as ``layer(v0, m0)``."""

    _settings = ("steps", "dt", "spacing", "grad_mode", "y_step", "pressure_atol",
                 "pressure_max_iterations", "lbfgs_iterations", "on_failure", "energy", "viscosity", "boundary")

    def __init__(self, steps: int = 8, dt: float = 0.25, spacing: Tuple[float, float] = (2.0, 2.0),
                 grad_mode: str = "physical", y_step: float = 1.0, pressure_atol: float = 1e-4,
                 pressure_max_iterations: int = 1000, lbfgs_iterations: int = 32,
                 on_failure: str = "raise", energy: str = "total", viscosity: float = 0.0,
                 boundary: str = "periodic") -> None:
        super().__init__()
        self.steps = steps
        self.dt = dt
        self.spacing = tuple(ops._spacing_values(spacing, "nn.Fluid"))
        self.grad_mode = grad_mode
        self.y_step = y_step
        self.pressure_atol = pressure_atol
        self.pressure_max_iterations = pressure_max_iterations
        self.lbfgs_iterations = lbfgs_iterations
        self.on_failure = on_failure
        self.energy = energy
        self.viscosity = viscosity
        self.boundary = ops._fluid_boundary(boundary)  # "periodic", "free_slip", "no_slip", or "y,x"

    def forward(self, v0: torch.Tensor, m0: torch.Tensor) -> torch.Tensor:
        y = torch.ops.physgrad.fluid(v0, m0, self.steps, self.dt, [self.spacing[0], self.spacing[1]],
                                     ops._mode(None, self.grad_mode), self.y_step, self.pressure_atol,
                                     self.pressure_max_iterations, self.lbfgs_iterations, self.on_failure,
                                     self.energy, self.viscosity, self.boundary)
        ops._after_forward("fluid", self.on_failure)
        return y


class PhysicsLayer(torch.nn.Module):
    """A user op (:class:`physgrad.Op`, or the name of one) as a layer with a per-layer ``grad_mode``.

    ``layer(x)`` is ``op(x)`` with ``grad_mode`` below an enclosing :func:`physgrad.grad_mode`
    block (None: the op's ``default_mode``); ``options`` (``y_step``, ``on_failure``,
    ``lbfgs_iterations``, ...) are passed to every call. x, y: the op's ``[B, ...]``.
    Eager mode only: a user op is Python code, not a TorchScript op.
    """

    def __init__(self, op: object, grad_mode: str | None = None, **options: object) -> None:
        super().__init__()
        from .user_ops import Op, op_info
        if isinstance(op, str):
            info = op_info(op)
            if info.op is None:
                raise ValueError(f"physgrad.nn.PhysicsLayer: {op!r} is a built-in op; use its own module "
                                 f"(physgrad.nn.Poisson, Heat, Sine, WavePacket, Fluid)")
            op = info.op
        if not isinstance(op, Op):
            raise TypeError(f"physgrad.nn.PhysicsLayer: op must be a physgrad.Op or its name, "
                            f"got {type(op).__name__}")
        if grad_mode is not None:
            op._checked_mode(grad_mode, "grad_mode")
        op._merged(op.options, options)
        self.op = op
        self.grad_mode = grad_mode
        self.options = dict(options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.call(x, None, self.grad_mode, **self.options)

    def extra_repr(self) -> str:
        options = "".join(f", {name}={value!r}" for name, value in self.options.items())
        return f"op={self.op.name!r}, grad_mode={self.grad_mode!r}{options}"


#: the op of each physics module (its grad modes are the op's)
_MODULE_OPS = {"Poisson": "poisson", "Heat": "heat", "Sine": "sine", "WavePacket": "wave_packet",
               "Fluid": "fluid"}


def _physics_module_op(module: torch.nn.Module) -> Optional[str]:
    """The op of a physgrad.nn module, eager or scripted; None for other modules."""
    if isinstance(module, torch.jit.ScriptModule):
        # __torch__.physgrad.nn.Poisson, or mangled: __torch__.physgrad.nn.___torch_mangle_3.Poisson
        qualified = module._c._type().qualified_name()
        if qualified.startswith("__torch__.physgrad.nn.") and qualified.rsplit(".", 1)[-1] in _MODULE_OPS:
            return _MODULE_OPS[qualified.rsplit(".", 1)[-1]]
        return None
    if isinstance(module, _PhysicsModule):
        return _MODULE_OPS.get(type(module).__name__)
    return None


def set_grad_mode(model: torch.nn.Module, grad_mode: str, layers: Optional[Sequence[str]] = None) -> List[str]:
    """Sets the ``grad_mode`` of the physgrad modules in ``model``, eager or scripted
    (``torch.jit.script``, ``torch.jit.load``); returns the names of the modules set.

    Scripted models need it: indexing a scripted ``Sequential`` (``scripted[1]``)
    returns the eager module it was scripted from (torch 1.13), whose attribute
    the scripted code never reads; this walks the scripted submodules
    (``named_modules()``) and sets theirs, which ``torch.jit.save`` keeps.
    ``layers``: the names of the modules to set, as ``named_modules()`` gives them
    (``"1"``, ``"physics.0"``); None: every physgrad module. Every mode is checked
    against the modes its module offers before any is set, so an error changes
    nothing."""
    from .user_ops import op_info
    found = []
    for name, module in model.named_modules():
        op = _physics_module_op(module)
        if op is not None:
            found.append((name, module, op_info(op).modes))
        elif isinstance(module, PhysicsLayer):
            found.append((name, module, module.op.modes))
    if layers is not None:
        wanted = [layers] if isinstance(layers, str) else list(layers)
        known = {name: (name, module, modes) for name, module, modes in found}
        missing = [name for name in wanted if name not in known]
        if missing:
            raise ValueError(f"physgrad.nn.set_grad_mode: {missing} are not physgrad modules of this model; "
                             f"its physgrad modules are {[name for name, _, _ in found]}")
        found = [known[name] for name in wanted]
    if not found:
        raise ValueError("physgrad.nn.set_grad_mode: the model has no physgrad module (physgrad.nn.Poisson, "
                         "Heat, Sine, WavePacket, Fluid, PhysicsLayer)")
    for name, module, modes in found:
        if grad_mode not in modes:
            kind = module.original_name if isinstance(module, torch.jit.ScriptModule) else type(module).__name__
            raise ValueError(f"physgrad.nn.set_grad_mode: module {name!r} ({kind}) does not offer grad_mode "
                             f"{grad_mode!r}; it offers {', '.join(map(repr, modes))}")
    for name, module, modes in found:
        module.grad_mode = grad_mode
    return [name for name, _, _ in found]
