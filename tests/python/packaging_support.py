"""Helpers of the packaging and deployment tests: the CMake build tree the tests
run against, installing it into a prefix, building a small CMake project."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import List, Optional

import pytest

from physgrad import _library

REPOSITORY = Path(__file__).resolve().parents[2]


def build_tree() -> Path:
    """The CMake build whose op library this process loaded ($PHYSGRAD_BUILD_DIR overrides);
    skips when the library does not come from a build tree (an installed package)."""
    if os.environ.get("PHYSGRAD_BUILD_DIR"):
        build = Path(os.environ["PHYSGRAD_BUILD_DIR"]).resolve()
    else:
        library = next(path for path in _library.candidate_paths() if path.is_file())
        build = library.resolve().parent.parent
    if not (build / "CMakeCache.txt").is_file():
        pytest.skip(f"no CMake build tree at {build} (set PHYSGRAD_BUILD_DIR to a build of this repository)")
    install_script = build / "cmake_install.cmake"
    if "cphysConfig.cmake" not in install_script.read_text():
        pytest.fail(f"{build} was configured before the install rules existed: rerun `make build` "
                    f"(or `cmake {build}`)")
    return build


def run(command: List[object], cwd: Optional[Path] = None, env: Optional[dict] = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs a command; on failure the assertion shows its output."""
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, timeout=timeout,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, f"{' '.join(str(p) for p in command)} failed:\n{result.stdout[-6000:]}"
    return result


def install(prefix: Path) -> Path:
    """`cmake --install <build tree> --prefix prefix`; returns prefix."""
    run(["cmake", "--install", build_tree(), "--prefix", prefix])
    return prefix


def build_project(source: Path, binary: Path, prefix: Path) -> None:
    """Configures and builds the CMake project `source` against the package installed in `prefix`, one job."""
    run(["cmake", "-S", source, "-B", binary, f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release"])
    run(["cmake", "--build", binary, "--parallel", "1"])


def clean_environment() -> dict:
    """The environment without physgrad's and the loader's search-path variables."""
    environment = dict(os.environ)
    for name in ("PYTHONPATH", "PHYSGRAD_LIBRARY", "LD_LIBRARY_PATH", "PHYSGRAD_CMAKE_BUILD_DIR"):
        environment.pop(name, None)
    return environment
