"""physgrad.poisson with Dirichlet, Neumann and periodic boundaries (per axis), on
2-D and 3-D grids, in every mode and with both solvers, against scipy sparse
solves of a Laplacian built here and against discrete eigenfunctions."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import physgrad

F64 = torch.float64
NAMES = ("dirichlet", "neumann", "periodic")


def second_difference(n: int, h: float, boundary: str) -> sp.csr_matrix:
    """The 1-D second difference on n nodes: beyond an end a Dirichlet neighbour
    is 0, a Neumann one the node itself (zero flux), a periodic one the other end."""
    matrix = sp.lil_matrix((n, n))
    for j in range(n):
        for k in (j - 1, j + 1):
            matrix[j, j] -= 1.0
            if 0 <= k < n:
                matrix[j, k] += 1.0
            elif boundary == "neumann":
                matrix[j, j] += 1.0
            elif boundary == "periodic":
                matrix[j, k % n] += 1.0
    return matrix.tocsr() / h**2


def laplacian(shape, spacing, boundary) -> sp.csr_matrix:
    """The 5- or 7-point Laplacian as a Kronecker sum of the axes' second differences."""
    total = sp.csr_matrix((math.prod(shape), math.prod(shape)))
    for axis, (n, h, b) in enumerate(zip(shape, spacing, boundary)):
        left, right = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
        total = total + sp.kron(sp.kron(sp.identity(left), second_difference(n, h, b)), sp.identity(right))
    return total.tocsr()


def reference_solve(shape, spacing, boundary, x: np.ndarray) -> np.ndarray:
    """L^+ x: scipy's sparse direct solve; without a Dirichlet axis the bordered
    system [[L, 1], [1^T, 0]] [y, c] = [x, 0] gives the zero-mean y with L y = x - mean(x)."""
    matrix = laplacian(shape, spacing, boundary).tocsc()
    if "dirichlet" in boundary:
        return spla.spsolve(matrix, x)
    n = matrix.shape[0]
    ones = sp.csc_matrix(np.ones((n, 1)))
    bordered = sp.bmat([[matrix, ones], [ones.T, None]]).tocsc()
    return spla.spsolve(bordered, np.append(x, 0.0))[:n]


def random(shape, seed=0, dtype=F64):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


# (shape, spacing, boundary per axis): each boundary alone, mixed ones, 2-D and 3-D.
CASES = [((7, 9), (0.7, 1.3), (b, b)) for b in NAMES] + [
    ((6, 5), (1.0, 0.5), ("neumann", "periodic")),
    ((6, 5), (1.0, 0.5), ("periodic", "dirichlet")),
    ((5, 8), (2.0, 1.0), ("dirichlet", "neumann")),
] + [((4, 5, 6), (0.9, 1.1, 0.6), (b, b, b)) for b in NAMES] + [
    ((3, 4, 5), (1.0, 0.8, 1.2), ("periodic", "neumann", "dirichlet")),
    ((4, 3, 4), (0.5, 1.0, 1.0), ("neumann", "dirichlet", "periodic")),
]
IDS = [f"{len(shape)}d-" + "-".join(b) for shape, _, b in CASES]


def call(x, spacing, boundary, **options):
    return physgrad.poisson(x, spacing=spacing, boundary=boundary, **options)


