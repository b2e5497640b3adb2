"""Training that loses nothing: checkpoints, signals, resume, non-finite stops.

A resumed run must write the learning curve an uninterrupted run writes:
bitwise the same y_loss and x_mae columns (wall_seconds differ). Runs are
single-threaded (deterministic on CPU) on a small Poisson problem.
"""
import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

_REPOSITORY = Path(__file__).resolve().parents[2]
if not (os.environ.get("PHYSGRAD_LIBRARY")
        or (_REPOSITORY / "build" / "lib" / "libphysgrad_ops.so").is_file()
        or (_REPOSITORY / "python" / "physgrad" / "lib" / "libphysgrad_ops.so").is_file()):
    pytest.skip("op library libphysgrad_ops.so not built (importing physgrad loads it)",
                allow_module_level=True)

from physgrad import cli  # noqa: E402
from physgrad.experiments import get_experiment  # noqa: E402
from physgrad.training import (EXIT_STOPPED, TrainingInterrupted, atomic_write,  # noqa: E402
                               checkpoint_path, compare, load_checkpoint, save_checkpoint, train)

torch.set_num_threads(1)
SMALL = ["poisson", "--shape", "16x16", "--batch-size", "4", "--threads", "1", "--no-progress"]
REFERENCE_ITERATIONS = 40


def _environment() -> dict:
    return dict(os.environ, PYTHONPATH=str(_REPOSITORY / "python"), OMP_NUM_THREADS="1")


def _run_cli(*arguments: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "physgrad", *arguments], cwd=_REPOSITORY,
                          env=_environment(), capture_output=True, text=True, timeout=timeout)


