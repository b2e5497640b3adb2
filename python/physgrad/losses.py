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
