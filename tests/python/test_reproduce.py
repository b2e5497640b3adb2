"""python3 -m physgrad reproduce --quick: every experiment's runs, figures and tables,
resumable, with the paper's numbers beside physgrad's and incomplete runs marked."""
from __future__ import annotations

import csv
import json

import pytest

from physgrad import cli, reproduce, reproduce_curves, reproduce_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    runs = tmp_path_factory.mktemp("reproduce")
    status = cli.main(["reproduce", "all", "--quick", "--runs", str(runs), "--threads", "1", "--no-progress"])
    assert status == 0
    return runs


def test_every_experiment_has_its_figures_tables_and_provenance(quick):
    results = quick / "results"
    index = (results / "README.md").read_text()
    for name in reproduce.NAMES:
        folder = results / name
        assert (folder / "learning_curves.png").read_bytes()[:8] == PNG
        table = (folder / "table.md").read_text()
        assert reproduce_report.PAPER[name] in table and table.split("\n")[0] in index
        provenance = json.loads((folder / "provenance.json").read_text())
        assert provenance["commit"] and provenance["machine"] and provenance["date"]
        assert all(run["complete"] for run in provenance["runs"])
        stages = reproduce.QUICK[name]
        assert len(provenance["runs"]) == len(reproduce.runs_of(stages))
    assert (results / "wave_packet" / "wave_packet_example.png").read_bytes()[:8] == PNG
    assert (results / "fluid" / "fluid_example.png").read_bytes()[:8] == PNG
    assert (results / "sin" / "gradients.png").read_bytes()[:8] == PNG
    for name in ("poisson", "heat", "fluid"):  # figures 4b / 5b / 6b and Table 1
        assert (results / name / "optimize" / "optimize.png").read_bytes()[:8] == PNG
        table = (results / name / "table.md").read_text()
        assert "Time to reach the network's" in table and "| pg |" in table
    assert "L-BFGS fit (unbounded)" in (results / "wave_packet" / "table.md").read_text()


def test_table_ratios_are_the_logged_curves(quick):
    """The headline rows of Poisson are the running means of the logs (window 2 in
    quick mode) over the seeds where both methods ran (the quick plan runs adam+pg
    for seed 0 only, adam for seeds 0 and 1): adam over adam+pg."""
    from physgrad.history import read_history
    from physgrad.plots import running_mean
    rows = list(csv.reader((quick / "results" / "poisson" / "table.csv").open()))
    header, body = rows[0], rows[1:]
    assert header[4] == "adam / method" and header[5] == "seeds"
    pg_rows = [row for row in body if row[1] == "adam+pg"]
    assert pg_rows and all(row[5] == "1" for row in pg_rows)
    adam = running_mean(read_history(str(quick / "poisson" / "seed0" / "adam.csv")).x_mae, 2)
    pg = running_mean(read_history(str(quick / "poisson" / "seed0" / "adam+pg.csv")).x_mae, 2)
    for row in pg_rows:
        iteration = int(row[0])
        assert float(row[2]) == pytest.approx(adam[iteration - 1], rel=1e-2)
        assert float(row[3]) == pytest.approx(pg[iteration - 1], rel=1e-2)
        assert float(row[4]) == pytest.approx(adam[iteration - 1] / pg[iteration - 1], rel=2e-2)
    assert int(pg_rows[-1][0]) == len(pg)  # the last row is the last iteration both reached
    # where each method reaches adam's final accuracy: one line per seed that ran both
    table = (quick / "results" / "poisson" / "table.md").read_text()
    assert "seed 0: adam+pg reaches adam's accuracy" in table and "seed 1: adam+pg" not in table
    sin = (quick / "results" / "sin" / "table.md").read_text()
    assert "seed 0: adam+pg reaches adam's accuracy" in sin and "seed 1: adam+pg reaches adam's accuracy" in sin


