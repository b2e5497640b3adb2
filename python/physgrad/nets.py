"""Networks used by the paper's experiments: a 2-D U-net and a plain MLP.

The U-net reproduces the architecture of the paper's appendix B.3 (the one
PhiFlow's ``phi.torch.nets.u_net`` builds, which the authors used):

* an input block of two (Conv3x3 + BatchNorm + ReLU) at full resolution,
* ``levels - 1`` down steps: MaxPool 2x2, then two (Conv3x3 + BN + ReLU),
* ``levels - 1`` up steps: bilinear upsampling to the skip's size,
  concatenation ``[skip, upsampled]`` along channels, then two
  (Conv3x3 + BN + ReLU),
* a final 1x1 convolution to ``out_channels``.

With ``in_channels=1, out_channels=1, levels=4, filters=16`` this has exactly
37,697 trainable parameters (paper B.3); with ``in_channels=2,
out_channels=2, levels=5`` exactly 49,570 (paper B.5, fluid).
"""
from typing import List, Sequence, Type, Union

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["UNet", "mlp", "count_parameters"]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class _ConvBlocks(nn.Sequential):
    """Two blocks of Conv3x3 (zero padding 1) + BatchNorm + ReLU.

    [B, in_channels, H, W] -> [B, out_channels, H, W].
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-net with max-pool down, bilinear up and concatenated skips.

    Args:
        in_channels: feature maps of the input (1 for Poisson/heat: y*;
            2 for fluid: [m0, m_t]).
        out_channels: feature maps of the output (1: x; 2: a velocity field).
        levels: resolution levels including the full one (paper: 4; fluid: 5).
            The input is max-pooled ``levels - 1`` times.
        filters: feature maps of every convolution, one int for all levels
            (paper: 16) or one per level, finest first.

    Shapes:
        input ``[B, in_channels, ny, nx]`` -> output ``[B, out_channels, ny, nx]``
        for any ``ny, nx >= 2**(levels-1)``. Sizes that do not halve evenly
        (e.g. 60 -> 30 -> 15 -> 7) work: the upsampled map is interpolated to
        the exact size of its skip connection.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, levels: int = 4,
                 filters: Union[int, Sequence[int]] = 16):
        super().__init__()
        if levels < 1:
            raise ValueError(f"UNet needs levels >= 1, got {levels}")
        widths: List[int] = [filters] * levels if isinstance(filters, int) else list(filters)
        if len(widths) != levels:
            raise ValueError(f"UNet got {len(widths)} filter counts for {levels} levels")
        self.levels = levels
        self.input_blocks = _ConvBlocks(in_channels, widths[0], widths[0])
        self.down_blocks = nn.ModuleList(
            _ConvBlocks(widths[i - 1], widths[i], widths[i]) for i in range(1, levels))
        # up_blocks[j], coarsest first, brings level i = levels - 1 - j back to
        # level i - 1: its input is the skip of level i - 1 concatenated with
        # the upsampled level-i features; the first conv reduces to half of
        # that, as in PhiFlow (32 // 2 == 16 feature maps).
        self.up_blocks = nn.ModuleList(
            _ConvBlocks(widths[i] + widths[i - 1], (widths[i] + widths[i - 1]) // 2, widths[i - 1])
            for i in range(levels - 1, 0, -1))
        self.output_conv = nn.Conv2d(widths[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_channels, ny, nx] -> [B, out_channels, ny, nx]."""
        if x.dim() != 4:
            raise ValueError("UNet expects input of shape [B, C, ny, nx]")
        features = self.input_blocks(x)
        skips: List[torch.Tensor] = []
        for down in self.down_blocks:
            skips.append(features)
            features = down(F.max_pool2d(features, kernel_size=2))
        for j, up in enumerate(self.up_blocks):
            skip = skips[len(skips) - 1 - j]
            upsampled = F.interpolate(features, size=[skip.shape[-2], skip.shape[-1]],
                                      mode="bilinear", align_corners=False)
            features = up(torch.cat([skip, upsampled], dim=1))
        return self.output_conv(features)


def mlp(sizes: Sequence[int], activation: Type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Fully connected network with a bias in every layer.

    Args:
        sizes: neurons per layer, input first, output last; the paper's sin
            experiment (B.2) uses ``(1, 10, 20, 10, 1)``: 461 parameters.
        activation: module class applied after every hidden layer (not after
            the output layer).

    Shapes: ``[B, sizes[0]] -> [B, sizes[-1]]``.
    """
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {list(sizes)}")
    layers: List[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)
