"""physgrad: physics ops for PyTorch with physical gradients.

Put a physics op between a network and a loss, pick its gradient mode, train::

    y = physgrad.poisson(net(y_star), grad_mode="physical")
    physgrad.losses.l2(y, y_star).backward()
"""
from __future__ import annotations

from . import _library

_library.load()

from . import data, losses, modes, nets, nn  # noqa: E402
from .modes import GRAD_MODES, grad_mode  # noqa: E402
from .ops import (SolveStats, cache_info, clear_solver_options, fluid, fluid_sequence, heat,  # noqa: E402
                  library_version, poisson, set_cache_limit, set_solver_options, sine, sine_nearest_minimum,
                  unused_solver_options, wave_packet, wave_packet_fit)
# solve_stats covers the built-in and the user ops (physgrad.Op)
from .user_ops import Op, OpInfo, op_info, registered_ops, solve_stats, unregister_op  # noqa: E402
from .extensions import load_library  # noqa: E402  (C/C++ ops built out of tree)

from ._version import __version__  # noqa: E402  (the VERSION file)

__all__ = ["GRAD_MODES", "Op", "OpInfo", "SolveStats", "cache_info", "clear_solver_options", "data", "fluid",
           "fluid_sequence", "grad_mode", "heat", "library_version", "load_library", "losses", "modes", "nets", "nn",
           "op_info", "poisson", "registered_ops", "set_cache_limit", "set_solver_options", "sine",
           "sine_nearest_minimum", "solve_stats", "unregister_op", "unused_solver_options", "wave_packet",
           "wave_packet_fit",
           "__version__"]
