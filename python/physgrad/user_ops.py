"""Your own physics as a physgrad op: a batched torch forward, optionally an inverse and an adjoint.

::

    blur = physgrad.Op("blur", forward=my_forward, inverse=my_inverse)
    y = blur(x, grad_mode="physical")
    physgrad.op_info("blur").modes        # ('adjoint', 'physical', 'newton', 'lbfgs')

``forward(x) -> y`` is torch code on a batch: x ``[B, ...]``, y ``[B, ...]``, and
sample b of y depends on sample b of x only. The op's backward receives
``g = dL/dy`` and returns, by grad mode (the contract of the built-in ops), with
the y-space target ``t = y - y_step * g`` and per sample ``f(x') = 1/2 ||P(x') - t||^2``:

- ``"adjoint"``: ``J(x)^T g``: ``adjoint(x, y, g)`` when given, else torch autograd of forward;
- ``"physical"`` (only with an inverse): ``x - inverse(t, x)``, the inverse started at x;
- ``"newton"`` (also spelled ``"gauss_newton"``): ``x - x_1``, one damped Gauss-Newton
  (Levenberg-Marquardt) step ``x_1 = x - d``, ``(J^T J + lambda I) d = J^T (y - t)``, solved by
  CG on the products ``J^T (J v)`` (autograd; ``J v`` by the double-backward trick). lambda
  starts at ``newton_damping * mu``, mu the Rayleigh quotient ``|J b|^2 / |b|^2`` of ``J^T J``
  along ``b = J^T (y - t)``, and grows tenfold (from ``1e-11 mu`` when 0) until
  ``f(x_1) < f(x)``, at most 12 tries, as the wave packet's Gauss-Newton does;
- ``"lbfgs"``: ``x - x_n``, ``n = lbfgs_iterations`` L-BFGS iterations on f per sample from x
  (history 10, Armijo backtracking by quadratic interpolation from step 1, the first
  step at most of length 1), batched: every sample follows the iterates it would follow alone.

Every mode records per-sample statistics (:func:`solve_stats`, the built-ins'
:class:`~physgrad.ops.SolveStats`) and follows ``on_failure`` for a failed sample:
a non-finite forward output, adjoint, inverse output or Gauss-Newton gradient, or a
Gauss-Newton CG solve that does not reach ``cg_rtol`` in ``cg_max_iterations``.
``"raise"`` (default): a RuntimeError naming the samples; ``"warn"``: a
RuntimeWarning; ``"ignore"``: nothing; with ``"warn"`` and ``"ignore"`` a failed
sample's gradient is 0 (its start is kept), a CG budget's last iterate is used.
As for the built-ins, the budgets of minimizers are not failures (an L-BFGS sample
that uses its n iterations, a Gauss-Newton step that cannot lower f), and
non-finite data (x, the incoming gradient) is an error whatever ``on_failure`` says.

Only x is differentiated: tensors the forward closes over are constants. The
backward is not differentiable again (double backward is refused). Eager mode only.
The modes' code is in :mod:`physgrad.user_modes`; this module holds the op, its
options and checks, and the registry of op names shared with the built-ins.
"""
from __future__ import annotations

import inspect
import math
import threading
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from torch.autograd.function import once_differentiable

from . import modes as _modes
from . import ops
from .ops import SolveStats
from .user_modes import BACKWARDS, Report, finite_samples, first_non_finite, recorded

__all__ = ["Op", "OpInfo", "op_info", "registered_ops", "unregister_op", "solve_stats"]

ON_FAILURE = ("raise", "warn", "ignore")
_MODE_ORDER = ("adjoint", "physical", "newton", "lbfgs")
_ALIASES = {"gauss_newton": "newton"}