@pytest.mark.parametrize("shape, spacing, boundary", CASES, ids=IDS)
def test_forward_matches_scipy_sparse_solve(shape, spacing, boundary):
    x = random((3, *shape))
    y = call(x, spacing, boundary)
    for s in range(3):
        expected = reference_solve(shape, spacing, boundary, x[s].numpy().ravel())
        np.testing.assert_allclose(y[s].numpy().ravel(), expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("shape, spacing, boundary", CASES, ids=IDS)
def test_adjoint_passes_gradcheck(shape, spacing, boundary):
    x = random((2, *shape), seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: call(v, spacing, boundary, grad_mode="adjoint"), (x,))


@pytest.mark.parametrize("shape, spacing, boundary", CASES, ids=IDS)
def test_physical_mode_is_laplacian_of_incoming_gradient(shape, spacing, boundary):
    x = random((2, *shape), seed=2).requires_grad_()
    g = random((2, *shape), seed=3)
    call(x, spacing, boundary, grad_mode="physical", y_step=0.3).backward(g)
    matrix = laplacian(shape, spacing, boundary)
    expected = np.stack([matrix @ (0.3 * gs.numpy().ravel()) for gs in g]).reshape(g.shape)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("shape, spacing, boundary", CASES, ids=IDS)
def test_physical_step_with_l2_loss_lands_on_target(shape, spacing, boundary):
    """With the sum-reduced l2 loss the physical step reaches y* exactly; without a
    Dirichlet axis the step keeps x's mean (the preimage nearest to x)."""
    x_star, x = random((2, *shape), seed=4), random((2, *shape), seed=5).requires_grad_()
    y_star = call(x_star, spacing, boundary)
    physgrad.losses.l2(call(x, spacing, boundary, grad_mode="physical"), y_star).backward()
    stepped = x.detach() - x.grad
    torch.testing.assert_close(call(stepped, spacing, boundary), y_star, rtol=1e-9, atol=1e-10)
    dims = tuple(range(1, 1 + len(shape)))
    if "dirichlet" in boundary:
        torch.testing.assert_close(stepped, x_star, rtol=1e-8, atol=1e-8)
    else:
        torch.testing.assert_close(stepped.mean(dims), x.detach().mean(dims), rtol=1e-10, atol=1e-12)
        centred = x_star - x_star.mean(dims, keepdim=True)
        torch.testing.assert_close(stepped - stepped.mean(dims, keepdim=True), centred, rtol=1e-8, atol=1e-8)


# Small grids: a few hundred L-BFGS steps reach the target to 1e-6 only with few unknowns.
LBFGS_CASES = [((5, 6), (0.7, 1.3), (b, b)) for b in NAMES] + [((5, 6), (1.0, 0.5), ("neumann", "periodic"))] + [
    ((3, 3, 4), (0.9, 1.1, 0.6), (b, b, b)) for b in NAMES]


@pytest.mark.parametrize("shape, spacing, boundary", LBFGS_CASES,
                         ids=[f"{len(shape)}d-" + "-".join(b) for shape, _, b in LBFGS_CASES])
def test_lbfgs_mode_lowers_the_objective_as_iterations_grow(shape, spacing, boundary):
    x_star, x = random((1, *shape), seed=6), random((1, *shape), seed=7)
    y_star = call(x_star, spacing, boundary)
    objectives = []
    for iterations in (1, 8, 256):
        xi = x.clone().requires_grad_()
        physgrad.losses.l2(call(xi, spacing, boundary, grad_mode="lbfgs", lbfgs_iterations=iterations),
                           y_star).backward()
        objectives.append(physgrad.losses.l2(call(x - xi.grad, spacing, boundary), y_star).item())
    start = physgrad.losses.l2(call(x, spacing, boundary), y_star).item()
    assert start > objectives[0] > objectives[1] > objectives[2], (start, objectives)
    assert objectives[2] < 1e-6 * start


def eigenfunction(boundary: str, p: int, n: int) -> np.ndarray:
    j = np.arange(n)
    if boundary == "dirichlet":
        return np.sin(np.pi * p * (j + 1) / (n + 1))
    if boundary == "neumann":
        return np.cos(np.pi * p * (j + 0.5) / n)
    return np.sin(2 * np.pi * p * j / n + 0.4)


def eigenvalue(boundary: str, p: int, n: int, h: float) -> float:
    theta = {"dirichlet": np.pi * p / (2 * (n + 1)), "neumann": np.pi * p / (2 * n), "periodic": np.pi * p / n}
    return -4.0 / h**2 * np.sin(theta[boundary]) ** 2


@pytest.mark.parametrize("boundary", [("dirichlet",) * 3, ("neumann",) * 3, ("periodic",) * 3,
                                      ("neumann", "periodic", "dirichlet")], ids="-".join)
@pytest.mark.parametrize("dims", [2, 3])
def test_solve_of_a_discrete_eigenfunction_is_it_divided_by_its_eigenvalue(boundary, dims):
    shape, spacing, modes = (6, 10, 8)[-dims:], (0.5, 1.2, 0.9)[-dims:], (2, 3, 1)[-dims:]
    boundary = boundary[-dims:]
    f = np.ones(())
    for b, p, n in zip(boundary, modes, shape):
        f = np.multiply.outer(f, eigenfunction(b, p, n))
    lam = sum(eigenvalue(b, p, n, h) for b, p, n, h in zip(boundary, modes, shape, spacing))
    y = call(torch.from_numpy(f)[None], spacing, boundary)[0].numpy()
    np.testing.assert_allclose(y, f / lam, rtol=0, atol=1e-12 * np.abs(f / lam).max())


def test_neumann_and_periodic_project_the_mean_and_return_zero_mean():
    """The documented null-space handling: laplace(y) = x - mean(x), mean(y) = 0."""
    shape, spacing = (9, 7), (1.0, 0.6)
    x = random((2, *shape), seed=8) + 3.0
    for boundary in ("neumann", "periodic", ("neumann", "periodic")):
        y = call(x, spacing, boundary)
        b = (boundary,) * 2 if isinstance(boundary, str) else boundary
        matrix = laplacian(shape, spacing, b)
        for s in range(2):
            np.testing.assert_allclose(matrix @ y[s].numpy().ravel(), (x[s] - x[s].mean()).numpy().ravel(),
                                       atol=1e-10)
        assert y.mean((1, 2)).abs().max() < 1e-12
        torch.testing.assert_close(call(x - 3.0, spacing, boundary), y, rtol=1e-12, atol=1e-12)


def test_spectral_and_petsc_solvers_agree_on_the_papers_grids():
    """The paper's 80 x 60 and the SIP code's 64 x 64: the spectral result is the
    PETSc CG result to CG's tolerance, the physical gradient bitwise."""
    for shape in ((60, 80), (64, 64)):
        x = random((4, *shape), seed=9).requires_grad_()
        g = random((4, *shape), seed=10)
        results = {}
        for solver in ("spectral", "petsc"):
            x.grad = None
            y = physgrad.poisson(x, solver=solver)
            y.backward(g)
            results[solver] = (y.detach(), x.grad.clone())
        (ys, gs), (yp, gp) = results["spectral"], results["petsc"]
        assert (ys - yp).abs().max() < 1e-9 * yp.abs().max()
        assert torch.equal(gs, gp)
        assert torch.equal(physgrad.poisson(x.detach()), ys)  # auto picks the spectral solver


def test_statistics_say_direct_and_petsc_options_make_auto_use_petsc():
    x = random((2, 12, 12), seed=11)
    physgrad.poisson(x)
    stats = physgrad.solve_stats("poisson")
    assert stats.reasons == ["DIRECT", "DIRECT"] and stats.iterations == [0, 0] and stats.all_converged
    try:
        physgrad.set_solver_options("-physgrad_poisson_pc_type icc")
        y = physgrad.poisson(x)
        assert all(r.startswith("CONVERGED") for r in physgrad.solve_stats("poisson").reasons)
        physgrad.poisson(x, solver="spectral")
        assert physgrad.solve_stats("poisson").reasons == ["DIRECT", "DIRECT"]
        physgrad.poisson(x, boundary="neumann")  # PETSc cannot: the options do not apply
        assert physgrad.solve_stats("poisson").reasons == ["DIRECT", "DIRECT"]
    finally:
        physgrad.clear_solver_options()
    torch.testing.assert_close(y, physgrad.poisson(x), rtol=0, atol=1e-8 * y.abs().max().item())  # CG's rtol
    try:
        physgrad.set_solver_options("-physgrad_poisson_lbfgs_tao_type lmvm")  # the lbfgs mode's TAO options
        physgrad.poisson(x)
        assert physgrad.solve_stats("poisson").reasons == ["DIRECT", "DIRECT"]
    finally:
        physgrad.clear_solver_options()


def test_non_finite_sample_fails_alone_with_petscs_reason():
    x = random((3, 6, 7), seed=12)
    x[1, 2, 3] = float("nan")
    with pytest.raises(RuntimeError, match=r"Poisson solve of sample 1 did not converge: DIVERGED_NANORINF"):
        physgrad.poisson(x, boundary="periodic")
    with pytest.warns(RuntimeWarning, match=r"samples \[1\] \(DIVERGED_NANORINF\)"):
        y = physgrad.poisson(x, boundary="periodic", on_failure="warn")
    assert physgrad.solve_stats("poisson").converged == [True, False, True]
    assert torch.equal(y[[0, 2]], physgrad.poisson(x[[0, 2]], boundary="periodic"))


def test_grid_layouts_channel_dims_and_float32():
    x3 = random((2, 3, 5, 6), seed=13)
    spacing, boundary = (0.5, 1.0, 2.0), ("periodic", "dirichlet", "neumann")
    y3 = call(x3, spacing, boundary)
    torch.testing.assert_close(call(x3.unsqueeze(1), spacing, boundary), y3.unsqueeze(1), rtol=0, atol=0)
    y32 = call(x3.float(), spacing, boundary)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32, y3.float(), rtol=1e-5, atol=1e-6)
    # [B, 1, ny, nx] is a 2-D grid with a channel; a 3-D grid of one z node is [B, 1, 1, ny, nx].
    x2 = random((2, 5, 6), seed=14)
    torch.testing.assert_close(physgrad.poisson(x2.unsqueeze(1))[:, 0], physgrad.poisson(x2), rtol=0, atol=0)
    flat = physgrad.poisson(x2[:, None, None], spacing=(1.0, 1.0, 1.0))[:, 0, 0]
    expected = reference_solve((1, 5, 6), (1.0,) * 3, ("dirichlet",) * 3, x2[0].numpy().ravel())
    np.testing.assert_allclose(flat[0].numpy().ravel(), expected, rtol=1e-10)
    # one spacing value for every axis
    torch.testing.assert_close(physgrad.poisson(x3, spacing=0.5), physgrad.poisson(x3, spacing=(0.5,) * 3))


