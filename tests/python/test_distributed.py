"""Data-parallel training: N processes follow the one-process learning curve.

Two ranks on localhost (gloo) against one process with the same global batch
and seed; the data slices of the ranks make up the one-process batch exactly.
"""
import csv
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from physgrad import cli, distributed
from physgrad.experiments import get_experiment

_REPOSITORY = Path(__file__).resolve().parents[2]
requires_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this torch has no torch.distributed with the gloo backend")

TRAIN = ["train", "poisson", "--shape", "16x16", "--batch-size", "8", "--iterations", "5",
         "--method", "adam+pg", "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list, timeout: float) -> subprocess.CompletedProcess:
    """Run ``command`` in its own session; on timeout kill the whole session
    (torchrun's workers too), so a hung collective cannot outlive the test."""
    environment = dict(os.environ, PYTHONPATH=str(_REPOSITORY / "python"), OMP_NUM_THREADS="1")
    for name in distributed.TORCHRUN_VARIABLES:
        environment.pop(name, None)
    process = subprocess.Popen(command, cwd=_REPOSITORY, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(command)} did not finish in {timeout} s:\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _curve(path: Path) -> list:
    """(iteration, y_loss, x_mae) as written."""
    with open(path, newline="") as stream:
        return [(row["iteration"], row["y_loss"], row["x_mae"]) for row in csv.DictReader(stream)]


def _columns(path: Path) -> dict:
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    return {key: [float(row[key]) for row in rows] for key in ("iteration", "y_loss", "x_mae")}


@requires_gloo
def test_two_processes_follow_the_one_process_learning_curve(tmp_path):
    single = _run([sys.executable, "-m", "physgrad", *TRAIN, "--threads", "1",
                   "--out", str(tmp_path / "one")], timeout=120)
    assert single.returncode == 0, single.stderr

    def launch(*arguments: str) -> subprocess.CompletedProcess:
        return _run([sys.executable, "-m", "physgrad.launch", "--nproc_per_node=2",
                     f"--master_port={_free_port()}", "-m", "physgrad", *arguments], timeout=150)

    parallel = launch(*TRAIN, "--out", str(tmp_path / "two"))
    assert parallel.returncode == 0, parallel.stdout + parallel.stderr
    assert parallel.stdout.count("poisson adam+pg: 5 iterations") == 1  # rank 0 reports
    one, two = _columns(tmp_path / "one" / "adam+pg.csv"), _columns(tmp_path / "two" / "adam+pg.csv")
    assert two["iteration"] == one["iteration"] == [1, 2, 3, 4, 5]
    # the first iteration's loss is the same network on the same batch
    assert two["y_loss"][0] == pytest.approx(one["y_loss"][0], rel=1e-6)
    assert two["y_loss"] == pytest.approx(one["y_loss"], rel=1e-4)
    assert two["x_mae"] == pytest.approx(one["x_mae"], rel=1e-4)
    assert sorted(os.listdir(tmp_path / "two")) == ["adam+pg.ckpt", "adam+pg.csv", "adam+pg.pt"]
    final_one = torch.load(tmp_path / "one" / "adam+pg.pt")
    final_two = torch.load(tmp_path / "two" / "adam+pg.pt")
    assert final_two.keys() == final_one.keys()  # the same network, BatchNorm buffers included
    for name in final_one:
        if not _irrelevant_to_training(name, final_one):
            torch.testing.assert_close(final_two[name], final_one[name], rtol=1e-4, atol=1e-6)
    # the trained networks compute the same function (batch statistics, as in training)
    network = {}
    for label, state in (("one", final_one), ("two", final_two)):
        network[label] = get_experiment("poisson").make_network()
        network[label].load_state_dict(state)
    y = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(network["two"](y), network["one"](y), rtol=1e-4, atol=1e-5)

    # a stopped two-process run resumes (rank 0 reads the checkpoint, every rank
    # gets it) onto the uninterrupted two-process curve, bitwise
    stopped = launch(*TRAIN, "--stop-after", "3", "--out", str(tmp_path / "parts"))
    assert "stopped after iteration 3 of 5" in stopped.stderr, stopped.stdout + stopped.stderr
    resumed = launch("train", "poisson", "--resume", str(tmp_path / "parts"), "--no-progress")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed at 3" in resumed.stdout
    assert _curve(tmp_path / "parts" / "adam+pg.csv") == _curve(tmp_path / "two" / "adam+pg.csv")


def _irrelevant_to_training(name: str, state: dict) -> bool:
    """A convolution's bias right before a BatchNorm (and that BatchNorm's running
    mean, which follows it): BatchNorm subtracts it again, so its true gradient is
    0 and what is computed is rounding noise, which Adam's normalized step turns
    into steps of up to lr either way. One and two processes differ there only."""
    prefix, _, last = name.rpartition(".")
    if last == "running_mean":
        return True
    module, _, index = prefix.rpartition(".")
    return (last == "bias" and index.isdigit()
            and f"{module}.{int(index) + 1}.running_mean" in state)


@pytest.mark.parametrize("name, options", [
    ("poisson", {"shape": (16, 16)}), ("heat", {"shape": (16, 16)}), ("sin", {}),
    ("wave-packet", {}), ("fluid", {"shape": (16, 16)})])
def test_rank_slices_make_up_the_one_process_batch(name, options):
    experiment = get_experiment(name, **options)
    batch_size, world_size = 6, 4
    whole = experiment.make_data(3).sample(batch_size)
    parts = []
    for rank in range(world_size):
        data = experiment.make_data(3)
        parts.append(data.sample(batch_size, part=distributed.batch_part(batch_size, rank,
                                                                         world_size)))
        # every rank's generator ends where one process's does
        assert torch.equal(data.state_dict()["generator"],
                           _advanced_state(experiment, batch_size))
    assert [len(part[0]) for part in parts] == [1, 2, 1, 2]
    for field, full in zip(whole._fields, whole):
        joined = torch.cat([getattr(part, field) for part in parts])
        if name == "heat":  # FFTW may plan another batch count differently (equal here)
            torch.testing.assert_close(joined, full, rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(joined, full), field


def _advanced_state(experiment, batch_size):
    data = experiment.make_data(3)
    data.sample(batch_size)
    return data.state_dict()["generator"]


def test_batch_parts_are_contiguous_disjoint_and_complete():
    for batch_size in (2, 7, 8, 128):
        for world_size in (1, 2, 3):
            if batch_size < world_size:
                continue
            parts = [distributed.batch_part(batch_size, rank, world_size)
                     for rank in range(world_size)]
            covered = [i for part in parts for i in range(batch_size)[part]]
            assert covered == list(range(batch_size))
    with pytest.raises(ValueError, match="cannot be shared by 3 ranks"):
        distributed.batch_part(2, 0, 3)


def test_sync_batchnorm_without_a_process_group_is_batchnorm():
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3))
    synced = distributed.convert_sync_batchnorm(
        torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3)))
    synced.load_state_dict(plain.state_dict())
    assert isinstance(synced[1], distributed.SyncBatchNorm)
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(synced(x), plain(x))
    torch.testing.assert_close(synced[1].running_var, plain[1].running_var)


def test_distributed_flag_without_torchrun_environment_fails_clearly(monkeypatch, capsys):
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*TRAIN, "--distributed"])
    assert exit_info.value.code == 2
    assert "torchrun" in capsys.readouterr().err