def test_a_second_call_trains_nothing_and_a_short_run_is_marked(quick, capsys):
    summary = reproduce.run_plan(list(reproduce.NAMES), str(quick), quick=True, progress=False, say=print)
    assert all(row["status"] == "done" for rows in summary.values() for row in rows)
    assert "reproduce" not in capsys.readouterr().out
    # cut a log short: the report says how far that run got, at the iteration it reached
    path = quick / "heat" / "seed0" / "adam+pg.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n")
    out = quick / "short"
    reproduce_report.write_report(["heat"], str(quick), str(out), quick=True, command="test")
    table = (out / "heat" / "table.md").read_text()
    assert "incomplete: 2 of 5" in table
    assert {row[0] for row in csv.reader((out / "heat" / "table.csv").open())} - {"iteration"} <= {"2"}
    # a run not started yet is listed as such, and no headline speaks of it
    path.rename(path.with_suffix(".away"))
    reproduce_report.write_report(["heat"], str(quick), str(out), quick=True, command="test")
    table = (out / "heat" / "table.md").read_text()
    assert "adam+pg: **not started**" in table and "never within 0" not in table
    assert "adam+pg reaches" not in table
    path.with_suffix(".away").rename(path)
    # resuming completes it again
    summary = reproduce.run_plan(["heat"], str(quick), quick=True, progress=False, say=lambda *_: None)
    assert [row["status"] for row in summary["heat"]] == ["done", "trained"]


def test_plan_covers_the_paper_settings():
    """The issue's table: batch, iterations and seeds of every experiment."""
    def runs(name):
        return {(seed, method): (iterations, batch) for seed, method, iterations, batch
                in reproduce.runs_of(reproduce.PLAN[name])}
    sin = runs("sin")
    assert {seed for seed, _ in sin} == set(range(5)) and all(v == (10_000, 1000) for v in sin.values())
    assert all(v == (1000, 100) for v in runs("wave_packet").values())
    poisson = runs("poisson")
    assert poisson[(0, "adam")] == (5000, 128) and poisson[(2, "adam+pg")] == (1000, 128)
    heat = runs("heat")
    assert heat[(1, "adam+lbfgs")] == (3000, 128) and len({s for s, _ in heat}) == 2
    fluid = runs("fluid")
    assert fluid[(0, "adam")] == (1000, 64) and fluid[(2, "adam+pg")] == (200, 64)
    assert reproduce.EXPERIMENT_OPTIONS["poisson"]["shape"] == (60, 80)
    assert reproduce.EXPERIMENT_OPTIONS["fluid"] == {"objective": "frequency", "energy": "per_component"}


def test_subsampled_curves_keep_the_start_and_the_end():
    kept = reproduce_curves._subsample_indices(10_000)
    assert kept[:100] == list(range(100)) and kept[-1] == 9999 and len(kept) < 600
    assert reproduce_curves._subsample_indices(5) == [0, 1, 2, 3, 4]


def test_unknown_experiment_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["reproduce", "navier"])
    assert exit_info.value.code == 2 and "unknown experiment 'navier'" in capsys.readouterr().err


def test_packed_runs_give_the_same_report(tmp_path):
    runs = tmp_path / "runs"
    summary = reproduce.run_plan(["poisson"], str(runs), quick=True, progress=False, say=lambda *_: None)
    assert all(row["status"] == "trained" for row in summary["poisson"])
    before = tmp_path / "before"
    reproduce_report.write_report(["poisson"], str(runs), str(before), quick=True, command="test")
    packed = reproduce.pack_runs(["poisson"], str(runs), quick=True)
    assert sorted(packed["packed"]) == ["poisson/seed0/adam", "poisson/seed0/adam+pg", "poisson/seed1/adam"]
    seed0 = sorted(p.name for p in (runs / "poisson" / "seed0").iterdir())
    assert seed0 == ["adam+pg.csv.gz", "adam+pg.pt", "adam.csv.gz", "adam.pt"]  # seed 0 keeps its weights
    assert sorted(p.name for p in (runs / "poisson" / "seed1").iterdir()) == ["adam.csv.gz"]
    after = tmp_path / "after"
    reproduce_report.write_report(["poisson"], str(runs), str(after), quick=True, command="test")
    assert (after / "poisson" / "table.csv").read_text() == (before / "poisson" / "table.csv").read_text()
    assert (after / "poisson" / "curves.csv").read_text() == (before / "poisson" / "curves.csv").read_text()
    again = reproduce.run_plan(["poisson"], str(runs), quick=True, progress=False, say=lambda *_: None)
    assert all(row["status"] == "done" for row in again["poisson"])


