"""Hostile inputs to every op in every gradient mode.

Each case either gives a correct result (asserted) or raises a Python exception
(TypeError, ValueError or RuntimeError) whose message names the argument and
what was expected. No case may crash the process, hang, print from C (every
test runs under the fd-level capture `capfd` and must leave fds 1 and 2 empty),
or leave the library unusable (after every test a normal call of the op must
still work). Cases that could take the process down (huge sizes, extreme
magnitudes) run in a subprocess under an address-space limit, so a crash or an
allocation the op should have refused is a failed test, not a dead run.
Complements the per-op error tables of test_<op>.py.
"""
from __future__ import annotations

import faulthandler
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch

import physgrad
from op_catalog import (ALL_OPS, DIFFERENTIABLE, F64, FLUID, FLUID_SEQUENCE, HEAT, NEAREST_MINIMUM, OP_MODES, POISSON,
                        SINE, WAVE_PACKET, WAVE_PACKET_FIT, OpSpec, as_tuple)

HERE = Path(__file__).resolve().parent


def op_id(value: Any) -> str:
    return value.name if isinstance(value, OpSpec) else str(value).replace("torch.", "")


@pytest.fixture(autouse=True)
def silent_and_still_usable(request, capfd):
    """Nothing may reach fds 1 and 2 (C printf, PETSc, TORCH_WARN), and the op
    must still work normally after whatever the test did to it. A test that
    hangs in C (where no Python timeout reaches) ends the run with a traceback
    after 5 minutes instead of hanging it."""
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
    out, err = capfd.readouterr()
    assert (out, err) == ("", ""), f"printed outside Python: stdout {out!r}, stderr {err!r}"
    callspec = getattr(request.node, "callspec", None)
    op = callspec.params.get("op") if callspec else None
    if isinstance(op, OpSpec):
        for result in as_tuple(op.reference_call()):
            assert not result.is_floating_point() or result.isfinite().all()
        assert capfd.readouterr() == ("", "")


def raises(error: type, words: str):
    """pytest.raises for a message containing `words` literally."""
    return pytest.raises(error, match=re.escape(words))


def with_input(op: OpSpec, index: int, tensor: torch.Tensor, batch: int = 2) -> List[torch.Tensor]:
    inputs = op.make(batch, 0)
    inputs[index] = tensor
    return inputs


ARGUMENTS = [(op, index) for op in ALL_OPS for index in range(len(op.arguments))]
ARGUMENT_IDS = [f"{op.name}-{op.arguments[index]}" for op, index in ARGUMENTS]

# ---- dtypes -------------------------------------------------------------------

BAD_DTYPES = [torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64, torch.complex128, torch.float16,
              torch.bfloat16]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=op_id)
@pytest.mark.parametrize("op, index", ARGUMENTS, ids=ARGUMENT_IDS)
def test_integer_bool_complex_and_half_dtypes_are_refused_naming_the_argument(op, index, dtype):
    inputs = op.make(2, 0)
    inputs[index] = inputs[index].to(dtype)
    with raises(TypeError, f"physgrad.{op.name}: {op.arguments[index]} must be float32 or float64, got"):
        op.call(inputs)


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
def test_float32_inputs_give_the_float64_result_rounded(op):
    inputs = op.make(2, 0)
    inputs32 = [t.float() for t in inputs]
    expected = [r.float() if r.is_floating_point() else r for r in as_tuple(op.call([t.double() for t in inputs32]))]
    for result, reference in zip(as_tuple(op.call(inputs32)), expected):
        assert result.dtype == reference.dtype
        torch.testing.assert_close(result, reference, rtol=0, atol=0)


# ---- shapes: dimensions, mismatched batches, zero sizes, tiny grids ----------

def ones(*shape: int) -> torch.Tensor:
    return torch.ones(shape, dtype=F64)


