"""The backward modes of user ops (:class:`physgrad.Op`), batched per sample.

Each mode is ``backward(op, x, y, g, graph, options) -> dx`` for x ``[B, ...]``, y and the
incoming gradient g ``[B, ...]``, and ``graph = (x_graph, y_graph)`` (the forward's autograd
graph at x, kept where the mode needs Jacobian products, else None). With the y-space target
``t = y - y_step * g`` and per sample ``f(x') = 1/2 ||P(x') - t||^2`` (see :mod:`physgrad.user_ops`):

- :func:`adjoint`: ``J^T g``; :func:`physical`: ``x - inverse(t, x)``;
- :func:`newton`: ``x - x_1``, one Levenberg-Marquardt step, CG on ``J^T J + lambda I``;
- :func:`lbfgs`: ``x - x_n``, n L-BFGS iterations.

Every mode records per-sample :class:`~physgrad.ops.SolveStats` (:func:`recorded`) and
applies ``on_failure`` to the samples whose reason is in :data:`FAILURES`.
"""
from __future__ import annotations

import math
import threading
import warnings
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

import torch

from .ops import SolveStats

if TYPE_CHECKING:
    from .user_ops import Op, _Options

NEWTON_TRIES = 12
LBFGS_HISTORY = 10
LBFGS_GRADIENT_RTOL = 1e-10
ARMIJO = 1e-4
LINE_SEARCH_TRIES = 30
#: reasons that are failures (on_failure applies); other non-converged reasons are budgets
FAILURES = ("DIVERGED_NANORINF", "DIVERGED_ITS")

_stats = threading.local()


def recorded(name: str) -> Optional[Tuple[Any, SolveStats]]:
    """``(op, stats)`` of the last phase of the user op ``name`` on this thread, or None."""
    return getattr(_stats, "by_name", {}).get(name)


# ---- per-sample helpers ([B, ...] tensors, [B] results) ------------------------------------

def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``<a_b, b_b>`` for every sample b: ``[B]``."""
    return (a * b).reshape(a.shape[0], -1).sum(1)


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[B]`` values shaped ``[B, 1, ...]`` to broadcast against ``like``."""
    return values.reshape((-1,) + (1,) * (like.dim() - 1))


def finite_samples(tensor: torch.Tensor) -> torch.Tensor:
    """Whether every element of sample b is finite: ``[B]`` bool."""
    return torch.isfinite(tensor).reshape(tensor.shape[0], -1).all(1)


def first_non_finite(tensor: torch.Tensor, argument: str) -> Optional[str]:
    """``"argument[i][j] = nan"`` for the first non-finite element, or None."""
    bad = (~torch.isfinite(tensor)).nonzero()
    if bad.shape[0] == 0:
        return None
    index = tuple(int(i) for i in bad[0])
    return f"{argument}{''.join(f'[{i}]' for i in index)} = {float(tensor[index])}"


