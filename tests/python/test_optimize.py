"""Single-example optimization (physgrad.optimize, ``python3 -m physgrad optimize``)."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

_REPOSITORY = Path(__file__).resolve().parents[2]
if not (os.environ.get("PHYSGRAD_LIBRARY")
        or (_REPOSITORY / "build" / "lib" / "libphysgrad_ops.so").is_file()
        or (_REPOSITORY / "python" / "physgrad" / "lib" / "libphysgrad_ops.so").is_file()):
    pytest.skip("op library libphysgrad_ops.so not built (importing physgrad loads it)",
                allow_module_level=True)

from physgrad import optimize  # noqa: E402
from physgrad.experiments import get_experiment  # noqa: E402
from physgrad.training import train  # noqa: E402

torch.set_num_threads(1)
SHAPE = (16, 16)


def _poisson():
    return get_experiment("poisson", shape=SHAPE)


def _run_cli(*arguments: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(_REPOSITORY / "python"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "physgrad", *arguments], cwd=_REPOSITORY,
                          env=environment, capture_output=True, text=True, timeout=300)


def test_examples_are_float64_with_the_target_simulated_in_float64():
    experiment = _poisson()
    batch = optimize.sample_examples(experiment, 2, seed=3)
    assert batch.x_star.dtype == batch.y_star.dtype == torch.float64
    assert batch.x_star.shape == (2, *SHAPE)
    same = experiment.make_data(3).sample(2)
    assert torch.equal(batch.x_star, same.x_star.double())
    assert torch.allclose(batch.y_star, same.y_star.double(), rtol=1e-5, atol=1e-6)


def test_poisson_inverse_physics_step_reaches_the_exact_solution_in_one_iteration(laplacian):
    experiment = _poisson()
    batch = optimize.sample_examples(experiment, 2, seed=1)
    curve = optimize.run_pg(experiment, batch, iterations=1)
    assert curve.iteration == [0, 1]
    matrix = laplacian(*SHAPE)
    for i in range(2):
        y_star = batch.y_star[i].numpy().ravel()
        x_exact = matrix @ y_star                          # laplace(y*) = x*: the analytic inverse
        assert np.abs(x_exact - batch.x_star[i].numpy().ravel()).max() < 1e-8
        x_one = curve.x[i].numpy().ravel()
        assert np.abs(x_one - x_exact).max() < 1e-8 * np.abs(x_exact).max()
        # the iterate's Poisson solution, by a scipy sparse solve, is the target y*
        assert np.abs(spla.spsolve(matrix.tocsc(), x_one) - y_star).max() < 1e-8 * np.abs(y_star).max()
    assert curve.x_error[1] < 1e-9 * curve.x_error[0]
    assert curve.loss[1] < 1e-16 * curve.loss[0]


def test_gd_with_the_papers_step_decreases_the_poisson_loss_monotonically():
    experiment = _poisson()
    step, source = optimize.STEP_SIZES["poisson"]
    assert step == 2e-5 and "B.3" in source
    curve = optimize.run_gd(experiment, optimize.sample_examples(experiment, 2, seed=0), 10, step)
    assert len(curve.loss) == 11 and curve.message == ""
    assert all(b < a for a, b in zip(curve.loss, curve.loss[1:]))
    assert all(b >= a for a, b in zip(curve.wall_seconds, curve.wall_seconds[1:]))
    assert curve.evaluations == list(range(11))


def test_gd_on_heat_with_step_one_decreases_the_loss_monotonically():
    experiment = get_experiment("heat", shape=SHAPE)
    curve = optimize.run_gd(experiment, optimize.sample_examples(experiment, 1, seed=0), 8,
                            optimize.STEP_SIZES["heat"][0])
    assert all(b < a for a, b in zip(curve.loss, curve.loss[1:]))


def test_pg_on_heat_with_the_noise_floor_keeps_improving_where_without_it_it_degrades(tmp_path):
    """The inverse-physics iteration on the paper's 64x64 heat problem: with the op's
    absolute noise floor (optimize.PG_OPTIONS, the authors' 1e-8) the x error keeps
    falling; without it the rounding-level residual is amplified after ~2 steps."""
    experiment = get_experiment("heat")
    batch = optimize.sample_examples(experiment, 1, seed=0)
    floored = optimize.run_pg(get_experiment("heat", noise_floor=1e-8), batch, 12)
    plain = optimize.run_pg(experiment, batch, 12)
    assert all(b <= a * (1 + 1e-9) for a, b in zip(floored.x_error, floored.x_error[1:]))
    assert floored.x_error[-1] < floored.x_error[2] and plain.x_error[-1] > 2 * plain.x_error[2]
    results = optimize.optimize(experiment, ["pg"], 3, 1, out_dir=str(tmp_path))
    assert results["step_sizes"]["pg"]["options"] == {"noise_floor": 1e-8}
    assert "noise_floor" not in results["options"]   # gd and lbfgs run the experiment as trained


@pytest.mark.parametrize("name", ["poisson", "heat"])
def test_lbfgs_decreases_the_loss(name):
    experiment = get_experiment(name, shape=SHAPE)
    curve = optimize.run_lbfgs(experiment, optimize.sample_examples(experiment, 2, seed=0), 10)
    assert all(b <= a for a, b in zip(curve.loss, curve.loss[1:]))
    assert curve.loss[-1] < 1e-2 * curve.loss[0]
    assert curve.evaluations[-1] >= curve.iteration[-1]   # at least one evaluation per iteration
    assert len(curve.final_loss) == 2


def test_lbfgs_beats_gd_on_poisson_at_equal_iterations():
    experiment = _poisson()
    batch = optimize.sample_examples(experiment, 1, seed=0)
    gd = optimize.run_gd(experiment, batch, 10, optimize.STEP_SIZES["poisson"][0])
    lbfgs = optimize.run_lbfgs(experiment, batch, 10)
    assert lbfgs.loss[-1] < gd.loss[-1] and lbfgs.x_error[-1] < gd.x_error[-1]


def test_iterations_to_reach_finds_the_first_iteration_at_or_below_the_target():
    curve = optimize.Curve("gd", iteration=[0, 1, 2], wall_seconds=[0.0, 0.5, 1.0], x_error=[3.0, 2.0, 1.0])
    assert optimize.iterations_to_reach(curve, 2.0) == (1, 0.5)
    assert optimize.iterations_to_reach(curve, 1.5) == (2, 1.0)
    assert optimize.iterations_to_reach(curve, 0.5) is None


def test_bad_arguments_are_errors_naming_the_argument(tmp_path):
    experiment = _poisson()
    with pytest.raises(ValueError, match="--methods: unknown method 'adam'"):
        optimize.optimize(experiment, ["gd", "adam"], 1, 1, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="--iterations must be at least 1"):
        optimize.optimize(experiment, ["gd"], 0, 1, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="--examples must be at least 1"):
        optimize.optimize(experiment, ["gd"], 1, 0, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="--lr"):
        optimize.optimize(experiment, ["gd"], 1, 1, out_dir=str(tmp_path), gd_step=-1.0)
    with pytest.raises(ValueError, match="no single-example optimization; choose one of: poisson, heat, fluid"):
        optimize.optimize(get_experiment("sin"), ["gd"], 1, 1, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="--network .*: no such file"):
        optimize.optimize(experiment, ["gd"], 1, 1, out_dir=str(tmp_path), network_path=str(tmp_path / "x.pt"))


def test_cli_writes_a_csv_per_method_the_plot_the_table_and_results(tmp_path):
    out = tmp_path / "run"
    done = _run_cli("optimize", "poisson", "--shape", "16x16", "--methods", "gd,lbfgs,pg",
                    "--iterations", "3", "--examples", "2", "--seed", "5", "--threads", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    for method in ("gd", "lbfgs", "pg"):
        with open(out / f"{method}.csv", newline="") as stream:
            rows = list(csv.DictReader(stream))
        assert [int(r["iteration"]) for r in rows] == [0, 1, 2, 3]
        assert set(rows[0]) == {"iteration", "evaluations", "wall_seconds", "loss", "x_error"}
    assert (out / "optimize.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "table.md").read_text()
    assert "| gd |" in table and "| pg |" in table and "Table 1" not in table
    results = json.loads((out / "results.json").read_text())
    assert results["examples"] == 2 and results["seed"] == 5 and results["iterations"] == 3
    assert results["step_sizes"]["gd"]["eta"] == 2e-5
    assert results["methods"]["pg"]["x_error"] < 1e-9
    assert len(results["methods"]["gd"]["x_error_per_example"]) == 2
    assert "plot:" in done.stdout


def test_cli_rejects_bad_arguments_with_exit_status_2(tmp_path):
    done = _run_cli("optimize", "heat", "--methods", "gd,nope", "--out", str(tmp_path))
    assert done.returncode == 2 and "--methods: unknown method 'nope'" in done.stderr


def test_network_is_compared_with_the_solvers_on_the_same_examples(tmp_path):
    experiment = _poisson()
    history = train(experiment, "adam+pg", iterations=2, batch_size=4, seed=0, out_dir=str(tmp_path / "net"),
                    progress=False)
    weights = history.weights_path
    assert weights.endswith("adam+pg.pt")
    results = optimize.optimize(optimize.experiment_for("poisson", None, weights), ["gd", "pg"], 3, 2, seed=7,
                                out_dir=str(tmp_path / "opt"), network_path=weights)
    network = results["network"]
    # the same prediction computed independently
    net = optimize.load_network(experiment, weights)
    batch = optimize.sample_examples(experiment, 2, seed=7)
    with torch.no_grad():
        x = experiment.predict(net, type(batch)(*(t.float() for t in batch))).double()
    assert network["x_error"] == pytest.approx(float(experiment.x_metric(x, batch)), rel=1e-6)
    assert network["seconds_per_example"] > 0
    assert network["training"]["iterations"] == 2 and network["training"]["method"] == "adam+pg"
    # pg is exact after one step, so it reaches any network's accuracy by iteration 1
    assert network["reach"]["pg"]["iterations"] <= 1
    table = (tmp_path / "opt" / "table.md").read_text()
    assert "Table 1" in table and "network (adam+pg.pt)" in table
    saved = json.loads((tmp_path / "opt" / "results.json").read_text())
    assert saved["network"]["reach"]["pg"] == network["reach"]["pg"]


def test_network_options_come_from_its_run_and_conflicts_are_errors(tmp_path):
    history = train(_poisson(), "adam", iterations=1, batch_size=2, seed=0, out_dir=str(tmp_path), progress=False)
    assert tuple(optimize.experiment_for("poisson", None, history.weights_path).shape) == SHAPE
    with pytest.raises(ValueError, match="--shape 8x8 differs from the --network run's 16x16"):
        optimize.experiment_for("poisson", (8, 8), history.weights_path)
    with pytest.raises(ValueError, match="trained on experiment 'poisson', not 'heat'"):
        optimize.experiment_for("heat", None, history.weights_path)


def test_fluid_runs_every_method_on_a_small_grid(tmp_path):
    experiment = get_experiment("fluid", shape=SHAPE)
    results = optimize.optimize(experiment, ["gd", "lbfgs", "pg"], 2, 1, seed=0, out_dir=str(tmp_path))
    assert results["step_sizes"]["gd"]["eta"] == 1.0
    for method in ("gd", "lbfgs", "pg"):
        assert np.isfinite(results["methods"][method]["loss"])
        assert (tmp_path / f"{method}.csv").is_file()
