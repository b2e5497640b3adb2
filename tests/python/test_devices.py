"""Tensors of another device or layout get physgrad's own message, naming the op and
what to do, for every op and mode (not the dispatcher's 'Could not run ...')."""
from __future__ import annotations

import pytest
import torch

import physgrad

CASES = {
    "poisson": lambda t: physgrad.poisson(t(torch.zeros(1, 4, 4))),
    "heat": lambda t: physgrad.heat(t(torch.zeros(1, 4, 4)), grad_mode="adjoint"),
    "fluid": lambda t: physgrad.fluid(t(torch.zeros(1, 2, 4, 4)), torch.zeros(1, 4, 4)),
    "fluid_sequence": lambda t: physgrad.fluid_sequence(t(torch.zeros(1, 2, 4, 4)), torch.zeros(1, 4, 4)),
    "sine": lambda t: physgrad.sine(t(torch.ones(3)), torch.ones(3)),
    "wave_packet": lambda t: physgrad.wave_packet(t(torch.ones(2, 2))),
    "wave_packet_fit": lambda t: physgrad.wave_packet_fit(t(torch.zeros(1, 256))),
}
MAKERS = {"meta": lambda x: x.to("meta"), "sparse": lambda x: x.to_sparse()}


@pytest.mark.parametrize("kind", MAKERS)
@pytest.mark.parametrize("op", CASES)
def test_other_devices_and_layouts_are_refused_with_physgrads_message(op, kind):
    with pytest.raises(ValueError, match=rf"physgrad\.{op}: physgrad ops run on the CPU with dense \(strided\) "
                                         r"tensors, got a tensor on device .* move it with \.cpu\(\)"):
        CASES[op](MAKERS[kind])


def test_requires_grad_goes_through_autograd_to_the_same_message():
    x = torch.zeros(1, 4, 4, device="meta", requires_grad=True)
    with pytest.raises(ValueError, match="physgrad.poisson: physgrad ops run on the CPU"):
        physgrad.poisson(x, grad_mode="adjoint")
