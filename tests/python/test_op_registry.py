"""One declaration per op: the C++ OpDescriptor of each op (torch_ops/) is the
source of its schema, modes and options prefix; everything else that names them
(Python functions and modules, op_info, the options check, the tests' catalog)
is derived from it or checked against it here."""
import inspect
import math
import warnings

import pytest
import torch

import physgrad
from physgrad import ops

import op_catalog

NAMES, SCHEMAS, BACKWARD_SCHEMAS, MODES, PREFIXES, READ = torch.ops.physgrad.op_catalog()
BUILTIN = [name.split("::", 1)[1] for name in NAMES if name.startswith("physgrad::")]
# ops with no Python function of their own: the function that calls them
INTERNAL = {"poisson_boundary_lift": "poisson"}
DIFFERENTIABLE = [name for name in BUILTIN if physgrad.op_info(name).modes]
MODULES = {"poisson": physgrad.nn.Poisson, "heat": physgrad.nn.Heat, "sine": physgrad.nn.Sine,
           "wave_packet": physgrad.nn.WavePacket, "fluid": physgrad.nn.Fluid}


def schema_defaults(name):
    (schema,) = torch._C._jit_get_schemas_for_operator(f"physgrad::{name}")
    return {a.name: a.default_value for a in schema.arguments if a.default_value is not None}


def python_value(value):
    return list(value) if isinstance(value, tuple) else value


def same(argument, python, declared):
    """Equal defaults; a spacing is one value for every axis when its values are equal ([1.0] = [1.0, 1.0])."""
    python = python_value(python)
    if argument == "spacing" and isinstance(python, list) and isinstance(declared, list):
        return set(python) == set(declared)
    return python == declared


def test_the_catalog_lists_every_builtin_op_once_with_its_schema():
    assert sorted(BUILTIN) == ["fluid", "fluid_centre_of_mass", "fluid_sequence", "fluid_unit_vortex", "heat",
                               "poisson", "poisson_boundary_lift", "sine", "sine_nearest_minimum", "wave_packet",
                               "wave_packet_fit"]
    for qualified, schema, backward, modes in zip(NAMES, SCHEMAS, BACKWARD_SCHEMAS, MODES):
        name = qualified.split("::", 1)[1]
        assert schema.startswith(name + "(")
        # the registered schema is the declared one
        (registered,) = torch._C._jit_get_schemas_for_operator(qualified)
        assert registered.name == qualified
        assert bool(backward) == bool(modes)
        if backward:
            assert backward.startswith(name + "_backward(")
            assert torch._C._jit_get_schemas_for_operator(qualified + "_backward")


@pytest.mark.parametrize("name", [name for name in BUILTIN if name not in INTERNAL])
def test_python_functions_take_the_declared_defaults(name):
    function = getattr(physgrad.ops, name)
    declared = schema_defaults(name)
    parameters = inspect.signature(function).parameters
    compared = 0
    for argument, default in declared.items():
        if argument not in parameters:
            continue
        value = parameters[argument].default
        if argument == "grad_mode":
            # None: the enclosing grad_mode block's, else the default every op declares
            assert value is None and declared["grad_mode"] == physgrad.modes.DEFAULT_GRAD_MODE
        elif argument == "spacing" and value is None:
            assert declared["spacing"] == [1.0]   # None: 1 for every axis
        else:
            assert same(argument, value, default), (name, argument)
        compared += 1
    assert compared == len(declared), f"{name}: the Python function lacks declared options"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_take_the_declared_defaults(name):
    declared = schema_defaults(name)
    parameters = inspect.signature(MODULES[name].__init__).parameters
    for argument, value in parameters.items():
        if argument in ("self",) or argument not in declared:
            continue
        assert same(argument, value.default, declared[argument]), (name, argument)
    module = MODULES[name]()
    assert module.grad_mode == physgrad.op_info(name).default_mode


@pytest.mark.parametrize("name", BUILTIN)
def test_op_info_reports_the_declaration(name):
    info = physgrad.op_info(name)
    index = NAMES.index(f"physgrad::{name}")
    assert info.builtin and info.namespace == "physgrad"
    assert info.modes == (tuple(MODES[index].split(",")) if MODES[index] else ())
    assert info.options_prefix == PREFIXES[index]
    assert info.options_prefixes == tuple(p for p in READ[index].split(",") if p)
    if "lbfgs" in info.modes and info.options_prefix:  # (the boundary lift runs no solver)
        assert info.options_prefix + "lbfgs_" in info.options_prefixes
    assert info.default_mode == (schema_defaults(name).get("grad_mode") if info.modes else None)
    assert info.doc  # the first paragraph of the Python function's docstring (else the schema)
    with pytest.raises(ValueError, match="built-in op"):
        physgrad.unregister_op(name)


