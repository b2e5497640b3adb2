"""Losses for training through physics ops."""
from __future__ import annotations

import torch


def l2(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1/2 * sum((y - target)**2)`` over every element, batch included.

    Why a sum and the 1/2: the backward of this loss is ``g = dL/dy = y - target``
    exactly, so the physical gradient's y-space target ``y - y_step * g`` equals
    ``target`` when ``y_step = 1``: the op's inverse solver is asked for the input
    that produces the target, which is the update of the paper (Eq. 5,
    Algorithm 1). A mean would scale ``g`` by ``1/N`` and turn the physical
    update into a step of ``1/N`` of the way. Adam is invariant to that scale,
    so the adjoint baseline trains the same with either.

    y, target: any equal shapes. Returns a scalar.
    """
    if y.shape != target.shape:
        raise ValueError(f"physgrad.losses.l2: y has shape {tuple(y.shape)} but target has {tuple(target.shape)}")
    return 0.5 * (y - target).pow(2).sum()


def frequency_loss(y: torch.Tensor, target: torch.Tensor, n: int = 1, falloff: float = 80.0,
                   threshold: float = 1e-5, ignore_mean: bool = True) -> torch.Tensor:
    """Frequency-weighted norm of the mismatch of 2-D fields: the fluid objective of
    the paper (B.5, ``|F(P(x) - y*)| . w``), as the authors' code computes it
    (PhiFlow's ``frequency_loss(actual - target, n=1, frequency_falloff=80,
    ignore_mean=True)``), summed over the batch.

    For each example, with ``d = y - target`` over the last two (spatial) axes of
    ``ny x nx`` cells::

        d      <- d - mean(d)                          (ignore_mean: the mean is not penalized)
        D(k)   = sum_r d(r) exp(-2 pi i k . r)         (unnormalized 2-D DFT)
        w(k)   = exp(-falloff^2 |k|^2 / 2),  k = (ky, kx) in cycles per cell (numpy's fftfreq)
        a(k)   = sqrt(max(|w(k) D(k)|^2, threshold))   (threshold keeps the gradient finite at 0)
        loss   = sum_k a(k)          (n = 1)    or   1/2 sum_k a(k)^2   (n = 2)

    and the loss is the sum over every leading (batch) axis, like :func:`l2`.
    Large ``falloff`` weights the low frequencies: with 80 on a 64x64 grid only
    the lowest few wave numbers count (w = 0.46 at |k| = 1/64, 0.044 at 2/64,
    9e-4 at 3/64); on a 16x16 grid the same falloff leaves only the mean.
    Note that ``sqrt(threshold)`` per frequency is a floor: a perfect match
    scores ``ny * nx * sqrt(threshold)`` per example, not 0.

    y, target: ``[..., ny, nx]`` of equal shapes, real. Returns a scalar.
    Differentiable (its gradient is the adjoint method's y-space gradient; the
    physical-gradient methods need :func:`l2`, whose gradient ``y - y*`` makes
    the inverse's target ``y*``).
    """
    if y.shape != target.shape:
        raise ValueError(f"physgrad.losses.frequency_loss: y has shape {tuple(y.shape)} but target has "
                         f"{tuple(target.shape)}")
    if y.dim() < 2:
        raise ValueError(f"physgrad.losses.frequency_loss: needs [..., ny, nx] fields, got shape {tuple(y.shape)}")
    if n not in (1, 2):
        raise ValueError(f"physgrad.losses.frequency_loss: n must be 1 or 2, got {n}")
    if not (threshold >= 0.0 and falloff == falloff):
        raise ValueError(f"physgrad.losses.frequency_loss: threshold must be >= 0 and falloff a number, got "
                         f"{threshold} and {falloff}")
    difference = y - target
    if ignore_mean:
        difference = difference - difference.mean(dim=(-2, -1), keepdim=True)
    ny, nx = difference.shape[-2:]
    real = torch.float64 if difference.dtype == torch.float64 else torch.float32
    ky = torch.fft.fftfreq(ny, dtype=real, device=difference.device)
    kx = torch.fft.fftfreq(nx, dtype=real, device=difference.device)
    weights = torch.exp(-0.5 * falloff ** 2 * (ky[:, None] ** 2 + kx[None, :] ** 2))
    spectrum = torch.fft.fft2(difference.to(real)) * weights
    power = spectrum.real ** 2 + spectrum.imag ** 2
    amplitude = torch.sqrt(torch.clamp(power, min=threshold))
    total = amplitude.sum() if n == 1 else 0.5 * amplitude.pow(2).sum()
    return total.to(y.dtype)