def test_module_settings_script_and_state_dict():
    x = random((2, 4, 5, 6), seed=15)
    layer = physgrad.nn.Poisson(grad_mode="adjoint", spacing=(1.0, 0.5, 2.0),
                                boundary=("neumann", "periodic", "dirichlet"))
    assert layer.boundary == "neumann,periodic,dirichlet" and layer.solver == "auto"
    scripted = torch.jit.script(layer)
    torch.testing.assert_close(scripted(x), layer(x), rtol=0, atol=0)
    copy = physgrad.nn.Poisson(spacing=(1.0, 1.0, 1.0))
    copy.load_state_dict(layer.state_dict())
    assert copy.boundary == layer.boundary and copy.spacing == layer.spacing
    torch.testing.assert_close(copy(x), layer(x), rtol=0, atol=0)


@pytest.mark.parametrize("bad, error, words", [
    (dict(boundary="robin"), ValueError, "boundary must be 'dirichlet', 'neumann' or 'periodic'"),
    (dict(boundary="neumann,periodic,dirichlet"), ValueError, "names 3 axes, but the grid has 2"),
    (dict(spacing=(1.0, 1.0, 1.0)), ValueError, "spacing must be [dy, dx] for this 2-D grid"),
    (dict(solver="multigrid"), ValueError, "solver must be 'auto', 'spectral' or 'petsc'"),
    (dict(solver="petsc", boundary="periodic"), ValueError, "solver='petsc' solves 2-D grids with zero Dirichlet"),
    (dict(spacing=(1e-300, 1.0), boundary="neumann"), ValueError, "spacing [1e-300, 1] is out of range"),
])
def test_bad_options_are_clear_errors(bad, error, words):
    with pytest.raises(error) as info:
        physgrad.poisson(torch.ones(1, 4, 4), **bad)
    assert words in str(info.value)
    with pytest.raises(ValueError, match=r"solver='petsc' solves 2-D grids"):
        physgrad.poisson(torch.ones(1, 3, 4, 4), solver="petsc")


@pytest.mark.parametrize("boundary", list(itertools.product(NAMES, repeat=2)), ids="-".join)
def test_extreme_magnitudes_scale_exactly(boundary):
    x = random((2, 6, 5), seed=16)
    y = physgrad.poisson(x, boundary=boundary)
    for scale in (1e300, 1e-300):
        torch.testing.assert_close(physgrad.poisson(x * scale, boundary=boundary) / scale, y, rtol=1e-12,
                                   atol=1e-12 * y.abs().max().item())
