"""An op from C code, out of tree (examples/custom_op): libpgexample.so, built
against the installed package with find_package(physgrad), defines
torch.ops.pgexample.diffuse with physgrad's autograd kernel and modes; loaded
with physgrad.load_library, checked with gradcheck, trained, scripted and run
from C++. Slow (it compiles two C++ files against torch, ~2 minutes) but run."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest
import torch

import physgrad
import physgrad.deploy
from packaging_support import REPOSITORY, build_project, clean_environment, install, run
from test_deploy_cpp import assert_same, python_results

pytestmark = pytest.mark.slow

EXAMPLE = REPOSITORY / "examples" / "custom_op"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """The package installed from the build tree, and the example built against it (one job)."""
    root = tmp_path_factory.mktemp("custom_op")
    prefix = install(root / "prefix")
    build_project(EXAMPLE, root / "build", prefix)
    return {"prefix": prefix, "library": root / "build" / "libpgexample.so",
            "deploy": root / "build" / "custom_op_deploy"}


@pytest.fixture(scope="module")
def extension(built):
    return physgrad.load_library(built["library"])


@pytest.fixture(scope="module")
def example():
    """examples/custom_op/train.py as a module (the Diffuse layer, the training loop)."""
    spec = importlib.util.spec_from_file_location("custom_op_train", EXAMPLE / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # TorchScript finds the layer's source through its module
    spec.loader.exec_module(module)
    return module


def explicit_inverse(values: torch.Tensor, nu: float, steps: int) -> torch.Tensor:
    """(I - nu L)^steps applied to every row (zero Dirichlet boundaries)."""
    for _ in range(steps):
        padded = torch.nn.functional.pad(values, (1, 1))
        values = (1 + 2 * nu) * values - nu * (padded[:, :-2] + padded[:, 2:])
    return values


def test_installed_extension_api(built):
    prefix = built["prefix"]
    for name in ("include/physgrad/op.h", "include/physgrad/version.h", "lib/cmake/physgrad/physgradConfig.cmake",
                 "lib/cmake/physgrad/physgradConfigVersion.cmake", "lib/cmake/cphys/cphysConfig.cmake"):
        assert (prefix / name).is_file(), name
    version_header = (prefix / "include/physgrad/version.h").read_text()
    assert f'#define PHYSGRAD_VERSION_STRING "{physgrad.__version__}"' in version_header
    # The public declarations are exported by the installed op library.
    symbols = run(["nm", "-DC", "--defined-only", prefix / "lib" / "libphysgrad_ops.so"]).stdout
    for name in ("register_physics_autograd", "parse_grad_mode", "parse_on_failure", "check_cphys", "as_double",
                 "check_finite", "record_solve_info", "lbfgs_physical_gradient", "grad_mode_name", "define_op",
                 "op_descriptor", "op_label", "parse_mode_options", "check_y_step", "check_lbfgs_iterations",
                 "parse_spacing"):
        assert re.search(rf"\bT physgrad::{name}(\[abi:cxx11\])?\(", symbols), name


def test_load_library(built, extension):
    assert extension.namespace == "pgexample"
    assert extension.ops == ("diffuse", "diffuse_backward")
    assert extension.physgrad_version == physgrad.library_version()
    assert torch.__version__.startswith(extension.torch_version)
    assert physgrad.load_library(built["library"]) is extension  # the same file again
    assert extension in physgrad.extensions.loaded_libraries()
    assert list(torch.ops.pgexample.physgrad_abi())[:2] == [extension.physgrad_version, extension.torch_version]


def test_missing_or_foreign_file_is_an_import_error(tmp_path, built):
    with pytest.raises(ImportError, match="no such file"):
        physgrad.load_library(tmp_path / "absent.so")
    with pytest.raises(ImportError, match="not a physgrad extension library"):
        physgrad.load_library(built["prefix"] / "lib" / "libcphys.so")


def test_a_second_copy_is_an_import_error_not_an_abort(built, extension, tmp_path):
    copy = tmp_path / "libpgexample_copy.so"
    copy.write_bytes(built["library"].read_bytes())
    with pytest.raises(ImportError, match=r"namespace 'pgexample' of .*libpgexample_copy\.so is registered already, "
                                          r"by .*libpgexample\.so"):
        physgrad.load_library(copy)


def test_library_loaded_by_torch_first_loads(built, tmp_path):
    """torch.ops.load_library(path) before physgrad.load_library(path): the same file, no error."""
    program = (f"import torch, physgrad\ntorch.ops.load_library({str(built['library'])!r})\n"
               f"print(physgrad.load_library({str(built['library'])!r}).ops)\n")
    environment = dict(clean_environment(), PYTHONPATH=str(REPOSITORY / "python"))
    if os.environ.get("PHYSGRAD_LIBRARY"):
        environment["PHYSGRAD_LIBRARY"] = os.environ["PHYSGRAD_LIBRARY"]
    result = run([sys.executable, "-c", program], env=environment, timeout=120)
    assert "('diffuse', 'diffuse_backward')" in result.stdout


def test_another_torch_or_physgrad_is_an_import_error(built, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "0.0.1+other")
    with pytest.raises(ImportError, match=r"built against torch 1\.\d+.*but this is torch 0\.0\.1\+other.*rebuild"):
        physgrad.load_library(built["library"])
    monkeypatch.undo()
    monkeypatch.setattr(physgrad.ops, "library_version", lambda: "9.9.9")
    with pytest.raises(ImportError, match=rf"built against physgrad {re.escape(physgrad.__version__)}, but the "
                                          r"loaded op library is physgrad 9\.9\.9"):
        physgrad.load_library(built["library"])


def test_gradcheck_adjoint(extension):
    x = torch.randn(3, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: torch.ops.pgexample.diffuse(v, 0.7, 3, "adjoint"), (x,))
    assert physgrad.solve_stats("pgexample.diffuse").phase == "adjoint"


def test_physical_is_the_exact_inverse_and_lbfgs_approaches_it(extension):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, dtype=torch.float64, generator=generator)
    g = torch.randn(2, 8, dtype=torch.float64, generator=generator)
    grads = {}
    for mode in ("physical", "lbfgs"):
        leaf = x.clone().requires_grad_(True)
        torch.ops.pgexample.diffuse(leaf, 0.5, 2, mode, 0.5, 64).backward(g)
        grads[mode] = leaf.grad
        stats = physgrad.solve_stats("pgexample.diffuse")
        assert stats.phase == mode and stats.all_converged or mode == "lbfgs"
    torch.testing.assert_close(grads["physical"], explicit_inverse(0.5 * g, 0.5, 2), rtol=1e-12, atol=1e-12)
    assert physgrad.solve_stats("pgexample.diffuse").phase == "lbfgs"
    torch.testing.assert_close(grads["lbfgs"], grads["physical"], rtol=1e-5, atol=1e-6)
    # float32 in, float32 out
    assert torch.ops.pgexample.diffuse(x.float()).dtype == torch.float32


def test_the_declaration_reaches_op_info_and_the_options_check(extension):
    info = physgrad.op_info("pgexample::diffuse")
    assert info.modes == ("adjoint", "physical", "lbfgs") and info.default_mode == "physical"
    assert info.namespace == "pgexample" and not info.builtin and info.op is None
    assert info.options_prefix == "pgexample_diffuse_"
    assert info.options_prefixes == ("pgexample_diffuse_lbfgs_",)
    assert "pgexample::diffuse" in physgrad.registered_ops()
    assert "pgexample_diffuse_lbfgs_" in physgrad.ops.solver_option_prefixes()
    with pytest.raises(ValueError, match="is an extension op and cannot be removed"):
        physgrad.unregister_op("pgexample::diffuse")
    # the shared option checks, with the op's label
    x = torch.randn(2, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^physgrad\.pgexample\.diffuse: y_step must be finite, got inf"):
        torch.ops.pgexample.diffuse(x, y_step=float("inf"))
    with pytest.raises(ValueError, match=r"^physgrad\.pgexample\.diffuse: lbfgs_iterations must be in \[1, 2\^31\)"):
        torch.ops.pgexample.diffuse(x, lbfgs_iterations=0)
    # a meta tensor gets physgrad's device message, as the built-ins do
    with pytest.raises(ValueError, match="physgrad ops run on the CPU"):
        torch.ops.pgexample.diffuse(x.to("meta"))


def test_checks_and_messages(extension):
    x = torch.randn(2, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"physgrad\.pgexample\.diffuse: unknown grad_mode 'newton'; this op "
                                         r"offers 'adjoint', 'physical', 'lbfgs'"):
        torch.ops.pgexample.diffuse(x, grad_mode="newton")
    with pytest.raises(ValueError, match="on_failure must be"):
        torch.ops.pgexample.diffuse(x, on_failure="sometimes")
    with pytest.raises(ValueError, match="nu must be finite"):
        torch.ops.pgexample.diffuse(x, nu=-1.0)
    x[1, 3] = float("nan")
    with pytest.raises(RuntimeError, match=r"x\[1\]\[3\] = nan is not finite"):
        torch.ops.pgexample.diffuse(x)
    with pytest.raises(ValueError, match="must have 2 dimensions"):
        torch.ops.pgexample.diffuse(torch.zeros(3))
    with pytest.raises(RuntimeError, match="double backward"):
        leaf = torch.randn(1, 4, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(torch.ops.pgexample.diffuse(leaf).sum(), leaf, create_graph=True)
        grad.sum().backward()


def test_layer_follows_grad_mode_blocks(extension, example):
    layer = example.Diffuse(grad_mode="physical")
    g = torch.randn(2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for block, expected in ((None, "physical"), ("adjoint", "adjoint")):
        leaf = torch.zeros(2, 6, dtype=torch.float64, requires_grad=True)
        if block is None:
            layer(leaf).backward(g)
        else:
            with physgrad.grad_mode(block):
                layer(leaf).backward(g)
        assert physgrad.solve_stats("pgexample.diffuse").phase == expected


def test_training_pg_beats_adam(extension, example):
    errors = {method: example.train(method, iterations=150)["x_error"] for method in ("adam", "adam+pg")}
    mean_last = {method: sum(values[-15:]) / 15 for method, values in errors.items()}
    assert mean_last["adam+pg"] < 0.8 * mean_last["adam"], mean_last


def test_training_script_runs(built):
    environment = dict(clean_environment(), PYTHONPATH=str(REPOSITORY / "python"))
    if os.environ.get("PHYSGRAD_LIBRARY"):  # the op library this process loaded
        environment["PHYSGRAD_LIBRARY"] = os.environ["PHYSGRAD_LIBRARY"]
    result = run([sys.executable, EXAMPLE / "train.py", built["library"], "--iterations", "20"], env=environment,
                 timeout=300)
    assert "loaded pgexample" in result.stdout and "adam+pg" in result.stdout


@pytest.mark.parametrize("mode", ["physical", "adjoint"])
def test_scripted_model_runs_from_cpp(built, extension, example, tmp_path, mode):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 10, dtype=torch.float64), example.Diffuse(grad_mode=mode))
    y_star = torch.randn(3, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.jit.save(torch.jit.script(model), str(tmp_path / "model.pt"))
    physgrad.deploy.save_tensors(tmp_path / "input.pt", input=y_star)
    result = run([built["deploy"], tmp_path / "model.pt", tmp_path / "input.pt", tmp_path / "output.pt"],
                 env=clean_environment(), timeout=300)
    assert f"pgexample built against physgrad {physgrad.__version__}" in result.stdout
    cpp = torch.load(tmp_path / "output.pt")
    assert_same(cpp, python_results(model, y_star))
    assert_same(cpp, python_results(torch.jit.load(str(tmp_path / "model.pt")), y_star))


def test_cpp_program_without_its_input_fails_cleanly(built, tmp_path):
    result = subprocess.run([str(built["deploy"])], capture_output=True, text=True, timeout=120,
                            env=clean_environment())
    assert result.returncode == 2 and "usage" in result.stderr