SHAPE_CASES = [
    (POISSON, {0: ones(5, 6)}, "x must have 3 or 4 or 5 dimensions, got shape [5, 6]"),
    (POISSON, {0: ones(2, 1, 1, 1, 5, 6)}, "x must have 3 or 4 or 5 dimensions"),  # 4-D, 5-D: 3-D grids
    (POISSON, {0: ones(2, 2, 3, 5, 6)}, "a 5-D x must be [B, 1, nz, ny, nx], got shape [2, 2, 3, 5, 6]"),
    (POISSON, {0: ones(2, 0, 6)}, "x must have at least one node per axis, got shape [2, 0, 6]"),
    (POISSON, {0: ones(2, 1, 5, 0)}, "x must have at least one node per axis"),
    (HEAT, {0: ones(5, 6)}, "x must have 3 or 4 or 5 dimensions"),
    (HEAT, {0: ones(2, 3, 4, 5, 6)}, "a 5-D x must be [B, 1, nz, ny, nx]"),
    (HEAT, {0: ones(2, 5, 0)}, "x must have at least one cell per axis, got shape [2, 5, 0]"),
    (SINE, {0: torch.tensor(1.0, dtype=F64)}, "x must have at least 1 dimension"),
    (SINE, {1: torch.tensor(1.0, dtype=F64)}, "a must have at least 1 dimension"),
    (SINE, {1: ones(3, 3)}, "a has shape [3, 3] but x has shape [2, 3] (they must be equal)"),  # batch
    (SINE, {1: ones(2, 3, 1)}, "a has shape [2, 3, 1] but x has shape [2, 3]"),
    (NEAREST_MINIMUM, {1: torch.tensor(1.0, dtype=F64)}, "x0 must have at least 1 dimension"),
    (NEAREST_MINIMUM, {0: ones(3, 3)}, "a has shape [3, 3] but x0 has shape [2, 3]"),  # batch
    (WAVE_PACKET, {0: ones(2)}, "params must have 2 dimensions, got shape [2]"),
    (WAVE_PACKET, {0: ones(2, 2, 1)}, "params must have 2 dimensions"),
    (WAVE_PACKET, {0: ones(2, 3)}, "params must be [B, 2] (xi0, A), got shape [2, 3]"),
    (WAVE_PACKET, {0: ones(2, 0)}, "params must be [B, 2] (xi0, A), got shape [2, 0]"),
    (WAVE_PACKET_FIT, {0: ones(64)}, "target must have 2 dimensions"),
    (WAVE_PACKET_FIT, {0: ones(2, 63)}, "target must be [B, samples] = [B, 64], got shape [2, 63]"),
    (WAVE_PACKET_FIT, {0: ones(2, 0)}, "target must be [B, samples] = [B, 64], got shape [2, 0]"),
]
for _fluid in (FLUID, FLUID_SEQUENCE):
    SHAPE_CASES += [
        (_fluid, {0: ones(2, 6, 6)}, "v0 must have 4 dimensions, got shape [2, 6, 6]"),
        (_fluid, {0: ones(2, 3, 6, 6)}, "v0 must be [B, 2, ny, nx] (channel 0 = vx, 1 = vy), got shape [2, 3, 6, 6]"),
        (_fluid, {1: ones(6, 6)}, "m0 must have 3 or 4 dimensions"),
        (_fluid, {1: ones(2, 2, 6, 6)}, "a 4-D m0 must be [B, 1, ny, nx]"),
        (_fluid, {1: ones(3, 6, 6)}, "m0 has batch 3 but v0 has batch 2"),
        (_fluid, {0: ones(1, 2, 6, 6)}, "m0 has batch 2 but v0 has batch 1"),
        (_fluid, {1: ones(2, 6, 7)}, "m0's grid [6, 7] differs from v0's grid [6, 6]"),
        (_fluid, {0: ones(2, 2, 0, 6), 1: ones(2, 0, 6)},
         "need at least 3 cells per axis (periodic stencils), got grid [0, 6]"),
        (_fluid, {0: ones(2, 2, 1, 1), 1: ones(2, 1, 1)}, "need at least 3 cells per axis"),
        (_fluid, {0: ones(2, 2, 2, 2), 1: ones(2, 2, 2)}, "need at least 3 cells per axis"),
    ]


@pytest.mark.parametrize("op, replaced, words", SHAPE_CASES,
                         ids=[f"{case[0].name}-{i}" for i, case in enumerate(SHAPE_CASES)])
def test_wrong_dimensions_mismatched_batches_and_zero_sizes_are_refused(op, replaced, words):
    inputs = op.make(2, 0)
    for index, tensor in replaced.items():
        inputs[index] = tensor
    with pytest.raises(ValueError) as info:
        op.call(inputs)
    assert str(info.value).startswith(f"physgrad.{op.name}: ") and words in str(info.value)


@pytest.mark.parametrize("op", [SINE, NEAREST_MINIMUM], ids=op_id)
def test_elementwise_ops_accept_zero_sized_dimensions_and_any_rank(op):
    for shape in [(2, 0), (0,), (2, 3, 0, 4), (7,), (2, 1, 3, 1)]:
        inputs = [torch.full(shape, 1.5, dtype=F64), torch.full(shape, 0.7, dtype=F64)]
        result = op.call(inputs)
        assert result.shape == shape
        flat = op.call([t.reshape(-1, 1) for t in inputs])
        torch.testing.assert_close(result.reshape(-1, 1), flat, rtol=0, atol=0)


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
def test_empty_batch_gives_empty_results_and_gradients(op):
    one = [r.shape for r in as_tuple(op.call(op.make(1, 0)))]
    empty = op.make(0, 0)
    results = as_tuple(op.call(empty))
    assert [r.shape for r in results] == [(0,) + tuple(shape[1:]) for shape in one]
    for mode in op.modes:
        y, grads = op.gradients(empty, mode)
        assert y.shape[0] == 0
        for i, (grad, tensor) in enumerate(zip(grads, empty)):
            assert (grad is None) == (i not in op.differentiated[mode])
            assert grad is None or grad.shape == tensor.shape


