"""physgrad.poisson with prescribed (non-zero) Dirichlet values: against scipy
sparse solves of the full 5-/7-point system with the boundary nodes' values
moved to the right-hand side (built here node by node), against discretely
harmonic functions, gradcheck w.r.t. x and the values, every mode, errors."""
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


def random(shape, seed=0, dtype=F64):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def side_conditions(boundary):
    """Per axis, the (lower, upper) conditions of a boundary name ("dirichlet" or "dirichlet/neumann")."""
    pairs = []
    for name in boundary:
        lower, _, upper = name.partition("/")
        pairs.append((lower, upper or lower))
    return pairs


def reference_system(shape, spacing, boundary, ring):
    """The matrix on the grid's nodes and the right-hand side correction: for each
    node and each neighbour beyond the grid, a Dirichlet neighbour's value (read
    from the ring grid) moves to the right-hand side, a Neumann neighbour is the
    node itself, a periodic one the node at the other end."""
    pairs = side_conditions(boundary)
    n = math.prod(shape)
    matrix = sp.lil_matrix((n, n))
    correction = np.zeros(n)
    for node in itertools.product(*(range(m) for m in shape)):
        row = np.ravel_multi_index(node, shape)
        for axis, (m, h) in enumerate(zip(shape, spacing)):
            w = 1.0 / h**2
            matrix[row, row] -= 2 * w
            for step, side in ((-1, 0), (1, 1)):
                k = node[axis] + step
                neighbour = list(node)
                if 0 <= k < m:
                    neighbour[axis] = k
                    matrix[row, np.ravel_multi_index(neighbour, shape)] += w
                elif pairs[axis][side] == "neumann":
                    matrix[row, row] += w
                elif pairs[axis][side] == "periodic":
                    neighbour[axis] = k % m
                    matrix[row, np.ravel_multi_index(neighbour, shape)] += w
                else:  # Dirichlet: the ring grid's node k + 1 along this axis, j + 1 along the others
                    ring_index = [j + 1 for j in node]
                    ring_index[axis] = k + 1
                    correction[row] += w * ring[tuple(ring_index)]
    return matrix.tocsc(), correction


def reference_solve(shape, spacing, boundary, x, ring):
    matrix, correction = reference_system(shape, spacing, boundary, ring)
    return spla.spsolve(matrix, x.ravel() - correction).reshape(shape)


def zero_non_dirichlet_faces(ring, boundary):
    """The ring grid with zeros on the faces of Neumann and periodic sides."""
    ring = ring.clone()
    for axis, pair in enumerate(side_conditions(boundary)):
        for side, condition in enumerate(pair):
            if condition != "dirichlet":
                index = [slice(None)] * ring.dim()
                index[ring.dim() - len(boundary) + axis] = -1 if side else 0
                ring[tuple(index)] = 0.0
    return ring


CASES = [
    ((7, 9), (0.7, 1.3), ("dirichlet", "dirichlet")),
    ((6, 5), (1.0, 0.5), ("dirichlet", "neumann")),
    ((6, 5), (1.0, 0.5), ("periodic", "dirichlet")),
    ((4, 5, 6), (0.9, 1.1, 0.6), ("dirichlet", "dirichlet", "dirichlet")),
    ((3, 4, 5), (1.0, 0.8, 1.2), ("periodic", "neumann", "dirichlet")),
    ((4, 3, 4), (0.5, 1.0, 1.0), ("neumann", "dirichlet", "periodic")),
]
IDS = [f"{len(shape)}d-" + "-".join(b) for shape, _, b in CASES]


def values_for(shape, boundary, batch, seed):
    ring = random((batch, *(n + 2 for n in shape)), seed=seed)
    return zero_non_dirichlet_faces(ring, boundary)


