"""Nothing lost, nothing silent (issue 15, items 8, 9, 12-16, 18): number options
given as tensors that require grad, the PETSc options table's limit, spacing
forms, scripted models loaded without physgrad, on_failure="warn" in scripted
code, misspelt options prefixes, modes of scripted layers, a second copy of the
op library. Tests that could end the process run in a subprocess."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

import physgrad
import physgrad.deploy

F64 = torch.float64
REPOSITORY = Path(__file__).resolve().parents[2]


def run_python(program: str, **environment: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPOSITORY / "python"), **environment)
    return subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def clean_options():
    """Tests that set PETSc options leave none behind."""
    physgrad.clear_solver_options()
    yield
    physgrad.clear_solver_options()


def grid(batch: int = 2, ny: int = 6, nx: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, ny, nx, dtype=F64, generator=torch.Generator().manual_seed(seed))


def fluid_inputs():
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(1, 2, 6, 6, dtype=F64, generator=generator),
            torch.rand(1, 6, 6, dtype=F64, generator=generator))


# ---- item 8: a number option given as a tensor that requires grad -------------------------

def grad_scalar(value: float = 2.0) -> torch.Tensor:
    return torch.tensor(value, dtype=F64, requires_grad=True)


OPTION_CALLS = {
    "heat nu_t": ("heat", "nu_t", lambda t: physgrad.heat(grid(), nu_t=t)),
    "heat spacing": ("heat", "spacing", lambda t: physgrad.heat(grid(), spacing=(t, 1.0))),
    "heat spacing tensor": ("heat", "spacing", lambda t: physgrad.heat(grid(), spacing=torch.stack([t, t]))),
    "poisson spacing": ("poisson", "spacing", lambda t: physgrad.poisson(grid(), spacing=(1.0, t))),
    "poisson spacing scalar": ("poisson", "spacing", lambda t: physgrad.poisson(grid(), spacing=t)),
    "fluid dt": ("fluid", "dt", lambda t: physgrad.fluid(*fluid_inputs(), steps=1, dt=t * 0.1)),
    "fluid spacing": ("fluid", "spacing", lambda t: physgrad.fluid(*fluid_inputs(), steps=1, spacing=(t, 2.0))),
    "wave_packet frequency": ("wave_packet", "frequency",
                              lambda t: physgrad.wave_packet(torch.tensor([[100.0, 2.0]], dtype=F64), frequency=t)),
    "wave_packet sigma": ("wave_packet", "sigma",
                          lambda t: physgrad.wave_packet(torch.tensor([[100.0, 2.0]], dtype=F64), sigma=t * 10)),
    "nn.Heat nu_t": ("nn.Heat", "nu_t", lambda t: physgrad.nn.Heat(nu_t=torch.nn.Parameter(t.detach()))),
    "nn.Heat spacing": ("nn.Heat", "spacing", lambda t: physgrad.nn.Heat(spacing=(t, 1.0))),
    "nn.Poisson spacing": ("nn.Poisson", "spacing", lambda t: physgrad.nn.Poisson(spacing=t)),
    "nn.Fluid dt": ("nn.Fluid", "dt", lambda t: physgrad.nn.Fluid(dt=t)),
    "nn.WavePacket sigma": ("nn.WavePacket", "sigma", lambda t: physgrad.nn.WavePacket(sigma=t)),
}


@pytest.mark.parametrize("case", sorted(OPTION_CALLS))
def test_a_number_option_that_requires_grad_is_an_error(case):
    """The op reads a number: a tensor's gradient would be lost silently (as for the sine's a, the fluid's m0)."""
    op, name, call = OPTION_CALLS[case]
    with pytest.raises(ValueError, match=rf"^physgrad\.{op}: {name} requires grad, but physgrad does not "
                                         rf"differentiate {name}.*pass a number or {name}\.detach\(\)"):
        call(grad_scalar())


@pytest.mark.parametrize("case", ["heat nu_t", "heat spacing", "poisson spacing", "fluid dt",
                                  "wave_packet frequency"])
