"""The fluid's viscosity term nu laplace(v): one implicit diffusion step per time step (cphys/fluid.h)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import physgrad


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def shear_flow(ny: int, nx: int, spacing: float, mode: int = 1) -> torch.Tensor:
    """vx = sin(2 pi mode y / Ly), vy = 0 at the cell centres, [1, 2, ny, nx]: divergence-free,
    constant along x, so advection and the projection leave it as it is."""
    y = (np.arange(ny) + 0.5) * spacing
    v = np.zeros((1, 2, ny, nx))
    v[0, 0] = np.sin(2 * math.pi * mode * y / (ny * spacing))[:, None]
    return torch.from_numpy(v)


def test_zero_viscosity_is_bitwise_the_default():
    v0 = torch.randn(2, 2, 8, 10, generator=generator(1), dtype=torch.float64)
    m0 = torch.rand(2, 8, 10, generator=generator(2), dtype=torch.float64)
    for energy in ("total", "none"):
        results = []
        for extra in ({}, {"viscosity": 0.0}):
            v = v0.clone().requires_grad_()
            y = physgrad.fluid(v, m0, steps=3, grad_mode="adjoint", energy=energy, **extra)
            (y * m0).sum().backward()
            results.append((y.detach(), v.grad))
        assert torch.equal(results[0][0], results[1][0])
        assert torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("mode, nu", [(1, 0.8), (2, 0.8), (3, 40.0)])
def test_shear_mode_decays_by_the_implicit_factor_per_step(mode, nu):
    ny, nx, spacing, dt, steps = 16, 6, 1.5, 0.25, 5
    v0 = shear_flow(ny, nx, spacing, mode)
    m0 = torch.rand(1, ny, nx, generator=generator(3), dtype=torch.float64)
    _, velocities = physgrad.fluid_sequence(v0, m0, steps=steps, dt=dt, spacing=(spacing, spacing),
                                            pressure_atol=1e-12, energy="none", viscosity=nu)
    # The 5-point Laplacian's eigenvalue of the mode, computed here independently of cphys.
    k2 = (2.0 / spacing * np.sin(math.pi * mode / ny)) ** 2
    factor = 1.0 / (1.0 + nu * dt * k2)
    assert 0.0 < factor < 1.0
    vx0 = velocities[0, 0, 0].numpy()
    for k in range(steps + 1):
        np.testing.assert_allclose(velocities[0, k, 0].numpy(), factor ** k * vx0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(velocities[0, k, 1].numpy(), 0.0, atol=1e-12)
    # Without viscosity the same flow is steady.
    _, inviscid = physgrad.fluid_sequence(v0, m0, steps=steps, dt=dt, spacing=(spacing, spacing),
                                          pressure_atol=1e-12, energy="none")
    np.testing.assert_allclose(inviscid[0, -1, 0].numpy(), vx0, atol=1e-12)


def test_adjoint_with_viscosity_passes_gradcheck():
    v0 = (torch.randn(2, 2, 7, 9, generator=generator(4), dtype=torch.float64) * 1.5 + 1.0).requires_grad_()
    m0 = torch.rand(2, 7, 9, generator=generator(5), dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, m: physgrad.fluid(v, m, steps=2, spacing=(1.5, 2.0), grad_mode="adjoint", pressure_atol=1e-12,
                                    energy="none", viscosity=0.3),
        (v0, m0))


def test_viscosity_changes_the_result_and_the_module_passes_it_on():
    v0 = torch.randn(1, 2, 8, 8, generator=generator(6), dtype=torch.float64)
    m0 = torch.rand(1, 8, 8, generator=generator(7), dtype=torch.float64)
    inviscid = physgrad.fluid(v0, m0, energy="none")
    viscous = physgrad.fluid(v0, m0, energy="none", viscosity=1.0)
    assert not torch.equal(inviscid, viscous)
    layer = physgrad.nn.Fluid(energy="none", viscosity=1.0)
    assert torch.equal(layer(v0, m0), viscous)


def test_physical_mode_runs_with_viscosity():
    v0 = torch.randn(1, 2, 8, 8, generator=generator(8), dtype=torch.float64).requires_grad_()
    m0 = torch.rand(1, 8, 8, generator=generator(9), dtype=torch.float64)
    physgrad.fluid(v0, m0, grad_mode="physical", energy="none", viscosity=0.5).sum().backward()
    assert v0.grad.isfinite().all()


@pytest.mark.parametrize("viscosity, words", [
    (-0.1, "viscosity must be >= 0 and finite"),
    (float("nan"), "viscosity must be >= 0 and finite"),
    (float("inf"), "viscosity must be >= 0 and finite"),
])
def test_bad_viscosity_is_a_value_error_naming_it(viscosity, words):
    with pytest.raises(ValueError) as info:
        physgrad.fluid(torch.zeros(1, 2, 6, 6), torch.zeros(1, 6, 6), energy="none", viscosity=viscosity)
    assert words in str(info.value)
    with pytest.raises(ValueError, match="viscosity"):
        physgrad.fluid_sequence(torch.zeros(1, 2, 6, 6), torch.zeros(1, 6, 6), energy="none", viscosity=viscosity)


def test_viscosity_with_an_energy_rescale_is_refused():
    for energy in ("total", "per_component"):
        with pytest.raises(ValueError, match="needs energy='none'"):
            physgrad.fluid(torch.zeros(1, 2, 6, 6), torch.zeros(1, 6, 6), energy=energy, viscosity=0.1)