def where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sample b of a where ``mask[b]``, else of b."""
    return torch.where(per_sample(mask, a), a, b)


class Report:
    """Per-sample statistics of one phase, recorded for :func:`solve_stats`; applies on_failure."""

    def __init__(self, batch: int, phase: str):
        self.phase = phase
        self.iterations = [0] * batch
        self.residuals = [0.0] * batch
        self.converged = [True] * batch
        self.reasons = ["EXPLICIT"] * batch

    def set(self, sample: int, reason: str, converged: bool, iterations: Optional[int] = None,
            residual: Optional[float] = None) -> None:
        self.reasons[sample], self.converged[sample] = reason, converged
        if iterations is not None:
            self.iterations[sample] = int(iterations)
        if residual is not None:
            self.residuals[sample] = float(residual)

    def failed(self) -> List[int]:
        return [i for i, reason in enumerate(self.reasons) if reason in FAILURES]

    def finish(self, op: "Op", on_failure: str, what: str) -> None:
        """Records the statistics, then raises or warns about the failed samples; ``what`` says what failed."""
        stats = SolveStats(self.phase, self.iterations, self.residuals, self.converged, self.reasons)
        if not hasattr(_stats, "by_name"):
            _stats.by_name = {}
        _stats.by_name[op.name] = (op, stats)
        failed = self.failed()
        if not failed or on_failure == "ignore":
            return
        reasons = ", ".join(self.reasons[i] for i in failed)
        message = f"physgrad.{op.name}: the {self.phase} {what} for samples {failed} ({reasons})"
        if on_failure == "raise":
            raise RuntimeError(message + "; on_failure='warn' or 'ignore' goes on (see physgrad.solve_stats)")
        kept = "returned it" if self.phase == "forward" else "gave those samples a zero step"
        if "DIVERGED_ITS" in reasons:
            kept = "used the last CG iterate where it lowered the objective"
        warnings.warn(f"{message}; on_failure='warn' {kept}", RuntimeWarning, stacklevel=4)


# ---- Jacobian products from one autograd graph of the forward -----------------------------

class Linearization:
    """``J^T w`` and ``J v`` at x from the graph ``y_graph = forward(x_graph)``: ``J v`` is the
    derivative of ``<J^T u, v>`` by u (the double-backward trick), so forward mode is not needed."""

    def __init__(self, op: "Op", mode: str, x_graph: torch.Tensor, y_graph: torch.Tensor, jvp: bool):
        self.op, self.mode, self.x_graph, self.y_graph = op, mode, x_graph, y_graph
        if not y_graph.requires_grad:
            raise RuntimeError(
                f"physgrad.{op.name}: grad_mode {mode!r} differentiates forward with torch autograd, but "
                f"forward's output does not depend differentiably on x (does it leave torch, e.g. through "
                f"numpy or .detach()?); give an adjoint for 'adjoint', or use 'physical'")
        if jvp:
            self.u = torch.zeros_like(y_graph, requires_grad=True)
            with torch.enable_grad():
                self.jt_u = self._vjp(self.u, create_graph=True)
            if not self.jt_u.requires_grad:
                raise RuntimeError(
                    f"physgrad.{op.name}: grad_mode {mode!r} needs Jacobian-vector products (the double-backward "
                    f"trick), but forward's backward is not differentiable (a once_differentiable step?)")

    def _vjp(self, w: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        grad, = torch.autograd.grad(self.y_graph, self.x_graph, w, retain_graph=True,
                                    create_graph=create_graph, allow_unused=True)
        return torch.zeros_like(self.x_graph) if grad is None else grad

    def vjp(self, w: torch.Tensor) -> torch.Tensor:
        """``J^T w``: w like y, result like x."""
        with torch.enable_grad():
            return self._vjp(w).detach()

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """``J v``: v like x, result like y."""
        with torch.enable_grad():
            grad, = torch.autograd.grad(self.jt_u, self.u, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(self.y_graph) if grad is None else grad.detach()


def conjugate_gradients(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, shift: torch.Tensor,
                        active: torch.Tensor, rtol: float, max_iterations: int
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solves ``(A + shift I) d = b`` per active sample from ``d = 0`` (A symmetric positive
    semi-definite, ``apply(v) = A v`` batched) until ``|r| <= rtol |b|``. Returns
    ``(d, iterations [B], converged [B])``; inactive samples keep ``d = 0``."""
    d = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = dot(r, r)
    goal = rtol * rr.sqrt()
    converged = rr.sqrt() <= goal
    done = ~active | converged
    iterations = torch.zeros(b.shape[0], dtype=torch.long, device=b.device)
    for _ in range(max_iterations):
        if bool(done.all()):
            break
        ap = apply(p) + per_sample(shift, p) * p
        curvature = dot(p, ap)
        breakdown = ~done & ~(curvature > 0)
        done = done | breakdown
        alpha = torch.where(done, torch.zeros_like(rr), rr / torch.where(done, torch.ones_like(rr), curvature))
        d = d + per_sample(alpha, d) * p
        r = r - per_sample(alpha, r) * ap
        rr_new = dot(r, r)
        iterations += (~done).long()
        beta = torch.where(done, torch.zeros_like(rr), rr_new / torch.where(done, torch.ones_like(rr), rr))
        p = where(done, p, r + per_sample(beta, p) * p)
        rr = torch.where(done, rr, rr_new)
        newly = ~done & (rr.sqrt() <= goal)
        converged = converged | newly
        done = done | newly
    return d, iterations, converged & active


# ---- the modes ----------------------------------------------------------------------------