def test_a_tensor_option_without_grad_is_its_number(case):
    """Under no_grad, or detached, a one-element tensor is read as its number, as before."""
    _, _, call = OPTION_CALLS[case]
    expected = call(2.0)
    with torch.no_grad():
        torch.testing.assert_close(call(grad_scalar()), expected, rtol=0, atol=0)
    torch.testing.assert_close(call(grad_scalar().detach()), expected, rtol=0, atol=0)


def test_a_module_setting_set_later_to_a_parameter_is_an_error():
    layer = physgrad.nn.Heat()
    with pytest.raises(ValueError, match=r"^physgrad\.nn\.Heat: nu_t requires grad"):
        layer.nu_t = torch.nn.Parameter(torch.tensor(2.0))
    assert layer.nu_t == 8.0 and not list(layer.parameters())
    layer.nu_t = 2.0  # numbers as ever
    assert layer.nu_t == 2.0


# ---- item 12: spacing forms -------------------------------------------------------------

def test_one_number_spacing_is_both_axes():
    x = grid(ny=6, nx=5)
    torch.testing.assert_close(physgrad.heat(x, spacing=2.0), physgrad.heat(x, spacing=(2.0, 2.0)), rtol=0, atol=0)
    torch.testing.assert_close(physgrad.heat(x, spacing=2), physgrad.heat(x, spacing=(2.0, 2.0)), rtol=0, atol=0)
    torch.testing.assert_close(physgrad.poisson(x, spacing=2.0), physgrad.poisson(x, spacing=(2.0, 2.0)))
    v0, m0 = fluid_inputs()
    torch.testing.assert_close(physgrad.fluid(v0, m0, steps=1, spacing=1.5),
                               physgrad.fluid(v0, m0, steps=1, spacing=(1.5, 1.5)), rtol=0, atol=0)
    torch.testing.assert_close(physgrad.ops.fluid_unit_vortex((6, 6), spacing=3.0),
                               physgrad.ops.fluid_unit_vortex((6, 6), spacing=(3.0, 3.0)), rtol=0, atol=0)
    assert physgrad.nn.Heat(spacing=2.0).spacing == (2.0, 2.0)
    assert physgrad.nn.Fluid(spacing=3).spacing == (3.0, 3.0)
    torch.testing.assert_close(physgrad.nn.Heat(spacing=2.0)(x), physgrad.heat(x, spacing=(2.0, 2.0)))
    assert physgrad.heat(x, spacing=torch.tensor([2.0, 2.0])).shape == x.shape  # a 1-D tensor is a sequence
    assert physgrad.heat(x, spacing=[2.0, 2.0]).shape == x.shape