def _rows(path: Path) -> list:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def _curve(path: Path) -> list:
    """(iteration, y_loss, x_mae) as written: the columns that must match bitwise."""
    return [(row["iteration"], row["y_loss"], row["x_mae"]) for row in _rows(path)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted CLI run of REFERENCE_ITERATIONS iterations (adam+pg)."""
    folder = tmp_path_factory.mktemp("reference")
    completed = _run_cli("train", *SMALL, "--method", "adam+pg", "--iterations",
                         str(REFERENCE_ITERATIONS), "--checkpoint-every", "10", "--out", str(folder))
    assert completed.returncode == 0, completed.stderr
    return folder


def test_stopped_and_resumed_run_writes_the_uninterrupted_curve_bitwise(reference, tmp_path):
    stopped = _run_cli("train", *SMALL, "--method", "adam+pg", "--iterations",
                       str(REFERENCE_ITERATIONS), "--checkpoint-every", "10", "--stop-after", "17",
                       "--out", str(tmp_path))
    assert stopped.returncode == EXIT_STOPPED, stopped.stderr
    assert "stopped after iteration 17" in stopped.stderr
    assert f"--resume {tmp_path}" in stopped.stderr
    checkpoint = load_checkpoint(str(tmp_path / "adam+pg.ckpt"))
    assert checkpoint["iteration"] == 17 and not checkpoint["complete"]
    assert [int(row[0]) for row in _curve(tmp_path / "adam+pg.csv")] == list(range(1, 18))
    # rows logged after the checkpoint by a run that then crashed are dropped on resume
    with open(tmp_path / "adam+pg.csv", "a") as stream:
        stream.write("18,9.0,1.0,1.0\n19,9.5,1.0,1.0\n")

    resumed = _run_cli("train", "poisson", "--resume", str(tmp_path), "--threads", "1",
                       "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at 17" in resumed.stdout
    assert _curve(tmp_path / "adam+pg.csv") == _curve(reference / "adam+pg.csv")
    seconds = [float(row["wall_seconds"]) for row in _rows(tmp_path / "adam+pg.csv")]
    assert seconds == sorted(seconds)
    final, expected = torch.load(tmp_path / "adam+pg.pt"), torch.load(reference / "adam+pg.pt")
    assert all(torch.equal(final[name], expected[name]) for name in expected)
    assert load_checkpoint(str(tmp_path / "adam+pg.ckpt"))["complete"]


def test_sigterm_finishes_the_iteration_checkpoints_and_exits_143(reference, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "physgrad", "train", *SMALL, "--method", "adam+pg",
         "--iterations", "100000", "--checkpoint-every", "5", "--out", str(tmp_path)],
        cwd=_REPOSITORY, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "adam+pg.ckpt").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 143, stderr
    assert "SIGTERM received" in stderr and "resume with:" in stderr
    stopped_at = load_checkpoint(str(tmp_path / "adam+pg.ckpt"))["iteration"]
    curve = _curve(tmp_path / "adam+pg.csv")
    assert [int(row[0]) for row in curve] == list(range(1, stopped_at + 1))  # flushed, complete
    reference_curve = _curve(reference / "adam+pg.csv")
    assert curve[:REFERENCE_ITERATIONS] == reference_curve[:stopped_at]

    until = max(stopped_at, min(stopped_at + 3, REFERENCE_ITERATIONS))
    resumed = _run_cli("train", "poisson", "--resume", str(tmp_path), "--iterations", str(until),
                       "--threads", "1", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert _curve(tmp_path / "adam+pg.csv")[:REFERENCE_ITERATIONS] == reference_curve[:until]


def test_sigint_in_process_raises_after_a_checkpoint_and_restores_the_handlers(tmp_path):
    experiment = get_experiment("poisson", shape=(16, 16))
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    checkpoint = tmp_path / "adam.ckpt"

    def interrupt_once_checkpointed() -> None:
        deadline = time.monotonic() + 60
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt_once_checkpointed)
    sender.start()
    try:
        with pytest.raises(TrainingInterrupted) as stop:
            train(experiment, "adam", iterations=100000, batch_size=4, out_dir=str(tmp_path),
                  checkpoint_every=3, progress=False)
    finally:
        sender.join()
    assert stop.value.exit_code == 130 and stop.value.signal_number == signal.SIGINT
    assert stop.value.iteration == load_checkpoint(str(checkpoint))["iteration"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    status = cli.main(["train", "poisson", "--shape", "16x16", "--batch-size", "4",
                       "--method", "sgd", "--lr", "1.0", "--iterations", "50",
                       "--checkpoint-every", "1", "--no-progress", "--out", str(tmp_path)])
    output = capsys.readouterr()
    assert status == 1
    message = next(line for line in (output.out + output.err).splitlines() if "non-finite" in line)
    diverged_at = int(message.split("at iteration ")[1].split(";")[0])
    assert "poisson sgd" in message and "last good checkpoint" in message
    checkpoint = load_checkpoint(str(tmp_path / "sgd.ckpt"))
    assert checkpoint["iteration"] == diverged_at - 1 >= 1
    assert all(torch.isfinite(t).all() for t in checkpoint["network"].values() if t.is_floating_point())
    assert len(_rows(tmp_path / "sgd.csv")) == diverged_at - 1
    weights = torch.load(tmp_path / "sgd.pt")  # the last applied (finite) update
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = str(tmp_path / "m.ckpt")
    save_checkpoint(path, {"value": 1})
    before = Path(path).read_bytes()

    def broken(obj, stream):
        stream.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"value": 2})
    monkeypatch.undo()
    assert Path(path).read_bytes() == before
    assert os.listdir(tmp_path) == ["m.ckpt"]  # no temporary file left behind
    atomic_write(str(tmp_path / "t.txt"), lambda stream: stream.write("ok"), mode="w")
    assert (tmp_path / "t.txt").read_text() == "ok"


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    experiment = get_experiment("poisson", shape=(16, 16))
    train(experiment, "adam", iterations=2, batch_size=4, out_dir=str(tmp_path), progress=False)
    assert os.path.exists(checkpoint_path(str(tmp_path), "adam"))
    with pytest.raises(ValueError, match="other settings: batch_size 4 .now 8"):
        train(experiment, "adam", iterations=4, batch_size=8, out_dir=str(tmp_path),
              resume=True, progress=False)
    with pytest.raises(ValueError, match="at iteration 2 for a run of 1 iterations"):
        train(experiment, "adam", iterations=1, batch_size=4, out_dir=str(tmp_path),
              resume=True, progress=False)


def test_compare_resumes_each_method(tmp_path):
    experiment = get_experiment("poisson", shape=(16, 16))
    settings = dict(iterations=12, batch_size=4, checkpoints=[6, 12], progress=False,
                    evaluate=False, checkpoint_every=4)
    compare(experiment, ["adam", "adam+pg"], out_dir=str(tmp_path / "whole"), **settings)
    with pytest.raises(TrainingInterrupted) as stop:
        compare(experiment, ["adam", "adam+pg"], out_dir=str(tmp_path / "parts"), stop_after=7,
                **settings)
    assert stop.value.method == "adam" and stop.value.iteration == 7
    assert not (tmp_path / "parts" / "adam+pg.csv").exists()
    results = compare(experiment, ["adam", "adam+pg"], out_dir=str(tmp_path / "parts"),
                      resume=True, **settings)
    assert results["resumed_from"] == {"adam": 7, "adam+pg": None}
    for method in ("adam", "adam+pg"):
        assert (_curve(tmp_path / "parts" / f"{method}.csv")
                == _curve(tmp_path / "whole" / f"{method}.csv")), method
    # resuming a finished comparison trains nothing and reports the same table
    again = compare(experiment, ["adam", "adam+pg"], out_dir=str(tmp_path / "parts"),
                    resume=True, **settings)
    assert again["x_mae"] == results["x_mae"] and again["resumed_from"] == {"adam": 12, "adam+pg": 12}


def test_cli_compare_resume_takes_the_settings_of_the_run(tmp_path, capsys):
    arguments = ["compare", "poisson", "--methods", "adam,adam+pg", "--shape", "16x16",
                 "--iterations", "6", "--batch-size", "4", "--checkpoints", "3,6",
                 "--no-progress", "--no-evaluate", "--out", str(tmp_path)]
    assert cli.main(arguments + ["--stop-after", "4"]) == EXIT_STOPPED
    assert f"compare poisson --resume {tmp_path}" in capsys.readouterr().err
    assert cli.main(["compare", "poisson", "--resume", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "ratio adam / method" in printed
    assert [int(row[0]) for row in _curve(tmp_path / "adam+pg.csv")] == list(range(1, 7))
