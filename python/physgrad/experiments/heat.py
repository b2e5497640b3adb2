"""Heat equation (paper B.4): learn ``x`` from ``y* = heat(x*, nu_t = 8)``.

x* holds 4 to 10 soft-edged hot rectangles on a periodic 64x64 grid
(:class:`physgrad.data.HeatData`, after SIP's ``generate_heat_example``); y* is
its diffusion. Same U-net as Poisson, fed with the raw y*. Diffusion preserves
the mean, so the prediction is shifted to the observed mean:
``x <- x - mean(x) + mean(y*)`` (inside the graph, as in SIP).

Defaults: batch 128, Adam lr 1e-3 (paper); SGD lr 2e-6 without momentum in
SIP's code, here with the common SGD method (momentum 0.9) at 2e-6 / 10.
``supervised`` trains on the exact x*.
"""
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from ..data import HeatData
from ..nets import UNet
from .base import Experiment


class HeatExperiment(Experiment):
    """Heat inverse problem on a periodic ``shape = (ny, nx)`` grid, ``nu_t`` in cells^2."""

    name = "heat"
    description = "heat equation, hot rectangles x* -> y* diffused by nu t = 8 (paper B.4)"
    default_iterations = 10000
    default_batch_size = 128
    learning_rates = {"adam": 1e-3, "adam+pg": 1e-3, "adam+lbfgs": 1e-3,
                      "sgd": 2e-7, "supervised": 1e-3}

    def __init__(self, shape: Tuple[int, int] = (64, 64), nu_t: float = 8.0, noise_floor: float = 0.0):
        self.shape = tuple(shape)
        self.nu_t = nu_t
        #: the physical mode's absolute noise floor (physgrad.heat's noise_floor; 0: none, the
        #: training setting of the paper's code; the single-example optimization uses 1e-8)
        self.noise_floor = noise_floor

    def make_network(self) -> nn.Module:
        return UNet(in_channels=1, out_channels=1, levels=4, filters=16)

    def make_data(self, seed: int) -> HeatData:
        return HeatData(shape=self.shape, seed=seed, nu_t=self.nu_t)

    def postprocess(self, x: torch.Tensor, batch: Any) -> torch.Tensor:
        """Keep the observed mean: ``[B, ny, nx] -> [B, ny, nx]``."""
        return x - x.mean(dim=(-2, -1), keepdim=True) + batch.y_star.mean(dim=(-2, -1), keepdim=True)

    def simulate(self, x: torch.Tensor, batch: Any, grad_mode: Optional[str]) -> torch.Tensor:
        import physgrad
        return physgrad.heat(x, nu_t=self.nu_t, grad_mode=grad_mode, noise_floor=self.noise_floor)

    def options(self) -> Dict[str, Any]:
        options: Dict[str, Any] = {"shape": list(self.shape), "nu_t": self.nu_t}
        if self.noise_floor:  # recorded only when set: runs and checkpoints without it stay as they were
            options["noise_floor"] = self.noise_floor
        return options


EXPERIMENT = HeatExperiment
