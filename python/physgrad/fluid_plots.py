"""Plots of fluid examples (PNG, matplotlib's Agg canvas: no display needed).

One row per velocity field: the ground truth and each prediction. A row shows
the initial velocity ``v0`` (speed as an image, arrows for the direction; one
scale for all rows) and
the marker it produces at evenly spaced times from 0 to ``t`` (the paper's
figures 6 and 13); the last marker frame of a prediction row is titled with its
mean absolute distance from the observed ``m_t``.
"""
import os
from typing import TYPE_CHECKING, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from . import ops

if TYPE_CHECKING:  # annotations only (the experiment imports this module)
    from .experiments.fluid import FluidExperiment
    from .history import History

__all__ = ["plot_fluid_example", "plot_predictions"]


def _frame_indices(steps: int, frames: int) -> list:
    frames = max(2, min(frames, steps + 1))
    return sorted({round(i * steps / (frames - 1)) for i in range(frames)})


def plot_fluid_example(path: str, m0: torch.Tensor, m_t: torch.Tensor, velocities: Mapping[str, torch.Tensor],
                       steps: int = 8, dt: float = 0.25, spacing: Tuple[float, float] = (2.0, 2.0),
                       pressure_atol: float = 1e-4, frames: int = 5, title: str = "") -> str:
    """Plot one example's marker sequences for several initial velocities.

    Args:
        path: PNG file to write (folders are created).
        m0: initial marker ``[ny, nx]``.
        m_t: observed final marker ``[ny, nx]`` (the target).
        velocities: row label -> cell-centred ``v0`` ``[2, ny, nx]`` (channel 0: x), e.g.
            ``{"ground truth": v_star, "adam+pg": v_pg, "adam": v_adam}``; each is
            simulated with :func:`physgrad.fluid_sequence`.
        steps, dt, spacing, pressure_atol: the simulation (as :func:`physgrad.fluid`).
        frames: marker frames per row, evenly spaced in time (paper: 5, t = 0 .. 2).
        title: figure title.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ny, nx = m0.shape[-2:]
    dy, dx = float(spacing[0]), float(spacing[1])
    extent = (0.0, nx * dx, 0.0, ny * dy)
    shown = _frame_indices(steps, frames)
    m0_batch = m0.detach().to(torch.float64).reshape(1, ny, nx)
    rows = list(velocities.items())
    figure = Figure(figsize=(2.2 * (len(shown) + 1), 2.2 * len(rows) + 0.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), len(shown) + 1, squeeze=False)
    marker_max = float(max(m0.abs().max(), m_t.abs().max(), 1e-12))
    step = max(1, max(ny, nx) // 16)  # about 16 arrows per axis
    # One colour scale and arrow scale for all rows (the fastest arrow spans one arrow spacing).
    max_speed = max(float(v.detach().to(torch.float64).reshape(2, ny, nx).norm(dim=0).max())
                    for v in velocities.values())
    max_speed = max(max_speed, 1e-12)
    arrow_scale = max_speed / (step * min(dx, dy))
    centres_x = (torch.arange(nx, dtype=torch.float64) + 0.5) * dx
    centres_y = (torch.arange(ny, dtype=torch.float64) + 0.5) * dy
    for r, (label, v0) in enumerate(rows):
        v0 = v0.detach().to(torch.float64).reshape(1, 2, ny, nx)
        with torch.no_grad():
            markers, _ = ops.fluid_sequence(v0, m0_batch, steps, dt, (dy, dx), pressure_atol, 1000)
        speed = v0[0].norm(dim=0)
        ax = axes[r][0]
        ax.imshow(speed.numpy(), origin="lower", extent=extent, cmap="viridis", vmin=0.0, vmax=max_speed)
        ax.quiver(centres_x[::step].numpy(), centres_y[::step].numpy(), v0[0, 0, ::step, ::step].numpy(),
                  v0[0, 1, ::step, ::step].numpy(), color="white", scale_units="xy", angles="xy",
                  scale=arrow_scale)
        ax.set_title(f"v0, max |v| {float(speed.max()):.3g}", fontsize=8)
        ax.set_ylabel(label, fontsize=9)
        for c, k in enumerate(shown):
            ax = axes[r][c + 1]
            ax.imshow(markers[0, k].numpy(), origin="lower", extent=extent, cmap="magma", vmin=0.0,
                      vmax=marker_max)
            caption = f"m(t={k * dt:g})"
            if k == steps:
                caption += f", |m - m_t| {float((markers[0, k] - m_t.to(torch.float64)).abs().mean()):.3g}"
            ax.set_title(caption, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    return path


def plot_predictions(experiment: "FluidExperiment", networks: Mapping[str, Union[nn.Module, "History"]], path: str,
                     seed: int = 12345, index: int = 0, frames: int = 5, title: Optional[str] = None) -> str:
    """After training: plot one example of ``experiment``'s data with each network's prediction.

    Args:
        experiment: the fluid experiment the networks were trained on.
        networks: row label -> a trained network or a :class:`physgrad.training.History`
            (its ``network``), e.g. ``{h.method: h for h in histories}``.
        path: PNG file to write.
        seed: data seed of the example (a fresh source; default: not a training seed).
        index: which example of a batch of ``index + 1`` to show.
        frames, title: as in :func:`plot_fluid_example`.

    The networks are evaluated in eval mode (BatchNorm's running statistics) and
    put back into their previous mode. Returns ``path``.
    """
    batch = experiment.make_data(seed).sample(index + 1)
    velocities: Dict[str, torch.Tensor] = {"ground truth": batch.x_star[index]}
    for label, network in networks.items():
        network = getattr(network, "network", network)
        was_training = network.training
        network.eval()
        try:
            with torch.no_grad():
                velocities[label] = experiment.predict(network, batch)[index]
        finally:
            network.train(was_training)
    return plot_fluid_example(path, batch.m0[index], batch.y_star[index], velocities, steps=experiment.steps,
                              dt=experiment.dt, spacing=experiment.spacing,
                              pressure_atol=experiment.pressure_atol, frames=frames,
                              title=title if title is not None else f"{experiment.name}: data seed {seed}")
