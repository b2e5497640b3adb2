"""PETSC_OPTIONS that would end or spoil the host process at PETSc's start-up are
refused with a clear error: '-help intro' (PETSc prints its introduction and calls
exit(0)) and an unreadable -options_file (PETSc prints a traceback)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys, torch, physgrad
try:
    physgrad.poisson(torch.rand(1, 4, 4, dtype=torch.float64))
except ValueError as error:
    print("ValueError:", error)
    sys.exit(3)
print("solved")
"""


def _run(options: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PETSC_OPTIONS=options,
                       PYTHONPATH=str(REPOSITORY / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=environment,
                          timeout=120)


@pytest.mark.parametrize("options,message", [
    ("-help intro", "PETSC_OPTIONS holds '-help intro'"),
    ("-ksp_monitor -options_file /nonexistent/physgrad.opts",
     "PETSC_OPTIONS: -options_file /nonexistent/physgrad.opts: cannot read it (No such file or directory)"),
])
def test_refused_with_a_message_and_nothing_printed(options, message):
    result = _run(options)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert message in result.stdout
    assert result.stderr == ""


def test_a_readable_options_file_is_used(tmp_path):
    options = tmp_path / "physgrad.opts"
    options.write_text("-physgrad_poisson_ksp_type cg\n")
    result = _run(f"-options_file {options}")
    assert result.returncode == 0 and "solved" in result.stdout, result.stderr
