"""physgrad.fluid in a closed box (``boundary``): the periodic default bitwise unchanged, walls that
stop the flow and keep the marker in, the adjoint (gradcheck), the physical and lbfgs modes, errors."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import physgrad

REPOSITORY = Path(__file__).resolve().parents[2]
WALLS = ["free_slip", "no_slip", "no_slip,periodic", "periodic,free_slip"]


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_velocity(batch, ny, nx, seed=1, mean=(2.0, -1.0), scale=1.5):
    noise = torch.randn(batch, 2, ny, nx, generator=generator(seed), dtype=torch.float64) * scale
    return noise + torch.tensor(mean, dtype=torch.float64)[None, :, None, None]


def reference_arrays() -> dict:
    """The arrays of tests/c/fluid_periodic_reference.h: the periodic code's outputs before walls."""
    text = (REPOSITORY / "tests" / "c" / "fluid_periodic_reference.h").read_text()
    arrays = {}
    for block in text.split("static const double ")[1:]:
        name = block.split("[")[0]
        body = block.split("{", 1)[1].split("}", 1)[0]
        arrays[name] = torch.tensor([float.fromhex(v) for v in body.replace("\n", " ").split(",") if v.strip()],
                                    dtype=torch.float64)
    return arrays


def reference_inputs():
    """tests/c/fluid_reference_inputs.h's inputs, computed the same way (bitwise: same libm)."""
    ny, nx = 8, 10
    v0 = torch.empty(1, 2, ny, nx, dtype=torch.float64)
    m0 = torch.empty(1, ny, nx, dtype=torch.float64)
    for j in range(ny):
        for i in range(nx):
            x, y, p = i / nx, j / ny, j * nx + i
            v0[0, 0, j, i] = 3.0 * math.sin(6.283185307179586 * (y + 0.1)) + \
                1.3 * math.cos(12.566370614359172 * x + 0.4) + 0.7
            v0[0, 1, j, i] = -2.5 * math.cos(6.283185307179586 * (x + 0.3 * y)) + \
                0.9 * math.sin(12.566370614359172 * y) - 0.4
            m0[0, j, i] = math.exp(-8.0 * ((x - 0.4) * (x - 0.4) + (y - 0.55) * (y - 0.55))) + \
                0.1 * math.cos(31.0 * p)
    return v0, m0


@pytest.mark.parametrize("boundary", [None, "periodic", "periodic,periodic", ("periodic", "periodic")])
def test_periodic_is_bitwise_the_code_before_walls(boundary):
    v0, m0 = reference_inputs()
    options = dict(steps=3, dt=0.4, spacing=(1.5, 2.0), pressure_atol=1e-11)
    if boundary is not None:
        options["boundary"] = boundary
    m_t = physgrad.fluid(v0, m0, **options)
    expected = reference_arrays()["fluid_reference_m_t_inviscid"].view(1, 8, 10)
    assert torch.equal(m_t, expected), (m_t - expected).abs().max()
    viscous = physgrad.fluid(v0, m0, energy="none", viscosity=0.8, **options)
    assert torch.equal(viscous, reference_arrays()["fluid_reference_m_t_viscous"].view(1, 8, 10))


def test_uniform_flow_into_walls_is_stopped_and_along_them_kept():
    m0 = torch.rand(1, 8, 10, generator=generator(4), dtype=torch.float64)
    v0 = torch.zeros(1, 2, 8, 10, dtype=torch.float64)
    v0[:, 0] = 1.5  # along x
    _, closed = physgrad.fluid_sequence(v0, m0, steps=1, boundary="periodic,free_slip", pressure_atol=1e-12)
    assert closed[:, 0].abs().max() < 1e-10  # walls left and right: the projection removes it all
    markers, channel = physgrad.fluid_sequence(v0, m0, steps=1, boundary="no_slip,periodic", pressure_atol=1e-12)
    torch.testing.assert_close(channel[:, 0], v0, rtol=0, atol=1e-12)  # walls below and above: a channel


def mirrored(field: torch.Tensor, dim: int, sign: float) -> torch.Tensor:
    """field continued across its last cell face along dim: [..., n] -> [..., 2n], sign times the mirror."""
    return torch.cat([field, sign * field.flip(dim)], dim)