@pytest.mark.parametrize("call, error, message", [
    (lambda: physgrad.heat(grid(), spacing=(1.0, 2.0, 3.0)), ValueError,
     r"physgrad\.heat: spacing must be a number or \(dy, dx\), got 3 values"),
    (lambda: physgrad.heat(grid(), spacing=(1.0,)), ValueError,
     r"physgrad\.heat: spacing must be a number or \(dy, dx\), got 1 values"),
    (lambda: physgrad.heat(grid(), spacing=()), ValueError, r"physgrad\.heat: spacing must be a number"),
    (lambda: physgrad.heat(grid(), spacing="ab"), TypeError, r"physgrad\.heat: spacing must be a number or "
                                                             r"\(dy, dx\), got str 'ab'"),
    (lambda: physgrad.heat(grid(), spacing=None), TypeError, r"physgrad\.heat: spacing must be a number"),
    (lambda: physgrad.heat(grid(), spacing=True), TypeError, r"physgrad\.heat: spacing must be a number"),
    (lambda: physgrad.heat(grid(), spacing=("1", 2.0)), TypeError, r"physgrad\.heat: spacing must be a number or "
                                                                   r"\(dy, dx\) of numbers, got str '1'"),
    (lambda: physgrad.heat(grid(), spacing=torch.ones(2, 2)), TypeError, r"physgrad\.heat: spacing must be a"),
    (lambda: physgrad.fluid(*fluid_inputs(), spacing=(1.0, 2.0, 3.0)), ValueError,
     r"physgrad\.fluid: spacing must be a number or \(dy, dx\)"),
    (lambda: physgrad.ops.fluid_centre_of_mass(grid(), spacing="x"), TypeError,
     r"physgrad\.fluid_centre_of_mass: spacing"),
    (lambda: physgrad.poisson(grid(), spacing="ab"), TypeError, r"physgrad\.poisson: spacing must be a number"),
    (lambda: physgrad.poisson(grid(), spacing=(1.0, 2.0, 3.0)), ValueError, r"physgrad\.poisson: spacing"),
    (lambda: physgrad.heat(grid(), nu_t=torch.ones(2)), TypeError, r"physgrad\.heat: nu_t must be a number"),
    (lambda: physgrad.nn.Heat(spacing=(1.0, 2.0, 3.0)), ValueError, r"physgrad\.nn\.Heat: spacing must be"),
    (lambda: physgrad.nn.Fluid(spacing="2"), TypeError, r"physgrad\.nn\.Fluid: spacing must be"),
    (lambda: physgrad.nn.Poisson(spacing="2"), TypeError, r"physgrad\.nn\.Poisson: spacing must be"),
])
def test_spacing_of_the_wrong_length_or_type_names_the_op_and_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---- item 9: the options table's limit -------------------------------------------------

def test_a_full_options_table_is_a_clear_error_and_nothing_is_wedged():
    """PETSc 3.18's table holds 512 names (one is physgrad's -no_signal_handler): a call
    that would add a name beyond that is refused whole, with the cause and the fix;
    calls that only change values, and the ops, keep working; clearing frees it."""
    program = r"""
import torch, physgrad
count = 0
try:
    for i in range(600):
        physgrad.set_solver_options(f"-physgrad_poisson_{i}_unused {i}")
        count += 1
except ValueError as error:
    print("FULL AFTER", count)
    print("MESSAGE", error)
before = set(physgrad.unused_solver_options())
try:
    physgrad.set_solver_options("-physgrad_poisson_0_unused changed -physgrad_poisson_new_name 1")
except ValueError as error:
    print("MIXED REFUSED")
after = set(physgrad.unused_solver_options())
print("UNCHANGED", before == after and "-physgrad_poisson_new_name" not in after)
physgrad.set_solver_options("-physgrad_poisson_0_unused changed -physgrad_poisson_1_unused changed")
print("VALUES CHANGE")
try:
    physgrad.set_solver_options(" ".join(f"-physgrad_poisson_x{i}" for i in range(600)))
except ValueError as error:
    print("TOO MANY IN ONE CALL", "alone hold more names" in str(error))
x = torch.randn(2, 6, 6, dtype=torch.float64)
torch.testing.assert_close(physgrad.poisson(x, solver="petsc"), physgrad.poisson(x, solver="spectral"))
print("OPS WORK")
physgrad.clear_solver_options()
physgrad.set_solver_options(" ".join(f"-physgrad_poisson_y{i}" for i in range(500)))
print("CLEARED", len(physgrad.unused_solver_options()))
"""
    result = run_python(program)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "FULL AFTER 511" in out
    message = out.split("MESSAGE ", 1)[1].splitlines()[0]
    assert message.startswith("physgrad.set_solver_options: ") and "options table has no room" in message
    assert "at most 512 option names" in message and "these options add 1 new name to those set before" in message
    assert "nothing of this call was set" in message and "physgrad.clear_solver_options()" in message
    for line in ("MIXED REFUSED", "UNCHANGED True", "VALUES CHANGE", "TOO MANY IN ONE CALL True", "OPS WORK",
                 "CLEARED 500"):
        assert line in out, out


# ---- item 13: a scripted model in a process without physgrad -----------------------------

@pytest.fixture
def scripted_heat_file(tmp_path) -> Path:
    model = torch.nn.Sequential(physgrad.nn.Heat(nu_t=2.0, grad_mode="adjoint"))
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    return path


