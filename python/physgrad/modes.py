"""Gradient modes: the names, and the context manager that overrides them.

A physics op's backward returns, per its ``grad_mode`` (DESIGN section 1):

- ``"adjoint"``: the vector-Jacobian product ``J(x)^T g`` (plain backprop);
- ``"physical"``: the physical gradient ``x - P^-1(y - y_step*g | x)`` from the
  op's inverse solver;
- ``"newton"``: ``x - x_newton``, one safeguarded (Gauss-)Newton step;
- ``"lbfgs"``: ``x - x_n``, n L-BFGS steps (PETSc TAO) on ``1/2||P(x') - (y - y_step*g)||^2``;
- ``"inverse_gradient"``: first-order inversion of ``dP/dx`` (the sine op).

Each op offers a subset; asking for another one is a ValueError that lists them.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional

GRAD_MODES = ("adjoint", "physical", "newton", "lbfgs", "inverse_gradient")
DEFAULT_GRAD_MODE = "physical"

_state = threading.local()


def current_override() -> Optional[str]:
    """The mode set by the innermost enclosing :func:`grad_mode` block on this thread, or None."""
    stack = getattr(_state, "stack", None)
    return stack[-1] if stack else None


def resolve(grad_mode: Optional[str], module_mode: Optional[str] = None) -> str:
    """The mode an eager call uses.

    An explicit functional argument wins; otherwise an enclosing :func:`grad_mode`
    block; otherwise the module's attribute; otherwise ``"physical"``.
    """
    if grad_mode is not None:
        return grad_mode
    override = current_override()
    if override is not None:
        return override
    return module_mode if module_mode is not None else DEFAULT_GRAD_MODE


@contextlib.contextmanager
def grad_mode(mode: str) -> Iterator[None]:
    """Overrides the gradient mode of every physgrad module and of every functional
    call that does not pass ``grad_mode`` explicitly, inside the block, on this thread.

    The mode is attached to each op call in the forward pass, so what counts is
    where the forward runs; ``backward()`` may be called after the block ends.
    Scripted (TorchScript) modules are not affected: they use their ``grad_mode``
    attribute, which you set before calling them.
    """
    if mode not in GRAD_MODES:
        raise ValueError(f"physgrad.grad_mode: unknown mode {mode!r}; the modes are {', '.join(GRAD_MODES)}")
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(mode)
    try:
        yield
    finally:
        stack.pop()
