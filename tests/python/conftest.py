"""Shared fixtures: independent numpy/scipy references of the discrete operators."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp


def dirichlet_laplacian(ny: int, nx: int, dy: float = 1.0, dx: float = 1.0) -> sp.csr_matrix:
    """The 5-point Laplacian on ny x nx interior nodes with zero boundary, as a sparse matrix."""
    def second_difference(n: int, h: float) -> sp.csr_matrix:
        return sp.diags([np.ones(n - 1), -2 * np.ones(n), np.ones(n - 1)], [-1, 0, 1]) / h**2
    return (sp.kron(sp.identity(ny), second_difference(nx, dx)) +
            sp.kron(second_difference(ny, dy), sp.identity(nx))).tocsr()


@pytest.fixture
def laplacian():
    return dirichlet_laplacian
