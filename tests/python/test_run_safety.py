"""Runs that lose nothing and fail loudly (issue 15): full disks, unwritable and
shared output folders, damaged checkpoints, resumed options, bad arguments,
module settings in state_dicts.

Small Poisson runs (16x16, batch 2, a few iterations), mostly in-process
through ``cli.main``; the disk-full and two-process cases run a subprocess.
"""
import errno
import inspect
import io
import os
import shutil
import signal
import subprocess
import sys
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

import physgrad  # noqa: E402
from physgrad import checkpoints, cli  # noqa: E402
from physgrad.checkpoints import (EXIT_STOPPED, EXIT_WRITE_FAILED, LOCK_NAME,  # noqa: E402
                                  OutputWriteError, load_checkpoint, save_checkpoint)

torch.set_num_threads(1)
SMALL = ["poisson", "--shape", "16x16", "--batch-size", "2", "--threads", "1", "--no-progress"]
METHOD = "adam+pg"


def _main(capsys, *arguments: str):
    """``cli.main(arguments)``: (exit status, stdout, stderr); argparse's exits included."""
    try:
        status = cli.main(list(arguments))
    except SystemExit as exit_:
        status = exit_.code
    output = capsys.readouterr()
    return status, output.out, output.err


def _environment() -> dict:
    return dict(os.environ, PYTHONPATH=str(_REPOSITORY / "python"), OMP_NUM_THREADS="1")


def _curve(path: Path) -> list:
    """The CSV without wall_seconds: the columns a resumed run must reproduce bitwise."""
    lines = path.read_text().splitlines()
    return [line.split(",")[:1] + line.split(",")[2:] for line in lines]


def _temporaries(folder: Path) -> list:
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A run of 4 iterations stopped after iteration 2 (checkpoint at 2)."""
    folder = tmp_path_factory.mktemp("stopped")
    status = cli.main(["train", *SMALL, "--iterations", "4", "--checkpoint-every", "1",
                       "--stop-after", "2", "--out", str(folder)])
    assert status == EXIT_STOPPED
    return folder


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """The same run, uninterrupted, 5 iterations."""
    folder = tmp_path_factory.mktemp("reference")
    assert cli.main(["train", *SMALL, "--iterations", "5", "--checkpoint-every", "1",
                     "--out", str(folder)]) == 0
    return folder


def _copy(run: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    return folder


# 1. full disk, unwritable folder ---------------------------------------------

_LIMITED_RUN = """
import resource, sys, torch
import physgrad
physgrad.poisson(torch.zeros(1, 4, 4, dtype=torch.float64))  # PETSc (and MPI) start first
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))  # files up to 64 kB
from physgrad import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_full_disk_is_a_clear_error_keeps_the_checkpoint_and_resume_completes_the_run(
        stopped_run, reference_run, tmp_path, capsys):
    """A checkpoint (~0.5 MB) that cannot be written (a 64 kB file size limit:
    writes fail with EFBIG as on a full disk with ENOSPC) is exit 74 with the
    path, not SIGABRT from torch's writer; the checkpoint before it is intact and
    a resume once writing works again ends on the uninterrupted curve."""
    folder = _copy(stopped_run, tmp_path)
    before = (folder / f"{METHOD}.ckpt").read_bytes()
    for attempt in range(2):  # the first resume and a second one on the still-full disk
        limited = subprocess.run(
            [sys.executable, "-c", _LIMITED_RUN, "train", "poisson", "--resume", str(folder),
             "--iterations", "5", "--no-progress"],
            cwd=_REPOSITORY, env=_environment(), capture_output=True, text=True, timeout=120)
        assert limited.returncode == EXIT_WRITE_FAILED, (attempt, limited.returncode, limited.stderr)
        assert f"cannot write {folder / METHOD}.ckpt" in limited.stderr
        assert "needed" in limited.stderr and "Traceback" not in limited.stderr
        assert f"--resume {folder}" in limited.stderr
        assert (folder / f"{METHOD}.ckpt").read_bytes() == before
        assert _temporaries(folder) == [] and LOCK_NAME not in os.listdir(folder)
    status, out, err = _main(capsys, "train", "poisson", "--resume", str(folder), "--iterations", "5",
                             "--no-progress")
    assert status == 0, err
    assert "resumed at 2" in out
    assert _curve(folder / f"{METHOD}.csv") == _curve(reference_run / f"{METHOD}.csv")