def test_pack_keeps_an_unfinished_runs_checkpoint(tmp_path):
    runs = tmp_path / "runs"
    from physgrad.experiments import get_experiment
    from physgrad.training import get_method, train
    experiment = get_experiment("heat", **reproduce.QUICK_OPTIONS["heat"])
    folder = reproduce.run_folder(str(runs), "heat", 0)
    train(experiment, get_method("adam", experiment), 2, 4, 0, folder, progress=False, checkpoint_every=1)
    packed = reproduce.pack_runs(["heat"], str(runs), quick=True)
    assert packed["in_progress"] == ["heat/seed0/adam (2 of 5)"]
    assert sorted(p.name for p in (runs / "heat" / "seed0").iterdir()) == ["adam.ckpt", "adam.csv"]
    summary = reproduce.run_plan(["heat"], str(runs), quick=True, progress=False, say=lambda *_: None)
    assert [row["status"] for row in summary["heat"]] == ["trained", "trained"]
    assert reproduce._done(folder, "adam") == 5


def test_seeds_share_the_plan_between_processes(tmp_path, capsys):
    """--seeds trains only those seeds; a seed folder another process holds is left to it."""
    import os
    import subprocess
    import sys
    import time
    runs = tmp_path / "runs"
    status = cli.main(["reproduce", "sin", "--quick", "--runs", str(runs), "--seeds", "1", "--threads", "1",
                       "--no-progress"])
    assert status == 0
    assert (runs / "sin" / "seed1" / "adam.csv").exists() and not (runs / "sin" / "seed0").exists()
    # another process holds seed 0's folder: this one trains what it can and says what it left
    repository = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    environment = dict(os.environ, PYTHONPATH=os.path.join(repository, "python"))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from physgrad.output_folder import output_lock\n"
         "with output_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)",
         str(runs / "sin" / "seed0")], env=environment, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        messages = []
        summary = reproduce.run_plan(["sin"], str(runs), quick=True, progress=False, say=messages.append)
        by_seed = {(row["seed"], row["method"]): row["status"] for row in summary["sin"]}
        assert by_seed == {(0, "adam"): "busy", (0, "adam+pg"): "busy", (1, "adam"): "done",
                           (1, "adam+pg"): "done"}
        assert any("left to another process" in m and "in use by another run" in m for m in messages)
    finally:
        holder.kill()
        holder.communicate()
    time.sleep(0.1)
    summary = reproduce.run_plan(["sin"], str(runs), quick=True, progress=False, say=lambda m: None)
    assert {row["status"] for row in summary["sin"] if row["seed"] == 0} == {"trained"}
    with pytest.raises(SystemExit) as error:
        cli.main(["reproduce", "sin", "--quick", "--runs", str(runs), "--seeds", "x"])
    assert error.value.code == 2 and "expected comma-separated integers" in capsys.readouterr().err


def test_provenance_marks_uncommitted_code_but_not_results(tmp_path):
    import shutil
    import subprocess
    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                       env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                            "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})

    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("old\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "x")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True).stdout.strip()
    sub = tmp_path / "results"
    assert reproduce_report._git_commit(str(sub)) == head
    (tmp_path / "results" / "table.md").write_text("new\n")   # the report's own output
    assert reproduce_report._git_commit(str(sub)) == head
    (tmp_path / "code.py").write_text("a = 2\n")              # the code that makes it
    assert reproduce_report._git_commit(str(sub)) == head + "+uncommitted changes"
