"""Builds physgrad's libraries with CMake and installs them inside the Python package.

    python3 -m venv --system-site-packages venv       # sees Debian's torch
    venv/bin/pip install --no-build-isolation .        # no network: Debian's setuptools and wheel

build_ext configures and builds the top-level CMakeLists.txt (Release, no C
tests or benchmarks), runs ``cmake --install`` into a staging prefix, and copies
``libcphys.so`` and ``libphysgrad_ops.so`` into ``physgrad/lib/``; the op
library finds libcphys through its RPATH ``$ORIGIN``, libcphys finds PETSc and
MPI through its install RPATH, and ``physgrad._library`` looks in
``physgrad/lib/``. Environment variables:

- ``PHYSGRAD_CMAKE_BUILD_DIR``: a finished CMake build of this source tree (for
  example ``build/`` after ``make build``); its libraries are installed as they
  are, nothing is compiled. Saves the minutes the torch sources take.
- ``PHYSGRAD_CMAKE_ARGS``: extra arguments of the configure step.
- ``CMAKE_BUILD_PARALLEL_LEVEL``: compile jobs (default: every CPU).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
LIBRARY_PATTERNS = ("libcphys.so*", "libphysgrad_ops.so*")


def run(command: list) -> None:
    print("physgrad setup:", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], check=True)


class CMakeLibraries(Extension):
    """Stands for the CMake-built libraries, so that the wheel is platform-specific and build_ext runs."""

    def __init__(self) -> None:
        super().__init__("physgrad.lib.libphysgrad_ops", sources=[])


class BuildWithCMake(build_ext):
    def run(self) -> None:
        build_dir = os.environ.get("PHYSGRAD_CMAKE_BUILD_DIR")
        if build_dir:
            build_dir = Path(build_dir).resolve()
            if not (build_dir / "cmake_install.cmake").is_file():
                sys.exit(f"physgrad setup: PHYSGRAD_CMAKE_BUILD_DIR={build_dir} is not a configured CMake build "
                         "(no cmake_install.cmake); run `make build` first or unset the variable")
        else:
            build_dir = Path(self.build_temp).resolve() / "cmake"
            run(["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                 f"-DPython3_EXECUTABLE={sys.executable}", "-DPHYSGRAD_BUILD_TESTS=OFF",
                 "-DPHYSGRAD_BUILD_BENCHMARKS=OFF", "-DPHYSGRAD_BUILD_TORCH=ON",
                 *shlex.split(os.environ.get("PHYSGRAD_CMAKE_ARGS", ""))])
            parallel = [] if "CMAKE_BUILD_PARALLEL_LEVEL" in os.environ else ["--parallel", os.cpu_count() or 1]
            run(["cmake", "--build", build_dir, *parallel])
        stage = Path(self.build_temp).resolve() / "stage"
        shutil.rmtree(stage, ignore_errors=True)
        run(["cmake", "--install", build_dir, "--prefix", stage])
        package_dir = ROOT / "python" / "physgrad" if self.inplace else Path(self.build_lib) / "physgrad"
        destination = package_dir / "lib"
        destination.mkdir(parents=True, exist_ok=True)
        self._outputs = []
        for pattern in LIBRARY_PATTERNS:
            found = sorted(path for path in stage.rglob(pattern) if path.is_file())
            if not found:
                sys.exit(f"physgrad setup: `cmake --install {build_dir}` installed no {pattern}; "
                         "is it a build with the op library (PHYSGRAD_BUILD_TORCH=ON)?")
            for path in found:  # symlinks are copied as files: the package holds plain files
                shutil.copyfile(path, destination / path.name)
                os.chmod(destination / path.name, 0o755)
                self._outputs.append(str(destination / path.name))

    def get_outputs(self) -> list:
        return list(getattr(self, "_outputs", []))

    def get_output_mapping(self) -> dict:
        return {}


class BuildPyWithVersion(build_py):
    """Also puts the VERSION file into the package (physgrad/_version.py reads it)."""

    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):
            target = Path(self.build_lib) / "physgrad" / "VERSION"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / "VERSION", target)

    def get_outputs(self, include_bytecode: bool = True) -> list:
        return super().get_outputs(include_bytecode) + [str(Path(self.build_lib) / "physgrad" / "VERSION")]


setup(
    ext_modules=[CMakeLibraries()],
    cmdclass={"build_ext": BuildWithCMake, "build_py": BuildPyWithVersion},
    # Not build/: that is the CMake build directory of `make build`.
    options={"build": {"build_base": "build-python"}},
)
