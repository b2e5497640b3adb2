"""Training loop, method comparison, experiment registry and CLI."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from physgrad import cli
from physgrad.data import FieldPair
from physgrad.experiments import available_experiments, get_experiment
from physgrad.training import (compare, format_table, get_method, make_network,
                               smoothed_metric, train)

_REPOSITORY = Path(__file__).resolve().parents[2]
SMALL_POISSON = {"shape": (16, 16)}
# Tests that train networks in this process run single-threaded (small networks train fastest
# so on shared cores); the fixture restores the thread count afterwards.
single_threaded = pytest.mark.usefixtures("one_thread")


def _run_cli(*arguments: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(_REPOSITORY / "python"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "physgrad", *arguments], cwd=_REPOSITORY,
                          env=environment, capture_output=True, text=True, timeout=300)


def test_registry_lists_poisson_and_heat_and_rejects_unknown_names():
    assert {"poisson", "heat"} <= set(available_experiments())
    with pytest.raises(ValueError, match="unknown experiment 'nope'; choose one of: .*poisson"):
        get_experiment("nope")
    with pytest.raises(ValueError, match="does not accept options"):
        get_experiment("poisson", viscosity=1.0)
    with pytest.raises(ValueError, match="unknown method 'adam\\+magic'.*adam, adam\\+pg"):
        get_method("adam+magic", get_experiment("poisson"))


@single_threaded
def test_adam_with_physical_gradients_lowers_the_x_error_on_poisson():
    history = train(get_experiment("poisson", **SMALL_POISSON), "adam+pg", iterations=30,
                    batch_size=8, seed=0, progress=False)
    assert history.iteration == list(range(1, 31)) and not history.diverged
    first, last = sum(history.x_mae[:5]) / 5, sum(history.x_mae[-5:]) / 5
    assert last < 0.7 * first, (first, last)


@single_threaded
def test_every_method_starts_from_the_same_weights_and_data():
    experiment = get_experiment("poisson", **SMALL_POISSON)
    runs = [train(experiment, method, iterations=2, batch_size=4, seed=7, progress=False)
            for method in ("adam", "adam+pg", "supervised", "sgd")]
    assert len({run.x_mae[0] for run in runs}) == 1
    assert len({run.y_loss[0] for run in runs}) == 1
    other_seed = train(experiment, "adam", iterations=1, batch_size=4, seed=8, progress=False)
    assert other_seed.x_mae[0] != runs[0].x_mae[0]


def test_network_initialization_is_seeded_and_leaves_the_callers_rng_alone():
    experiment = get_experiment("poisson")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = make_network(experiment, seed=1).state_dict()
    assert torch.equal(torch.rand(3), expected)
    second, other = make_network(experiment, 1).state_dict(), make_network(experiment, 2).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


@single_threaded
def test_train_logs_a_csv_and_saves_weights(tmp_path):
    history = train(get_experiment("poisson", **SMALL_POISSON), "supervised", iterations=5,
                    batch_size=4, seed=0, out_dir=str(tmp_path), progress=False)
    with open(tmp_path / "supervised.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["iteration", "wall_seconds", "y_loss", "x_mae"]
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5]
    assert float(rows[-1]["x_mae"]) == pytest.approx(history.x_mae[-1], rel=1e-6)
    assert all(float(r["y_loss"]) > 0 for r in rows)
    assert history.weights_path == str(tmp_path / "supervised.pt")
    torch.load(history.weights_path)


@single_threaded
def test_a_diverging_run_stops_early_instead_of_crashing():
    history = train(get_experiment("poisson", **SMALL_POISSON), "sgd", iterations=50,
                    batch_size=4, seed=0, learning_rate=1.0, progress=False)
    assert history.diverged and len(history.iteration) < 50


def test_heat_prediction_keeps_the_observed_mean():
    experiment = get_experiment("heat")
    batch = FieldPair(torch.rand(3, 8, 8), torch.rand(3, 8, 8) + 2.0)
    x = experiment.postprocess(torch.randn(3, 8, 8), batch)
    torch.testing.assert_close(x.mean(dim=(1, 2)), batch.y_star.mean(dim=(1, 2)))


@single_threaded
def test_adam_with_physical_gradients_trains_on_heat():
    history = train(get_experiment("heat", shape=(32, 32)), "adam+pg", iterations=20,
                    batch_size=8, seed=0, progress=False)
    assert not history.diverged
    assert sum(history.x_mae[-5:]) < sum(history.x_mae[:5])


def test_smoothed_metric_averages_a_short_trailing_window():
    values = [float(i) for i in range(1, 101)]  # value == iteration
    assert smoothed_metric(values, 5) == 5.0  # window max(1, 5 // 10) = 1
    assert smoothed_metric(values, 100, window=10) == pytest.approx(95.5)
    assert smoothed_metric(values, 101) != smoothed_metric(values, 101)  # NaN: past the end


@single_threaded
def test_compare_writes_csvs_results_and_plot(tmp_path):
    results = compare(get_experiment("poisson", **SMALL_POISSON), ["adam", "adam+pg"],
                      iterations=20, batch_size=4, seed=0, out_dir=str(tmp_path),
                      checkpoints=[5, 20], progress=False)
    for name in ("adam.csv", "adam+pg.csv", "adam.pt", "results.json", "learning_curves.png"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["checkpoints"] == [5, 20] and saved["methods"] == ["adam", "adam+pg"]
    assert saved["ratio_to_first"]["adam"] == [1.0, 1.0]
    assert saved["x_mae"]["adam+pg"][0] == pytest.approx(
        smoothed_metric(_csv_column(tmp_path / "adam+pg.csv", "x_mae"), 5), rel=1e-6)
    assert "ratio adam / method" in format_table(results)


def _csv_column(path, column):
    with open(path, newline="") as stream:
        return [float(row[column]) for row in csv.DictReader(stream)]


def test_cli_help_in_a_fresh_process():
    for arguments in ([], ["train"]):
        completed = _run_cli(*arguments, "--help")
        assert completed.returncode == 0, completed.stderr
        assert "usage: python3 -m physgrad" in completed.stdout


@pytest.mark.parametrize("command", ["compare", "list"])
def test_cli_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: python3 -m physgrad {command}" in capsys.readouterr().out


def test_cli_rejects_unknown_experiment_and_method_listing_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "nope"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "heat" in error and "poisson" in error
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", "poisson", "--methods", "adam,adam+magic"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "unknown method 'adam+magic'" in error and "adam+pg" in error


def test_cli_train_writes_its_log_in_a_fresh_process(tmp_path):
    completed = _run_cli("train", "poisson", "--method", "adam", "--shape", "16x16",
                         "--iterations", "4", "--batch-size", "4", "--threads", "1",
                         "--out", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "adam.csv").is_file() and "adam.csv" in completed.stdout


@single_threaded
def test_cli_compare_prints_the_table_and_where_the_outputs_are(tmp_path, capsys):
    status = cli.main(["compare", "poisson", "--methods", "adam,adam+pg", "--shape", "16x16",
                       "--iterations", "4", "--batch-size", "4", "--checkpoints", "2,4",
                       "--no-progress", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert status == 0
    assert "ratio adam / method" in printed and str(tmp_path / "results.json") in printed
    assert (tmp_path / "learning_curves.png").is_file()
