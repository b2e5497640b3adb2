"""Packaging: one version, `cmake --install` (C API and CMake package), pip into a venv.

The pip tests copy the sources into a temp dir and install them into a fresh
venv (`/usr/bin/python3 -m venv --system-site-packages`, `pip install
--no-build-isolation --no-index`: Debian's setuptools and torch, no network).
The default one reuses the build tree (PHYSGRAD_CMAKE_BUILD_DIR, see setup.py);
the one that compiles everything again takes minutes and runs only with
PHYSGRAD_TEST_FULL_BUILD=1.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import physgrad
from packaging_support import REPOSITORY, build_project, build_tree, clean_environment, install, run

SOURCES = ("CMakeLists.txt", "VERSION", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "cmake", "cphys",
           "include", "torch_ops", "python")


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    return install(tmp_path_factory.mktemp("install") / "prefix")


def test_version_has_one_source():
    version = (REPOSITORY / "VERSION").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert physgrad.__version__ == version == torch.ops.physgrad.version() == physgrad.library_version()
    assert "project(physgrad VERSION ${" in (REPOSITORY / "CMakeLists.txt").read_text()


def python_in_subprocess(program: str, environment: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", program], env=environment, capture_output=True, text=True,
                          timeout=120)


def test_library_built_for_another_torch_is_a_clear_import_error():
    program = ("import torch\ntorch.__version__ = '0.0.1+other'\n"
               "try:\n    import physgrad\nexcept ImportError as error:\n    print('ImportError:', error)\n"
               "else:\n    raise SystemExit('imported')\n")
    result = python_in_subprocess(program, dict(clean_environment(), PYTHONPATH=str(REPOSITORY / "python")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ImportError: physgrad:" in result.stdout
    assert f"was built for torch {torch.__version__}, but this is torch 0.0.1+other" in result.stdout
    assert "rebuild" in result.stdout


def test_stale_library_is_a_clear_import_error(tmp_path):
    """A Python package of another version than the library refuses to load it."""
    shutil.copytree(REPOSITORY / "python" / "physgrad", tmp_path / "physgrad",
                    ignore=shutil.ignore_patterns("__pycache__", "lib"))
    (tmp_path / "physgrad" / "VERSION").write_text("9.9.9\n")
    library = next(path for path in physgrad._library.candidate_paths() if path.is_file())
    environment = dict(clean_environment(), PYTHONPATH=str(tmp_path), PHYSGRAD_LIBRARY=str(library))
    result = python_in_subprocess("import physgrad", environment)
    assert result.returncode != 0
    assert f"is version {physgrad.__version__}, but the Python package is 9.9.9" in result.stderr


def test_install_tree(prefix):
    lib = prefix / "lib"
    for name in ("libcphys.so", "libphysgrad_ops.so", "cmake/cphys/cphysConfig.cmake",
                 "cmake/cphys/cphysConfigVersion.cmake", "cmake/cphys/cphysTargets.cmake"):
        assert (lib / name).is_file(), name
    headers = sorted((prefix / "include" / "cphys").glob("*.h"))
    assert {"error.h", "poisson.h", "environment.h"} <= {header.name for header in headers}
    for header in headers:  # PETSc, FFTW and MPI stay private to the shared library
        includes = re.findall(r'#include\s*[<"]([^>"]+)', header.read_text())
        private = r"(petsc|fftw)" if header.name == "poisson_mpi.h" else r"(petsc|fftw|mpi)"
        assert not [name for name in includes if re.match(private, name)], (header, includes)
    assert f'PACKAGE_VERSION "{physgrad.__version__}"' in (lib / "cmake/cphys/cphysConfigVersion.cmake").read_text()


def test_c_api_example_against_the_installed_package(prefix, tmp_path):
    build_project(REPOSITORY / "examples" / "c_api", tmp_path / "build", prefix)
    program = tmp_path / "build" / "c_api_example"
    result = run([program], env=clean_environment(), timeout=120)
    print(result.stdout)
    assert "all checks passed" in result.stdout
    assert f"cphys {physgrad.__version__}" in result.stdout
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", run(["readelf", "-d", program]).stdout)
    assert "libcphys.so" in needed
    assert not [name for name in needed if re.match(r"lib(petsc|fftw|mpi)", name)], needed


def test_missing_component_is_a_clear_cmake_error(prefix, tmp_path):
    (tmp_path / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.18)\nproject(consumer LANGUAGES C)\n"
                                             "find_package(cphys REQUIRED COMPONENTS no_such_part)\n")
    result = subprocess.run(["cmake", "-S", str(tmp_path), "-B", str(tmp_path / "build"),
                             f"-DCMAKE_PREFIX_PATH={prefix}"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "component 'no_such_part' is not in this installation" in result.stdout + result.stderr


def pip_install(tmp_path: Path, environment: dict, timeout: float) -> Path:
    """Copies the sources, makes a venv, pip-installs them; returns the venv's python."""
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPOSITORY / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info", "lib", "build*"))
        else:
            shutil.copy2(path, source / name)
    run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", tmp_path / "venv"])
    python = tmp_path / "venv" / "bin" / "python"
    run([python, "-m", "pip", "install", "--no-build-isolation", "--no-index", "--no-cache-dir", source],
        env=environment, timeout=timeout)
    return python


def check_installed(python: Path, tmp_path: Path) -> None:
    """From an unrelated directory, without PYTHONPATH: the venv's physgrad, its own libraries, one version."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    program = ("import torch, physgrad\n"
               "from physgrad import _library\n"
               "x = torch.randn(2, 6, 5, dtype=torch.float64, requires_grad=True)\n"
               "physgrad.losses.l2(physgrad.poisson(x), torch.zeros(2, 6, 5, dtype=torch.float64)).backward()\n"
               "assert x.grad.shape == x.shape\n"
               "print(physgrad.__file__)\n"
               "print(next(p for p in _library.candidate_paths() if p.is_file()))\n"
               "print(physgrad.__version__, torch.ops.physgrad.version())\n")
    result = run([python, "-c", program], cwd=elsewhere, env=clean_environment(), timeout=120)
    package_file, library, versions = result.stdout.strip().splitlines()[-3:]
    venv = str(tmp_path / "venv")
    assert package_file.startswith(venv) and library.startswith(venv) and library.endswith(
        "physgrad/lib/libphysgrad_ops.so"), result.stdout
    assert versions == f"{physgrad.__version__} {physgrad.__version__}"
    if (Path(package_file).parent / "cli.py").is_file():
        result = run([python, "-m", "physgrad", "--help"], cwd=elsewhere, env=clean_environment(), timeout=120)
        assert "usage" in result.stdout.lower()
    else:
        print("physgrad/cli.py is not in this checkout yet: `python -m physgrad --help` not checked")


def test_pip_install_into_a_venv_reusing_the_build_tree(tmp_path):
    environment = dict(clean_environment(), PHYSGRAD_CMAKE_BUILD_DIR=str(build_tree()))
    check_installed(pip_install(tmp_path, environment, timeout=300), tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PHYSGRAD_TEST_FULL_BUILD") != "1",
                    reason="compiles libcphys and every torch op source again (minutes); "
                           "run with PHYSGRAD_TEST_FULL_BUILD=1")
def test_pip_install_into_a_venv_building_with_cmake(tmp_path):
    environment = dict(clean_environment(),
                       CMAKE_BUILD_PARALLEL_LEVEL=os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "1"))
    check_installed(pip_install(tmp_path, environment, timeout=3600), tmp_path)
