"""Every physgrad op with every gradient mode, as data: small valid inputs, how
to call it, and which inputs each mode differentiates.

The ops' modes come from their declarations (physgrad.op_info); the inputs,
options and which inputs each mode differentiates are the tests' own.
test_op_registry.py checks that every declared op has an entry here.

Shared by test_hostile_inputs.py, test_failure_policy.py and test_threads.py,
and imported by DataLoader worker processes (so it must stay importable on its
own: spawn starts a fresh interpreter that imports this module by name).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

import physgrad

F64 = torch.float64


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def uniform(shape: Sequence[int], low: float, high: float, seed: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=generator(seed), dtype=F64)


@dataclass(frozen=True)
class OpSpec:
    """One op. ``make(batch, seed)`` returns valid float64 inputs (one per name in
    ``arguments``); ``run(*inputs, **options)`` calls the public function;
    ``modes`` are its gradient modes (empty: not differentiable) and
    ``differentiated[mode]`` the indices of the inputs that mode gives a gradient."""
    name: str
    arguments: Tuple[str, ...]
    modes: Tuple[str, ...]
    make: Callable[[int, int], List[torch.Tensor]]
    run: Callable[..., Any]
    options: Dict[str, Any] = field(default_factory=dict)
    mode_options: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    differentiated: Dict[str, Tuple[int, ...]] = field(default_factory=dict)

    def __repr__(self) -> str:  # readable test ids
        return self.name

    def call(self, inputs: Sequence[torch.Tensor], mode: Optional[str] = None, **options: Any) -> Any:
        merged = dict(self.options)
        if mode is not None:
            merged.update(self.mode_options.get(mode, {}))
            merged["grad_mode"] = mode
        merged.update(options)
        return self.run(*inputs, **merged)

    def gradients(self, inputs: Sequence[torch.Tensor], mode: str, grad_y: Optional[torch.Tensor] = None,
                  **options: Any) -> Tuple[torch.Tensor, List[Optional[torch.Tensor]]]:
        """Forward and backward in ``mode``; returns (y, the gradient of every input,
        None where the mode gives none)."""
        leaves = [t.detach().clone().requires_grad_(i in self.differentiated[mode]) for i, t in enumerate(inputs)]
        y = self.call(leaves, mode, **options)
        y.backward(torch.ones_like(y) if grad_y is None else grad_y)
        return y.detach(), [leaf.grad for leaf in leaves]

    def reference_call(self) -> Any:
        """A normal call (to check the library still works after a bad one)."""
        return self.call(self.make(1, 99))


def _modes(name: str) -> Tuple[str, ...]:
    """The modes the op declares (its OpDescriptor in torch_ops/, via physgrad.op_info)."""
    return physgrad.op_info(name).modes


def _grid(batch: int, seed: int) -> List[torch.Tensor]:
    return [torch.randn(batch, 5, 6, generator=generator(seed), dtype=F64)]


def _fluid(batch: int, seed: int) -> List[torch.Tensor]:
    v0 = 1.0 + 0.5 * torch.randn(batch, 2, 6, 6, generator=generator(seed), dtype=F64)
    return [v0, uniform((batch, 6, 6), 0.0, 1.0, seed + 1)]


def _sine(batch: int, seed: int) -> List[torch.Tensor]:
    return [uniform((batch, 3), 0.5, 2.0, seed), uniform((batch, 3), 0.5, 3.0, seed + 1)]


PACKET = dict(samples=64, frequency=4.0, sigma=20.0)


def _packet_params(batch: int, seed: int) -> torch.Tensor:
    return torch.stack([uniform((batch,), 20.0, 44.0, seed), uniform((batch,), 1.0, 3.0, seed + 1)], 1)


def _fit_target(batch: int, seed: int) -> List[torch.Tensor]:
    return [physgrad.wave_packet(_packet_params(batch, seed), **PACKET)]


POISSON = OpSpec("poisson", ("x",), _modes("poisson"), _grid, physgrad.poisson,
                 mode_options={"lbfgs": dict(lbfgs_iterations=3)},
                 differentiated={"adjoint": (0,), "physical": (0,), "lbfgs": (0,)})
HEAT = OpSpec("heat", ("x",), _modes("heat"), _grid, physgrad.heat,
              options=dict(nu_t=2.0), mode_options={"lbfgs": dict(lbfgs_iterations=3)},
              differentiated={"adjoint": (0,), "physical": (0,), "lbfgs": (0,)})
FLUID = OpSpec("fluid", ("v0", "m0"), _modes("fluid"), _fluid, physgrad.fluid,
               options=dict(steps=2), mode_options={"lbfgs": dict(lbfgs_iterations=2)},
               differentiated={"adjoint": (0, 1), "physical": (0,), "lbfgs": (0,)})
FLUID_SEQUENCE = OpSpec("fluid_sequence", ("v0", "m0"), _modes("fluid_sequence"), _fluid,
                        physgrad.fluid_sequence, options=dict(steps=2))
CENTRE_OF_MASS = OpSpec("fluid_centre_of_mass", ("marker",), _modes("fluid_centre_of_mass"),
                        lambda b, s: [uniform((b, 6, 6), 0.0, 1.0, s)], physgrad.ops.fluid_centre_of_mass)
SINE = OpSpec("sine", ("x", "a"), _modes("sine"), _sine, physgrad.sine,
              differentiated={"adjoint": (0, 1), "physical": (0,), "newton": (0,), "inverse_gradient": (0,)})
NEAREST_MINIMUM = OpSpec("sine_nearest_minimum", ("a", "x0"), _modes("sine_nearest_minimum"),
                         lambda b, s: _sine(b, s)[::-1], physgrad.sine_nearest_minimum)
WAVE_PACKET = OpSpec("wave_packet", ("params",), _modes("wave_packet"),
                     lambda b, s: [_packet_params(b, s)], physgrad.wave_packet, options=dict(PACKET),
                     mode_options={"lbfgs": dict(lbfgs_iterations=3)},
                     differentiated={"adjoint": (0,), "physical": (0,), "newton": (0,), "lbfgs": (0,)})
WAVE_PACKET_FIT = OpSpec("wave_packet_fit", ("target",), _modes("wave_packet_fit"), _fit_target,
                         physgrad.wave_packet_fit,
                         options=dict(PACKET, max_iterations=30, initial=(32.0, 2.0), lower=(0.0, 0.5),
                                      upper=(64.0, 4.0)))

ALL_OPS = (POISSON, HEAT, FLUID, FLUID_SEQUENCE, CENTRE_OF_MASS, SINE, NEAREST_MINIMUM, WAVE_PACKET, WAVE_PACKET_FIT)
DIFFERENTIABLE = tuple(op for op in ALL_OPS if op.modes)
BY_NAME = {op.name: op for op in ALL_OPS}
OP_MODES = [(op, mode) for op in DIFFERENTIABLE for mode in op.modes]


def as_tuple(result: Any) -> Tuple[torch.Tensor, ...]:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


class OpDataset(torch.utils.data.Dataset):
    """Item i: every op's forward (and every mode's input gradients) on inputs
    seeded by i, computed wherever ``__getitem__`` runs (a DataLoader worker)."""

    def __init__(self, size: int, with_backward: bool = True) -> None:
        self.size, self.with_backward = size, with_backward

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        return compute_all(index, self.with_backward)


def compute_all(seed: int, with_backward: bool = True) -> Dict[str, torch.Tensor]:
    """Every op's outputs and every mode's gradients on inputs seeded by ``seed``, flattened."""
    out: Dict[str, torch.Tensor] = {}
    for op in ALL_OPS:
        inputs = op.make(1 + seed % 2, seed)
        for k, value in enumerate(as_tuple(op.call(inputs))):
            out[f"{op.name}/forward/{k}"] = value.detach()
        if not with_backward:
            continue
        for mode in op.modes:
            y, grads = op.gradients(inputs, mode)
            out[f"{op.name}/{mode}/y"] = y
            for i, grad in enumerate(grads):
                if grad is not None:
                    out[f"{op.name}/{mode}/grad{i}"] = grad
    return out


def two_threads_per_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: OpenMP regions in the worker run on two
    threads (workers default to one), so a fork after the parent's OpenMP use is exercised."""
    torch.set_num_threads(2)