@pytest.mark.parametrize("viscosity", [0.0, 0.7])
def test_free_slip_box_is_the_mirror_symmetric_half_of_a_periodic_box(viscosity):
    # Analytic: free-slip walls are mirror planes.  Extended across them (the marker and the
    # tangential velocity evenly, the normal velocity oddly), a periodic box twice as large keeps the
    # symmetry, and its first quarter is the closed box's flow, as long as no departure point crosses a
    # wall (a CFL number below 1/2; beyond, the closed box clamps where the periodic one mirrors).
    ny, nx = 6, 8
    v0 = 0.3 * smooth_velocity(1, ny, nx, seed=9, mean=(0.0, 0.0))
    m0 = torch.rand(1, ny, nx, generator=generator(10), dtype=torch.float64)
    vx = mirrored(mirrored(v0[:, 0], 2, -1.0), 1, 1.0)
    vy = mirrored(mirrored(v0[:, 1], 2, 1.0), 1, -1.0)
    big_v0, big_m0 = torch.stack([vx, vy], 1), mirrored(mirrored(m0, 2, 1.0), 1, 1.0)
    energy = "none" if viscosity else "total"
    options = dict(steps=4, dt=0.5, spacing=(1.5, 2.0), pressure_atol=1e-13, energy=energy, viscosity=viscosity)
    closed = physgrad.fluid(v0, m0, boundary="free_slip", **options)
    periodic = physgrad.fluid(big_v0, big_m0, **options)
    torch.testing.assert_close(periodic, mirrored(mirrored(closed, 2, 1.0), 1, 1.0), rtol=0, atol=1e-11)
    assert (closed - physgrad.fluid(v0, m0, **options)).abs().max() > 1e-3  # the walls matter


def test_no_slip_holds_the_flow_at_the_walls_where_free_slip_lets_it_slide():
    # Inviscid, so only the advection's ghost differs: near the walls no-slip samples a tangential
    # velocity that tends to 0 on the wall, free-slip one that keeps its value; far from them the two agree.
    v0 = smooth_velocity(1, 12, 12, seed=11, mean=(0.0, 0.0))
    m0 = torch.rand(1, 12, 12, generator=generator(12), dtype=torch.float64)
    options = dict(steps=1, spacing=(1.0, 1.0), pressure_atol=1e-12, energy="none")
    _, free = physgrad.fluid_sequence(v0, m0, boundary="free_slip", **options)
    _, held = physgrad.fluid_sequence(v0, m0, boundary="no_slip", **options)
    assert torch.equal(free[:, 0], held[:, 0])  # the same projected v0
    assert (free[:, 1] - held[:, 1]).abs().max() > 1e-3

    def tangential_speed_at_walls(v: torch.Tensor) -> torch.Tensor:
        """vx in the bottom and top rows plus vy in the outer columns, after the step."""
        return v[0, 1, 0, [0, -1], :].abs().sum() + v[0, 1, 1, :, [0, -1]].abs().sum()

    assert tangential_speed_at_walls(held) < tangential_speed_at_walls(free)


@pytest.mark.parametrize("boundary", ["free_slip", "no_slip"])
def test_marker_stays_in_the_box(boundary):
    ny = nx = 24
    y, x = torch.meshgrid(torch.arange(ny, dtype=torch.float64) + 0.5, torch.arange(nx, dtype=torch.float64) + 0.5,
                          indexing="ij")
    falloff = torch.exp(-((x - 12) ** 2 + (y - 12) ** 2) / 72)
    v0 = torch.stack([-0.6 * (y - 12) * falloff, 0.6 * (x - 12) * falloff])[None]
    r2 = (x - 1.5) ** 2 + (y - 12.5) ** 2
    m0 = torch.where(r2 <= 25, torch.exp(-r2 / 8), torch.zeros(()))[None]
    options = dict(steps=3, dt=0.5, spacing=(1.0, 1.0))
    periodic = physgrad.fluid(v0, m0, **options)
    walled = physgrad.fluid(v0, m0, boundary=boundary, **options)
    assert periodic[..., -4:].abs().max() > 1e-3  # across x = 0 in the periodic box
    assert walled[..., -4:].abs().max() == 0  # not through the wall
    assert walled.min() >= 0
    # Mass: MacCormack with the clamp limiter is not conservative; measured +2.8% periodic, +1.1% walls.
    change = walled.sum() / m0.sum() - 1
    assert abs(change) < 0.02, change
    ones = physgrad.fluid(v0, torch.ones_like(m0), boundary=boundary, **options)
    torch.testing.assert_close(ones, torch.ones_like(m0), rtol=0, atol=1e-13)  # no flux through the walls