@pytest.mark.parametrize("name", [name for name in DIFFERENTIABLE if name not in INTERNAL])
def test_an_unknown_mode_lists_exactly_the_declared_modes(name):
    spec = op_catalog.BY_NAME[name]
    with pytest.raises(ValueError) as error:
        spec.call(spec.make(1, 0), "no_such_mode")
    offered = ", ".join(f"'{m}'" for m in physgrad.op_info(name).modes)
    assert f"physgrad.{name}: unknown grad_mode 'no_such_mode'; this op offers {offered}" in str(error.value)


def test_every_declared_op_with_tensors_is_in_the_tests_catalog():
    # fluid_unit_vortex takes no tensor (its tests are in test_fluid.py); the boundary lift is
    # tested through physgrad.poisson (test_poisson_boundary_values.py)
    assert sorted(set(BUILTIN) - {"fluid_unit_vortex"} - set(INTERNAL)) == sorted(op_catalog.BY_NAME)
    for name, spec in op_catalog.BY_NAME.items():
        assert spec.modes == physgrad.op_info(name).modes


def test_mode_names_are_the_librarys():
    assert tuple(torch.ops.physgrad.grad_modes()) == physgrad.GRAD_MODES


def test_options_prefixes_come_from_the_declarations():
    # loaded extensions (test_custom_op) add theirs
    read = {p for text in torch.ops.physgrad.op_catalog()[5] for p in text.split(",") if p}
    assert ops.solver_option_prefixes() == tuple(sorted(read))
    assert ops.SOLVER_OPTION_PREFIXES == ("physgrad_fluid_", "physgrad_fluid_lbfgs_", "physgrad_heat_lbfgs_",
                                          "physgrad_poisson_", "physgrad_poisson_lbfgs_", "physgrad_wave_packet_fit_",
                                          "physgrad_wave_packet_lbfgs_")
    assert all(p == f"physgrad_{n.split('::')[1]}_" for n, p in zip(NAMES, PREFIXES) if p and "sequence" not in n)
    physgrad.clear_solver_options()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # every lbfgs mode reads <prefix>lbfgs_: a declared prefix, no warning
            for name in DIFFERENTIABLE:
                for prefix in physgrad.op_info(name).options_prefixes:
                    physgrad.set_solver_options(f"-{prefix}tao_lmvm_recycle")
        with pytest.warns(UserWarning, match="configure no physgrad solver"):
            physgrad.set_solver_options("-physgrad_sine_ksp_type cg")  # the sine solves nothing with PETSc
        with pytest.warns(UserWarning, match="configure no physgrad solver"):
            physgrad.set_solver_options("-physgrad_heat_tao_type lmvm")  # only the heat's lbfgs reads options
    finally:
        physgrad.clear_solver_options()


@pytest.mark.parametrize("name", [name for name in DIFFERENTIABLE if name not in INTERNAL])
def test_every_op_records_forward_statistics(name):
    spec = op_catalog.BY_NAME[name]
    batch = 3
    spec.call(spec.make(batch, 1))
    stats = physgrad.solve_stats(name)
    assert stats.phase == "forward" and len(stats.converged) == batch and stats.all_converged


@pytest.mark.parametrize("name", [name for name in DIFFERENTIABLE if name not in INTERNAL])
def test_shared_option_checks_say_the_same_thing(name):
    spec = op_catalog.BY_NAME[name]
    inputs = spec.make(1, 2)
    with pytest.raises(ValueError, match=f"^physgrad.{name}: y_step must be finite, got nan"):
        spec.call(inputs, "adjoint", y_step=math.nan)
    if "lbfgs_iterations" in schema_defaults(name):
        with pytest.raises(ValueError, match=fr"^physgrad.{name}: lbfgs_iterations must be in \[1, 2\^31\), got 0"):
            spec.call(inputs, "adjoint", lbfgs_iterations=0)
    if "spacing" in schema_defaults(name):
        with pytest.raises(ValueError, match=f"^physgrad.{name}: spacing must be positive and finite"):
            spec.call(inputs, "adjoint", spacing=(1.0, -1.0))


def test_a_declared_name_cannot_be_a_user_op():
    with pytest.raises(ValueError, match="'heat' is a built-in op"):
        physgrad.Op("heat", forward=lambda x: x)
