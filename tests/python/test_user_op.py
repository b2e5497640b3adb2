"""User ops (physgrad.Op): every grad mode against exact answers, gradcheck, the mode
precedence, the registry, solve_stats, on_failure, clear errors, and the example."""
from __future__ import annotations

import importlib.util
import io
import re
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

import physgrad
from op_catalog import ALL_OPS

F64 = torch.float64
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "advection_diffusion.py"


@pytest.fixture(autouse=True)
def one_thread_and_clean_registry(one_thread):
    """One torch thread; every user op a test registers is removed after it."""
    before = set(physgrad.registered_ops())
    yield
    for name in set(physgrad.registered_ops()) - before:
        if name != "advection_diffusion":  # the example's op lives as long as its module
            physgrad.unregister_op(name)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def matrix(n: int, seed: int) -> torch.Tensor:
    """A well-conditioned n x n matrix (random plus a diagonal shift)."""
    return torch.randn(n, n, generator=generator(seed), dtype=F64) + 3 * torch.eye(n, dtype=F64)


def linear_op(name: str = "linear", n: int = 6, seed: int = 0, **kwargs):
    """``y = A x`` per sample, inverse ``A^-1 t`` (a solve): returns (op, A)."""
    a = matrix(n, seed)
    forward = lambda x: x @ a.T  # noqa: E731
    inverse = lambda t, x: torch.linalg.solve(a, t.T).T  # noqa: E731
    return physgrad.Op(name, forward, inverse=inverse, **kwargs), a


def gradient(op, x: torch.Tensor, grad_y: torch.Tensor, grad_mode=None, **options) -> torch.Tensor:
    leaf = x.detach().clone().requires_grad_()
    op(leaf, grad_mode=grad_mode, **options).backward(grad_y)
    return leaf.grad


def smooth_op(name: str = "smooth", n: int = 5, seed: int = 1):
    """A well-conditioned nonlinear op, ``y = B x + 0.2 sin(x)``: returns (op, B)."""
    b = matrix(n, seed)
    return physgrad.Op(name, lambda x: x @ b.T + 0.2 * torch.sin(x)), b


# ---- the modes against exact answers ---------------------------------------------------------

@pytest.mark.parametrize("mode", ["physical", "newton", "gauss_newton"])
@pytest.mark.parametrize("y_step", [1.0, 0.5])
def test_linear_op_physical_and_gauss_newton_give_the_exact_inverse_step(mode, y_step):
    op, a = linear_op()
    x = torch.randn(3, 6, generator=generator(1), dtype=F64)
    g = torch.randn(3, 6, generator=generator(2), dtype=F64)
    exact = torch.linalg.solve(a, (y_step * g).T).T  # x - A^-1 (A x - y_step g)
    dx = gradient(op, x, g, mode, y_step=y_step, cg_rtol=1e-14)
    torch.testing.assert_close(dx, exact, rtol=1e-10, atol=1e-12)
    stats = physgrad.solve_stats("linear")
    assert stats.phase == ("physical" if mode == "physical" else "newton") and stats.all_converged
    assert max(stats.residual_norms) < 1e-10  # the target y - y_step g is reached


def test_sum_loss_physical_gradient_points_at_the_target():
    op, a = linear_op()
    x = torch.randn(2, 6, generator=generator(3), dtype=F64, requires_grad=True)
    y_star = torch.randn(2, 6, generator=generator(4), dtype=F64)
    physgrad.losses.l2(op(x, grad_mode="physical"), y_star).backward()
    torch.testing.assert_close(x.detach() - x.grad, torch.linalg.solve(a, y_star.T).T)


def test_float32_input_is_computed_and_returned_in_float32():
    op, a = linear_op()
    a32 = a.float()
    op32 = physgrad.Op("linear32", lambda x: x @ a32.T, inverse=lambda t, x: torch.linalg.solve(a32, t.T).T)
    x = torch.randn(2, 6, generator=generator(5))
    g = torch.randn(2, 6, generator=generator(6))
    for mode in ("adjoint", "physical", "newton", "lbfgs"):
        dx = gradient(op32, x, g, mode, lbfgs_iterations=3)
        assert dx.dtype == torch.float32 and dx.isfinite().all(), mode
    torch.testing.assert_close(gradient(op32, x, g, "physical"), torch.linalg.solve(a32, g.T).T, rtol=1e-4,
                               atol=1e-5)


