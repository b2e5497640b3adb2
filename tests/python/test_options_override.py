"""PETSc options cannot silently loosen what a call asks for: an option may tighten a
solve's rtol/atol but not loosen it, and a result is checked (the true residual of
linear solves, the divergence left by the fluid's projection, the bounds of the
fitter) before it is called converged."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import physgrad


@pytest.fixture(autouse=True)
def clean_options():
    physgrad.clear_solver_options()
    yield
    physgrad.clear_solver_options()


def poisson_reference(x: np.ndarray) -> np.ndarray:
    """laplace(y) = x with zero Dirichlet boundary, unit spacing (5-point stencil)."""
    ny, nx = x.shape
    lap = sp.kronsum(sp.diags([1, -2, 1], [-1, 0, 1], shape=(nx, nx)), sp.diags([1, -2, 1], [-1, 0, 1], shape=(ny, ny)))
    return spla.spsolve(lap.tocsc(), x.ravel()).reshape(ny, nx)


@pytest.mark.parametrize("options", ["-physgrad_poisson_pc_type none -physgrad_poisson_ksp_rtol 0.5",
                                     "-physgrad_poisson_pc_type jacobi -physgrad_poisson_ksp_rtol inf",
                                     "-physgrad_poisson_pc_type none -physgrad_poisson_ksp_atol 1e3"])
def test_options_do_not_loosen_the_calls_tolerance(options):
    physgrad.set_solver_options(options)
    x = torch.rand(2, 12, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = physgrad.poisson(x, rtol=1e-12)
    for b in range(2):
        reference = poisson_reference(x[b].numpy())
        assert np.abs(y[b].numpy() - reference).max() <= 1e-9 * np.abs(reference).max()
    assert physgrad.solve_stats("poisson").iterations[0] > 1  # the option's method ran (no Cholesky)


def test_a_solver_that_stops_without_solving_is_not_converged():
    physgrad.set_solver_options("-physgrad_poisson_ksp_type preonly -physgrad_poisson_pc_type jacobi")
    x = torch.rand(1, 8, 8, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="TRUE_RESIDUAL_ABOVE_TOLERANCE"):
        physgrad.poisson(x)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        physgrad.poisson(x, on_failure="warn")
    stats = physgrad.solve_stats("poisson")
    assert stats.converged == [False] and stats.reasons == ["TRUE_RESIDUAL_ABOVE_TOLERANCE"]


def test_fluid_projection_is_checked_by_the_divergence_left():
    # two Richardson sweeps without a norm: KSP reports CONVERGED_ITS whatever is left
    physgrad.set_solver_options("-physgrad_fluid_ksp_type richardson -physgrad_fluid_ksp_norm_type none "
                                "-physgrad_fluid_ksp_max_it 2 -physgrad_fluid_pc_type jacobi")
    generator = torch.Generator().manual_seed(2)
    v0 = torch.randn(1, 2, 8, 8, generator=generator, dtype=torch.float64)
    m0 = torch.rand(1, 8, 8, generator=generator, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="the divergence left, .* is above the tolerance .* CONVERGED_ITS"):
        physgrad.fluid(v0, m0, steps=1)


def test_fitter_outside_its_bounds_is_not_converged():
    from physgrad.experiments.wave_packet import WavePacketData
    batch = WavePacketData(5, dtype=torch.float64).sample(20)
    physgrad.set_solver_options("-physgrad_wave_packet_fit_tao_type lmvm")  # ignores bounds
    params, converged = physgrad.wave_packet_fit(batch.y_star)
    outside = (params[:, 0] < 25.6) | (params[:, 0] > 230.4) | (params[:, 1] < 1) | (params[:, 1] > 4)
    assert bool(outside.any())  # this seed has one: the check below is not vacuous
    assert not bool((converged & outside).any())
    reasons = physgrad.solve_stats("wave_packet_fit").reasons
    assert all(reasons[i] == "OUTSIDE_BOUNDS" for i in torch.nonzero(outside).flatten().tolist())
