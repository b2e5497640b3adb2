"""Shared test set-up: skipping without a built op library, the one-thread fixture,
independent numpy/scipy references of the discrete operators."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

_REPOSITORY = Path(__file__).resolve().parents[2]
_LIBRARY = "libphysgrad_ops.so"


def library_built() -> bool:
    """Whether ``import physgrad`` can find the op library (the places physgrad._library searches)."""
    return bool(os.environ.get("PHYSGRAD_LIBRARY")
                or (_REPOSITORY / "build" / "lib" / _LIBRARY).is_file()
                or (_REPOSITORY / "python" / "physgrad" / "lib" / _LIBRARY).is_file())


class _LibraryMissing(pytest.Module):
    """A test module that is reported as skipped instead of failing to import physgrad."""

    def collect(self):
        pytest.skip(f"op library {_LIBRARY} not built (importing physgrad loads it)")


def pytest_pycollect_makemodule(module_path, parent):
    # Every test module here imports physgrad (or runs code that does), which loads the library.
    if not library_built() and module_path.name.startswith("test_"):
        return _LibraryMissing.from_parent(parent, path=module_path)
    return None


@pytest.fixture
def one_thread():
    """Runs the test with one torch (and so one cphys OpenMP) thread; restores the count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def dirichlet_laplacian(ny: int, nx: int, dy: float = 1.0, dx: float = 1.0) -> sp.csr_matrix:
    """The 5-point Laplacian on ny x nx interior nodes with zero boundary, as a sparse matrix."""
    def second_difference(n: int, h: float) -> sp.csr_matrix:
        return sp.diags([np.ones(n - 1), -2 * np.ones(n), np.ones(n - 1)], [-1, 0, 1]) / h**2
    return (sp.kron(sp.identity(ny), second_difference(nx, dx)) +
            sp.kron(second_difference(ny, dy), sp.identity(nx))).tocsr()


@pytest.fixture
def laplacian():
    return dirichlet_laplacian
