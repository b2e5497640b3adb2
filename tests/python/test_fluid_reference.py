"""physgrad.fluid against the plain-torch fluid of benchmarks/references.py
(``TorchFluid``: the same MAC grid and step order written with torch ops, MacCormack
advection with the clamp limiter, plain-CG pressure projection, total-energy rescale;
its gradient is torch autograd through all of it).

On small grids with a general flow (a uniform drift plus random swirls, moving the
fields by up to about a cell per step, so that MacCormack's correction and the
limiter both act) and a tight pressure tolerance, the marker m_t and the adjoint's
gradients for v0 and m0 must agree to ~1e-9.  A wrong but self-consistent scheme
(e.g. a MacCormack weight 0.25 instead of 0.5 in both the forward and the adjoint)
passes gradcheck and every property test; it cannot pass these.
"""
from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import pytest
import torch

import physgrad

REPOSITORY = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("benchmark_references", REPOSITORY / "benchmarks" / "references.py")
references = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(references)

PRESSURE_ATOL = 1e-10
TOLERANCE = 1e-9  # relative; the two agree to ~1e-12 at this pressure tolerance

# name: (shape, spacing (dy, dx), dt, steps)
CASES = {
    "16x16, the paper's cells and dt": ((16, 16), (2.0, 2.0), 0.25, 4),
    "12x16, anisotropic cells, dt 0.3": ((12, 16), (1.5, 2.0), 0.3, 3),
}


def general_flow(batch, shape, spacing, dt, seed):
    """Cell-centred v0 [batch, 2, ny, nx]: a drift plus Fourier modes up to wave number 3 with
    random amplitudes, scaled so that the fastest cell moves 1.2 cells per step."""
    generator = torch.Generator().manual_seed(seed)
    ny, nx = shape
    j, i = torch.meshgrid(torch.arange(ny, dtype=torch.float64), torch.arange(nx, dtype=torch.float64),
                          indexing="ij")
    v0 = torch.randn(batch, 2, 1, 1, generator=generator, dtype=torch.float64).expand(batch, 2, ny, nx).clone()
    for p in range(-3, 4):
        for q in range(-3, 4):
            if p == q == 0:
                continue
            a, b = torch.randn(2, batch, 2, 1, 1, generator=generator, dtype=torch.float64) / (p * p + q * q)
            phase = 2 * math.pi * (p * j / ny + q * i / nx)
            v0 += a * torch.cos(phase) + b * torch.sin(phase)
    cells_per_step = torch.stack([v0[:, 0].abs() * dt / spacing[1], v0[:, 1].abs() * dt / spacing[0]])
    return v0 * (1.2 / cells_per_step.amax())


def case_inputs(name, batch=2, seed=0):
    shape, spacing, dt, steps = CASES[name]
    v0 = general_flow(batch, shape, spacing, dt, seed)
    m0 = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    g = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed + 2), dtype=torch.float64)
    return v0, m0, g, dict(shape=shape, spacing=spacing, dt=dt, steps=steps)


def reference_run(v0, m0, g, options, fluid_class=references.TorchFluid):
    """m_t and the gradients (J_v0^T g, J_m0^T g) of the torch reference."""
    fluid = fluid_class(options["shape"], spacing=options["spacing"], dt=options["dt"], steps=options["steps"],
                        atol=PRESSURE_ATOL, max_iterations=10000)
    v, m = v0.clone().requires_grad_(), m0.clone().requires_grad_()
    m_t = fluid(v, m)
    m_t.backward(g)
    return m_t.detach(), v.grad, m.grad


def op_run(v0, m0, g, options):
    """m_t and the adjoint's gradients of physgrad.fluid."""
    v, m = v0.clone().requires_grad_(), m0.clone().requires_grad_()
    m_t = physgrad.fluid(v, m, steps=options["steps"], dt=options["dt"], spacing=options["spacing"],
                         grad_mode="adjoint", pressure_atol=PRESSURE_ATOL)
    m_t.backward(g)
    return m_t.detach(), v.grad, m.grad


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name", list(CASES))
def test_forward_and_adjoint_match_the_torch_reference(name):
    v0, m0, g, options = case_inputs(name)
    m_op, gv_op, gm_op = op_run(v0, m0, g, options)
    m_ref, gv_ref, gm_ref = reference_run(v0, m0, g, options)
    assert not torch.allclose(m_ref, m0, atol=0.05)  # the marker moved
    assert relative(m_op, m_ref) < TOLERANCE
    assert relative(gv_op, gv_ref) < TOLERANCE
    assert relative(gm_op, gm_ref) < TOLERANCE
    assert physgrad.solve_stats("fluid").all_converged


class MacCormackWeight(references.TorchFluid):
    """The reference with another weight of MacCormack's correction (0.5 is right)."""

    def __init__(self, *args, weight: float, **options):
        super().__init__(*args, **options)
        self.weight = weight

    def maccormack(self, field, ux, uy):
        cx, cy = self.dt / self.dx, self.dt / self.dy
        semi, corners = self.sample(field, self.ii - ux * cx, self.jj - uy * cy)
        back, _ = self.sample(semi, self.ii + ux * cx, self.jj + uy * cy)
        value = semi + self.weight * (field - back)
        stacked = torch.stack(corners)
        return torch.maximum(torch.minimum(value, stacked.amax(0)), stacked.amin(0))


@pytest.mark.parametrize("weight", [0.25, 0.45])
def test_a_wrong_maccormack_weight_is_far_outside_the_tolerance(weight):
    """What the comparison above would see from an op whose forward and adjoint both used another weight."""
    name = next(iter(CASES))
    v0, m0, g, options = case_inputs(name)
    right = reference_run(v0, m0, g, options, functools.partial(MacCormackWeight, weight=0.5))
    torch.testing.assert_close(right, reference_run(v0, m0, g, options), rtol=0, atol=0)
    wrong = reference_run(v0, m0, g, options, functools.partial(MacCormackWeight, weight=weight))
    for a, b in zip(wrong, right):
        assert relative(a, b) > 1e3 * TOLERANCE
