"""TorchScript deployment from C++ (examples/deploy_cpp): a model scripted in
Python (a network followed by physics layers) runs forward and backward in a C++
program linked against the installed package, and matches Python."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, Sequence

import pytest
import torch

import physgrad
import physgrad.deploy
from packaging_support import REPOSITORY, build_project, clean_environment, install, run


def has_op(name: str) -> bool:
    try:
        getattr(torch.ops.physgrad, name)
        return True
    except (AttributeError, RuntimeError):
        return False


class NetThenPhysics(torch.nn.Module):
    """A convolution proposes x from the observation; physics layers simulate it."""

    def __init__(self, *physics: torch.nn.Module) -> None:
        super().__init__()
        self.net = torch.nn.Conv2d(1, 1, 3, padding=1, dtype=torch.float64)
        self.physics = torch.nn.Sequential(*physics)

    def forward(self, y_star: torch.Tensor) -> torch.Tensor:
        return self.physics(self.net(y_star))


@pytest.fixture(scope="module")
def deploy_cpp(tmp_path_factory) -> Path:
    """The example built against the package installed from the build tree (one TU, one job)."""
    root = tmp_path_factory.mktemp("deploy_cpp")
    prefix = install(root / "prefix")
    build_project(REPOSITORY / "examples" / "deploy_cpp", root / "build", prefix)
    return root / "build" / "deploy_cpp"


def python_results(model: torch.nn.Module, y_star: torch.Tensor) -> Dict[str, torch.Tensor]:
    """What the C++ program computes, in Python: output, l2 loss against the input, gradients."""
    model.zero_grad()
    x = y_star.clone().requires_grad_(True)
    y = model(x)
    loss = physgrad.losses.l2(y, y_star)
    loss.backward()
    results = {"output": y.detach(), "loss": loss.detach(), "input_grad": x.grad}
    results.update({f"grad.{name}": p.grad for name, p in model.named_parameters()})
    return results


def run_cpp(program: Path, model: torch.nn.Module, y_star: torch.Tensor, directory: Path,
            options: Sequence[str] = ()) -> Dict[str, torch.Tensor]:
    torch.jit.save(torch.jit.script(model), str(directory / "model.pt"))
    physgrad.deploy.save_tensors(directory / "input.pt", input=y_star)
    result = run([program, directory / "model.pt", directory / "input.pt", directory / "output.pt", *options],
                 env=clean_environment(), timeout=300)
    assert "physgrad op library " + physgrad.__version__ in result.stdout
    return torch.load(directory / "output.pt")


def assert_same(cpp: Dict[str, torch.Tensor], python: Dict[str, torch.Tensor]) -> None:
    assert sorted(cpp) == sorted(python)
    for key, expected in python.items():
        assert cpp[key].dtype == expected.dtype and cpp[key].shape == expected.shape, key
        torch.testing.assert_close(cpp[key], expected, rtol=1e-12, atol=1e-12, msg=key)


def make(*physics: torch.nn.Module) -> NetThenPhysics:
    torch.manual_seed(0)
    return NetThenPhysics(*physics)


Y_STAR = torch.randn(2, 1, 12, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("mode", ["physical", "adjoint", "lbfgs"])
def test_network_then_poisson_matches_python(deploy_cpp, tmp_path, mode):
    model = make(physgrad.nn.Poisson(grad_mode=mode))
    cpp = run_cpp(deploy_cpp, model, Y_STAR, tmp_path)
    # Against the eager model and against the scripted model loaded back in Python.
    assert_same(cpp, python_results(model, Y_STAR))
    assert_same(cpp, python_results(torch.jit.load(str(tmp_path / "model.pt")), Y_STAR))


def test_two_poisson_layers_in_different_modes_match_python(deploy_cpp, tmp_path):
    model = make(physgrad.nn.Poisson(grad_mode="physical"), physgrad.nn.Poisson(grad_mode="adjoint"))
    assert_same(run_cpp(deploy_cpp, model, Y_STAR, tmp_path), python_results(model, Y_STAR))


def test_mode_set_from_cpp_matches_python(deploy_cpp, tmp_path):
    """--grad-mode LAYER=MODE sets a scripted layer's attribute in C++, as in Python."""
    model = make(physgrad.nn.Poisson(grad_mode="physical"), physgrad.nn.Poisson(grad_mode="physical"))
    cpp = run_cpp(deploy_cpp, model, Y_STAR, tmp_path, ["--grad-mode", "physics.1=adjoint"])
    model.physics[1].grad_mode = "adjoint"
    assert_same(cpp, python_results(model, Y_STAR))


@pytest.mark.skipif(not has_op("heat"), reason="torch.ops.physgrad.heat is not in this build of the op "
                    "library yet (torch_ops/heat.cpp); the Poisson-then-Poisson variant covers two modes")
def test_poisson_then_heat_in_different_modes_matches_python(deploy_cpp, tmp_path):
    model = make(physgrad.nn.Poisson(grad_mode="adjoint"), physgrad.nn.Heat(nu_t=2.0, grad_mode="physical"))
    assert_same(run_cpp(deploy_cpp, model, Y_STAR, tmp_path), python_results(model, Y_STAR))


def test_missing_input_file_is_a_clear_error(deploy_cpp, tmp_path):
    torch.jit.save(torch.jit.script(make(physgrad.nn.Poisson())), str(tmp_path / "model.pt"))
    result = subprocess.run([str(deploy_cpp), str(tmp_path / "model.pt"), str(tmp_path / "absent.pt"),
                             str(tmp_path / "out.pt")], capture_output=True, text=True, timeout=120,
                            env=clean_environment())
    assert result.returncode == 1 and "cannot open" in result.stderr


def test_target_entry_is_used(deploy_cpp, tmp_path):
    model = make(physgrad.nn.Poisson(grad_mode="physical"))
    target = torch.randn(2, 1, 12, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.jit.save(torch.jit.script(model), str(tmp_path / "model.pt"))
    physgrad.deploy.save_tensors(tmp_path / "input.pt", input=Y_STAR, target=target)
    run([deploy_cpp, tmp_path / "model.pt", tmp_path / "input.pt", tmp_path / "output.pt"],
        env=clean_environment(), timeout=300)
    cpp = torch.load(tmp_path / "output.pt")
    x = Y_STAR.clone().requires_grad_(True)
    physgrad.losses.l2(model(x), target).backward()
    torch.testing.assert_close(cpp["input_grad"], x.grad, rtol=1e-12, atol=1e-12)


def test_save_tensors_round_trip(tmp_path):
    tensors = {"input": torch.randn(2, 3, dtype=torch.float64), "target": torch.arange(4.0, dtype=torch.float32)}
    physgrad.deploy.save_tensors(tmp_path / "tensors.pt", **tensors)
    loaded = physgrad.deploy.load_tensors(tmp_path / "tensors.pt")
    assert sorted(loaded) == sorted(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)
    with pytest.raises(ValueError):
        physgrad.deploy.save_tensors(tmp_path / "empty.pt")
