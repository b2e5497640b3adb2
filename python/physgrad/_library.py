"""Finds and loads the compiled op library (``libphysgrad_ops.so``)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from . import _version

_LIBRARY_NAME = "libphysgrad_ops.so"
_PACKAGE_DIR = Path(__file__).resolve().parent
_REPOSITORY = _PACKAGE_DIR.parent.parent

_HOW_TO_BUILD = (
    "Build it from the repository root with `make build` (or `make test`), reinstall the package "
    "(`pip install --no-build-isolation .`), or point the PHYSGRAD_LIBRARY environment variable at a "
    "built libphysgrad_ops.so."
)


def candidate_paths() -> list[Path]:
    """Where the library is looked for, in order: $PHYSGRAD_LIBRARY, the installed
    package, the repository's ``build/lib``."""
    paths = []
    if os.environ.get("PHYSGRAD_LIBRARY"):
        paths.append(Path(os.environ["PHYSGRAD_LIBRARY"]))
    paths.append(_PACKAGE_DIR / "lib" / _LIBRARY_NAME)
    paths.append(_REPOSITORY / "build" / "lib" / _LIBRARY_NAME)
    return paths


def load() -> Path:
    """Loads the op library once; raises ImportError with build instructions."""
    for path in candidate_paths():
        if path.is_file():
            break
    else:
        searched = ", ".join(str(p) for p in candidate_paths())
        raise ImportError(f"physgrad: the op library {_LIBRARY_NAME} was not found (searched {searched}). "
                          + _HOW_TO_BUILD)
    try:
        torch.ops.load_library(str(path))
    except OSError as error:
        raise ImportError(f"physgrad: cannot load {path}: {error}. It may be stale or built against "
                          f"another torch; rebuild it. " + _HOW_TO_BUILD) from error
    built_for = torch.ops.physgrad.torch_version()
    if built_for != torch.__version__:
        raise ImportError(f"physgrad: {path} was built for torch {built_for}, but this is torch "
                          f"{torch.__version__}; rebuild it. " + _HOW_TO_BUILD)
    built_as, package = torch.ops.physgrad.version(), _version.__version__
    if built_as != package:
        raise ImportError(f"physgrad: {path} is version {built_as}, but the Python package is {package}; "
                          f"the library is stale, rebuild it. " + _HOW_TO_BUILD)
    return path
