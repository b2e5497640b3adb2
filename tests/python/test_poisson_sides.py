"""physgrad.poisson with a condition per side ("dirichlet/neumann": Dirichlet at
the lower end of the axis, Neumann at the upper): each mixed pair on each axis,
2-D and 3-D, every mode, against scipy sparse solves of a Laplacian built here
node by node, and against the pair's discrete eigenfunctions."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import physgrad
from test_poisson_boundary_values import reference_system

F64 = torch.float64
DN, ND = "dirichlet/neumann", "neumann/dirichlet"


def random(shape, seed=0):
    return torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


def matrix_of(shape, spacing, boundary):
    return reference_system(shape, spacing, boundary, np.zeros([n + 2 for n in shape]))[0]


# Each mixed pair on the first axis (tridiagonal elimination), on the last (a
# dense transform of rows) and, in 3-D, on the middle one (a dense transform per
# slice), with every other kind beside it.
CASES = [
    ((6, 5), (1.0, 0.5), (DN, "periodic")),
    ((5, 7), (0.7, 1.3), (ND, "neumann")),
    ((6, 5), (1.0, 0.5), ("dirichlet", DN)),
    ((4, 6), (2.0, 0.6), ("periodic", ND)),
    ((5, 6), (0.8, 1.1), ("neumann", DN)),
    ((4, 5), (1.0, 1.0), (DN, ND)),
    ((1, 5), (1.0, 0.5), (ND, DN)),
    ((4, 1), (1.0, 0.5), ("neumann", ND)),
    ((3, 4, 5), (1.0, 0.8, 1.2), (DN, "periodic", "neumann")),
    ((4, 3, 4), (0.5, 1.0, 1.0), ("periodic", ND, "neumann")),
    ((3, 4, 5), (0.9, 1.1, 0.6), ("neumann", "periodic", DN)),
    ((4, 3, 5), (1.0, 0.7, 1.3), (ND, DN, ND)),
    ((3, 5, 4), (1.0, 1.0, 0.5), ("dirichlet", DN, "periodic")),
]
IDS = [f"{len(shape)}d-" + "-".join(b.replace("/", "_") for b in boundary) for shape, _, boundary in CASES]


@pytest.mark.parametrize("shape, spacing, boundary", CASES, ids=IDS)
def test_forward_matches_scipy_sparse_solve(shape, spacing, boundary):
    x = random((3, *shape), seed=1)
    y = physgrad.poisson(x, spacing=spacing, boundary=boundary)
    matrix = matrix_of(shape, spacing, boundary)
    for s in range(3):
        expected = spla.spsolve(matrix, x[s].numpy().ravel())
        np.testing.assert_allclose(y[s].numpy().ravel(), expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("shape, spacing, boundary", CASES, ids=IDS)
def test_adjoint_passes_gradcheck(shape, spacing, boundary):
    x = random((2, *shape), seed=2).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v: physgrad.poisson(v, spacing=spacing, boundary=boundary, grad_mode="adjoint"), (x,))


@pytest.mark.parametrize("shape, spacing, boundary", CASES, ids=IDS)
def test_physical_mode_is_laplacian_and_its_l2_step_lands_on_target(shape, spacing, boundary):
    x_star, x = random((2, *shape), seed=3), random((2, *shape), seed=4).requires_grad_()
    g = random((2, *shape), seed=5)
    physgrad.poisson(x, spacing=spacing, boundary=boundary, grad_mode="physical", y_step=0.3).backward(g)
    matrix = matrix_of(shape, spacing, boundary)
    expected = np.stack([matrix @ (0.3 * gs.numpy().ravel()) for gs in g]).reshape(g.shape)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    x.grad = None
    y_star = physgrad.poisson(x_star, spacing=spacing, boundary=boundary)
    physgrad.losses.l2(physgrad.poisson(x, spacing=spacing, boundary=boundary), y_star).backward()
    torch.testing.assert_close(x.detach() - x.grad, x_star, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("shape, spacing, boundary", [c for c in CASES if np.prod(c[0]) <= 30],
                         ids=[i for c, i in zip(CASES, IDS) if np.prod(c[0]) <= 30])
def test_lbfgs_mode_lowers_the_objective_as_iterations_grow(shape, spacing, boundary):
    x_star, x = random((1, *shape), seed=6), random((1, *shape), seed=7)
    y_star = physgrad.poisson(x_star, spacing=spacing, boundary=boundary)

    def objective(v):
        return physgrad.losses.l2(physgrad.poisson(v, spacing=spacing, boundary=boundary), y_star).item()

    values = []
    for iterations in (1, 8, 256):
        xi = x.clone().requires_grad_()
        physgrad.losses.l2(physgrad.poisson(xi, spacing=spacing, boundary=boundary, grad_mode="lbfgs",
                                            lbfgs_iterations=iterations), y_star).backward()
        values.append(objective(x - xi.grad))
    assert objective(x) > values[0] > values[1] > values[2], values
    assert values[2] < 1e-6 * objective(x)


def mixed_mode(pair: str, p: int, n: int) -> np.ndarray:
    """sin(theta (j + 1)), theta = pi (2p + 1) / (2n + 1): 0 one spacing below,
    even half a spacing above; mirrored for Neumann then Dirichlet."""
    j = np.arange(n)
    theta = np.pi * (2 * p + 1) / (2 * n + 1)
    return np.sin(theta * (j + 1)) if pair == DN else np.sin(theta * (n - j))


@pytest.mark.parametrize("pairs", [(DN, ND, DN), (ND, DN, ND)], ids=["dn-nd-dn", "nd-dn-nd"])
@pytest.mark.parametrize("dims", [2, 3])
def test_solve_of_a_discrete_eigenfunction_is_it_divided_by_its_eigenvalue(pairs, dims):
    shape, spacing, modes = (6, 9, 7)[-dims:], (0.5, 1.2, 0.9)[-dims:], (2, 0, 4)[-dims:]
    pairs = pairs[-dims:]
    f = np.ones(())
    for pair, p, n in zip(pairs, modes, shape):
        f = np.multiply.outer(f, mixed_mode(pair, p, n))
    lam = sum(-4.0 / h**2 * np.sin(np.pi * (2 * p + 1) / (2 * (2 * n + 1))) ** 2
              for p, n, h in zip(modes, shape, spacing))
    y = physgrad.poisson(torch.from_numpy(f)[None], spacing=spacing, boundary=pairs)[0].numpy()
    np.testing.assert_allclose(y, f / lam, rtol=0, atol=1e-12 * np.abs(f / lam).max())


def test_same_condition_at_both_ends_is_the_per_axis_name_and_petsc_takes_it():
    x = random((2, 6, 7), seed=8)
    for name in ("dirichlet", "neumann", "periodic"):
        torch.testing.assert_close(physgrad.poisson(x, boundary=f"{name}/{name}"), physgrad.poisson(x, boundary=name),
                                   rtol=0, atol=0)
    y = physgrad.poisson(x, boundary="dirichlet/dirichlet", solver="petsc")
    torch.testing.assert_close(y, physgrad.poisson(x), rtol=1e-8, atol=1e-10)


def test_values_on_the_dirichlet_side_of_a_mixed_axis():
    """A linear function in x with zero slope at the Neumann wall is not harmonic
    across it, so use the reference: values on the Dirichlet sides only."""
    shape, spacing, boundary = (4, 5, 6), (1.0, 0.5, 0.8), (ND, "periodic", DN)
    x = random((2, *shape), seed=9)
    ring = torch.zeros(2, 6, 7, 8, dtype=F64)
    ring[:, -1, 1:-1, 1:-1] = random((2, 5, 6), seed=10)  # z+: Dirichlet
    ring[:, 1:-1, 1:-1, 0] = random((2, 4, 5), seed=11)  # x-: Dirichlet
    y = physgrad.poisson(x, spacing=spacing, boundary=boundary, boundary_values=ring)
    for s in range(2):
        matrix, correction = reference_system(shape, spacing, boundary, ring[s].numpy())
        expected = spla.spsolve(matrix, x[s].numpy().ravel() - correction)
        np.testing.assert_allclose(y[s].numpy().ravel(), expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    with pytest.raises(ValueError, match="side x\\+ has the boundary 'neumann'"):
        physgrad.poisson(x, spacing=spacing, boundary=boundary, boundary_values={"x+": 1.0})
    values = {"z+": ring[:, -1, 1:-1, 1:-1], "x-": ring[:, 1:-1, 1:-1, 0]}
    torch.testing.assert_close(physgrad.poisson(x, spacing=spacing, boundary=boundary, boundary_values=values), y,
                               rtol=0, atol=0)
    ring.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, g: physgrad.poisson(v, spacing=spacing, boundary=boundary, boundary_values=g, grad_mode="adjoint"),
        (x[:1].clone().requires_grad_(), ring[:1].detach().clone().requires_grad_()))


def test_module_scripts_with_per_side_boundaries():
    x = random((2, 3, 4, 5), seed=12)
    layer = physgrad.nn.Poisson(grad_mode="adjoint", spacing=(1.0, 0.5, 2.0), boundary=(DN, "periodic", ND))
    assert layer.boundary == "dirichlet/neumann,periodic,neumann/dirichlet"
    torch.testing.assert_close(torch.jit.script(layer)(x), layer(x), rtol=0, atol=0)


@pytest.mark.parametrize("boundary, words", [
    ("periodic/neumann", "a periodic axis is periodic at both ends"),
    ("dirichlet/robin", "or one per side of an axis, lower end first, e.g. 'dirichlet/neumann'"),
    ("dirichlet/neumann/periodic", "boundary must be 'dirichlet', 'neumann' or 'periodic'"),
])
def test_bad_per_side_boundaries_are_clear_errors(boundary, words):
    with pytest.raises(ValueError) as info:
        physgrad.poisson(torch.ones(1, 4, 4), boundary=boundary)
    assert words in str(info.value)
    with pytest.raises(ValueError, match="solver='petsc' solves 2-D grids with zero Dirichlet"):
        physgrad.poisson(torch.ones(1, 4, 4), boundary=f"{DN},dirichlet", solver="petsc")
    with pytest.raises(ValueError, match="physgrad.heat: boundary must be"):
        physgrad.heat(torch.ones(1, 4, 4), boundary=DN)
