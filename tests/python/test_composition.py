"""Several physics layers with their own gradient modes in one model.

DESIGN section 1: chaining composes; a PG op's result is the y-space step of the
op before it. For y = P2(P1(x)) with Poisson layers (P = L^-1, L the 5-point
Laplacian) and g = dL/dy, each layer's backward maps what reaches it by
  physical: v -> L v        adjoint: v -> L^-1 v   (L symmetric)
so x receives B1(B2(g)); e.g. physical then physical gives L(L g), exactly.
"""
from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import physgrad

SHAPE = (7, 9)
SPACING = (0.5, 0.25)
MODES = ("physical", "adjoint")


class TwoPoisson(torch.nn.Module):
    def __init__(self, mode_1: str, mode_2: str, with_net: bool = False) -> None:
        super().__init__()
        self.net = torch.nn.Conv2d(1, 1, 3, padding=1, dtype=torch.float64) if with_net else torch.nn.Identity()
        self.p1 = physgrad.nn.Poisson(grad_mode=mode_1, spacing=SPACING)
        self.p2 = physgrad.nn.Poisson(grad_mode=mode_2, spacing=SPACING)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.p2(self.p1(self.net(x)))


def data(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, *SHAPE, dtype=torch.float64, generator=generator)
    target = torch.randn(2, *SHAPE, dtype=torch.float64, generator=generator)
    return x, target


def backward_parts(mode_1: str, mode_2: str):
    """y, dL/dy1 (what reaches P1) and dL/dx for y = P2(P1(x)) and L = l2(y, target)."""
    x, target = data()
    x.requires_grad_(True)
    y1 = physgrad.nn.Poisson(grad_mode=mode_1, spacing=SPACING)(x)
    y1.retain_grad()
    y = physgrad.nn.Poisson(grad_mode=mode_2, spacing=SPACING)(y1)
    physgrad.losses.l2(y, target).backward()
    return y.detach(), y1.grad, x.grad, (y - target).detach()


def reference_maps(laplacian):
    matrix = laplacian(*SHAPE, *SPACING).tocsc()
    solve = spla.factorized(matrix)

    def per_sample(function, v):
        flat = v.reshape(v.shape[0], -1).numpy()
        return torch.from_numpy(np.stack([function(row) for row in flat])).reshape(v.shape)

    return {"physical": lambda v: per_sample(matrix.dot, v), "adjoint": lambda v: per_sample(solve, v)}


def assert_relative_close(actual, expected, rtol):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * float(expected.abs().max()))


@pytest.mark.parametrize("mode_1,mode_2", list(itertools.product(MODES, MODES)))
def test_gradient_reaching_x_is_the_composition_of_the_layers_steps(laplacian, mode_1, mode_2):
    backward = reference_maps(laplacian)
    _, y1_grad, x_grad, g = backward_parts(mode_1, mode_2)
    assert_relative_close(y1_grad, backward[mode_2](g), 1e-12 if mode_2 == "physical" else 1e-7)
    assert_relative_close(x_grad, backward[mode_1](backward[mode_2](g)),
                          1e-12 if (mode_1, mode_2) == ("physical", "physical") else 1e-7)


def test_exact_identities(laplacian):
    """physical after physical is L(L g) to rounding; physical after adjoint undoes it: L(L^-1 g) = g."""
    matrix = laplacian(*SHAPE, *SPACING)
    _, _, x_grad, g = backward_parts("physical", "physical")
    flat = g.reshape(2, -1).numpy()
    expected = torch.from_numpy(np.stack([matrix.dot(matrix.dot(row)) for row in flat])).reshape(g.shape)
    assert_relative_close(x_grad, expected, 1e-13)
    _, _, x_grad, g = backward_parts("physical", "adjoint")
    assert_relative_close(x_grad, g, 1e-8)


