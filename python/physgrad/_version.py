"""The package version. Its single source is the repository's ``VERSION`` file,
which CMake compiles into the op library (``torch.ops.physgrad.version()``) and
setup.py copies into an installed package (``physgrad/VERSION``)."""
from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def read_version() -> str:
    """The version in ``physgrad/VERSION`` (installed) or ``<repository>/VERSION`` (a checkout)."""
    for path in (_PACKAGE_DIR / "VERSION", _PACKAGE_DIR.parent.parent / "VERSION"):
        if path.is_file():
            return path.read_text().strip()
    raise ImportError(f"physgrad: no VERSION file beside {_PACKAGE_DIR} or at the repository root; "
                      "reinstall the package")


__version__ = read_version()