@pytest.mark.parametrize("shape, spacing, boundary", CASES, ids=IDS)
def test_forward_matches_scipy_with_values_on_the_right_hand_side(shape, spacing, boundary):
    x, ring = random((3, *shape), seed=1), values_for(shape, boundary, 3, seed=2)
    solvers = ["spectral", "petsc"] if boundary == ("dirichlet", "dirichlet") else ["spectral"]
    for solver in solvers:
        y = physgrad.poisson(x, spacing=spacing, boundary=boundary, boundary_values=ring, solver=solver)
        for s in range(3):
            expected = reference_solve(shape, spacing, boundary, x[s].numpy(), ring[s].numpy())
            np.testing.assert_allclose(y[s].numpy(), expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


def harmonic(points):
    """Quadratics with zero Laplacian: the 5-/7-point stencil is exact on them."""
    if len(points) == 2:
        y, x = points
        return x * y + x**2 - y**2 + 3 * x - 2 * y + 1
    z, y, x = points
    return x * y * z + x**2 + y**2 - 2 * z**2 + x * z - y + 2


@pytest.mark.parametrize("dims", [2, 3])
def test_harmonic_boundary_values_reproduce_the_function_exactly(dims):
    shape, spacing = (5, 7, 6)[-dims:], (0.5, 1.5, 0.8)[-dims:]
    axes = [h * torch.arange(-1, n + 1, dtype=F64) for n, h in zip(shape, spacing)]
    u = harmonic(torch.meshgrid(*axes, indexing="ij"))
    interior = u[(slice(1, -1),) * dims]
    y = physgrad.poisson(torch.zeros(2, *shape, dtype=F64), spacing=spacing, boundary_values=u[None])
    torch.testing.assert_close(y, interior.expand(2, *shape), rtol=0, atol=1e-11 * u.abs().max().item())
    # with a source: u + |r|^2 / (2 dims) ... has Laplacian 1 everywhere
    bump = sum(a**2 for a in torch.meshgrid(*axes, indexing="ij")) / (2 * dims)
    y = physgrad.poisson(torch.ones(1, *shape, dtype=F64), spacing=spacing, boundary_values=(u + bump)[None])
    torch.testing.assert_close(y[0], (u + bump)[(slice(1, -1),) * dims], rtol=0, atol=1e-11 * u.abs().max().item())


def test_dict_of_sides_equals_the_ring_grid_and_missing_sides_are_zero():
    shape = (4, 5)
    x = random((2, *shape), seed=3)
    left, top = random((2, 4), seed=4), random((5,), seed=5)
    ring = torch.zeros(2, 6, 7, dtype=F64)
    ring[:, 1:-1, 0] = left
    ring[:, -1, 1:-1] = top
    ring[:, 0, 1:-1] = 2.5
    y = physgrad.poisson(x, boundary_values={"x-": left, "y+": top, "y-": 2.5})
    torch.testing.assert_close(y, physgrad.poisson(x, boundary_values=ring), rtol=0, atol=0)
    # a ring grid of batch 1 holds for every sample; the interior, edges and corners are ignored
    noisy = ring[:1].clone()
    noisy[:, 1:-1, 1:-1] = 7.0
    noisy[:, 0, 0] = noisy[:, -1, -1] = -3.0
    expected = physgrad.poisson(x, boundary_values=ring[:1].expand(2, -1, -1))
    torch.testing.assert_close(physgrad.poisson(x, boundary_values=noisy), expected, rtol=0, atol=0)


@pytest.mark.parametrize("shape, spacing, boundary", CASES, ids=IDS)
def test_adjoint_passes_gradcheck_in_x_and_the_values(shape, spacing, boundary):
    x = random((2, *shape), seed=6).requires_grad_()
    ring = values_for(shape, boundary, 2, seed=7).requires_grad_()

    def solve(v, g):
        return physgrad.poisson(v, spacing=spacing, boundary=boundary, boundary_values=g, grad_mode="adjoint")

    assert torch.autograd.gradcheck(solve, (x, ring))


def test_gradcheck_through_a_dict_of_sides_3d():
    x = random((1, 3, 4, 5), seed=8).requires_grad_()
    front, right = random((1, 4, 5), seed=9).requires_grad_(), random((3, 4), seed=10).requires_grad_()

    def solve(v, f, r):
        return physgrad.poisson(v, grad_mode="adjoint", spacing=(1.0, 0.7, 1.3), boundary_values={"z+": f, "x+": r})

    assert torch.autograd.gradcheck(solve, (x, front, right))


def test_values_gradient_is_minus_b_transpose_of_the_adjoint():
    shape, spacing = (5, 6), (0.5, 2.0)
    x, ring = random((1, *shape), seed=11), random((1, 7, 8), seed=12).requires_grad_()
    g = random((1, *shape), seed=13)
    physgrad.poisson(x, spacing=spacing, boundary_values=ring, grad_mode="adjoint").backward(g)
    adjoint = physgrad.poisson(g, spacing=spacing)[0]
    expected = torch.zeros(7, 8, dtype=F64)
    expected[0, 1:-1] = -adjoint[0] / 0.25
    expected[-1, 1:-1] = -adjoint[-1] / 0.25
    expected[1:-1, 0] = -adjoint[:, 0] / 4.0
    expected[1:-1, -1] = -adjoint[:, -1] / 4.0
    torch.testing.assert_close(ring.grad[0], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape, spacing, boundary", CASES, ids=IDS)
def test_physical_and_lbfgs_gradients_of_x_do_not_depend_on_the_values(shape, spacing, boundary):
    x, ring = random((2, *shape), seed=14), values_for(shape, boundary, 2, seed=15)
    g = random((2, *shape), seed=16)
    for mode, tolerance in (("physical", 0.0), ("lbfgs", 1e-8)):
        grads = []
        for values in (None, ring):
            xi = x.clone().requires_grad_()
            physgrad.poisson(xi, spacing=spacing, boundary=boundary, boundary_values=values, grad_mode=mode,
                             lbfgs_iterations=8).backward(g)
            grads.append(xi.grad)
        torch.testing.assert_close(grads[1], grads[0], rtol=tolerance, atol=tolerance * grads[0].abs().max().item())


def test_physical_step_with_values_lands_on_the_target():
    shape, spacing, boundary = (6, 7), (1.0, 0.5), ("dirichlet", "neumann")
    ring = values_for(shape, boundary, 2, seed=17)
    x_star, x = random((2, *shape), seed=18), random((2, *shape), seed=19).requires_grad_()
    y_star = physgrad.poisson(x_star, spacing=spacing, boundary=boundary, boundary_values=ring)
    y = physgrad.poisson(x, spacing=spacing, boundary=boundary, boundary_values=ring, grad_mode="physical")
    physgrad.losses.l2(y, y_star).backward()
    torch.testing.assert_close(x.detach() - x.grad, x_star, rtol=1e-8, atol=1e-8)


def test_module_with_values_scripts_and_float32():
    shape = (3, 4, 5)
    x, ring = random((2, *shape), seed=20), random((2, 5, 6, 7), seed=21)
    layer = physgrad.nn.Poisson(grad_mode="adjoint", spacing=(1.0, 0.5, 2.0))
    y = layer(x, ring)
    torch.testing.assert_close(y, physgrad.poisson(x, spacing=(1.0, 0.5, 2.0), boundary_values=ring), rtol=0, atol=0)
    scripted = torch.jit.script(layer)
    torch.testing.assert_close(scripted(x, ring), y, rtol=0, atol=0)
    torch.testing.assert_close(scripted(x), layer(x), rtol=0, atol=0)
    torch.testing.assert_close(scripted(x, ring[:1]), layer(x, ring[:1].expand(2, -1, -1, -1)), rtol=0, atol=0)
    y32 = layer(x.float(), ring.float())
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32, y.float(), rtol=1e-5, atol=1e-5)


def test_values_that_require_grad_are_refused_outside_adjoint_mode():
    x, ring = random((1, 4, 4), seed=22), random((1, 6, 6), seed=23).requires_grad_()
    for mode in ("physical", "lbfgs"):
        with pytest.raises(ValueError, match="only grad_mode='adjoint' differentiates boundary_values"):
            physgrad.poisson(x, grad_mode=mode, boundary_values=ring)
    with torch.no_grad():
        physgrad.poisson(x, boundary_values=ring)  # data under no_grad
    physgrad.poisson(x, boundary_values=ring.detach())


@pytest.mark.parametrize("values, boundary, error, words", [
    (torch.zeros(1, 4, 4), "dirichlet", ValueError, "a ring of one node per side, [B, ny + 2, nx + 2] = [1, 6, 6]"),
    (torch.zeros(2, 6, 6), "dirichlet", ValueError, "a ring of one node per side"),
    (torch.zeros(1, 3, 6, 6), "dirichlet", ValueError, "a ring of one node per side"),
    ({"x-": torch.zeros(1, 5)}, "dirichlet", ValueError, "boundary_values['x-'] must be a number or a tensor "
                                                         "broadcastable to [1, 4]"),
    ({"z-": 1.0}, "dirichlet", ValueError, "no side 'z-'; the sides of a 2-D grid are 'y-', 'y+', 'x-', 'x+'"),
    ({"x+": 1.0}, "dirichlet,neumann", ValueError, "boundary_values['x+'] is given, but side x+ has the "
                                                   "boundary 'neumann': only Dirichlet sides take values"),
    ({"y-": 0.0}, "periodic,dirichlet", ValueError, "side y- has the boundary 'periodic'"),
    ({"y-": float("nan")}, "dirichlet", RuntimeError, "boundary_values[0][0][1] = nan is not finite"),
    ({"x-": float("inf")}, "periodic,dirichlet", RuntimeError, "boundary_values[0][1][0] = inf is not finite"),
])
def test_bad_values_are_clear_errors(values, boundary, error, words):
    with pytest.raises(error) as info:
        physgrad.poisson(torch.ones(1, 4, 4, dtype=F64), boundary=boundary, boundary_values=values)
    assert words in str(info.value)


def test_ring_faces_of_neumann_and_periodic_sides_are_ignored():
    x = random((1, 4, 5), seed=24)
    ring = values_for((4, 5), ("periodic", "dirichlet"), 1, seed=25)
    y = physgrad.poisson(x, boundary="periodic,dirichlet", boundary_values=ring)
    ring[0, 0, 3] = ring[0, -1, 2] = 1.0  # the y faces: periodic
    torch.testing.assert_close(physgrad.poisson(x, boundary="periodic,dirichlet", boundary_values=ring), y,
                               rtol=0, atol=0)
