"""Finds and loads the compiled op library (``libphysgrad_ops.so``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

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


#: the op library this process loaded (set by :func:`load`)
loaded_path: Optional[Path] = None


def _ops_registered() -> bool:
    """Whether the physgrad ops are registered in this process already (by any file)."""
    try:
        getattr(torch.ops.physgrad, "version")
    except (AttributeError, RuntimeError):
        return False
    return True


def _mapped_files() -> list[str]:
    """The shared objects mapped into this process (Linux's /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as maps:
            return sorted({line.split(None, 5)[5].strip() for line in maps
                           if len(line.split(None, 5)) == 6 and ".so" in line})
    except OSError:
        return []


def _same_file(a: object, b: object) -> bool:
    try:
        return os.path.samefile(str(a), str(b))
    except OSError:
        return False


def _check_no_other_copy(path: Path) -> None:
    """A second copy of the op library (another file, even an identical one) would
    register the physgrad ops again, which aborts the process from the dynamic
    loader (torch: "Only a single TORCH_LIBRARY can be used to register the
    namespace physgrad"). The same file again is harmless (dlopen reuses it)."""
    if not _ops_registered():
        return
    if any(_same_file(path, other) for other in [*torch.ops.loaded_libraries, *_mapped_files()]):
        return
    others = [f for f in torch.ops.loaded_libraries if not _same_file(path, f)]
    others += [f for f in _mapped_files() if "physgrad" in Path(f).name and f not in others]
    where = ", ".join(others) if others else "a library this process loaded without torch.ops.load_library"
    raise ImportError(f"physgrad: the physgrad ops are already registered in this process, from {where}; "
                      f"loading a second copy of the op library from {path} would abort the process (torch "
                      f"allows one registration of the physgrad namespace). Use one op library per process: "
                      f"point PHYSGRAD_LIBRARY at the one loaded (or unset it), or load no other copy before "
                      f"importing physgrad.")


def load() -> Path:
    """Loads the op library once; raises ImportError with build instructions, or
    when another copy of the library registered the ops already."""
    global loaded_path
    for path in candidate_paths():
        if path.is_file():
            break
    else:
        searched = ", ".join(str(p) for p in candidate_paths())
        raise ImportError(f"physgrad: the op library {_LIBRARY_NAME} was not found (searched {searched}). "
                          + _HOW_TO_BUILD)
    _check_no_other_copy(path)
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
    loaded_path = path
    return path
