"""Bring your own physics: a 1-D advection-diffusion op in torch, trained with adam and adam+pg.

The physics, not one of physgrad's built-ins: a periodic 1-D field ``u`` (``N`` cells of
unit size) is advected with speed ``c`` (first-order upwind) and diffused with
diffusivity ``nu`` (central differences), ``steps`` explicit steps of ``dt``::

    u <- u + d (u[i+1] - 2 u[i] + u[i-1]) - a (u[i] - u[i-1]),   d = nu dt, a = c dt

The scheme is linear, shift-invariant and periodic, so ``P`` is a circulant matrix: the
discrete Fourier transform diagonalizes it, with eigenvalues ``lambda_k = fft(P(delta))_k``
(the op's own impulse response). Mode k is damped by ``|lambda_k|`` (down to ~1e-3 at
k = 10 here): the inverse problem is ill-conditioned. The inverse asked for by the
``physical`` mode, started at x, is Tikhonov-regularized on the residual:

    x' = x + F^-1[ conj(lambda) (F(t) - lambda F(x)) / (|lambda|^2 + eps) ]

(exact where ``|lambda|^2 >> eps``; modes damped below ``sqrt(eps)`` keep x's value).

A small 1-D convolutional network learns ``x`` from ``y* = P(x*)`` (x*: random Fourier
series, amplitudes ``1/k`` up to ``k = 10``), trained by physgrad's training loop
(``physgrad.training.train``) with ``adam`` (the adjoint, plain backprop) and ``adam+pg``
(the physical gradient), from identical weights and batches. The printed result is the
x-space mean absolute error of both on a held-out batch.

    PYTHONPATH=python /usr/bin/python3 examples/advection_diffusion.py           # 1000 iterations
    PYTHONPATH=python /usr/bin/python3 examples/advection_diffusion.py --quick   # a few seconds
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn

import physgrad
from physgrad.data import FieldPair
from physgrad.experiments.base import Experiment
from physgrad.training import train

CELLS = 64
DIFFUSION = 0.2   # d = nu dt / h^2
ADVECTION = 0.3   # a = c dt / h (a + 2 d <= 1: stable)
STEPS = 16
EPSILON = 1e-8    # Tikhonov parameter of the inverse
MAX_MODE = 10     # highest wave number in x*


def advect_diffuse(u: torch.Tensor) -> torch.Tensor:
    """``STEPS`` explicit upwind-advection, central-diffusion steps on periodic fields ``u [B, N]``."""
    for _ in range(STEPS):
        left, right = torch.roll(u, 1, -1), torch.roll(u, -1, -1)
        u = u + DIFFUSION * (right - 2 * u + left) - ADVECTION * (u - left)
    return u


def eigenvalues(cells: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``lambda_k = fft(P(delta))_k``: the Fourier symbol of the whole simulation, ``[N]`` complex."""
    delta = torch.zeros(1, cells, dtype=dtype)
    delta[0, 0] = 1.0
    return torch.fft.fft(advect_diffuse(delta))[0]


def invert(target: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The regularized inverse started at x: ``x + F^-1[conj(l) (F(t) - l F(x)) / (|l|^2 + eps)]``, ``[B, N]``."""
    symbol = eigenvalues(x.shape[-1]).to(torch.complex128)
    x_hat = torch.fft.fft(x.double())
    residual_hat = torch.fft.fft(target.double()) - symbol * x_hat
    update = torch.fft.ifft(symbol.conj() * residual_hat / (symbol.abs() ** 2 + EPSILON)).real
    return (x.double() + update).to(x.dtype)


ADVECTION_DIFFUSION = physgrad.Op("advection_diffusion", forward=advect_diffuse, inverse=invert,
                                  doc="Periodic 1-D upwind advection and diffusion, 16 explicit steps (example).")


class FourierData:
    """x*: random Fourier series ``sum_k (a_k cos + b_k sin)(2 pi k i / N) / k``, k = 1..MAX_MODE,
    a_k, b_k standard normal; y* = P(x*). Batches are :class:`physgrad.data.FieldPair` ``[B, N]``."""

    def __init__(self, seed: int, cells: int = CELLS):
        self.seed, self.cells = seed, cells
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, batch_size: int, part: Optional[slice] = None) -> FieldPair:
        k = torch.arange(1, MAX_MODE + 1, dtype=torch.float64)
        phase = 2 * math.pi * torch.outer(k, torch.arange(self.cells, dtype=torch.float64)) / self.cells
        coefficients = torch.randn(batch_size, 2, MAX_MODE, generator=self.generator, dtype=torch.float64) / k
        x_star = (coefficients[:, 0] @ torch.cos(phase) + coefficients[:, 1] @ torch.sin(phase)).float()
        if part is not None:
            x_star = x_star[part].clone()
        with torch.no_grad():
            y_star = ADVECTION_DIFFUSION(x_star)
        return FieldPair(x_star, y_star)

    def state_dict(self) -> Dict[str, Any]:
        return {"seed": self.seed, "generator": self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.seed = state["seed"]
        self.generator.set_state(state["generator"])


class AdvectionDiffusionExperiment(Experiment):
    """Learn x from y* = P(x*) with a 1-D conv net, ``[B, 1, N] -> [B, 1, N]``: four circular
    convolutions of width 9 (receptive field 33 cells: the inverse reaches back over the
    advection's shift of ``STEPS * ADVECTION`` = 4.8 cells and the diffusion's spread)."""

    name = "advection_diffusion"
    description = "1-D advection-diffusion, a user op (physgrad.Op) with a regularized Fourier inverse"
    default_iterations = 1000
    default_batch_size = 32
    learning_rates = {"adam": 1e-3, "adam+pg": 1e-3}

    def make_network(self) -> nn.Module:
        layers = []
        for inputs, outputs in ((1, 32), (32, 32), (32, 32)):
            layers += [nn.Conv1d(inputs, outputs, 9, padding=4, padding_mode="circular"), nn.ReLU()]
        return nn.Sequential(*layers, nn.Conv1d(32, 1, 9, padding=4, padding_mode="circular"))

    def make_data(self, seed: int) -> FourierData:
        return FourierData(seed)

    def simulate(self, x: torch.Tensor, batch: Any, grad_mode: Optional[str]) -> torch.Tensor:
        return ADVECTION_DIFFUSION(x, grad_mode=grad_mode)


def x_error(network: nn.Module, batch: FieldPair) -> float:
    """x-space mean absolute error of the network on ``batch``."""
    with torch.no_grad():
        return float((network(batch.y_star.unsqueeze(1)).squeeze(1) - batch.x_star).abs().mean())


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (the tests' smoke run)")
    parser.add_argument("--iterations", type=int, default=None)
    args = parser.parse_args(argv)
    iterations = args.iterations or (150 if args.quick else AdvectionDiffusionExperiment.default_iterations)
    experiment = AdvectionDiffusionExperiment()
    test_batch = FourierData(seed=12345).sample(256)
    errors = {}
    for method in ("adam", "adam+pg"):
        history = train(experiment, method, iterations=iterations, seed=0, progress=False)
        errors[method] = x_error(history.network, test_batch)
    print(f"advection-diffusion, {iterations} iterations, batch {experiment.default_batch_size}: "
          f"x-MAE on 256 held-out examples")
    for method, error in errors.items():
        print(f"  {method:8s} {error:.4f}")
    print(f"  adam / adam+pg = {errors['adam'] / errors['adam+pg']:.1f}")
    return errors


if __name__ == "__main__":
    main()