@pytest.mark.parametrize("ny, nx", [(1, 1), (2, 2), (1, 5), (4, 1)])
def test_tiny_poisson_grids_match_the_sparse_solve(laplacian, ny, nx):
    import scipy.sparse.linalg as spla
    x = torch.randn(2, ny, nx, dtype=F64, generator=torch.Generator().manual_seed(ny * 10 + nx))
    y = physgrad.poisson(x)
    for sample in range(2):
        expected = spla.spsolve(laplacian(ny, nx).tocsc(), x[sample].reshape(-1).numpy())
        np.testing.assert_allclose(y[sample].reshape(-1).numpy(), np.atleast_1d(expected), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ny, nx", [(1, 1), (2, 2), (1, 3), (2, 1)])
def test_tiny_heat_grids_match_the_fourier_formula(ny, nx):
    x = torch.randn(2, ny, nx, dtype=F64, generator=torch.Generator().manual_seed(ny * 10 + nx))
    k2 = (2 * np.pi * np.fft.fftfreq(ny))[:, None] ** 2 + (2 * np.pi * np.fft.fftfreq(nx))[None, :] ** 2
    expected = np.fft.ifft2(np.fft.fft2(x.numpy()) * np.exp(-k2 * 3.0)).real
    np.testing.assert_allclose(physgrad.heat(x, nu_t=3.0).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_smallest_fluid_grid_and_single_sample_packet_work():
    m_t = physgrad.fluid(torch.ones(1, 2, 3, 3, dtype=F64), torch.rand(1, 3, 3, dtype=F64), steps=2)
    assert m_t.shape == (1, 3, 3) and m_t.isfinite().all()
    y = physgrad.wave_packet(torch.tensor([[0.0, 2.0]], dtype=F64), samples=1)
    assert y.shape == (1, 1) and y.item() == 0.0  # sin(0) = 0


# ---- layouts: non-contiguous, stride 0, storage offsets ----------------------

def transposed(t: torch.Tensor) -> torch.Tensor:
    """The same values with non-contiguous (transposed) strides."""
    return t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() >= 2 else t.repeat_interleave(2)[::2]


def offset(t: torch.Tensor) -> torch.Tensor:
    """The same values at a storage offset of 5 elements."""
    view = torch.zeros(t.numel() + 5, dtype=t.dtype)[5:].view(t.shape)
    return view.copy_(t)


def padded(t: torch.Tensor) -> torch.Tensor:
    """The same values as the interior of a bigger tensor: non-contiguous and offset."""
    big = torch.zeros(*t.shape[:-1], t.shape[-1] + 3, dtype=t.dtype)
    big[..., 1:-2] = t
    return big[..., 1:-2]


LAYOUTS = {"transposed": transposed, "offset": offset, "padded": padded}
CALLS = [(op, mode) for op in ALL_OPS for mode in (op.modes or (None,))]
CALL_IDS = [f"{op.name}-{mode or 'forward'}" for op, mode in CALLS]


def run(op: OpSpec, inputs: List[torch.Tensor], mode, grad_y: Callable[[torch.Tensor], torch.Tensor]):
    """Outputs, and for a mode the gradients, of op on inputs; checks that the op
    leaves its inputs and the incoming gradient as they were."""
    before = [t.clone() for t in inputs]
    if mode is None:
        results = [r for r in as_tuple(op.call(inputs))]
    else:
        leaves = [t.detach().requires_grad_(i in op.differentiated[mode]) for i, t in enumerate(inputs)]
        y = op.call(leaves, mode)
        g = grad_y(y.detach())
        g_before = g.clone()
        y.backward(g)
        assert torch.equal(g, g_before), "the op wrote into the incoming gradient"
        results = [y.detach()] + [leaf.grad for leaf in leaves]
    for t, b in zip(inputs, before):
        assert torch.equal(t, b), "the op wrote into its input"
    return results


def assert_same(results, expected):
    assert len(results) == len(expected)
    for result, reference in zip(results, expected):
        assert (result is None) == (reference is None)
        if result is not None:
            assert torch.equal(result, reference)  # bitwise: the op copies to contiguous float64


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op, mode", CALLS, ids=CALL_IDS)
def test_non_contiguous_and_offset_inputs_give_the_contiguous_result(op, mode, layout):
    inputs = op.make(2, 3)
    expected = run(op, inputs, mode, lambda y: torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view(y.shape))
    change = LAYOUTS[layout]
    changed = [change(t) for t in inputs]
    assert any(not t.is_contiguous() or t.storage_offset() for t in changed)
    results = run(op, changed, mode, lambda y: change(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view(y.shape)))
    assert_same(results, expected)


@pytest.mark.parametrize("op, mode", CALLS, ids=CALL_IDS)
def test_expanded_stride_0_inputs_and_gradients_give_the_materialized_result(op, mode):
    """A batch expanded from one sample (stride 0), and an expanded incoming
    gradient (what y.sum().backward() passes), equal their materialized copies."""
    one = op.make(1, 4)
    expanded = [t.expand(3, *t.shape[1:]) for t in one]
    assert all(t.stride(0) == 0 for t in expanded)
    expected = run(op, [t.contiguous() for t in expanded], mode, lambda y: torch.ones_like(y))
    results = run(op, expanded, mode, lambda y: torch.ones((), dtype=y.dtype).expand(y.shape))
    assert_same(results, expected)


def test_grid_expanded_along_an_axis_equals_its_copy():
    x = torch.linspace(0, 1, 8, dtype=F64)[None, None, :].expand(3, 8, 8)  # stride 0 along y and the batch
    assert x.stride()[:2] == (0, 0)
    for op in (physgrad.poisson, physgrad.heat):
        assert torch.equal(op(x), op(x.contiguous()))
    assert torch.equal(physgrad.poisson(torch.ones(1, 8, 8).expand(3, 8, 8)), physgrad.poisson(torch.ones(3, 8, 8)))


# ---- NaN and Inf --------------------------------------------------------------

# What the message says about a non-finite input: the solvers report PETSc's
# reason (the failure policy, test_failure_policy.py); the others name the value.
NONFINITE_WORDS = {
    ("poisson", "x"): ["Poisson solve of sample 1 did not converge: DIVERGED_NANORINF"],
    ("heat", "x"): ["heat: x: CPhysHeatForward: input value", "(sample 1) is"],
    ("fluid", "v0"): ["v0[", "] is not finite"],
    ("fluid", "m0"): ["m0[", "] is not finite"],
    ("fluid_sequence", "v0"): ["v0[", "] is not finite"],
    ("fluid_sequence", "m0"): ["m0[", "] is not finite"],
    ("fluid_centre_of_mass", "marker"): ["marker[", "is not finite"],
    ("sine", "x"): ["x[", "is not finite"],
    ("sine", "a"): ["a[", "is not finite"],
    ("sine_nearest_minimum", "a"): ["a[", "is not finite"],
    ("sine_nearest_minimum", "x0"): ["x0[", "is not finite"],
    ("wave_packet", "params"): ["params[1][", "is not finite"],
    ("wave_packet_fit", "target"): ["target[1][", "is not finite"],
}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("op, index", ARGUMENTS, ids=ARGUMENT_IDS)
def test_nan_and_inf_inputs_are_errors_naming_them(op, index, value):
    inputs = op.make(2, 0)
    inputs[index] = inputs[index].clone()
    inputs[index][1].view(-1)[1] = value  # sample 1: the message must not blame sample 0
    with pytest.raises(RuntimeError) as info:
        op.call(inputs)
    for words in NONFINITE_WORDS[(op.name, op.arguments[index])]:
        assert words in str(info.value)


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("op, mode", OP_MODES, ids=[f"{op.name}-{mode}" for op, mode in OP_MODES])
def test_nan_and_inf_incoming_gradients_are_errors(op, mode, value):
    inputs = op.make(2, 0)
    y = op.call(inputs, mode).detach()
    grad_y = torch.ones_like(y)
    grad_y.view(-1)[3] = value
    with pytest.raises(RuntimeError, match=r"nan|inf|NANORINF|NaN or Inf|not finite") as info:
        op.gradients(inputs, mode, grad_y=grad_y)
    assert f"physgrad.{op.name}" in str(info.value)


# ---- options: non-positive, NaN, unknown --------------------------------------

NAN = math.nan
OPTION_CASES = [
    (POISSON, dict(spacing=(0.0, 1.0)), "spacing must be positive and finite, got [0, 1]"),
    (POISSON, dict(spacing=(1.0, -1.0)), "spacing must be positive and finite, got [1, -1]"),
    (POISSON, dict(spacing=(NAN, 1.0)), "spacing must be positive and finite, got [nan, 1]"),  # was a cache hit
    (POISSON, dict(spacing=(1e-300, 1.0)), "spacing [1e-300, 1] is out of range"),  # hung in PETSc's ICC
    (POISSON, dict(spacing=(1e200, 1e200)), "spacing [1e+200, 1e+200] is out of range"),  # a zero matrix
    (POISSON, dict(rtol=0.0), "rtol must be in (0, 1), got 0"),
    (POISSON, dict(rtol=-1e-8), "rtol must be in (0, 1)"),
    (POISSON, dict(rtol=NAN), "rtol must be in (0, 1), got nan"),  # was a cache hit: NaN keys match any
    (POISSON, dict(rtol=1.0), "rtol must be in (0, 1)"),
    (POISSON, dict(max_iterations=0), "max_iterations must be in [1, 2^31), got 0"),
    (POISSON, dict(max_iterations=-5), "max_iterations must be in [1, 2^31)"),
    (POISSON, dict(max_iterations=2**31), "max_iterations must be in [1, 2^31)"),
    (POISSON, dict(grad_mode="lbfgs", lbfgs_iterations=0), "lbfgs_iterations must be in [1, 2^31), got 0"),
    (POISSON, dict(lbfgs_iterations=-1), "lbfgs_iterations must be in [1, 2^31), got -1"),
    (POISSON, dict(y_step=NAN), "y_step must be finite, got nan"),
    (POISSON, dict(y_step=math.inf), "y_step must be finite"),
    (HEAT, dict(nu_t=-1.0), "nu_t must be finite and >= 0, got -1"),
    (HEAT, dict(nu_t=NAN), "nu_t must be finite and >= 0"),
    (HEAT, dict(spacing=(0.0, 1.0)), "spacing must be positive and finite"),
    (HEAT, dict(spacing=(1.0, NAN)), "spacing must be positive and finite"),
    (HEAT, dict(spacing=(1e-300, 1.0)), "overflows"),
    (HEAT, dict(lbfgs_iterations=0), "lbfgs_iterations must be in [1, 2^31), got 0"),
    (HEAT, dict(y_step=NAN), "y_step must be finite, got nan"),
    (SINE, dict(y_step=NAN), "y_step must be finite, got nan"),
    (SINE, dict(adjoint_clip=-1.0), "adjoint_clip must be >= 0 and finite"),
    (SINE, dict(adjoint_clip=NAN), "adjoint_clip must be >= 0 and finite"),
    (SINE, dict(step_clip=0.0), "step_clip must be positive and finite, got 0"),
    (SINE, dict(step_clip=-1.0), "step_clip must be positive and finite"),
    (SINE, dict(step_clip=NAN), "step_clip must be positive and finite"),
    (WAVE_PACKET, dict(samples=0), "samples must be in [1, 2^31), got 0"),
    (WAVE_PACKET, dict(samples=-3), "samples must be in [1, 2^31), got -3"),
    (WAVE_PACKET, dict(samples=2**31), "samples must be in [1, 2^31)"),
    (WAVE_PACKET, dict(sigma=0.0), "sigma must be positive and finite, got 0"),
    (WAVE_PACKET, dict(sigma=-20.0), "sigma must be positive and finite"),
    (WAVE_PACKET, dict(sigma=NAN), "sigma must be positive and finite"),
    (WAVE_PACKET, dict(sigma=1e-300), "sigma = 1e-300 is too small"),
    (WAVE_PACKET, dict(frequency=NAN), "frequency must be finite, got nan"),
    (WAVE_PACKET, dict(frequency=math.inf), "frequency must be finite"),
    (WAVE_PACKET, dict(lbfgs_iterations=0), "lbfgs_iterations must be in [1, 2^31), got 0"),
    (WAVE_PACKET, dict(y_step=NAN), "y_step must be finite, got nan"),
    (WAVE_PACKET_FIT, dict(max_iterations=0), "max_iterations must be in [1, 2^31), got 0"),
    (WAVE_PACKET_FIT, dict(samples=0), "samples must be in [1, 2^31), got 0"),
    (WAVE_PACKET_FIT, dict(sigma=0.0), "sigma must be positive and finite"),
    (WAVE_PACKET_FIT, dict(initial=(NAN, 2.0)), "initial must be two finite numbers (xi0, A)"),
    (WAVE_PACKET_FIT, dict(lower=(10.0, 0.5), upper=(5.0, 4.0)), "lower must be below upper"),
]
for _fluid in (FLUID, FLUID_SEQUENCE):
    OPTION_CASES += [
        (_fluid, dict(steps=0), "steps must be in [1, 100000], got 0"),
        (_fluid, dict(steps=-1), "steps must be in [1, 100000]"),
        (_fluid, dict(steps=100001), "steps must be in [1, 100000]"),
        (_fluid, dict(dt=0.0), "dt must be positive and finite, got 0"),
        (_fluid, dict(dt=-0.25), "dt must be positive and finite"),
        (_fluid, dict(dt=NAN), "dt must be positive and finite"),
        (_fluid, dict(dt=math.inf), "dt must be positive and finite"),
        (_fluid, dict(spacing=(0.0, 2.0)), "spacing must be positive and finite"),
        (_fluid, dict(spacing=(2.0, NAN)), "spacing must be positive and finite"),
        (_fluid, dict(spacing=(1e-300, 1e-300)), "spacing [1e-300, 1e-300] is out of range"),  # hung
        (_fluid, dict(pressure_atol=0.0), "pressure_atol must be positive and finite, got 0"),
        (_fluid, dict(pressure_atol=NAN), "pressure_atol must be positive and finite"),
        (_fluid, dict(pressure_max_iterations=0), "pressure_max_iterations must be in [1, 2^31), got 0"),
    ]
OPTION_CASES += [
    (FLUID, dict(lbfgs_iterations=0), "lbfgs_iterations must be in [1, 2^31), got 0"),  # in every mode
    (FLUID, dict(y_step=NAN), "y_step must be finite, got nan"),
]


@pytest.mark.parametrize("op, options, words", OPTION_CASES,
                         ids=[f"{case[0].name}-{'-'.join(case[1])}-{i}" for i, case in enumerate(OPTION_CASES)])
def test_non_positive_and_nan_parameters_are_refused_naming_them(op, options, words):
    with pytest.raises(ValueError) as info:
        op.call(op.make(2, 0), **options)
    assert str(info.value).startswith(f"physgrad.{op.name}: ") and words in str(info.value)


def test_zero_and_negative_packet_frequencies_are_well_defined():
    """frequency is not restricted: 0 gives y = 0 and zero gradients in every mode, and
    -f mirrors the packet (sin is odd), so its gradients are those of +f with A negated."""
    params = WAVE_PACKET.make(2, 0)[0]
    for mode in WAVE_PACKET.modes:
        y, (grad,) = WAVE_PACKET.gradients([params], mode, frequency=0.0)
        assert torch.equal(y, torch.zeros_like(y)) and torch.equal(grad, torch.zeros_like(grad))
    mirrored = params * torch.tensor([1.0, -1.0], dtype=F64)
    torch.testing.assert_close(physgrad.wave_packet(params, frequency=-4.0, samples=64),
                               physgrad.wave_packet(mirrored, frequency=4.0, samples=64), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("op", DIFFERENTIABLE, ids=op_id)
def test_unknown_and_unoffered_modes_list_the_offered_ones(op):
    offered = ", ".join(f"'{mode}'" for mode in op.modes)
    for mode in ("sideways", "", "ADJOINT", next(m for m in physgrad.GRAD_MODES if m not in op.modes)):
        with raises(ValueError, f"physgrad.{op.name}: unknown grad_mode '{mode}'; this op offers {offered}"):
            op.call(op.make(1, 0), mode)
    with raises(ValueError, "physgrad.grad_mode: unknown mode 'sideways'"):
        with physgrad.grad_mode("sideways"):
            pass


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
def test_unknown_keyword_arguments_and_on_failure_values_are_refused(op):
    with pytest.raises(TypeError, match="unexpected keyword argument 'tolerance'"):
        op.call(op.make(1, 0), tolerance=1e-3)
    if "on_failure" in op.run.__code__.co_varnames:
        with raises(ValueError, f"physgrad.{op.name}: on_failure must be 'raise' or 'warn', got 'ignore'"):
            op.call(op.make(1, 0), on_failure="ignore")
    if not op.modes:
        with pytest.raises(TypeError, match="unexpected keyword argument 'grad_mode'"):
            op.call(op.make(1, 0), grad_mode="adjoint")


BACKWARD_CASES = [
    (lambda: torch.ops.physgrad.poisson_backward(torch.zeros(1, 4, 5, dtype=F64), torch.zeros(1, 4, 4, dtype=F64),
                                                 torch.zeros(1, 4, 4, dtype=F64), "adjoint", 1.0, [1.0, 1.0], 1e-10,
                                                 100, 32, "raise"),
     "physgrad.poisson_backward: grad_y [1, 4, 5] and y [1, 4, 4] must have the shape of x [1, 4, 4]"),
    (lambda: torch.ops.physgrad.poisson_backward(torch.zeros(1, 4, 4, dtype=torch.int32),
                                                 torch.zeros(1, 4, 4, dtype=F64), torch.zeros(1, 4, 4, dtype=F64),
                                                 "adjoint", 1.0, [1.0, 1.0], 1e-10, 100, 32, "raise"),
     "physgrad.poisson: grad_y must be float32 or float64"),
    (lambda: torch.ops.physgrad.fluid_backward(torch.zeros(1, 6, 5, dtype=F64), *FLUID.make(1, 0),
                                               torch.zeros(1, 6, 6, dtype=F64), 2, 0.25, [2.0, 2.0], "adjoint", 1.0,
                                               1e-4, 100, 32, "raise"),
     "physgrad.fluid_backward: grad_y has shape [1, 6, 5] but m0 has shape [1, 6, 6]"),
    (lambda: torch.ops.physgrad.sine_backward(torch.zeros(3, dtype=F64), torch.ones(2, dtype=F64),
                                              torch.ones(2, dtype=F64), torch.ones(2, dtype=F64), "physical", 1.0,
                                              0.0, 1.0),
     "physgrad.sine_backward: grad_y has shape [3] but x has shape [2]"),
    (lambda: torch.ops.physgrad.wave_packet_backward(torch.zeros(1, 63, dtype=F64), torch.ones(1, 2, dtype=F64),
                                                     torch.zeros(1, 64, dtype=F64), "newton", 1.0, 64, 4.0, 20.0,
                                                     32, "raise"),
     "physgrad.wave_packet_backward: grad_y must be [1, 64] ([B, samples]), got shape [1, 63]"),
]


@pytest.mark.parametrize("call, words", BACKWARD_CASES,
                         ids=["poisson", "poisson-dtype", "fluid", "sine", "wave_packet"])
def test_backward_ops_called_alone_check_the_incoming_gradient(call, words):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert words in str(info.value)


def test_module_with_a_bad_mode_fails_when_called():
    layer = physgrad.nn.Heat(grad_mode="newton")
    with raises(ValueError, "physgrad.heat: unknown grad_mode 'newton'; this op offers 'adjoint', 'physical', 'lbfgs'"):
        layer(torch.ones(1, 4, 4))


# ---- requires_grad on inputs a mode does not differentiate ---------------------

DATA_INPUTS = [(SINE, 1, mode) for mode in SINE.modes if mode != "adjoint"] + \
              [(FLUID, 1, mode) for mode in FLUID.modes if mode != "adjoint"]


@pytest.mark.parametrize("op, index, mode", DATA_INPUTS, ids=[f"{c[0].name}-{c[2]}" for c in DATA_INPUTS])
def test_data_input_requiring_grad_is_refused_outside_adjoint_but_fine_without_grad(op, index, mode):
    """Policy: only the adjoint differentiates the sine's a and the fluid's m0. A
    data input that requires grad in another mode is an error (a gradient silently
    missing would be worse); under torch.no_grad() nothing is differentiated, so
    it is fine; in the adjoint mode it gets its gradient."""
    inputs = op.make(2, 0)
    name = op.arguments[index]
    inputs[index] = inputs[index].clone().requires_grad_()
    with raises(ValueError, f"physgrad.{op.name}: {name} requires grad, but {name} is data: only "
                            f"grad_mode='adjoint' differentiates {name} (grad_mode is '{mode}'); pass {name}.detach()"):
        op.call(inputs, mode)
    with torch.no_grad():
        result = op.call(inputs, mode)
    assert torch.equal(result, op.call([t.detach() for t in inputs], mode)) and not result.requires_grad
    detached = [t.detach() for t in inputs]
    detached[0].requires_grad_()
    op.call(detached, mode).sum().backward()
    # the same gradient as when the data never required grad
    _, plain = op.gradients([t.detach() for t in inputs], mode)
    torch.testing.assert_close(detached[0].grad, plain[0], rtol=0, atol=0)
    y, grads = op.gradients(inputs, "adjoint")
    data = inputs[index].detach()
    if op is SINE:  # d/da sum(sin(a / x)) = cos(a / x) / x
        x = inputs[0]
        torch.testing.assert_close(grads[index], torch.cos(data / x) / x, rtol=1e-12, atol=0)
    else:  # m_t is positively homogeneous of degree 1 in m0 (advection and limiter): <dm_t/dm0, m0> = m_t
        assert op is FLUID
        torch.testing.assert_close((grads[index] * data).sum(dim=(1, 2)), y.sum(dim=(1, 2)), rtol=1e-10, atol=0)


@pytest.mark.parametrize("op", [FLUID_SEQUENCE, NEAREST_MINIMUM, WAVE_PACKET_FIT], ids=op_id)
def test_non_differentiable_ops_return_constants_for_inputs_requiring_grad(op):
    inputs = [t.clone().requires_grad_() for t in op.make(2, 0)]
    results = as_tuple(op.call(inputs))
    assert not any(r.requires_grad for r in results)
    for result, reference in zip(results, as_tuple(op.call([t.detach() for t in inputs]))):
        assert torch.equal(result, reference)


# ---- risky cases, each in a subprocess -----------------------------------------

# Huge logical sizes, built from stride-0 tensors that own almost no memory: each
# must be refused by a size check that names the argument, before any
# allocation. The subprocess runs under an address-space limit, so a missing
# check fails with an allocator error (a failed test) instead of the OOM killer.
HUGE_CASES: Dict[str, Tuple[str, str]] = {
    "poisson_x": ("physgrad.poisson(torch.zeros(1, 1, 1, dtype=torch.float64).expand(1, 2000000, 2000000))",
                  "physgrad.poisson: x of shape [1, 2000000, 2000000] (as contiguous float64) needs 32000 GB"),
    "poisson_x_float32": ("physgrad.poisson(torch.zeros(1, 1, 1).expand(1, 2000000, 2000000), grad_mode='adjoint')",
                          "physgrad.poisson: x of shape [1, 2000000, 2000000]"),
    "poisson_batch": ("physgrad.poisson(torch.zeros(1, 1, 1, dtype=torch.float64).expand(2**40, 4, 4))",
                      "physgrad.poisson: x of shape [1099511627776, 4, 4]"),
    "heat_x": ("physgrad.heat(torch.zeros(1, 1, 1, 1, dtype=torch.float64).expand(1, 1, 2000000, 2000000))",
               "physgrad.heat: x of shape [1, 1, 2000000, 2000000]"),
    "fluid_v0": ("physgrad.fluid(torch.zeros(1, 1, 1, 1, dtype=torch.float64).expand(1, 2, 1000000, 1000000), "
                 "torch.zeros(1, 1, 1, dtype=torch.float64).expand(1, 1000000, 1000000))",
                 "physgrad.fluid: a batch of 1 on a [1000000, 1000000] grid with steps = 8 needs"),
    # Inputs of 65 MB whose adjoint tape needs 16 TB: refused before v0 and m0 are even copied.
    "fluid_tape": ("physgrad.fluid(torch.zeros(1, 2, 64, 64, dtype=torch.float64).expand(1000, 2, 64, 64), "
                   "torch.zeros(1, 1, 1).expand(1000, 64, 64), steps=100000, dt=1e-3, grad_mode='adjoint')",
                   "physgrad.fluid: a batch of 1000 on a [64, 64] grid with steps = 100000 needs"),
    "fluid_sequence_steps": ("physgrad.fluid_sequence(torch.zeros(1, 2, 64, 64, dtype=torch.float64).expand(1000, 2, "
                             "64, 64), torch.zeros(1000, 64, 64, dtype=torch.float64), steps=100000, dt=1e-3)",
                             "physgrad.fluid_sequence: a batch of 1000 on a [64, 64] grid with steps = 100000 needs"),
    "sine_x": ("physgrad.sine(torch.ones(1, dtype=torch.float64).expand(2**40), "
               "torch.ones(1, dtype=torch.float64).expand(2**40))", "physgrad.sine: x of shape [1099511627776]"),
    "nearest_minimum": ("physgrad.sine_nearest_minimum(torch.ones(1).expand(2**40), torch.ones(1).expand(2**40))",
                        "physgrad.sine_nearest_minimum: x0 of shape [1099511627776]"),
    "packet_samples": ("physgrad.wave_packet(torch.tensor([[10.0, 1.0]]).expand(1000, 2), samples=2**31 - 1)",
                       "physgrad.wave_packet: samples = 2147483647 for a batch of 1000 needs"),
    "packet_batch": ("physgrad.wave_packet(torch.tensor([[10.0, 1.0]]).expand(10**9, 2))",  # params: 16 GB
                     "physgrad.wave_packet: samples = 256 for a batch of 1000000000 needs"),
    "fit_samples": ("physgrad.wave_packet_fit(torch.zeros(1, 1).expand(1000, 2**31 - 1), samples=2**31 - 1)",
                    "physgrad.wave_packet_fit: samples = 2147483647 for a batch of 1000 needs"),
}

SCALES = {"1e300": 1e300, "1e-300": 1e-300}
# (op, argument index, mode) for every op, argument and mode; None: forward only.
EXTREME_CASES = {f"{op.name}-{op.arguments[i]}-{mode or 'forward'}-{scale}": (op.name, i, mode, scale)
                 for op in ALL_OPS for i in range(len(op.arguments)) for mode in (op.modes or (None,))
                 for scale in SCALES}
# Scale-equivariant maps, whose result at scale s must be s times the unscaled one.
LINEAR = {("poisson", 0), ("heat", 0), ("fluid", 1), ("fluid_sequence", 1)}
# Cases that must succeed (the others may also refuse with a clean error).
MUST_SUCCEED = {name for name, (op, i, mode, scale) in EXTREME_CASES.items()
                if mode is None and (op, i) in LINEAR}


def extreme_case(name: str) -> str:
    """Runs one extreme-magnitude case; returns 'ok' or 'error: <message>' (assertions fail the case)."""
    from op_catalog import BY_NAME
    op_name, index, mode, scale = EXTREME_CASES[name]
    op, s = BY_NAME[op_name], SCALES[scale]
    inputs = op.make(2, 5)
    scaled = list(inputs)
    scaled[index] = inputs[index] * s
    try:
        results = list(as_tuple(op.call(scaled))) if mode is None else op.gradients(scaled, mode)[1]
    except (ValueError, RuntimeError) as error:
        assert str(error).startswith(f"physgrad.{op_name}"), error
        return f"error: {error}"
    for result in results:
        assert result is None or not result.is_floating_point() or result.isfinite().all(), f"non-finite {result}"
    if mode is None and (op_name, index) in LINEAR:
        y, reference = as_tuple(op.call(scaled))[0], as_tuple(op.call(inputs))[0]
        torch.testing.assert_close(y / s, reference, rtol=1e-9, atol=1e-9 * reference.abs().max().item())
    return "ok"


SUBPROCESS = textwrap.dedent("""
    import json, resource, sys, warnings
    resource.setrlimit(resource.RLIMIT_AS, (12 * 2**30, 12 * 2**30))
    warnings.simplefilter("ignore")
    import torch, physgrad, test_hostile_inputs as cases
    for name in sys.argv[2:]:
        print(json.dumps({"case": name, "started": True}), flush=True)
        try:
            if sys.argv[1] == "huge":
                eval(cases.HUGE_CASES[name][0])
                outcome = "no error"
            else:
                outcome = cases.extreme_case(name)
        except AssertionError as error:
            outcome = f"assertion: {error}"
        except Exception as error:
            outcome = f"{type(error).__name__}: {error}"
        print(json.dumps({"case": name, "outcome": outcome}), flush=True)
""")


def run_in_subprocess(kind: str, names: List[str], timeout: float) -> Dict[str, str]:
    """Runs the cases in one subprocess; a case that crashes or hangs it is
    reported as such (and the cases after it are not run)."""
    package = str(Path(physgrad.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), package]))
    try:
        done = subprocess.run([sys.executable, "-c", SUBPROCESS, kind, *names], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=HERE)
        stdout, ending = done.stdout, f"exit status {done.returncode}; stderr: {done.stderr[-2000:]}"
    except subprocess.TimeoutExpired as expired:
        stdout, ending = expired.stdout or "", f"timed out after {timeout} s"
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
    outcomes, last = {}, None
    for line in stdout.splitlines():
        record = json.loads(line)
        last = record["case"]
        if "outcome" in record:
            outcomes[last] = record["outcome"]
    if last is not None and last not in outcomes:
        outcomes[last] = f"crashed or hung the process: {ending}"
    return outcomes


@pytest.fixture(scope="module")
def huge_outcomes():
    return run_in_subprocess("huge", list(HUGE_CASES), timeout=180)


@pytest.fixture(scope="module")
def extreme_outcomes():
    return run_in_subprocess("extreme", list(EXTREME_CASES), timeout=300)


@pytest.mark.parametrize("case", HUGE_CASES)
def test_huge_sizes_are_refused_before_allocation(huge_outcomes, case):
    outcome = huge_outcomes.get(case, "not run (an earlier case crashed the subprocess)")
    assert outcome.startswith("ValueError: " + HUGE_CASES[case][1]), outcome
    assert "more than this machine's" in outcome


@pytest.mark.parametrize("case", EXTREME_CASES)
def test_extreme_magnitudes_give_a_correct_result_or_a_clean_error(extreme_outcomes, case):
    outcome = extreme_outcomes.get(case, "not run (an earlier case crashed the subprocess)")
    assert outcome == "ok" or (outcome.startswith("error: ") and case not in MUST_SUCCEED), outcome


def test_float32_results_beyond_float32_range_round_to_inf_like_torch():
    """Computed in float64 and rounded to float32, as torch's float32 arithmetic rounds."""
    x = torch.full((1, 4, 4), 3e38)
    assert torch.equal(physgrad.poisson(x), physgrad.poisson(x.double()).float())
    assert physgrad.poisson(x).isinf().any()
