"""Seeded, on-the-fly data for the paper's experiments: one module per generator.

==========================  ================================================
:mod:`.base`                what they share: :class:`SeededSource`,
                            :class:`FieldPair`, :func:`smooth_noise`
:mod:`.poisson`             :class:`PoissonData` (smooth noise, B.3)
:mod:`.heat`                :class:`HeatData` (hot rectangles, B.4)
:mod:`.sin`                 :class:`SinData` (``a`` and its label, B.2)
:mod:`.wave_packet`         :class:`WavePacketData` (noisy packets, B.1)
:mod:`.fluid`               :class:`FluidData` (marker pairs, B.5)
==========================  ================================================

Every name is importable from here (``physgrad.data.WavePacketData``) and,
for the last three, from its experiment module too
(``physgrad.experiments.wave_packet.WavePacketData``).

Every source owns a ``torch.Generator``: the same seed gives the same sequence
of batches, and ``state_dict()`` / ``load_state_dict()`` save and restore the
position in that sequence. Ground-truth inputs ``x*`` are generated here
(random fields, no physics); the observations ``y* = P(x*)`` come from the
physgrad op itself, computed when a batch is sampled.

Conventions: fields are ``[B, ny, nx]``, one cell has unit size, wavelengths
and sizes are in cells (the fluid's data has a cell size of its own).

Data-parallel training: ``sample(batch_size, part=slice(i, j))`` returns only
the examples ``i..j-1`` of the next batch. The generator still draws the random
inputs of the whole batch (so it advances exactly as without ``part``, and the
parts of all ranks are the batch one process gets), but the physics op that
makes ``y*`` runs on the part only.
"""
from .base import PHIFLOW_NOISE_MAX_WAVELENGTH, FieldPair, SeededSource, smooth_noise
from .fluid import FluidBatch, FluidData
from .heat import HeatData
from .poisson import PoissonData
from .sin import SinBatch, SinData
from .wave_packet import WavePacketBatch, WavePacketData

__all__ = ["FieldPair", "smooth_noise", "PoissonData", "HeatData", "PHIFLOW_NOISE_MAX_WAVELENGTH",
           "SeededSource", "SinBatch", "SinData", "WavePacketBatch", "WavePacketData",
           "FluidBatch", "FluidData"]
