"""physgrad.poisson against scipy, the gradient-mode contract, modules and modes."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import physgrad


def random_grid(batch=2, ny=9, nx=7, dtype=torch.float64, seed=0):
    return torch.randn(batch, ny, nx, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def test_forward_matches_scipy_sparse_solve(laplacian):
    x = random_grid(batch=3, ny=11, nx=6)
    y = physgrad.poisson(x, spacing=(0.5, 2.0))
    matrix = laplacian(11, 6, 0.5, 2.0)
    for s in range(3):
        expected = spla.spsolve(matrix.tocsc(), x[s].numpy().ravel()).reshape(11, 6)
        np.testing.assert_allclose(y[s].numpy(), expected, rtol=1e-8, atol=1e-10)


def test_float32_in_float32_out_and_channel_dim_kept():
    x = random_grid(dtype=torch.float32).unsqueeze(1)
    y = physgrad.poisson(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    np.testing.assert_allclose(y.numpy(), physgrad.poisson(x.double()).numpy(), rtol=1e-5, atol=1e-6)


def test_non_contiguous_input_gives_the_same_result():
    x = random_grid(ny=8, nx=10)
    transposed = x.transpose(1, 2).contiguous().transpose(1, 2)
    assert not transposed.is_contiguous()
    torch.testing.assert_close(physgrad.poisson(transposed), physgrad.poisson(x), rtol=0, atol=0)


def test_adjoint_passes_gradcheck():
    x = random_grid(batch=2, ny=5, nx=4).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: physgrad.poisson(v, grad_mode="adjoint", spacing=(0.7, 1.3)), (x,))


def test_physical_mode_is_laplacian_of_incoming_gradient(laplacian):
    x = random_grid(ny=6, nx=8).requires_grad_()
    g = random_grid(ny=6, nx=8, seed=1)
    physgrad.poisson(x, grad_mode="physical", y_step=0.3, spacing=(1.5, 0.5)).backward(g)
    matrix = laplacian(6, 8, 1.5, 0.5)
    expected = np.stack([matrix @ (0.3 * gs.numpy().ravel()) for gs in g]).reshape(g.shape)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_physical_step_with_l2_loss_lands_on_target():
    x_star = random_grid(seed=3)
    y_star = physgrad.poisson(x_star)
    x = random_grid(seed=4).requires_grad_()
    physgrad.losses.l2(physgrad.poisson(x, grad_mode="physical"), y_star).backward()
    torch.testing.assert_close(physgrad.poisson(x.detach() - x.grad), y_star, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(x.detach() - x.grad, x_star, rtol=1e-7, atol=1e-7)


def test_lbfgs_mode_lowers_the_objective_as_iterations_grow():
    x_star, x = random_grid(seed=5, ny=6, nx=6), random_grid(seed=6, ny=6, nx=6)
    y_star = physgrad.poisson(x_star)
    objectives = []
    for iterations in (1, 4, 64):
        xi = x.clone().requires_grad_()
        physgrad.losses.l2(physgrad.poisson(xi, grad_mode="lbfgs", lbfgs_iterations=iterations), y_star).backward()
        objectives.append(physgrad.losses.l2(physgrad.poisson(x - xi.grad), y_star).item())
    assert objectives[0] > objectives[1] > objectives[2]
    assert objectives[2] < 1e-6 * physgrad.losses.l2(physgrad.poisson(x), y_star).item()


def test_solve_stats_report_each_sample():
    physgrad.poisson(random_grid(batch=3), solver="petsc")  # the spectral solver's: test_poisson_boundaries.py
    stats = physgrad.solve_stats("poisson")
    assert stats.phase == "forward" and len(stats.iterations) == 3 and stats.all_converged
    assert all(reason.startswith("CONVERGED") for reason in stats.reasons)
    assert all(0 < r < 1e-6 for r in stats.residual_norms)


def test_module_mode_can_change_and_context_manager_overrides_it():
    layer = physgrad.nn.Poisson(grad_mode="physical")
    x = random_grid().requires_grad_()
    g = random_grid(seed=9)

    def gradient():
        x.grad = None
        layer(x).backward(g)
        return x.grad.clone()

    physical = gradient()
    layer.grad_mode = "adjoint"
    adjoint = gradient()
    torch.testing.assert_close(adjoint, physgrad.poisson(g))
    assert not torch.allclose(physical, adjoint)
    with physgrad.grad_mode("physical"):
        torch.testing.assert_close(gradient(), physical)
    torch.testing.assert_close(gradient(), adjoint)
    with physgrad.grad_mode("adjoint"):
        x.grad = None
        physgrad.poisson(x, grad_mode="physical").backward(g)  # an explicit argument wins
    torch.testing.assert_close(x.grad, physical)


@pytest.mark.parametrize("bad, error, words", [
    (lambda: physgrad.poisson(torch.zeros(1, 4, 4, dtype=torch.int64)), TypeError, "float32 or float64"),
    (lambda: physgrad.poisson(torch.zeros(1, 4, 4, dtype=torch.float16)), TypeError, "float32 or float64"),
    (lambda: physgrad.poisson(torch.zeros(4, 4)), ValueError, "3 or 4 or 5 dimensions"),
    (lambda: physgrad.poisson(torch.zeros(1, 2, 3, 4, 4)), ValueError, "[B, 1, nz, ny, nx]"),
    (lambda: physgrad.poisson(torch.zeros(1, 0, 4)), ValueError, "at least one node"),
    (lambda: physgrad.poisson(torch.zeros(1, 4, 4), grad_mode="newton"), ValueError, "'adjoint', 'physical', 'lbfgs'"),
    (lambda: physgrad.poisson(torch.zeros(1, 4, 4), grad_mode="sideways"), ValueError, "unknown grad_mode"),
    (lambda: physgrad.poisson(torch.zeros(1, 4, 4), spacing=(0.0, 1.0)), ValueError, "spacing"),
    (lambda: physgrad.poisson(torch.zeros(1, 4, 4), rtol=5.0), ValueError, "rtol"),
    (lambda: physgrad.poisson(torch.zeros(1, 4, 4), on_failure="ignore"), ValueError, "on_failure"),
    (lambda: physgrad.poisson(torch.full((1, 4, 4), float("nan"))), RuntimeError, "DIVERGED_NANORINF"),
])
def test_bad_input_is_a_clear_python_error(bad, error, words):
    with pytest.raises(error, match=None) as info:
        bad()
    assert words in str(info.value)
    assert physgrad.poisson(torch.ones(1, 3, 3)).isfinite().all()  # still usable afterwards


def test_empty_batch_gives_empty_result():
    assert physgrad.poisson(torch.zeros(0, 4, 5)).shape == (0, 4, 5)


@pytest.fixture
def iterative_preconditioner():
    """ICC(0): CG then needs tens of iterations on these grids (the default Cholesky
    preconditioner converges in one), so small iteration limits fail as these tests need."""
    physgrad.set_solver_options("-physgrad_poisson_pc_type icc")
    yield
    physgrad.clear_solver_options()


def test_too_few_iterations_is_a_clear_error(iterative_preconditioner):
    with pytest.raises(RuntimeError, match="did not converge"):
        physgrad.poisson(torch.randn(1, 30, 30), max_iterations=2, rtol=1e-12)
    assert physgrad.poisson(torch.ones(1, 3, 3)).isfinite().all()  # still usable afterwards


def test_non_convergence_can_warn_and_return_last_iterate(iterative_preconditioner, laplacian):
    x = random_grid(ny=30, nx=30, seed=7)
    x.requires_grad_()
    with pytest.warns(RuntimeWarning, match="did not converge"):
        y = physgrad.poisson(x, grad_mode="adjoint", max_iterations=3, rtol=1e-12, on_failure="warn")
    assert physgrad.solve_stats("poisson").converged == [False, False]
    with pytest.warns(UserWarning, match="adjoint solve of sample 0 did not converge"):
        y.sum().backward()
    assert physgrad.solve_stats("poisson").phase == "adjoint"
    # The last iterate of (preconditioned) CG from zero: its error in the energy norm of -laplace is
    # below that of the zero start, i.e. the exact solution's norm, and above zero (3 iterations only).
    matrix = -laplacian(30, 30).tocsc()

    def energy_norm(v):
        return float(np.sqrt(v @ (matrix @ v)))

    ones = np.ones(900)
    for approximate, right_side in [(y[s].detach(), x[s].detach().numpy().ravel()) for s in range(2)] + \
                                   [(x.grad[s], ones) for s in range(2)]:
        exact = -spla.spsolve(matrix, right_side)  # laplace^-1 of the right side (laplace is symmetric)
        ratio = energy_norm(approximate.numpy().ravel() - exact) / energy_norm(exact)
        assert 1e-6 < ratio < 1, ratio


def test_solver_options_select_the_preconditioner():
    try:
        physgrad.set_solver_options("-physgrad_poisson_pc_type none -physgrad_poisson_ksp_norm_type unpreconditioned")
        physgrad.poisson(random_grid(batch=1, ny=20, nx=20), rtol=1e-9)
        plain = physgrad.solve_stats("poisson").iterations[0]
        physgrad.set_solver_options("-physgrad_poisson_pc_type gamg")
        y = physgrad.poisson(random_grid(batch=1, ny=20, nx=20), rtol=1e-9)
        multigrid = physgrad.solve_stats("poisson").iterations[0]
    finally:
        physgrad.clear_solver_options()
    assert multigrid < plain / 2, (multigrid, plain)
    torch.testing.assert_close(y, physgrad.poisson(random_grid(batch=1, ny=20, nx=20)), rtol=1e-6, atol=1e-8)


def test_version_of_package_and_library_agree():
    assert physgrad.library_version() == physgrad.__version__
