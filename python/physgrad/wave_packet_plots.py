"""Plot of a wave-packet example (paper figure 1; PNG, matplotlib's Agg canvas:
no display needed): the noisy series, the true packet, the per-example fit and
the trained network's."""
import os

import torch

from . import ops
from .data.wave_packet import SAMPLES, SIGMA

__all__ = ["plot_example"]


def plot_example(observed: torch.Tensor, truth: torch.Tensor, fitted: torch.Tensor, predicted: torch.Tensor,
                 network_name: str, path: str) -> str:
    """Figure 1: the noisy series, the true packet, the L-BFGS-B fit and the network's, as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    packets = ops.wave_packet(torch.stack([truth, fitted, predicted]).double(), samples=SAMPLES, sigma=SIGMA)
    xi = list(range(SAMPLES))
    figure = Figure(figsize=(9, 3.6), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    ax.plot(xi, observed.tolist(), color="0.6", linewidth=0.8, label="observed (noisy)")
    labels = (f"true: xi0 = {truth[0]:.1f}, A = {truth[1]:.2f}",
              f"per-example fit: xi0 = {fitted[0]:.1f}, A = {fitted[1]:.2f}",
              f"network ({network_name}): xi0 = {predicted[0]:.1f}, A = {predicted[1]:.2f}")
    for packet, label, style in zip(packets, labels, (("k", "--"), ("C3", "-"), ("C0", "-"))):
        ax.plot(xi, packet.tolist(), color=style[0], linestyle=style[1], linewidth=1.3, label=label)
    ax.set_xlabel("xi (sample)")
    ax.set_ylabel("y")
    ax.set_title("wave packet fit: per-example L-BFGS-B vs. trained network")
    ax.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    return path
