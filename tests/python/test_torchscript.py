"""Scripted models with physics ops: script, save, load in a fresh process, backward."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import physgrad

REPOSITORY = Path(__file__).resolve().parents[2]


class NetThenPoisson(torch.nn.Module):
    def __init__(self, grad_mode: str) -> None:
        super().__init__()
        self.net = torch.nn.Conv2d(1, 1, 3, padding=1, dtype=torch.float64)
        self.physics = physgrad.nn.Poisson(grad_mode=grad_mode)

    def forward(self, y_star: torch.Tensor) -> torch.Tensor:
        return self.physics(self.net(y_star))


def gradients(model: torch.nn.Module, y_star: torch.Tensor) -> torch.Tensor:
    model.zero_grad()
    physgrad.losses.l2(model(y_star), y_star).backward()
    return model.net.weight.grad.clone()


def test_scripted_module_matches_eager_in_every_mode():
    y_star = torch.randn(2, 1, 8, 6, dtype=torch.float64)
    for mode in ("adjoint", "physical", "lbfgs"):
        torch.manual_seed(0)
        eager = NetThenPoisson(mode)
        scripted = torch.jit.script(eager)
        torch.testing.assert_close(scripted(y_star), eager(y_star))
        torch.testing.assert_close(gradients(scripted, y_star), gradients(eager, y_star))


def test_scripted_module_mode_attribute_is_used_and_settable():
    y_star = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    torch.manual_seed(0)
    scripted = torch.jit.script(NetThenPoisson("physical"))
    physical = gradients(scripted, y_star)
    scripted.physics.grad_mode = "adjoint"
    adjoint = gradients(scripted, y_star)
    assert not torch.allclose(physical, adjoint)


def test_scripted_functional_call():
    @torch.jit.script
    def solve(x: torch.Tensor) -> torch.Tensor:
        return physgrad.ops.poisson(x, "adjoint", 1.0, (1.0, 1.0))

    x = torch.randn(2, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(solve(x), physgrad.poisson(x))


def test_saved_model_loads_and_backpropagates_in_a_new_process(tmp_path):
    torch.manual_seed(0)
    model = NetThenPoisson("physical")
    y_star = torch.randn(2, 1, 8, 6, dtype=torch.float64)
    torch.jit.save(torch.jit.script(model), str(tmp_path / "model.pt"))
    torch.save(y_star, tmp_path / "y_star.pt")
    expected = gradients(model, y_star)
    program = f"""
import torch, physgrad
model = torch.jit.load({str(tmp_path / 'model.pt')!r})
y_star = torch.load({str(tmp_path / 'y_star.pt')!r})
physgrad.losses.l2(model(y_star), y_star).backward()
torch.save(model.net.weight.grad, {str(tmp_path / 'grad.pt')!r})
"""
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY / "python"))
    subprocess.run([sys.executable, "-c", program], check=True, env=environment, timeout=120)
    torch.testing.assert_close(torch.load(tmp_path / "grad.pt"), expected)