@dataclass(frozen=True)
class OpInfo:
    """What :func:`op_info` tells about an op: its ``name``, the grad ``modes`` it
    offers (empty: not differentiable), the ``default_mode`` of a call that names
    none (None: not differentiable), the first paragraph of its ``doc``, whether it
    is ``builtin``, for a user op the :class:`Op` itself, and for an op of the op
    library or of a C/C++ extension its ``namespace`` (``"physgrad"`` for the
    built-ins), ``options_prefix`` (``"physgrad_<op>_"``; "" none) and the
    ``options_prefixes`` its PETSc solvers read (the prefix and/or
    ``"<prefix>lbfgs_"``)."""
    name: str
    modes: Tuple[str, ...]
    default_mode: Optional[str]
    doc: str
    builtin: bool
    op: Optional["Op"] = None
    namespace: Optional[str] = None
    options_prefix: str = ""
    options_prefixes: Tuple[str, ...] = ()


def _first_paragraph(text: Optional[str]) -> str:
    return inspect.cleandoc(text or "").split("\n\n")[0].replace("\n", " ")


def _schema_default(qualified: str, argument: str) -> Any:
    """The default of ``argument`` in the schema of the library op ``qualified`` ("ns::name")."""
    for schema in torch._C._jit_get_schemas_for_operator(qualified):
        for declared in schema.arguments:
            if declared.name == argument:
                return declared.default_value
    return None


_declared_cache: Dict[Tuple[str, ...], Dict[str, OpInfo]] = {}


def _declared_ops() -> Dict[str, OpInfo]:
    """The ops declared in C++ (each by one ``OpDescriptor``, torch_ops/): the built-ins
    by name, the ops of extensions loaded with :func:`physgrad.load_library` as
    ``"namespace::name"``. Modes, default mode and options prefix come from the
    declaration; a built-in's doc from its Python function."""
    names, schemas, _, offered, prefixes, read = torch.ops.physgrad.op_catalog()
    key = tuple(names)
    cached = _declared_cache.get(key)
    if cached is not None:
        return cached
    found: Dict[str, OpInfo] = {}
    for qualified, schema, modes_text, prefix, read_text in zip(names, schemas, offered, prefixes, read):
        namespace, name = qualified.split("::", 1)
        builtin = namespace == "physgrad"
        modes = tuple(modes_text.split(",")) if modes_text else ()
        default = _schema_default(qualified, "grad_mode") if modes else None
        function = getattr(ops, name, None) if builtin else None
        doc = _first_paragraph(function.__doc__) if function is not None else schema
        found[name if builtin else qualified] = OpInfo(name if builtin else qualified, modes, default, doc,
                                                       builtin, None, namespace, prefix,
                                                       tuple(p for p in read_text.split(",") if p))
    _declared_cache.clear()
    _declared_cache[key] = found
    return found


_registry: Dict[str, OpInfo] = {}  # the user ops (physgrad.Op)
_registry_lock = threading.Lock()


def op_info(name: str) -> OpInfo:
    """The :class:`OpInfo` of the built-in, extension (``"namespace::name"``) or user op
    ``name``; a ValueError lists the known names."""
    declared = _declared_ops()
    with _registry_lock:
        info = declared.get(name) or _registry.get(name)
        known = sorted(set(declared) | set(_registry))
    if info is None:
        raise ValueError(f"physgrad.op_info: no op named {name!r}; the ops are {', '.join(known)}")
    return info


def registered_ops() -> Tuple[str, ...]:
    """The names of every op, built-in, extension and user, sorted."""
    declared = _declared_ops()
    with _registry_lock:
        return tuple(sorted(set(declared) | set(_registry)))


def unregister_op(name: str) -> None:
    """Removes the user op ``name`` (for tests and notebooks that define an op again).
    Built-in and extension ops cannot be removed; an unknown name is a ValueError."""
    declared = _declared_ops()
    with _registry_lock:
        if name in declared:
            kind = "a built-in op" if declared[name].builtin else "an extension op"
            raise ValueError(f"physgrad.unregister_op: {name!r} is {kind} and cannot be removed")
        if name not in _registry:
            raise ValueError(f"physgrad.unregister_op: no op named {name!r} is registered")
        del _registry[name]