def test_switching_one_layers_mode_changes_only_that_layers_contribution():
    forward = {}
    for mode_1, mode_2 in itertools.product(MODES, MODES):
        y, y1_grad, x_grad, _ = backward_parts(mode_1, mode_2)
        forward[mode_1, mode_2] = (y, y1_grad)
        # P1's contribution is its own backward applied to whatever reaches it.
        x = data()[0].requires_grad_(True)
        (alone,) = torch.autograd.grad(physgrad.poisson(x, grad_mode=mode_1, spacing=SPACING), x, y1_grad)
        assert torch.equal(x_grad, alone)
    for mode_2 in MODES:  # P1's mode changes neither the forward pass nor what P2 sends back
        assert torch.equal(forward["physical", mode_2][0], forward["adjoint", mode_2][0])
        assert torch.equal(forward["physical", mode_2][1], forward["adjoint", mode_2][1])
    for mode_1 in MODES:  # P2's mode changes what reaches P1, but not the forward pass
        assert torch.equal(forward[mode_1, "physical"][0], forward[mode_1, "adjoint"][0])
        assert not torch.allclose(forward[mode_1, "physical"][1], forward[mode_1, "adjoint"][1])


def test_network_weights_receive_the_composed_step(laplacian):
    """The network gets (dx/dtheta)^T dx with dx = B1(B2(g)): here P1 adjoint after P2 physical."""
    backward = reference_maps(laplacian)
    torch.manual_seed(0)
    model = TwoPoisson("adjoint", "physical", with_net=True)
    inputs, target = data(1)
    y = model(inputs.unsqueeze(1))
    physgrad.losses.l2(y, target.unsqueeze(1)).backward()
    dx = backward["adjoint"](backward["physical"]((y - target.unsqueeze(1)).detach()))
    expected = torch.autograd.grad(model.net(inputs.unsqueeze(1)), model.net.weight, dx)[0]
    assert_relative_close(model.net.weight.grad, expected, 1e-7)


def gradients(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    physgrad.losses.l2(model(x), target).backward()
    return x.grad


def test_context_manager_overrides_eager_layers_but_not_scripted_ones():
    x, target = data(2)
    eager = TwoPoisson("physical", "adjoint")
    scripted = torch.jit.script(TwoPoisson("physical", "adjoint"))
    by_attributes = gradients(eager, x, target)
    all_adjoint = gradients(TwoPoisson("adjoint", "adjoint"), x, target)
    assert not torch.allclose(by_attributes, all_adjoint)

    with physgrad.grad_mode("adjoint"):
        assert torch.equal(gradients(eager, x, target), all_adjoint)          # eager: the block wins
        assert torch.equal(gradients(scripted, x, target), by_attributes)     # scripted: attributes count
    assert torch.equal(gradients(scripted, x, target), by_attributes)

    # The mode is taken where the forward runs: backward after the block still uses it.
    x_leaf = x.clone().requires_grad_(True)
    with physgrad.grad_mode("adjoint"):
        loss = physgrad.losses.l2(eager(x_leaf), target)
    loss.backward()
    assert torch.equal(x_leaf.grad, all_adjoint)


def test_scripted_per_layer_attributes_are_settable_and_saved():
    x, target = data(3)
    scripted = torch.jit.script(TwoPoisson("physical", "adjoint"))
    expected = {modes: gradients(TwoPoisson(*modes), x, target) for modes in itertools.product(MODES, MODES)}
    for mode_1, mode_2 in itertools.product(MODES, MODES):
        scripted.p1.grad_mode, scripted.p2.grad_mode = mode_1, mode_2
        assert torch.equal(gradients(scripted, x, target), expected[mode_1, mode_2])

    scripted.p1.grad_mode, scripted.p2.grad_mode = "adjoint", "physical"
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    assert (loaded.p1.grad_mode, loaded.p2.grad_mode) == ("adjoint", "physical")
    assert torch.equal(gradients(loaded, x, target), expected["adjoint", "physical"])


def test_explicit_functional_mode_beats_the_context_manager():
    x, target = data(4)

    def chain(x: torch.Tensor) -> torch.Tensor:
        return physgrad.poisson(physgrad.poisson(x, grad_mode="physical", spacing=SPACING), spacing=SPACING)

    with physgrad.grad_mode("adjoint"):
        inside = gradients(chain, x, target)
    assert torch.equal(inside, gradients(TwoPoisson("physical", "adjoint"), x, target))