@pytest.mark.parametrize("boundary", WALLS)
def test_adjoint_passes_gradcheck(boundary):
    v0 = smooth_velocity(2, 7, 9).requires_grad_()
    m0 = torch.rand(2, 7, 9, generator=generator(2), dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, m: physgrad.fluid(v, m, steps=2, spacing=(1.5, 2.0), grad_mode="adjoint", pressure_atol=1e-12,
                                    boundary=boundary),
        (v0, m0))


def test_adjoint_passes_gradcheck_with_viscosity_between_walls():
    v0 = smooth_velocity(1, 7, 9).requires_grad_()
    m0 = torch.rand(1, 7, 9, generator=generator(5), dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda v: physgrad.fluid(v, m0, steps=2, spacing=(1.5, 2.0), grad_mode="adjoint", pressure_atol=1e-12,
                                 energy="none", viscosity=0.5, boundary="no_slip,free_slip"),
        (v0,))


@pytest.mark.parametrize("boundary", ["free_slip", "no_slip"])
def test_physical_mode_recovers_a_vortex_between_walls(boundary):
    # The prior's vortex is (nearly) a fixed point; no uniform flow is fitted across walls.
    n = 32
    w = physgrad.ops.fluid_unit_vortex((n, n), spacing=(2.0, 2.0))
    v0 = (0.05 * w)[None].clone()
    y, x = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64),
                          indexing="ij")
    m0 = torch.exp(-((x - 20) ** 2 + (y - 16) ** 2) / 8)[None]
    target = physgrad.fluid(v0, m0, boundary=boundary)
    guess = torch.zeros_like(v0).requires_grad_()
    y = physgrad.fluid(guess, m0, boundary=boundary, grad_mode="physical")
    physgrad.losses.l2(y, target).backward()
    estimate = guess.detach() - guess.grad  # v0_new = v0 - dv0
    strength = (estimate * w).sum() / (w * w).sum()
    assert torch.isfinite(estimate).all()
    torch.testing.assert_close(estimate, strength * w[None], rtol=0, atol=1e-12)  # u = 0 between walls
    assert strength > 0  # the marker turned counter-clockwise: the estimate's vortex does too


def test_lbfgs_mode_lowers_the_loss_between_walls():
    v0 = smooth_velocity(1, 8, 8, scale=0.5)
    m0 = torch.rand(1, 8, 8, generator=generator(6), dtype=torch.float64)
    options = dict(steps=2, spacing=(1.5, 2.0), pressure_atol=1e-12, boundary="no_slip")
    target = physgrad.fluid(smooth_velocity(1, 8, 8, seed=7, scale=0.5), m0, **options)
    v = v0.clone().requires_grad_()
    loss = physgrad.losses.l2(physgrad.fluid(v, m0, grad_mode="lbfgs", lbfgs_iterations=5, **options), target)
    loss.backward()
    after = physgrad.losses.l2(physgrad.fluid(v0 - v.grad, m0, **options), target)
    assert after < loss.detach()


def test_centre_of_mass_is_the_plain_mean_between_walls():
    marker = torch.zeros(1, 6, 8, dtype=torch.float64)
    marker[0, 2, 0] = marker[0, 2, 7] = 1.0
    centre = physgrad.ops.fluid_centre_of_mass(marker, spacing=(1.5, 2.0), boundary="periodic,free_slip")
    torch.testing.assert_close(centre, torch.tensor([[8.0, 3.75]], dtype=torch.float64))
    periodic = physgrad.ops.fluid_centre_of_mass(marker, spacing=(1.5, 2.0))
    assert abs(periodic[0, 0] - 8.0) > 7  # the circular mean: on the seam


@pytest.mark.parametrize("boundary", ["wall", "free-slip", "periodic,periodic,periodic", "", "no_slip,"])
def test_bad_boundary_is_a_clear_error(boundary):
    v0, m0 = smooth_velocity(1, 5, 5), torch.rand(1, 5, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="boundary"):
        physgrad.fluid(v0, m0, boundary=boundary)


def test_module_and_script_take_the_boundary():
    layer = physgrad.nn.Fluid(steps=2, boundary=("free_slip", "periodic"), grad_mode="adjoint")
    assert layer.boundary == "free_slip,periodic"
    v0, m0 = smooth_velocity(1, 6, 6), torch.rand(1, 6, 6, generator=generator(8), dtype=torch.float64)
    expected = physgrad.fluid(v0, m0, steps=2, boundary="free_slip,periodic")
    assert torch.equal(layer(v0, m0), expected)
    assert torch.equal(torch.jit.script(layer)(v0, m0), expected)
    assert not torch.equal(physgrad.fluid(v0, m0, steps=2), expected)
