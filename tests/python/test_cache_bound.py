"""Solver caches are bounded (least recently used objects dropped beyond
physgrad.set_cache_limit): a new spacing, tolerance or nu_t per call does not grow
memory without bound."""
from __future__ import annotations

import resource

import pytest
import torch

import physgrad
from physgrad.ops import cache_info, set_cache_limit


@pytest.fixture
def limit():
    old, _ = cache_info()
    yield
    set_cache_limit(old)


def _objects():
    return cache_info()[1]


def test_distinct_configurations_keep_at_most_the_limit(limit):
    set_cache_limit(3)
    physgrad.clear_solver_options()  # empties every cache
    assert _objects() == 0
    x = torch.rand(2, 8, 8, dtype=torch.float64)
    for k in range(12):
        physgrad.poisson(x, spacing=(1.0 + 0.01 * k, 1.0))
        physgrad.heat(x, nu_t=1.0 + 0.1 * k)
        assert _objects() <= 6
    assert _objects() == 6
    # the most recent configuration is still cached and gives the same answer
    again = physgrad.poisson(x, spacing=(1.11, 1.0))
    assert _objects() == 6
    assert torch.allclose(again, physgrad.poisson(x, spacing=(1.11, 1.0)), rtol=0, atol=0)


def test_evicted_objects_are_rebuilt_with_the_same_results(limit):
    set_cache_limit(1)
    x = torch.rand(3, 10, 12, dtype=torch.float64)
    first = physgrad.poisson(x, spacing=(0.5, 0.7))
    physgrad.poisson(x, spacing=(0.6, 0.7))        # evicts the first configuration
    assert torch.equal(first, physgrad.poisson(x, spacing=(0.5, 0.7)))


def test_memory_stays_bounded_with_a_new_spacing_every_call(limit):
    """5000 calls at 32x32 with a new spacing each grew the process by 1.6 GB
    before the caches were bounded (~320 kB per call): 1500 calls must now stay
    far below that (~480 MB unbounded)."""
    set_cache_limit(4)
    x = torch.rand(1, 32, 32, dtype=torch.float64)
    for k in range(200):
        physgrad.poisson(x, spacing=(1.0 + 1e-4 * k, 1.0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB
    for k in range(1500):
        physgrad.poisson(x, spacing=(2.0 + 1e-4 * k, 1.0))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB"
    assert _objects() <= 4 * 4


@pytest.mark.parametrize("value", [0, -1, 10**7])
def test_bad_limit(value):
    with pytest.raises(ValueError, match="limit must be in"):
        set_cache_limit(value)