def objective(op: "Op", z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1/2 |forward(z) - target|^2`` per sample, without a graph."""
    with torch.no_grad():
        residual = op.forward_function(z) - target
        return 0.5 * dot(residual, residual)


def adjoint(op: "Op", x, y, g, graph, o: _Options) -> torch.Tensor:
    report = Report(x.shape[0], "adjoint")
    if op.adjoint_function is not None:
        dx = op._checked(op.adjoint_function(x, y, g), x, "adjoint")
    else:
        dx = Linearization(op, "adjoint", *graph, jvp=False).vjp(g)
    finite = finite_samples(dx)
    for i in (~finite).nonzero().flatten().tolist():
        report.set(i, "DIVERGED_NANORINF", False)
    report.finish(op, o.on_failure, "returned a non-finite value")
    return where(finite, dx, torch.zeros_like(dx))


def physical(op: "Op", x, y, g, graph, o: _Options) -> torch.Tensor:
    target = y - o.y_step * g
    x_new = op._checked(op._call_inverse(target, x), x, "inverse")
    finite = finite_samples(x_new)
    x_new = where(finite, x_new, x)
    residual = (2 * objective(op, x_new, target)).sqrt()
    report = Report(x.shape[0], "physical")
    for i in range(x.shape[0]):
        ok = bool(finite[i])
        report.set(i, "INVERSE" if ok else "DIVERGED_NANORINF", ok, 1, residual[i])
    report.finish(op, o.on_failure, "inverse returned a non-finite value")
    return x - x_new


def newton(op: "Op", x, y, g, graph, o: _Options) -> torch.Tensor:
    linear = Linearization(op, "newton", *graph, jvp=True)
    target = y - o.y_step * g
    residual = y - target
    f0 = 0.5 * dot(residual, residual)
    b = linear.vjp(residual)
    b_norm2 = dot(b, b)
    usable = torch.isfinite(b_norm2)
    stationary = usable & (b_norm2 == 0)
    pending = usable & ~stationary
    jb = linear.jvp(where(pending, b, torch.zeros_like(b)))
    mu = torch.where(pending, dot(jb, jb) / torch.where(pending, b_norm2, torch.ones_like(b_norm2)),
                     torch.ones_like(b_norm2))
    mu = torch.where(mu > 0, mu, torch.ones_like(mu))
    damping = o.newton_damping * mu
    rtol = o.cg_rtol if o.cg_rtol is not None else (1e-10 if x.dtype == torch.float64 else 1e-5)
    step = torch.zeros_like(x)
    f_final, cg_converged = f0.clone(), torch.ones_like(pending)
    accepted = torch.zeros_like(pending)
    iterations = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for _ in range(NEWTON_TRIES):
        if not bool(pending.any()):
            break
        d, its, converged = conjugate_gradients(lambda v: linear.vjp(linear.jvp(v)), b, damping, pending,
                                                rtol, o.cg_max_iterations)
        iterations += its
        f_new = objective(op, where(pending, x - d, x), target)
        accept = pending & torch.isfinite(f_new) & (f_new < f0)
        step = where(accept, d, step)
        f_final = torch.where(accept, f_new, f_final)
        cg_converged = torch.where(accept, converged, cg_converged)
        accepted |= accept
        pending &= ~accept
        damping = torch.where(damping > 0, 10 * damping, 1e-11 * mu)
    report = Report(x.shape[0], "newton")
    for i in range(x.shape[0]):
        its, residual_norm = int(iterations[i]), math.sqrt(max(2 * float(f_final[i]), 0.0))
        if not bool(usable[i]):
            report.set(i, "DIVERGED_NANORINF", False, its, float("nan"))
        elif bool(stationary[i]):
            report.set(i, "STATIONARY", True, 0, residual_norm)
        elif not bool(accepted[i]):
            report.set(i, "NO_DECREASE", False, its, residual_norm)
        elif not bool(cg_converged[i]):
            report.set(i, "DIVERGED_ITS", False, its, residual_norm)
        else:
            report.set(i, "ACCEPTED", True, its, residual_norm)
    report.finish(op, o.on_failure, f"Gauss-Newton step failed (a non-finite J^T (y - t), or CG not reaching "
                                    f"cg_rtol={rtol:g} in cg_max_iterations={o.cg_max_iterations})")
    return step


def lbfgs(op: "Op", x, y, g, graph, o: _Options) -> torch.Tensor:
    target = y - o.y_step * g
    batch = x.shape[0]

    def evaluate(z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            leaf = z.detach().requires_grad_()
            residual = op.forward_function(leaf) - target
            f = 0.5 * dot(residual, residual)
            grad, = torch.autograd.grad(f.sum(), leaf, allow_unused=True)
        return f.detach(), torch.zeros_like(z) if grad is None else grad

    current = x.detach().clone()
    f, grad = evaluate(current)
    grad_norm0 = dot(grad, grad).sqrt()
    usable = torch.isfinite(f) & torch.isfinite(grad_norm0)
    converged = usable & (grad_norm0 == 0)
    done = ~usable | converged
    reasons = ["DIVERGED_NANORINF" if not bool(usable[i]) else "STATIONARY" if bool(converged[i]) else ""
               for i in range(batch)]
    history: List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    gamma = torch.ones(batch, dtype=x.dtype, device=x.device)
    iterations = torch.zeros(batch, dtype=torch.long, device=x.device)
    for _ in range(o.lbfgs_iterations):
        if bool(done.all()):
            break
        q = grad.clone()
        alphas = []
        for s, yv, rho in reversed(history):
            alpha = rho * dot(s, q)
            q = q - per_sample(alpha, q) * yv
            alphas.append(alpha)
        direction = per_sample(gamma, q) * q
        for (s, yv, rho), alpha in zip(history, reversed(alphas)):
            beta = rho * dot(yv, direction)
            direction = direction + per_sample(alpha - beta, s) * s
        direction = -direction
        slope = dot(grad, direction)
        steepest = ~(slope < 0)  # not a descent direction (rounding): restart along -grad
        direction = where(steepest, -grad, direction)
        slope = torch.where(steepest, -dot(grad, grad), slope)
        first = torch.full_like(f, len(history) == 0, dtype=torch.bool) | steepest
        step = torch.where(first, torch.clamp(1 / dot(direction, direction).sqrt(), max=1.0), torch.ones_like(f))
        searching = ~done
        found = torch.zeros_like(done)
        f_new, grad_new = f, grad
        for _ in range(LINE_SEARCH_TRIES):
            trial = where(searching, current + per_sample(step, current) * direction, current)
            f_trial, grad_trial = evaluate(trial)
            ok = searching & torch.isfinite(f_trial) & (f_trial <= f + ARMIJO * step * slope)
            ok &= finite_samples(grad_trial)
            f_new = torch.where(ok, f_trial, f_new)
            grad_new = where(ok, grad_trial, grad_new)
            found |= ok
            searching &= ~ok
            if not bool(searching.any()):
                break
            # the minimizer of the quadratic through f, slope and f_trial, kept in [step/10, step/2]
            curvature = f_trial - f - step * slope
            quadratic = -slope * step * step / (2 * torch.where(curvature > 0, curvature, torch.ones_like(f)))
            shorter = torch.where((curvature > 0) & torch.isfinite(quadratic),
                                  torch.minimum(torch.maximum(quadratic, step / 10), step / 2), step / 2)
            step = torch.where(searching, shorter, step)
        for i in (~done & ~found).nonzero().flatten().tolist():
            reasons[i] = "DIVERGED_LS_FAILURE"
        done |= ~found
        s = where(found, per_sample(step, current) * direction, torch.zeros_like(current))
        yv = where(found, grad_new - grad, torch.zeros_like(grad))
        sy, yy = dot(s, yv), dot(yv, yv)
        valid = found & (sy > 1e-10 * yy) & (yy > 0)
        history.append((s, yv, torch.where(valid, 1 / torch.where(valid, sy, torch.ones_like(sy)),
                                           torch.zeros_like(sy))))
        history = history[-LBFGS_HISTORY:]
        gamma = torch.where(valid, sy / torch.where(valid, yy, torch.ones_like(yy)), gamma)
        current = current + s
        f, grad = f_new, grad_new
        iterations += found.long()
        small = found & (dot(grad, grad).sqrt() <= LBFGS_GRADIENT_RTOL * grad_norm0)
        for i in small.nonzero().flatten().tolist():
            reasons[i] = "CONVERGED_GRTOL"
        converged |= small
        done |= small
    report = Report(batch, "lbfgs")
    for i in range(batch):
        reason = reasons[i] or "DIVERGED_MAXITS"
        report.set(i, reason, bool(converged[i]), iterations[i], math.sqrt(max(2 * float(f[i]), 0.0)))
    report.finish(op, o.on_failure, "objective or its gradient was not finite at the start")
    return where(usable, x - current, torch.zeros_like(x))


BACKWARDS = {"adjoint": adjoint, "physical": physical, "newton": newton, "lbfgs": lbfgs}