def test_torch_jit_load_without_physgrad_fails_and_physgrad_deploy_load_works(scripted_heat_file, tmp_path):
    x = grid()
    torch.save(x, tmp_path / "x.pt")
    bare = run_python(f"import torch; torch.jit.load({str(scripted_heat_file)!r})")
    assert bare.returncode != 0
    assert re.search(r"Unknown builtin op: physgrad::\w+", bare.stderr)  # torch's error: import physgrad first
    program = (f"import torch, physgrad.deploy\n"
               f"model = physgrad.deploy.load({str(scripted_heat_file)!r})\n"
               f"torch.save(model(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})\n")
    loaded = run_python(program)
    assert loaded.returncode == 0, loaded.stderr
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), physgrad.heat(x, nu_t=2.0))


def test_physgrad_deploy_load_names_an_op_the_library_lacks(scripted_heat_file, tmp_path):
    """A model saved by a physgrad with an op this library does not have."""
    edited = tmp_path / "other_version.pt"
    with zipfile.ZipFile(scripted_heat_file) as source, zipfile.ZipFile(edited, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith(".py"):
                data = data.replace(b"ops.physgrad.heat(", b"ops.physgrad.heat_v9(")
            target.writestr(item, data)
    with pytest.raises(RuntimeError, match=r"physgrad\.deploy\.load: .*other_version\.pt uses the op "
                                           r"physgrad::heat_v9, which this physgrad op library \(version "):
        physgrad.deploy.load(edited)


# ---- item 14: on_failure="warn" in scripted code -----------------------------------------

def nan_sample_batch() -> torch.Tensor:
    x = grid(batch=2)
    x[1, 2, 3] = float("nan")  # PETSc's CG: DIVERGED_NANORINF for sample 1
    return x


WARNING = (r"physgrad\.poisson: the forward solve did not converge for samples \[1\] \(DIVERGED_NANORINF\); "
           r"on_failure='warn' returned the last iterate")


def test_scripted_module_warns_when_a_solve_does_not_converge(tmp_path):
    layer = physgrad.nn.Poisson(on_failure="warn", solver="petsc")
    scripted = torch.jit.script(torch.nn.Sequential(layer))
    torch.jit.save(scripted, str(tmp_path / "model.pt"))
    for model in (scripted, torch.jit.load(str(tmp_path / "model.pt"))):
        with pytest.warns(UserWarning, match=WARNING):
            y = model(nan_sample_batch())
        assert torch.isfinite(y[0]).all()  # the converged sample is returned
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: no warning
        scripted(grid())


def test_scripted_functional_call_warns():
    @torch.jit.script
    def solve(x: torch.Tensor) -> torch.Tensor:
        return physgrad.ops.poisson(x, "adjoint", 1.0, (1.0, 1.0), on_failure="warn", solver="petsc")

    with pytest.warns(UserWarning, match=WARNING):
        solve(nan_sample_batch())


def test_scripted_code_calls_the_warning_op_and_cpp_gets_the_warning_on_stderr():
    """Scripted code (what a C++ program runs) calls physgrad::warn_unconverged, which
    TorchScript's dead-code elimination keeps; without Python's warning handler its
    TORCH_WARN reaches c10's handler, stderr, as in a C++ program."""
    scripted = torch.jit.script(physgrad.nn.Poisson(on_failure="warn", solver="petsc"))
    with pytest.warns(UserWarning):
        scripted(nan_sample_batch())  # run once: the optimized graph is what runs
    assert "physgrad::warn_unconverged" in str(scripted.forward.inlined_graph)
    program = ("import torch, physgrad\n"
               "x = torch.randn(2, 6, 6, dtype=torch.float64)\nx[1, 2, 3] = float('nan')\n"
               "torch.ops.physgrad.poisson(x, 'physical', 1.0, [1.0, 1.0], 1e-10, 100, 32, 'warn', 'dirichlet',"
               " 'petsc')\n"
               "print('WARNED', torch.ops.physgrad.warn_unconverged('poisson'))\n")
    result = run_python(program)
    assert result.returncode == 0, result.stderr
    assert "WARNED True" in result.stdout
    assert "Warning: physgrad.poisson: the forward solve did not converge for samples [1]" in result.stderr


# ---- item 15: misspelt options are reported ---------------------------------------------

def test_a_misspelt_prefix_warns_and_is_listed_as_unused(clean_options):
    with pytest.warns(UserWarning, match=r"physgrad\.set_solver_options: -physgrad_poison_pc_type configure no "
                                         r"physgrad solver: .*-physgrad_poisson_.*physgrad\.unused_solver_options"):
        physgrad.set_solver_options("-physgrad_poison_pc_type icc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # names under a physgrad prefix do not warn
        physgrad.set_solver_options("-physgrad_poisson_pc_type icc -physgrad_poisson_pc_typo icc "
                                    "-physgrad_heat_lbfgs_tao_type blmvm")
    assert set(physgrad.unused_solver_options()) == {"-physgrad_poison_pc_type", "-physgrad_poisson_pc_type",
                                                     "-physgrad_poisson_pc_typo", "-physgrad_heat_lbfgs_tao_type"}
    physgrad.poisson(grid(), solver="petsc")  # the solver reads its options
    assert set(physgrad.unused_solver_options()) == {"-physgrad_poison_pc_type", "-physgrad_poisson_pc_typo",
                                                     "-physgrad_heat_lbfgs_tao_type"}
    physgrad.clear_solver_options()
    assert physgrad.unused_solver_options() == []


@pytest.mark.parametrize("options, named", [
    ("-ksp_type cg", ["-ksp_type"]),
    ("--physgrad_poisson_ksp_type cg -pc_type none", ["-pc_type"]),
    ("-prefix_push physgrad_ -poison_pc_type icc -prefix_pop -tao_max_it 3",
     ["-physgrad_poison_pc_type", "-tao_max_it"]),
    ("-physgrad_fluid_ksp_rtol -1e-3 -physgrad_Heat_LBFGS_tao_type lmvm -physgrad_heat_tao_type lmvm",
     ["-physgrad_heat_tao_type"]),
])
def test_option_names_for_no_physgrad_solver_warn(clean_options, options, named):
    with pytest.warns(UserWarning) as record:
        physgrad.set_solver_options(options)
    assert len(record) == 1
    assert str(record[0].message).startswith(f"physgrad.set_solver_options: {', '.join(named)} configure no ")


def test_global_petsc_options_do_not_warn(clean_options):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        physgrad.set_solver_options("-malloc_debug -physgrad_wave_packet_fit_tao_max_it 5 -x -1 -inf")


# ---- item 16: modes of scripted layers ----------------------------------------------------

def input_gradient(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    physgrad.losses.l2(model(x), torch.zeros_like(x)).backward()
    return x.grad


def test_scripted_sequential_index_is_the_eager_module_and_set_grad_mode_sets_the_scripted_one(tmp_path):
    x = grid()
    eager = torch.nn.Sequential(physgrad.nn.Heat(grad_mode="physical"), physgrad.nn.Poisson(grad_mode="physical"))
    scripted = torch.jit.script(eager)
    # torch 1.13: indexing returns the eager module, whose attribute the scripted code never reads
    assert scripted[1] is eager[1]
    assert getattr(scripted, "1").grad_mode == "physical"
    assert physgrad.nn.set_grad_mode(scripted, "adjoint") == ["0", "1"]
    assert getattr(scripted, "0").grad_mode == getattr(scripted, "1").grad_mode == "adjoint"
    adjoint = torch.nn.Sequential(physgrad.nn.Heat(grad_mode="adjoint"), physgrad.nn.Poisson(grad_mode="adjoint"))
    torch.testing.assert_close(input_gradient(scripted, x), input_gradient(adjoint, x))
    torch.jit.save(scripted, str(tmp_path / "model.pt"))
    loaded = torch.jit.load(str(tmp_path / "model.pt"))
    torch.testing.assert_close(input_gradient(loaded, x), input_gradient(adjoint, x))
    assert physgrad.nn.set_grad_mode(loaded, "physical", layers=["1"]) == ["1"]
    assert (getattr(loaded, "0").grad_mode, getattr(loaded, "1").grad_mode) == ("adjoint", "physical")


def test_set_grad_mode_checks_every_module_before_setting_any():
    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sine = physgrad.nn.Sine(grad_mode="physical")
            self.physics = torch.nn.Sequential(physgrad.nn.Poisson(grad_mode="physical"))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.physics(self.sine(x, torch.ones_like(x)))

    model = torch.jit.script(Model())
    with pytest.raises(ValueError, match=r"module 'physics\.0' \(Poisson\) does not offer grad_mode 'newton'; "
                                         r"it offers 'adjoint', 'physical', 'lbfgs'"):
        physgrad.nn.set_grad_mode(model, "newton")
    assert model.sine.grad_mode == "physical"  # nothing was set
    assert physgrad.nn.set_grad_mode(model, "newton", layers=["sine"]) == ["sine"]
    assert model.sine.grad_mode == "newton"
    with pytest.raises(ValueError, match=r"\['net'\] are not physgrad modules of this model"):
        physgrad.nn.set_grad_mode(model, "adjoint", layers=["net"])
    with pytest.raises(ValueError, match=r"the model has no physgrad module"):
        physgrad.nn.set_grad_mode(torch.jit.script(torch.nn.Linear(2, 2)), "adjoint")
    eager = torch.nn.Sequential(physgrad.nn.Fluid())
    assert physgrad.nn.set_grad_mode(eager, "lbfgs") == ["0"] and eager[0].grad_mode == "lbfgs"


# ---- item 18: a second copy of the op library -------------------------------------------

@pytest.fixture
def library_copy(tmp_path) -> tuple:
    loaded = next(path for path in physgrad._library.candidate_paths() if path.is_file())  # what import loads
    copy = tmp_path / "copy" / loaded.name
    copy.parent.mkdir()
    shutil.copy2(loaded, copy)
    return loaded, copy


CATCH = "try:\n{body}\nexcept ImportError as error:\n    print('ImportError:', error)\nelse:\n    print('LOADED')\n"


def test_a_second_copy_of_the_library_is_an_import_error_not_an_abort(library_copy):
    loaded, copy = library_copy
    body = f"    import torch\n    torch.ops.load_library({str(loaded)!r})\n    import physgrad"
    result = run_python(CATCH.format(body=body), PHYSGRAD_LIBRARY=str(copy))
    assert result.returncode == 0, result.stderr[-2000:]  # it aborted (SIGABRT, -6) before the check
    assert "ImportError: physgrad: the physgrad ops are already registered in this process, from " \
           f"{loaded}; loading a second copy of the op library from {copy} would abort the process" in result.stdout
    assert "PHYSGRAD_LIBRARY" in result.stdout


def test_loading_again_after_import_from_another_path_is_an_import_error(library_copy):
    loaded, copy = library_copy
    body = (f"    import os, physgrad\n    os.environ['PHYSGRAD_LIBRARY'] = {str(copy)!r}\n"
            f"    physgrad._library.load()")
    result = run_python(CATCH.format(body=body), PHYSGRAD_LIBRARY=str(loaded))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"ImportError: physgrad: the physgrad ops are already registered in this process, from {loaded}" \
        in result.stdout


def test_the_same_library_loaded_first_is_fine(library_copy):
    loaded, _ = library_copy
    body = (f"    import torch\n    torch.ops.load_library({str(loaded)!r})\n    import physgrad\n"
            f"    physgrad._library.load()\n    physgrad.heat(torch.ones(1, 2, 2))")
    result = run_python(CATCH.format(body=body), PHYSGRAD_LIBRARY=str(loaded))
    assert result.returncode == 0 and "LOADED" in result.stdout, result.stdout + result.stderr[-2000:]
