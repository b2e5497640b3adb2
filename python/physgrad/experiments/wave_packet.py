"""Wave-packet fit (paper figure 1, appendix B.1): a network against per-example L-BFGS-B.

Data (on the fly, seeded; :class:`physgrad.data.wave_packet.WavePacketData`):
``xi0 ~ U[25.6, 230.4)``, ``A ~ U[1, 4)``, the packet
``A sin(4 xi) exp(-(xi - xi0)^2 / (2 * 20^2))`` (B.1) at ``xi = 0 .. 255``
(:func:`physgrad.wave_packet`) plus Gaussian noise on every sample. B.1 writes the
noise as ``N(0, 1)`` as far as the extracted text shows (the glyph is garbled);
``noise_std`` sets it.

Network (B.1, :class:`WavePacketNet`): five blocks of max-pool (2) and two 1-D
convolutions (kernel 3, 16 feature maps, ReLU), then fully connected layers of
64 and 32 neurons (ReLU) and a linear layer of 2 outputs. ``xi0`` goes through
a sigmoid scaled to ``[25.6, 230.4]``; ``A`` is the raw output offset by 2, the
fitter's initial guess (B.1: "the network output is offset by the same
amount"). 17,522 parameters.

Training: Adam lr 1e-3, batch 100, the unsupervised y-space loss
``0.5 ||P(xi0, A) - y*||^2`` against the noisy observation. Methods:
``adam`` (adjoint), ``adam+newton`` (one damped Gauss-Newton step),
``adam+pg`` (Gauss-Newton to convergence: the op's inverse), ``adam+lbfgs``
(32 L-BFGS iterations; about 10x slower per iteration than the others).
``supervised`` trains on the true parameters. The logged metric is the
xi0 MAE (samples).

:meth:`WavePacketExperiment.evaluate` compares trained networks with the
per-example fitter (:func:`physgrad.wave_packet_fit`, start (128, 2)), run
unbounded as the paper's baseline (it "diverges in 0.12% of cases") and bounded
to the data ranges, on a fixed seeded test set, and draws figure 1
(:mod:`physgrad.wave_packet_evaluation`, :mod:`physgrad.wave_packet_plots`).
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

# the data generator (physgrad.data.wave_packet), the evaluation against the fitter
# (physgrad.wave_packet_evaluation) and the figure (physgrad.wave_packet_plots) live
# in their own modules; their names stay importable from here
from ..data.wave_packet import (AMPLITUDE_RANGE, INITIAL_GUESS, SAMPLES, SIGMA,  # noqa: F401
                                XI0_RANGE, WavePacketBatch, WavePacketData)
from ..nets import mlp
from ..wave_packet_evaluation import (COLUMNS, FIT_BOUNDED, FIT_UNBOUNDED, TEST_SEED,  # noqa: F401
                                      evaluate_against_fitter, first_iteration_below,
                                      format_evaluation, outside_data_range, pick_example)
from ..wave_packet_plots import plot_example  # noqa: F401
from .base import Experiment

__all__ = ["WavePacketExperiment", "WavePacketNet", "INITIALIZATIONS", "EXPERIMENT",
           # re-exported
           "WavePacketData", "WavePacketBatch", "XI0_RANGE", "AMPLITUDE_RANGE", "INITIAL_GUESS",
           "SAMPLES", "SIGMA", "TEST_SEED", "COLUMNS", "FIT_UNBOUNDED", "FIT_BOUNDED",
           "evaluate_against_fitter", "first_iteration_below", "format_evaluation",
           "outside_data_range", "pick_example", "plot_example"]

#: weight initializations of :class:`WavePacketNet`: PyTorch's layer defaults, or
#: TensorFlow/Keras's (Glorot-uniform weights, zero biases); B.1 names none
INITIALIZATIONS = ("pytorch", "glorot")


class WavePacketNet(nn.Module):
    """The B.1 network: ``[B, samples]`` observation -> ``[B, 2]`` = (xi0, A)."""

    def __init__(self, samples: int = SAMPLES, blocks: int = 5, features: int = 16,
                 dense: Sequence[int] = (64, 32), xi0_range: Tuple[float, float] = XI0_RANGE,
                 amplitude_offset: float = INITIAL_GUESS[1], init: str = "pytorch"):
        super().__init__()
        if init not in INITIALIZATIONS:
            raise ValueError(f"WavePacketNet: init must be one of {', '.join(INITIALIZATIONS)}, got {init!r}")
        layers: List[nn.Module] = []
        channels = 1
        for _ in range(blocks):
            layers += [nn.MaxPool1d(2),
                       nn.Conv1d(channels, features, kernel_size=3, padding=1), nn.ReLU(),
                       nn.Conv1d(features, features, kernel_size=3, padding=1), nn.ReLU()]
            channels = features
        self.convolutions = nn.Sequential(*layers)
        self.dense = mlp([features * (samples >> blocks), *dense, 2])
        self.xi0_range = (float(xi0_range[0]), float(xi0_range[1]))
        self.amplitude_offset = float(amplitude_offset)
        if init == "glorot":
            # TensorFlow/Keras's default: Glorot-uniform weights, zero biases
            # (docs/wave-packet-study.md: the network then beats the fitter in 41-51
            # iterations instead of 86-256)
            for module in self.modules():
                if isinstance(module, (nn.Conv1d, nn.Linear)):
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.zeros_(module.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        raw = self.dense(self.convolutions(y.unsqueeze(1)).flatten(1))
        low, high = self.xi0_range
        xi0 = low + (high - low) * torch.sigmoid(raw[:, 0])
        return torch.stack([xi0, raw[:, 1] + self.amplitude_offset], 1)


class WavePacketExperiment(Experiment):
    """Fit ``(xi0, A)`` of noisy wave packets; ``noise_std`` per sample,
    ``lbfgs_iterations`` of the ``adam+lbfgs`` backward, ``test_size`` examples
    in :meth:`evaluate`, ``init`` the network's weight initialization
    (:data:`INITIALIZATIONS`)."""

    name = "wave-packet"
    description = "wave packet (xi0, A) from a noisy 256-sample series, vs L-BFGS-B (paper fig. 1, B.1)"
    default_iterations = 1000
    default_batch_size = 100
    learning_rates = {"adam": 1e-3, "adam+newton": 1e-3, "adam+pg": 1e-3, "adam+lbfgs": 1e-3,
                      "supervised": 1e-3}
    metric_name = "xi0-MAE"
    metric_description = "xi0 MAE  |xi0 - xi0*| (samples)"

    def __init__(self, noise_std: float = 1.0, lbfgs_iterations: int = 32, test_size: int = 1000,
                 init: str = "pytorch"):
        if init not in INITIALIZATIONS:
            raise ValueError(f"wave-packet: init must be one of {', '.join(INITIALIZATIONS)}, got {init!r}")
        self.init = init
        self.noise_std = noise_std
        self.lbfgs_iterations = lbfgs_iterations
        self.test_size = test_size

    def make_network(self) -> nn.Module:
        return WavePacketNet(init=self.init)

    def make_data(self, seed: int) -> WavePacketData:
        return WavePacketData(seed, self.noise_std)

    def network_input(self, batch: WavePacketBatch) -> torch.Tensor:
        return batch.y_star

    def predict(self, network: nn.Module, batch: WavePacketBatch) -> torch.Tensor:
        """``[B, 2]`` = (xi0, A)."""
        return network(self.network_input(batch))

    def simulate(self, x: torch.Tensor, batch: WavePacketBatch, grad_mode: Optional[str]) -> torch.Tensor:
        import physgrad
        return physgrad.wave_packet(x, grad_mode=grad_mode, samples=SAMPLES, sigma=SIGMA,
                                    lbfgs_iterations=self.lbfgs_iterations)

    def x_metric(self, x: torch.Tensor, batch: WavePacketBatch) -> torch.Tensor:
        """Mean ``|xi0 - xi0*|`` in samples."""
        return (x[:, 0] - batch.x_star[:, 0]).abs().mean()

    def options(self) -> Dict[str, Any]:
        return {"noise_std": self.noise_std, "lbfgs_iterations": self.lbfgs_iterations,
                "test_size": self.test_size, "init": self.init}

    def evaluate(self, networks: Dict[str, nn.Module], out_dir: Optional[str] = None,
                 histories: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The fitter comparison on the test set; see :func:`evaluate_against_fitter`."""
        return evaluate_against_fitter(self, networks, out_dir, histories)


EXPERIMENT = WavePacketExperiment