def test_no_space_names_the_file_and_the_space_needed(tmp_path, monkeypatch):
    path = tmp_path / "m.ckpt"
    save_checkpoint(str(path), {"value": 1})
    before = path.read_bytes()

    def full(descriptor, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoints, "_write_all", full)
    with pytest.raises(OutputWriteError) as failure:
        save_checkpoint(str(path), {"value": 2, "data": torch.zeros(1000)})
    message = str(failure.value)
    assert message.startswith(f"cannot write {path}: No space left on device (")
    assert "kB needed" in message and "free" in message
    assert failure.value.errno == errno.ENOSPC and isinstance(failure.value, OSError)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.ckpt"]


def test_unwritable_out_is_refused_before_training(tmp_path, capsys):
    """``--out`` below a regular file cannot be created, even by root (chmod would not stop root)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    status, out, err = _main(capsys, "train", *SMALL, "--iterations", "2",
                             "--out", str(blocker / "run"))
    assert status == 2
    assert f"cannot write in output folder {blocker / 'run'}" in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder" and os.listdir(tmp_path) == ["file"]


# 2. one run per folder, no silent overwrite ----------------------------------

def test_a_second_run_is_refused_while_the_first_writes_and_a_crash_releases_the_folder(
        tmp_path, capsys):
    first = subprocess.Popen(
        [sys.executable, "-m", "physgrad", "train", *SMALL, "--iterations", "100000",
         "--checkpoint-every", "1", "--out", str(tmp_path)],
        cwd=_REPOSITORY, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / f"{METHOD}.ckpt").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        for extra in ([], ["--overwrite"]):
            status, out, err = _main(capsys, "train", *SMALL, "--iterations", "3", *extra,
                                     "--out", str(tmp_path))
            assert status == 2
            assert f"output folder {tmp_path} is in use by another run (pid {first.pid}" in err
        status, out, err = _main(capsys, "train", "poisson", "--resume", str(tmp_path),
                                 "--no-progress")
        assert status == 2 and "in use by another run" in err
        assert first.poll() is None  # the first run goes on, untouched
        first.send_signal(signal.SIGKILL)  # a crash: no clean-up runs
        first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    # what a write killed midway leaves behind is removed by the next run
    stale = tmp_path / f".{METHOD}.ckpt.abcd_123.tmp"
    stale.write_bytes(b"half a checkpoint")
    done = load_checkpoint(str(tmp_path / f"{METHOD}.ckpt"))["iteration"]
    status, out, err = _main(capsys, "train", "poisson", "--resume", str(tmp_path),
                             "--iterations", str(done + 1), "--no-progress")
    assert status == 0, err
    assert not stale.exists() and LOCK_NAME not in os.listdir(tmp_path)
    assert load_checkpoint(str(tmp_path / f"{METHOD}.ckpt"))["iteration"] == done + 1


def test_a_folder_holding_a_run_is_refused_without_resume_or_overwrite(tmp_path, capsys):
    arguments = ["train", *SMALL, "--iterations", "2", "--out", str(tmp_path)]
    assert _main(capsys, *arguments)[0] == 0
    log = (tmp_path / f"{METHOD}.csv").read_bytes()
    status, out, err = _main(capsys, *arguments)
    assert status == 2
    assert f"--resume {tmp_path}" in err and "--overwrite" in err and f"{METHOD}.ckpt" in err
    assert (tmp_path / f"{METHOD}.csv").read_bytes() == log
    status, out, err = _main(capsys, *arguments[:-2], "--iterations", "3", "--overwrite",
                             "--out", str(tmp_path))
    assert status == 0, err
    assert load_checkpoint(str(tmp_path / f"{METHOD}.ckpt"))["iteration"] == 3
    assert sorted(os.listdir(tmp_path)) == [f"{METHOD}.ckpt", f"{METHOD}.csv", f"{METHOD}.pt"]
    status, out, err = _main(capsys, "train", "poisson", "--resume", str(tmp_path), "--overwrite")
    assert status == 2 and "give one of them" in err
    compare = ["compare", *SMALL, "--methods", "adam", "--iterations", "2", "--no-evaluate",
               "--checkpoints", "2", "--out", str(tmp_path / "cmp")]
    assert _main(capsys, *compare)[0] == 0
    status, out, err = _main(capsys, *compare)
    assert status == 2 and "holds a run (adam.ckpt)" in err


# 5. damaged and malformed checkpoints ----------------------------------------

def test_a_flipped_byte_is_detected_on_resume(stopped_run, tmp_path, capsys):
    folder = _copy(stopped_run, tmp_path)
    path = folder / f"{METHOD}.ckpt"
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))
    log = (folder / f"{METHOD}.csv").read_bytes()
    status, out, err = _main(capsys, "train", "poisson", "--resume", str(folder), "--no-progress")
    assert status == 2
    assert f"cannot resume: {path}: the file is damaged: its SHA-256 is" in err
    assert (folder / f"{METHOD}.csv").read_bytes() == log
    with pytest.raises(ValueError, match="damaged"):
        load_checkpoint(str(path))


def _drop(key):
    def change(checkpoint):
        del checkpoint[key]
    return change


def _set(key, value):
    def change(checkpoint):
        checkpoint[key] = value
    return change


def _shorten_history(checkpoint):
    checkpoint["history"]["y_loss"].pop()


def _other_network(checkpoint):
    checkpoint["network"] = {name: torch.zeros(3) for name in checkpoint["network"]}


def _other_optimizer(checkpoint):
    checkpoint["optimizer"]["param_groups"] = []


def _config_without(key):
    def change(checkpoint):
        del checkpoint["config"][key]
    return change


@pytest.mark.parametrize("change, message", [
    (_drop("optimizer"), "no 'optimizer' entry"),
    (_drop("history"), "no 'history' entry"),
    (_set("iteration", -3), "iteration -3 is negative"),
    (_set("iteration", "2"), "'iteration' is a str"),
    (_shorten_history, "'y_loss' column has 1 entries, not 2"),
    (_config_without("batch_size"), "settings lack batch_size"),
    (_other_network, "does not fit this run"),
    (_other_optimizer, "does not fit this run"),
    (_set("rng", {"torch": torch.zeros(3, dtype=torch.uint8), "python": (3, (1,), None)}),
     "does not fit this run"),
], ids=["no-optimizer", "no-history", "negative-iteration", "iteration-text", "short-history",
        "no-batch-size", "other-network", "other-optimizer", "bad-rng"])
def test_malformed_checkpoints_cannot_be_resumed(stopped_run, tmp_path, capsys, change, message):
    """Content with a valid checksum that is not a resumable run: exit 2, the
    message, no traceback, the CSV untouched."""
    folder = _copy(stopped_run, tmp_path)
    path = folder / f"{METHOD}.ckpt"
    checkpoint = load_checkpoint(str(path))
    change(checkpoint)
    save_checkpoint(str(path), checkpoint)
    log = (folder / f"{METHOD}.csv").read_bytes()
    status, out, err = _main(capsys, "train", "poisson", "--resume", str(folder), "--no-progress")
    assert status == 2, err
    assert "cannot resume" in err and message in err and "Traceback" not in err
    assert (folder / f"{METHOD}.csv").read_bytes() == log


@pytest.mark.parametrize("content, message", [
    (lambda good: good[: len(good) // 2], "damaged or truncated"),
    (lambda good: b"", "not a physgrad training checkpoint"),
    (lambda good: b"PHYSGRAD-CHECKPOINT\nsha256 xyz\n", "damaged checkpoint header"),
    (lambda good: b"PK\x03\x04 not a zip", "not a readable physgrad training checkpoint"),
], ids=["truncated", "empty", "bad-header", "bad-zip"])
def test_damaged_files_cannot_be_resumed(stopped_run, tmp_path, capsys, content, message):
    folder = _copy(stopped_run, tmp_path)
    path = folder / f"{METHOD}.ckpt"
    path.write_bytes(content(path.read_bytes()))
    status, out, err = _main(capsys, "train", "poisson", "--resume", str(folder), "--no-progress")
    assert status == 2 and "cannot resume" in err and message in err, err


# 6. --resume restores every option --------------------------------------------

def test_resume_restores_checkpoint_every_and_threads(tmp_path, capsys, monkeypatch):
    from physgrad import training_loop  # the loop writes its checkpoints with save_checkpoint
    written = []
    real_save = training_loop.save_checkpoint

    def recording(path, checkpoint):
        written.append((os.path.basename(path), checkpoint["iteration"]))
        real_save(path, checkpoint)

    monkeypatch.setattr(training_loop, "save_checkpoint", recording)
    status, out, err = _main(capsys, "train", *SMALL, "--iterations", "8", "--checkpoint-every", "3",
                             "--stop-after", "4", "--out", str(tmp_path))
    assert status == EXIT_STOPPED
    assert f"resume with: python3 -m physgrad train poisson --resume {tmp_path} --method {METHOD}" in err
    assert written == [(f"{METHOD}.ckpt", 3), (f"{METHOD}.ckpt", 4)]
    written.clear()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        status, out, err = _main(capsys, "train", "poisson", "--resume", str(tmp_path), "--no-progress")
        assert status == 0, err
        assert torch.get_num_threads() == 1  # the run's --threads 1
    finally:
        torch.set_num_threads(threads)
    assert written == [(f"{METHOD}.ckpt", 6), (f"{METHOD}.ckpt", 8)]
    # compare: the options come from the methods' checkpoints
    written.clear()
    folder = tmp_path / "cmp"
    compare = ["compare", *SMALL, "--methods", "adam,adam+pg", "--iterations", "4",
               "--checkpoints", "4", "--no-evaluate", "--checkpoint-every", "2", "--out", str(folder)]
    assert _main(capsys, *compare, "--stop-after", "1")[0] == EXIT_STOPPED
    written.clear()
    status, out, err = _main(capsys, "compare", "poisson", "--resume", str(folder), "--no-progress")
    assert status == 0, err
    assert written == [("adam.ckpt", 2), ("adam.ckpt", 4), ("adam+pg.ckpt", 2), ("adam+pg.ckpt", 4)]


# 10. bad arguments: one error line, exit 2, nothing written --------------------

@pytest.mark.parametrize("arguments, message", [
    (["--lr", "nan"], "argument --lr: must be a positive finite number, got nan"),
    (["--lr", "-0.1"], "argument --lr: must be a positive finite number"),
    (["--lr", "-inf"], "argument --lr: must be a positive finite number"),
    (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got 0"),
    (["--batch-size", "-2"], "argument --batch-size: must be an integer >= 1"),
    (["--threads", "0"], "argument --threads: must be an integer in [1, "),
    (["--checkpoint-every", "-1"], "argument --checkpoint-every: must be an integer >= 0"),
    (["--seed", "12345678901234567890123"], "argument --seed: must be an integer in [0, "),
    (["--data-seed", "-1"], "argument --data-seed: must be an integer in [0, "),
    (["--shape", "4x4"], "--shape 4x4 is too small for experiment 'poisson'"),
    (["--shape", "100000x16"], "--shape 100000x16 is too large"),
    (["--shape", "-4x8"], "argument --shape: grid sizes must be positive, got -4x8"),
    (["--shape", "0x8"], "argument --shape: grid sizes must be positive"),
    (["--iterations", "0"], "argument --iterations: must be an integer >= 1, got 0"),
    (["--iterations", "-5"], "argument --iterations: must be an integer >= 1"),
    (["--stop-after", "0"], "argument --stop-after: must be an integer >= 1, got 0"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_bad_arguments_are_one_line_errors_and_write_nothing(tmp_path, capsys, arguments, message):
    out = tmp_path / "run"
    base = ["train", "poisson", "--shape", "16x16", "--batch-size", "2", "--iterations", "3",
            "--threads", "1", "--no-progress", "--out", str(out)]
    status, printed, err = _main(capsys, *base, *arguments)
    assert status == 2
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("arguments, message", [
    (["--window", "0"], "argument --window: must be an integer >= 1"),
    (["--seeds", "1,-2"], "argument --seeds: must be an integer in [0, "),
    (["--checkpoints", "0,5"], "argument --checkpoints: must be an integer >= 1"),
    (["--shape", "15x16"], "--shape 15x16 is too small for experiment 'fluid': its network needs "
                           "at least 16 cells per axis"),
], ids=["window", "seeds", "checkpoints", "fluid-shape"])
def test_bad_compare_arguments(tmp_path, capsys, arguments, message):
    out = tmp_path / "run"
    experiment = "fluid" if "15x16" in arguments else "poisson"
    status, printed, err = _main(capsys, "compare", experiment, "--iterations", "2",
                                 "--out", str(out), *arguments)
    assert status == 2 and message in err and not out.exists(), err


def test_resuming_a_run_of_another_experiment_names_both(stopped_run, tmp_path, capsys):
    folder = _copy(stopped_run, tmp_path)
    status, out, err = _main(capsys, "train", "heat", "--resume", str(folder), "--no-progress")
    assert status == 2
    assert f"--resume {folder} is a run of experiment 'poisson', not 'heat'" in err


# 17. module settings in state_dict and repr -----------------------------------

@pytest.mark.parametrize("module, changed", [
    (physgrad.nn.Poisson, dict(grad_mode="adjoint", y_step=0.5, spacing=(2.0, 3.0), rtol=1e-6,
                               max_iterations=77, lbfgs_iterations=5, on_failure="warn")),
    (physgrad.nn.Heat, dict(nu_t=3.5, grad_mode="lbfgs", spacing=(0.5, 0.25), y_step=2.0)),
    (physgrad.nn.Sine, dict(grad_mode="newton", adjoint_clip=1.5, step_clip=0.5)),
    (physgrad.nn.WavePacket, dict(grad_mode="physical", samples=64, frequency=2.0, sigma=7.0)),
    (physgrad.nn.Fluid, dict(steps=3, dt=0.5, spacing=(1.0, 1.0), grad_mode="adjoint",
                             pressure_atol=1e-6, pressure_max_iterations=50, energy="none")),
], ids=lambda value: value.__name__ if isinstance(value, type) else None)
def test_module_settings_survive_state_dict_and_show_in_repr(module, changed):
    # every constructor argument is a kept setting
    assert set(module._settings) == set(inspect.signature(module).parameters)
    source = module(**changed)
    buffer = io.BytesIO()
    torch.save(torch.nn.Sequential(source).state_dict(), buffer)
    buffer.seek(0)
    target = torch.nn.Sequential(module())
    target.load_state_dict(torch.load(buffer))
    for name, value in changed.items():
        assert getattr(target[0], name) == value, name
        assert f"{name}={value!r}" in repr(target[0])
    assert repr(target[0]) == repr(source)
    # a state_dict saved without settings still loads and keeps the current ones
    target[0].load_state_dict({})
    assert repr(target[0]) == repr(source)
    # and the module scripts as before
    scripted = torch.jit.script(target[0])
    assert getattr(scripted, "grad_mode") == changed["grad_mode"]
    with pytest.raises(ValueError, match="unknown settings \\['colour'\\]"):
        module().load_state_dict({"_extra_state": {"colour": "red"}})
    with pytest.raises(TypeError, match="setting grad_mode must be a str"):
        module().load_state_dict({"_extra_state": {"grad_mode": 3}})


def test_a_log_being_written_reads_without_its_partial_last_row(tmp_path):
    from physgrad.history import read_history
    log = tmp_path / "adam.csv"
    log.write_text("iteration,wall_seconds,y_loss,x_mae\n1,0.5,2.0,0.25\n2,1.0,1.5,0.2\n3,1.5,1.2")
    history = read_history(str(log))
    assert history.iteration == [1, 2] and history.x_mae == [0.25, 0.2]  # not 3's truncated row
    log.write_text("iteration,wall_seconds,y_loss,x_mae\n1,0.5,2.0,0.25\n2,1.0\n3,1.5,1.2,0.1\n")
    with pytest.raises(ValueError, match=r"adam\.csv, line 3: not a row of a training log"):
        read_history(str(log))
    log.write_text("iteration,wall_seconds,y_loss,x_mae\n1,0.5,2.0,0.25\r\n")  # csv's own line ends
    assert read_history(str(log)).iteration == [1]
