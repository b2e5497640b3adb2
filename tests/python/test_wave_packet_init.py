"""WavePacketNet's init option: PyTorch's layer defaults or Glorot-uniform weights
with zero biases (docs/wave-packet-study.md)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from physgrad.experiments import get_experiment
from physgrad.experiments.wave_packet import WavePacketNet


def _layers(network):
    return [m for m in network.modules() if isinstance(m, (nn.Conv1d, nn.Linear))]


def test_glorot_weights_within_the_xavier_bound_and_zero_biases():
    torch.manual_seed(0)
    network = WavePacketNet(init="glorot")
    for layer in _layers(network):
        fan_in = layer.weight[0].numel()
        fan_out = layer.weight.shape[0] * (layer.weight[0, 0].numel() if layer.weight.dim() == 3 else 1)
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert float(layer.weight.abs().max()) <= bound
        assert float(layer.weight.abs().max()) > 0.8 * bound  # uniform up to the bound
        assert torch.count_nonzero(layer.bias) == 0


def test_default_is_pytorchs_and_the_experiment_passes_the_option():
    torch.manual_seed(0)
    default = WavePacketNet()
    assert any(torch.count_nonzero(layer.bias) > 0 for layer in _layers(default))
    experiment = get_experiment("wave-packet", init="glorot")
    assert experiment.options()["init"] == "glorot"
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in _layers(experiment.make_network()))
    with pytest.raises(ValueError, match="init must be one of pytorch, glorot"):
        get_experiment("wave-packet", init="he")