def solve_stats(op: str) -> SolveStats:
    """Statistics of op ``op``'s last solve (forward or backward) on this thread, per sample;
    built-in and user ops. For a user op the phase is the forward or the grad mode
    (``"adjoint"``, ``"physical"``, ``"newton"``, ``"lbfgs"``), and per sample:
    ``iterations`` (inverse calls, CG iterations, L-BFGS steps), ``residual_norms``
    (``|P(x') - t|`` after the step; 0 for forward and adjoint), ``converged`` and ``reasons``."""
    with _registry_lock:
        info = _registry.get(op)
    if info is None:
        return ops.solve_stats(op)
    last = recorded(op)
    if last is None or last[0] is not info.op:
        raise ValueError(f"physgrad.solve_stats: no solve of op {op!r} has run on this thread yet")
    return last[1]


@dataclass(frozen=True)
class _Options:
    y_step: float = 1.0
    on_failure: str = "raise"
    lbfgs_iterations: int = 32
    newton_damping: float = 0.0
    cg_rtol: Optional[float] = None
    cg_max_iterations: int = 200


_OPTION_NAMES = tuple(_Options.__dataclass_fields__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_options(name: str, o: _Options) -> _Options:
    def fail(text: str) -> None:
        raise ValueError(f"physgrad.{name}: {text}")
    if not (isinstance(o.y_step, (int, float)) and math.isfinite(o.y_step)):
        fail(f"y_step must be a finite number, got {o.y_step!r}")
    if o.on_failure not in ON_FAILURE:
        fail(f"on_failure must be 'raise', 'warn' or 'ignore', got {o.on_failure!r}")
    if not (_is_int(o.lbfgs_iterations) and o.lbfgs_iterations >= 1):
        fail(f"lbfgs_iterations must be an integer >= 1, got {o.lbfgs_iterations!r}")
    if not (isinstance(o.newton_damping, (int, float)) and math.isfinite(o.newton_damping)
            and o.newton_damping >= 0):
        fail(f"newton_damping must be >= 0 and finite, got {o.newton_damping!r}")
    if o.cg_rtol is not None and not (isinstance(o.cg_rtol, (int, float)) and 0 < o.cg_rtol < 1):
        fail(f"cg_rtol must be in (0, 1) or None, got {o.cg_rtol!r}")
    if not (_is_int(o.cg_max_iterations) and o.cg_max_iterations >= 1):
        fail(f"cg_max_iterations must be an integer >= 1, got {o.cg_max_iterations!r}")
    return o


class _UserOpFunction(torch.autograd.Function):
    """``y = op.forward(x)`` with the backward of the grad mode chosen at the call."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, op: "Op", mode: str, options: _Options) -> torch.Tensor:
        ctx.op, ctx.mode, ctx.options, ctx.graph = op, mode, options, None
        if mode in ("newton",) or (mode == "adjoint" and op.adjoint_function is None):
            # The graph at x is kept for the backward's Jacobian products (no second forward).
            with torch.enable_grad():
                x_graph = x.detach().requires_grad_()
                y_graph = op._forward(x_graph)
            ctx.graph = (x_graph, y_graph)
            y = y_graph.detach()
        else:
            y = op._forward(x)
        if y.data_ptr() == x.data_ptr():
            y = y.clone()
        op._forward_report(y, options)
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        x, y = ctx.saved_tensors
        op = ctx.op
        bad = first_non_finite(g, "grad_y")
        if bad is not None:
            raise RuntimeError(f"physgrad.{op.name}: {bad} is not finite")
        dx = BACKWARDS[ctx.mode](op, x, y, g.to(y.dtype), ctx.graph, ctx.options)
        return dx, None, None, None


class Op:
    """A physics op from torch code, registered under ``name`` as the built-ins are.

    Args:
        name: the op's name in messages, :func:`op_info` and :func:`solve_stats`;
            a name already registered (the built-ins' included) is a ValueError.
        forward: ``forward(x) -> y``, batched torch code, ``x [B, ...] -> y [B, ...]``,
            sample b of y from sample b of x only.
        inverse: optional ``inverse(t, x) -> x'`` (or ``inverse(t)``): per sample the input
            whose output is the y-space target ``t`` (``[B, ...]`` like y), started at x;
            returns a tensor of x's shape and dtype. Offers ``"physical"``.
        adjoint: optional ``adjoint(x, y, g) -> J(x)^T g`` (x's shape and dtype); without it
            ``"adjoint"`` is torch autograd of forward.
        doc: a description (default: the first paragraph of forward's docstring).
        modes: restrict the modes offered (e.g. a forward that is not torch-differentiable
            but has an inverse and an adjoint offers ``("adjoint", "physical")``).
        default_mode: the mode of a call that names none outside any
            :func:`physgrad.grad_mode` block: ``"physical"`` when offered, else ``"adjoint"``.
        options: call defaults, each overridable per call: ``y_step`` (1.0), ``on_failure``
            (``"raise"``, ``"warn"``, ``"ignore"``), ``lbfgs_iterations`` (32),
            ``newton_damping`` (0.0: a plain Gauss-Newton first try), ``cg_rtol`` (None:
            1e-10 in float64, 1e-5 otherwise), ``cg_max_iterations`` (200).

    Call ``op(x, grad_mode=None, **options)``; precedence of the mode: the argument, an
    enclosing ``physgrad.grad_mode(...)`` block, a :class:`physgrad.nn.PhysicsLayer`'s
    attribute, ``default_mode``. Computation is in x's dtype and on x's device.
    """

    def __init__(self, name: str, forward: Callable[[torch.Tensor], torch.Tensor],
                 inverse: Optional[Callable[..., torch.Tensor]] = None,
                 adjoint: Optional[Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = None, *,
                 doc: Optional[str] = None, modes: Optional[Sequence[str]] = None,
                 default_mode: Optional[str] = None, **options: Any) -> None:
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"physgrad.Op: name must be a non-empty string without surrounding blanks, "
                             f"got {name!r}")
        for argument, function in (("forward", forward), ("inverse", inverse), ("adjoint", adjoint)):
            if function is not None and not callable(function):
                raise TypeError(f"physgrad.Op {name!r}: {argument} must be callable, got {type(function).__name__}")
        if forward is None:
            raise TypeError(f"physgrad.Op {name!r}: forward is required")
        self.name = name
        self.forward_function, self.inverse_function, self.adjoint_function = forward, inverse, adjoint
        available = tuple(m for m in _MODE_ORDER if m != "physical" or inverse is not None)
        if modes is None:
            offered = available
        else:
            requested = [_ALIASES.get(m, m) for m in modes]
            for m in requested:
                if m not in available:
                    why = " ('physical' needs an inverse)" if m == "physical" else ""
                    raise ValueError(f"physgrad.Op {name!r}: modes: {m!r} is not available{why}; the available "
                                     f"modes are {', '.join(available)}")
            offered = tuple(m for m in _MODE_ORDER if m in requested)
            if not offered:
                raise ValueError(f"physgrad.Op {name!r}: modes is empty")
        self.modes: Tuple[str, ...] = offered
        if default_mode is None:
            default_mode = next((m for m in ("physical", "adjoint") if m in offered), offered[0])
        self.default_mode = self._checked_mode(default_mode, "default_mode")
        self.doc = _first_paragraph(doc if doc is not None else getattr(forward, "__doc__", None))
        self.options = self._merged(_Options(), options)
        self._inverse_takes_start = self._takes_two_arguments(inverse) if inverse is not None else True
        declared = _declared_ops()
        with _registry_lock:
            existing = declared.get(name) or _registry.get(name)
            if existing is not None:
                kind = ("a built-in op" if existing.builtin else "an extension op" if existing.op is None
                        else "already registered")
                raise ValueError(f"physgrad.Op: the name {name!r} is {kind}; choose another name"
                                 + ("" if existing.op is None else f" or call physgrad.unregister_op({name!r}) first"))
            _registry[name] = OpInfo(name, self.modes, self.default_mode, self.doc, False, self)

    @property
    def info(self) -> OpInfo:
        return OpInfo(self.name, self.modes, self.default_mode, self.doc, False, self)

    def __repr__(self) -> str:
        return f"physgrad.Op({self.name!r}, modes={self.modes}, default_mode={self.default_mode!r})"

    def __call__(self, x: torch.Tensor, grad_mode: Optional[str] = None, **options: Any) -> torch.Tensor:
        """``y = forward(x)`` with the backward of ``grad_mode`` (None: the enclosing
        ``physgrad.grad_mode`` block, else the op's default); options as in the class doc."""
        return self.call(x, grad_mode, None, **options)

    def call(self, x: torch.Tensor, grad_mode: Optional[str] = None, module_mode: Optional[str] = None,
             **options: Any) -> torch.Tensor:
        """As ``op(x, grad_mode)``, with a module's mode ``module_mode`` below an enclosing block's."""
        o = self._merged(self.options, options)
        fallback = module_mode if module_mode is not None else self.default_mode
        mode = self._checked_mode(_modes.resolve(grad_mode, fallback), "grad_mode")
        self._check_input(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return _UserOpFunction.apply(x, self, mode, o)
        with torch.no_grad():
            y = self._forward(x)
        self._forward_report(y, o)
        return y

    # ---- checks -----------------------------------------------------------------------------

    def _checked_mode(self, mode: Any, argument: str) -> str:
        normal = _ALIASES.get(mode, mode) if isinstance(mode, str) else mode
        if normal not in self.modes:
            offered = ", ".join(f"'{m}'" for m in self.modes)
            hint = ""
            if normal == "physical" and self.inverse_function is None:
                hint = " ('physical' needs an inverse: physgrad.Op(..., inverse=...))"
            raise ValueError(f"physgrad.{self.name}: unknown {argument} {mode!r}; this op offers {offered}{hint}")
        return normal

    def _merged(self, base: _Options, options: Dict[str, Any]) -> _Options:
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise TypeError(f"physgrad.{self.name}: unknown option(s) {', '.join(unknown)}; the options are "
                            f"{', '.join(_OPTION_NAMES)}")
        return _check_options(self.name, replace(base, **options)) if options else base

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"physgrad.{self.name}: x must be a tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"physgrad.{self.name}: x must be a floating-point tensor, got {x.dtype}")
        if x.dim() < 1:
            raise ValueError(f"physgrad.{self.name}: x must have a batch dimension [B, ...], got a 0-d tensor")
        bad = first_non_finite(x.detach(), "x")
        if bad is not None:
            raise RuntimeError(f"physgrad.{self.name}: {bad} is not finite")

    def _checked(self, result: Any, x: torch.Tensor, what: str) -> torch.Tensor:
        """An inverse's or adjoint's result: a tensor of x's shape and dtype."""
        if not isinstance(result, torch.Tensor):
            raise TypeError(f"physgrad.{self.name}: {what} must return a tensor, got {type(result).__name__}")
        if result.shape != x.shape:
            raise ValueError(f"physgrad.{self.name}: {what} returned shape {list(result.shape)}, but x has shape "
                             f"{list(x.shape)}")
        if result.dtype != x.dtype:
            raise TypeError(f"physgrad.{self.name}: {what} returned dtype {result.dtype}, but x has dtype {x.dtype}")
        return result.detach()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.forward_function(x)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"physgrad.{self.name}: forward must return a tensor, got {type(y).__name__}")
        if not y.is_floating_point():
            raise TypeError(f"physgrad.{self.name}: forward must return a floating-point tensor, got {y.dtype}")
        if y.dim() < 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"physgrad.{self.name}: forward returned shape {list(y.shape)} for x of shape "
                             f"{list(x.shape)}; its first dimension must be the batch ({x.shape[0]})")
        return y

    def _forward_report(self, y: torch.Tensor, o: _Options) -> None:
        report = Report(y.shape[0], "forward")
        for i in (~finite_samples(y.detach())).nonzero().flatten().tolist():
            report.set(i, "DIVERGED_NANORINF", False)
        report.finish(self, o.on_failure, "returned a non-finite value")

    @staticmethod
    def _takes_two_arguments(function: Callable[..., Any]) -> bool:
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            return True
        positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters)

    def _call_inverse(self, target: torch.Tensor, x: torch.Tensor) -> Any:
        if self._inverse_takes_start:
            return self.inverse_function(target, x)
        return self.inverse_function(target)