def test_gradcheck_adjoint_from_autograd_and_from_a_user_adjoint():
    b = matrix(4, 7)
    forward = lambda x: torch.tanh(x @ b.T) + x ** 2  # noqa: E731
    auto = physgrad.Op("auto_adjoint", forward)
    x = torch.randn(3, 4, generator=generator(8), dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: auto(z, grad_mode="adjoint"), (x,))
    a = matrix(4, 9)
    user = physgrad.Op("user_adjoint", lambda x: x @ a.T, adjoint=lambda x, y, g: g @ a)
    assert torch.autograd.gradcheck(lambda z: user(z, grad_mode="adjoint"), (x,))
    wrong = physgrad.Op("wrong_adjoint", lambda x: x @ a.T, adjoint=lambda x, y, g: g @ a.T)
    with pytest.raises(RuntimeError, match="Jacobian mismatch"):
        torch.autograd.gradcheck(lambda z: wrong(z, grad_mode="adjoint"), (x,))
    # autograd's adjoint is plain backprop through forward
    g = torch.randn(3, 4, generator=generator(10), dtype=F64)
    plain = x.detach().clone().requires_grad_()
    forward(plain).backward(g)
    torch.testing.assert_close(gradient(auto, x, g, "adjoint"), plain.grad)


def test_double_backward_is_refused():
    op, _ = smooth_op()
    x = torch.randn(2, 5, generator=generator(11), dtype=F64, requires_grad=True)
    dx, = torch.autograd.grad(0.5 * (op(x, grad_mode="adjoint") ** 2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        dx.sum().backward()


def test_lbfgs_reaches_the_minimizer_and_each_sample_follows_its_own_run():
    op, _ = smooth_op()
    x_true = torch.randn(4, 5, generator=generator(12), dtype=F64)
    x = x_true + torch.randn(4, 5, generator=generator(13), dtype=F64)
    with torch.no_grad():
        target = op(x_true)
        g = op(x) - target  # y - g = target
    dx = gradient(op, x, g, "lbfgs", lbfgs_iterations=100)
    torch.testing.assert_close(x - dx, x_true, rtol=0, atol=1e-8)
    stats = physgrad.solve_stats("smooth")
    assert stats.phase == "lbfgs" and stats.reasons == ["CONVERGED_GRTOL"] * 4 and stats.all_converged
    assert all(0 < i < 100 for i in stats.iterations) and max(stats.residual_norms) < 1e-8
    for sample in range(4):
        alone = gradient(op, x[sample:sample + 1], g[sample:sample + 1], "lbfgs", lbfgs_iterations=100)
        torch.testing.assert_close(alone, dx[sample:sample + 1], rtol=1e-9, atol=1e-12)
        assert physgrad.solve_stats("smooth").iterations == [stats.iterations[sample]]


def test_lbfgs_budget_is_reported_not_raised_and_lowers_the_objective():
    op, _ = smooth_op()
    x = torch.randn(3, 5, generator=generator(14), dtype=F64)
    g = torch.randn(3, 5, generator=generator(15), dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dx = gradient(op, x, g, "lbfgs", lbfgs_iterations=2)
    stats = physgrad.solve_stats("smooth")
    assert stats.iterations == [2, 2, 2] and stats.reasons == ["DIVERGED_MAXITS"] * 3 and not any(stats.converged)
    with torch.no_grad():
        target = op(x) - g
        before = 0.5 * ((op(x) - target) ** 2).sum(1)
        after = 0.5 * ((op(x - dx) - target) ** 2).sum(1)
    assert (after < before).all()


def test_gauss_newton_on_a_nonlinear_op_takes_a_decreasing_step():
    op, _ = smooth_op()
    x = torch.randn(3, 5, generator=generator(16), dtype=F64)
    g = torch.randn(3, 5, generator=generator(17), dtype=F64)
    dx = gradient(op, x, g, "newton", newton_damping=1e-3)
    stats = physgrad.solve_stats("smooth")
    assert stats.phase == "newton" and stats.reasons == ["ACCEPTED"] * 3
    with torch.no_grad():
        target = op(x) - g
        assert ((op(x - dx) - target).norm(dim=1) < g.norm(dim=1)).all()
    zero = gradient(op, x, torch.zeros_like(g), "newton")
    assert torch.equal(zero, torch.zeros_like(zero)) and physgrad.solve_stats("smooth").reasons == ["STATIONARY"] * 3


# ---- mode selection ---------------------------------------------------------------------------

def test_modes_default_mode_and_op_info():
    op, _ = linear_op(doc="A linear map.\n\nMore text.")
    info = physgrad.op_info("linear")
    assert info.modes == ("adjoint", "physical", "newton", "lbfgs") == op.modes
    assert info.default_mode == "physical" and info.doc == "A linear map." and not info.builtin and info.op is op
    plain = physgrad.Op("no_inverse", lambda x: 2 * x)
    assert plain.modes == ("adjoint", "newton", "lbfgs") and plain.default_mode == "adjoint"
    chosen = physgrad.Op("chosen", lambda x: 2 * x, modes=["lbfgs", "gauss_newton"], default_mode="lbfgs")
    assert chosen.modes == ("newton", "lbfgs") and physgrad.op_info("chosen").default_mode == "lbfgs"


def test_builtin_ops_are_known_with_the_modes_their_schemas_accept():
    for spec in ALL_OPS:
        info = physgrad.op_info(spec.name)
        assert info.builtin and info.modes == spec.modes and info.doc, spec.name
        assert info.default_mode == ("physical" if spec.modes else None)
        if spec.modes:  # the op library's own list, from its error message
            with pytest.raises(ValueError) as error:
                spec.call(spec.make(1, 0), "no_such_mode")
            offered = re.search(r"this op offers (.*)$", str(error.value).splitlines()[0]).group(1)
            assert tuple(re.findall(r"'(\w+)'", offered)) == spec.modes, spec.name


def test_precedence_argument_then_block_then_layer_then_default():
    op, a = linear_op()
    x = torch.randn(2, 6, generator=generator(18), dtype=F64)
    g = torch.randn(2, 6, generator=generator(19), dtype=F64)
    physical, adjoint = torch.linalg.solve(a, g.T).T, g @ a
    torch.testing.assert_close(gradient(op, x, g), physical)  # the op's default
    with physgrad.grad_mode("adjoint"):
        torch.testing.assert_close(gradient(op, x, g), adjoint)
        torch.testing.assert_close(gradient(op, x, g, "physical"), physical)  # the argument wins
        layer = physgrad.nn.PhysicsLayer(op, grad_mode="physical")
        leaf = x.clone().requires_grad_()
        y = layer(leaf)
    y.backward(g)  # the mode was fixed at the forward, inside the block
    torch.testing.assert_close(leaf.grad, adjoint)
    leaf.grad = None
    layer(leaf).backward(g)  # outside: the layer's attribute
    torch.testing.assert_close(leaf.grad, physical)
    layer.grad_mode = "adjoint"
    leaf.grad = None
    layer(leaf).backward(g)
    torch.testing.assert_close(leaf.grad, adjoint)


def test_physics_layer_by_name_with_options_and_its_errors():
    op, a = linear_op()
    layer = physgrad.nn.PhysicsLayer("linear", grad_mode="newton", y_step=0.5)
    assert layer.op is op and "grad_mode='newton'" in repr(layer)
    x = torch.randn(2, 6, generator=generator(20), dtype=F64, requires_grad=True)
    g = torch.randn(2, 6, generator=generator(21), dtype=F64)
    layer(x).backward(g)
    torch.testing.assert_close(x.grad, torch.linalg.solve(a, 0.5 * g.T).T)
    with pytest.raises(ValueError, match="built-in op; use its own module"):
        physgrad.nn.PhysicsLayer("poisson")
    with pytest.raises(ValueError, match=r"physgrad.linear: unknown grad_mode 'inverse_gradient'; this op offers"):
        physgrad.nn.PhysicsLayer(op, grad_mode="inverse_gradient")
    with pytest.raises(TypeError, match="unknown option"):
        physgrad.nn.PhysicsLayer(op, lbfgs_steps=3)
    with pytest.raises(TypeError, match="op must be a physgrad.Op"):
        physgrad.nn.PhysicsLayer(lambda x: x)


# ---- errors -----------------------------------------------------------------------------------

def test_unknown_mode_lists_the_offered_ones():
    plain = physgrad.Op("no_inverse", lambda x: 2 * x)
    x = torch.ones(1, 2, dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match=r"physgrad.no_inverse: unknown grad_mode 'physical'; this op offers "
                                         r"'adjoint', 'newton', 'lbfgs' \('physical' needs an inverse"):
        plain(x, grad_mode="physical")
    with physgrad.grad_mode("physical"), pytest.raises(ValueError, match="this op offers 'adjoint'"):
        plain(x)
    with pytest.raises(ValueError, match="unknown grad_mode 'fast'"):
        plain(x, grad_mode="fast")
    with pytest.raises(ValueError, match="'physical' is not available \\('physical' needs an inverse\\)"):
        physgrad.Op("restricted", lambda x: x, modes=("physical",))


def test_names_already_registered_are_refused_and_can_be_freed():
    physgrad.Op("twice", lambda x: x)
    with pytest.raises(ValueError, match=r"'twice' is already registered; .*physgrad.unregister_op\('twice'\)"):
        physgrad.Op("twice", lambda x: x)
    physgrad.unregister_op("twice")
    physgrad.Op("twice", lambda x: 2 * x)
    for builtin in ("poisson", "heat", "fluid", "sine", "wave_packet", "wave_packet_fit"):
        with pytest.raises(ValueError, match=f"'{builtin}' is a built-in op"):
            physgrad.Op(builtin, lambda x: x)
        with pytest.raises(ValueError, match="built-in op and cannot be removed"):
            physgrad.unregister_op(builtin)
    with pytest.raises(ValueError, match="no op named 'nothing'"):
        physgrad.unregister_op("nothing")
    with pytest.raises(ValueError, match="no op named 'nothing'; the ops are .*poisson"):
        physgrad.op_info("nothing")
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        physgrad.Op("", lambda x: x)


@pytest.mark.parametrize("inverse, error, words", [
    (lambda t, x: x[:, :3].clone(), ValueError, r"inverse returned shape \[2, 3\], but x has shape \[2, 6\]"),
    (lambda t, x: x.float(), TypeError, "inverse returned dtype torch.float32, but x has dtype torch.float64"),
    (lambda t, x: x.tolist(), TypeError, "inverse must return a tensor, got list"),
], ids=["shape", "dtype", "not-a-tensor"])
def test_an_inverse_of_the_wrong_shape_or_dtype_is_an_error(inverse, error, words):
    op = physgrad.Op("bad_inverse", lambda x: 2 * x, inverse=inverse)
    x = torch.ones(2, 6, dtype=F64, requires_grad=True)
    for on_failure in ("raise", "ignore"):  # not a solver failure: always an error
        with pytest.raises(error, match=f"physgrad.bad_inverse: {words}"):
            op(x, grad_mode="physical", on_failure=on_failure).sum().backward()


def non_finite_inverse(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The exact inverse of y = 2x, except sample 1, which gets a NaN."""
    out = t / 2
    out[1, 2] = float("nan")
    return out


def test_a_non_finite_inverse_raises_warns_or_is_ignored_per_on_failure():
    op = physgrad.Op("nan_inverse", lambda x: 2 * x, inverse=non_finite_inverse)
    x = torch.randn(3, 4, generator=generator(22), dtype=F64)
    g = torch.randn(3, 4, generator=generator(23), dtype=F64)
    with pytest.raises(RuntimeError, match=r"physgrad.nan_inverse: the physical inverse returned a non-finite "
                                           r"value for samples \[1\] \(DIVERGED_NANORINF\)"):
        gradient(op, x, g, "physical")
    stats = physgrad.solve_stats("nan_inverse")  # recorded by the failed call too
    assert stats.phase == "physical" and stats.converged == [True, False, True]
    assert stats.reasons == ["INVERSE", "DIVERGED_NANORINF", "INVERSE"]
    with pytest.warns(RuntimeWarning, match=r"samples \[1\] .*zero step"):
        dx = gradient(op, x, g, "physical", on_failure="warn")
    torch.testing.assert_close(dx[[0, 2]], g[[0, 2]] / 2)
    assert torch.equal(dx[1], torch.zeros(4, dtype=F64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(gradient(op, x, g, "physical", on_failure="ignore"), dx)


def test_a_non_finite_forward_follows_on_failure_and_non_finite_data_is_always_an_error():
    op = physgrad.Op("log", lambda x: torch.log(x))
    x = torch.tensor([[1.0, 2.0], [-1.0, 3.0]], dtype=F64)
    with pytest.raises(RuntimeError, match=r"physgrad.log: the forward returned a non-finite value for "
                                           r"samples \[1\] \(DIVERGED_NANORINF\)"):
        op(x)
    assert physgrad.solve_stats("log").converged == [True, False]
    with pytest.warns(RuntimeWarning, match=r"samples \[1\]"):
        y = op(x, on_failure="warn")
    assert y[0].isfinite().all() and not y[1].isfinite().all()
    with pytest.raises(RuntimeError, match=r"physgrad.log: x\[0\]\[1\] = inf is not finite"):
        op(torch.tensor([[1.0, float("inf")]], dtype=F64), on_failure="ignore")
    leaf = torch.ones(1, 2, dtype=F64, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"physgrad.log: grad_y\[0\]\[0\] = nan is not finite"):
        op(leaf, on_failure="ignore").backward(torch.tensor([[float("nan"), 1.0]], dtype=F64))


def test_gauss_newton_cg_budget_is_a_failure_with_the_last_iterate_under_warn():
    op, a = linear_op("ill", n=8, seed=24)
    x = torch.randn(2, 8, generator=generator(25), dtype=F64)
    g = torch.randn(2, 8, generator=generator(26), dtype=F64)
    with pytest.raises(RuntimeError, match=r"physgrad.ill: the newton Gauss-Newton step failed .*cg_max_iterations=2\) "
                                           r"for samples \[0, 1\] \(DIVERGED_ITS, DIVERGED_ITS\)"):
        gradient(op, x, g, "newton", cg_max_iterations=2)
    with pytest.warns(RuntimeWarning, match="last CG iterate"):
        dx = gradient(op, x, g, "newton", cg_max_iterations=2, on_failure="warn")
    stats = physgrad.solve_stats("ill")
    assert stats.reasons == ["DIVERGED_ITS"] * 2 and stats.iterations == [2, 2] and dx.isfinite().all()
    assert (stats.residual_norms[0] < g[0].norm()) and (stats.residual_norms[1] < g[1].norm())


def test_jacobian_modes_need_a_torch_differentiable_forward():
    outside = physgrad.Op("outside", lambda x: torch.from_numpy(2 * x.detach().numpy()),
                          adjoint=lambda x, y, g: 2 * g)
    x = torch.ones(2, 3, dtype=F64, requires_grad=True)
    outside(x, grad_mode="adjoint").sum().backward()  # the user's adjoint needs no autograd
    assert torch.equal(x.grad, 2 * torch.ones(2, 3, dtype=F64))
    with pytest.raises(RuntimeError, match="physgrad.outside: grad_mode 'newton' differentiates forward"):
        outside(x, grad_mode="newton").sum().backward()


def test_bad_options_inputs_and_outputs_are_clear_errors():
    op, _ = linear_op()
    x = torch.ones(2, 6, dtype=F64)
    cases = [
        (dict(on_failure="skip"), ValueError, "on_failure must be 'raise', 'warn' or 'ignore'"),
        (dict(y_step=float("nan")), ValueError, "y_step must be a finite number"),
        (dict(lbfgs_iterations=0), ValueError, "lbfgs_iterations must be an integer >= 1"),
        (dict(cg_rtol=2.0), ValueError, r"cg_rtol must be in \(0, 1\)"),
        (dict(newton_damping=-1.0), ValueError, "newton_damping must be >= 0"),
        (dict(lbfgs_steps=3), TypeError, "unknown option"),
    ]
    for options, error, words in cases:
        with pytest.raises(error, match=f"physgrad.linear: {words}"):
            op(x, **options)
    with pytest.raises(TypeError, match="x must be a floating-point tensor, got torch.int64"):
        op(torch.ones(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="x must have a batch dimension"):
        op(torch.tensor(1.0, dtype=F64))
    squeezed = physgrad.Op("squeezed", lambda x: x.sum())
    with pytest.raises(ValueError, match=r"forward returned shape \[\] for x of shape \[2, 6\]"):
        squeezed(x)
    with pytest.raises(TypeError, match=r"physgrad.Op 'inverse_not_callable': inverse must be callable"):
        physgrad.Op("inverse_not_callable", lambda x: x, inverse=3)


# ---- statistics -------------------------------------------------------------------------------

def test_solve_stats_per_phase_for_user_and_builtin_ops():
    op, _ = linear_op()
    x = torch.randn(2, 6, generator=generator(27), dtype=F64, requires_grad=True)
    y = op(x, grad_mode="adjoint")
    assert physgrad.solve_stats("linear") == physgrad.SolveStats("forward", [0, 0], [0.0, 0.0], [True, True],
                                                                 ["EXPLICIT", "EXPLICIT"])
    y.sum().backward()
    assert physgrad.solve_stats("linear").phase == "adjoint"
    physgrad.poisson(torch.ones(1, 3, 3, dtype=F64))
    assert physgrad.solve_stats("poisson").phase == "forward"  # the built-ins through the same function
    physgrad.Op("never_called", lambda x: x)
    with pytest.raises(ValueError, match="no solve of op 'never_called' has run on this thread yet"):
        physgrad.solve_stats("never_called")
    physgrad.unregister_op("linear")
    linear_op()  # the same name again: the earlier op's statistics are not its own
    with pytest.raises(ValueError, match="no solve of op 'linear'"):
        physgrad.solve_stats("linear")


# ---- the worked example -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("advection_diffusion_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    physgrad.unregister_op("advection_diffusion")


def test_example_inverse_recovers_the_resolvable_modes_and_keeps_the_start_elsewhere(example):
    x_star = example.FourierData(seed=1).sample(3).x_star.double()  # modes 1..10
    y_star = example.advect_diffuse(x_star)
    # Tikhonov's bias |l|^2 / (|l|^2 + eps) is 2e-4 at mode 10
    torch.testing.assert_close(example.invert(y_star, torch.zeros_like(x_star)), x_star, rtol=0, atol=1e-4)
    start = torch.randn(3, example.CELLS, generator=generator(28), dtype=F64)
    change = torch.fft.fft(example.invert(y_star, start) - start).abs()
    wrong = torch.fft.fft(example.invert(y_star, start) - x_star).abs()
    assert wrong[:, :11].max() < 5e-3  # resolvable modes: x*'s, whatever the start
    assert change[:, 20:45].max() < 1e-3  # damped below sqrt(eps) ~ 1e-4: the start's


def test_example_quick_run_shows_the_physical_gradient_ahead(example):
    output = io.StringIO()
    with redirect_stdout(output):
        errors = example.main(["--quick"])
    text = output.getvalue()
    assert "adam " in text and "adam+pg" in text, text
    assert errors["adam+pg"] < errors["adam"], text
