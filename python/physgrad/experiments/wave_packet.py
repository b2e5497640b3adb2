"""Wave-packet fit (paper figure 1, appendix B.1): a network against per-example L-BFGS-B.

Data (on the fly, seeded): ``xi0 ~ U[25.6, 230.4)``, ``A ~ U[1, 4)``, the packet
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
to the data ranges, on a fixed seeded test set, and draws figure 1.
"""
import json
import math
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

from ..nets import mlp
from .base import Experiment

XI0_RANGE = (25.6, 230.4)
AMPLITUDE_RANGE = (1.0, 4.0)
#: L-BFGS-B's start and the network's output offset (B.1)
INITIAL_GUESS = (128.0, 2.0)
SAMPLES = 256
SIGMA = 20.0
#: seed of the evaluation test set (far from the training seeds)
TEST_SEED = 1_000_003


class WavePacketBatch(NamedTuple):
    """``x_star``: true ``(xi0, A)``, ``[B, 2]``; ``y_star``: the noisy observation, ``[B, 256]``."""
    x_star: torch.Tensor
    y_star: torch.Tensor


class WavePacketData:
    """Endless seeded batches of noisy wave packets (B.1)."""

    def __init__(self, seed: int = 0, noise_std: float = 1.0, dtype: torch.dtype = torch.float32):
        self.seed = seed
        self.noise_std = noise_std
        self.dtype = dtype
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, batch_size: int, part: Optional[slice] = None) -> WavePacketBatch:
        """Next batch; with ``part`` only those examples (data-parallel training:
        the random numbers are drawn for the whole batch, the packets computed
        for the part)."""
        import physgrad
        g, f64 = self.generator, torch.float64
        xi0 = XI0_RANGE[0] + (XI0_RANGE[1] - XI0_RANGE[0]) * torch.rand(batch_size, generator=g, dtype=f64)
        amplitude = AMPLITUDE_RANGE[0] + (AMPLITUDE_RANGE[1] - AMPLITUDE_RANGE[0]) * torch.rand(
            batch_size, generator=g, dtype=f64)
        x_star = torch.stack([xi0, amplitude], 1)
        if part is not None:
            x_star = x_star[part].clone()
        with torch.no_grad():
            clean = physgrad.wave_packet(x_star, samples=SAMPLES, sigma=SIGMA)
        noise = torch.randn(batch_size, SAMPLES, generator=g, dtype=f64)
        if part is not None:
            noise = noise[part]
        noisy = clean + self.noise_std * noise
        return WavePacketBatch(x_star.to(self.dtype), noisy.to(self.dtype))

    def state_dict(self) -> Dict[str, Any]:
        return {"seed": self.seed, "generator": self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.seed = state["seed"]
        self.generator.set_state(state["generator"])


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


def _row(params: torch.Tensor, batch: WavePacketBatch) -> Dict[str, float]:
    """Per-example means of the y-loss ``0.5||P(p) - y*||^2``, |xi0| and |A| errors,
    and the fraction with ``|xi0 error| > sigma``."""
    import physgrad
    params = params.detach().double()
    y = physgrad.wave_packet(params, samples=SAMPLES, sigma=SIGMA)
    error = (params - batch.x_star.double()).abs()
    return {"y_loss": float(0.5 * (y - batch.y_star.double()).pow(2).sum(1).mean()),
            "xi0_mae": float(error[:, 0].mean()), "amplitude_mae": float(error[:, 1].mean()),
            "failed": float((error[:, 0] > SIGMA).double().mean())}


def first_iteration_below(values: Sequence[float], level: float, window: int = 10) -> Optional[int]:
    """The first iteration (from 1) at which the trailing mean of ``values`` over
    ``window`` iterations is at or below ``level``; None if never."""
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        if i + 1 >= window and total / window <= level:
            return i + 1
    return None


COLUMNS = ("y_loss", "xi0_mae", "amplitude_mae", "failed", "outside_range", "beats_fit_y_loss_at",
           "beats_fit_xi0_at", "beats_fit_bounded_y_loss_at", "beats_fit_bounded_xi0_at")
#: the two fitter rows: the paper's (unbounded: it "diverges in 0.12% of cases") and one kept
#: within the data ranges
FIT_UNBOUNDED = "L-BFGS fit (unbounded)"
FIT_BOUNDED = "L-BFGS-B fit (bounded)"


def _outside_data_range(params: torch.Tensor) -> torch.Tensor:
    """Examples whose parameters left the data ranges (or are not finite): the
    unbounded fitter's divergences."""
    inside = ((params[:, 0] >= XI0_RANGE[0]) & (params[:, 0] <= XI0_RANGE[1])
              & (params[:, 1].abs() <= 2 * AMPLITUDE_RANGE[1]) & torch.isfinite(params).all(1))
    return ~inside


def evaluate_against_fitter(experiment: WavePacketExperiment, networks: Dict[str, nn.Module],
                            out_dir: Optional[str] = None, histories: Optional[Dict[str, Any]] = None
                            ) -> Dict[str, Any]:
    """Evaluate ``networks`` (method -> trained net) and L-BFGS-B on ``experiment.test_size``
    test examples drawn with :data:`TEST_SEED`.

    The fitter runs twice: unbounded (L-BFGS, the paper's baseline, whose
    divergences leave the data range) and bounded to the data ranges
    (L-BFGS-B). Per row: mean y-loss (per example, against the noisy
    observation), mean |xi0| and |A| errors, the fraction of failures
    (|xi0 error| > sigma = 20), the fraction outside the data range (xi0
    outside [25.6, 230.4] or |A| > 8 or not finite), and, from the training
    logs in ``histories`` (method -> History), the first iteration whose
    10-iteration mean training y-loss / xi0 MAE is at or below the unbounded
    fitter's (``beats_fit_*``) and the bounded one's (``beats_fit_bounded_*``). With ``out_dir``, writes ``evaluation.json`` and
    ``wave_packet_example.png`` (figure 1). Returns a JSON-ready dict; its
    ``"text"`` is the table.
    """
    import physgrad
    batch = WavePacketData(TEST_SEED, experiment.noise_std, dtype=torch.float64).sample(experiment.test_size)
    rows: Dict[str, Dict[str, Any]] = {}
    fits: Dict[str, torch.Tensor] = {}
    for name, bounded in ((FIT_UNBOUNDED, False), (FIT_BOUNDED, True)):
        fitted, converged = physgrad.wave_packet_fit(
            batch.y_star, initial=INITIAL_GUESS, lower=(XI0_RANGE[0], AMPLITUDE_RANGE[0]),
            upper=(XI0_RANGE[1], AMPLITUDE_RANGE[1]), samples=SAMPLES, sigma=SIGMA, bounded=bounded)
        fits[name] = fitted
        rows[name] = _row(fitted, batch)
        rows[name]["fit_converged"] = float(converged.double().mean())
        rows[name]["outside_range"] = float(_outside_data_range(fitted).double().mean())
    fitted = fits[FIT_UNBOUNDED]
    fit = rows[FIT_UNBOUNDED]
    guess = torch.tensor([INITIAL_GUESS], dtype=torch.float64).expand(len(fitted), 2)
    rows["initial guess"] = _row(guess, batch)
    predictions: Dict[str, torch.Tensor] = {}
    for method, network in networks.items():
        network.eval()
        with torch.no_grad():
            predictions[method] = network(batch.y_star.to(next(network.parameters()).dtype)).double()
        rows[method] = _row(predictions[method], batch)
        history = (histories or {}).get(method)
        if history is not None:
            for suffix, reference in (("", fit), ("_bounded", rows[FIT_BOUNDED])):
                rows[method][f"beats_fit{suffix}_y_loss_at"] = first_iteration_below(history.y_loss,
                                                                                    reference["y_loss"])
                rows[method][f"beats_fit{suffix}_xi0_at"] = first_iteration_below(history.x_mae,
                                                                                  reference["xi0_mae"])
    evaluation: Dict[str, Any] = {"test_seed": TEST_SEED, "test_size": experiment.test_size,
                                  "noise_std": experiment.noise_std, "columns": list(COLUMNS), "rows": rows}
    if predictions:
        best = min(predictions, key=lambda m: rows[m]["xi0_mae"])
        index = pick_example(fitted, predictions[best], batch.x_star)
        evaluation["example"] = {"index": index, "network": best,
                                 "truth": batch.x_star[index].tolist(), "fit": fitted[index].tolist(),
                                 "network_params": predictions[best][index].tolist()}
        if out_dir is not None:
            evaluation["figure"] = plot_example(batch.y_star[index], batch.x_star[index], fitted[index],
                                                predictions[best][index], best,
                                                os.path.join(out_dir, "wave_packet_example.png"))
    evaluation["text"] = format_evaluation(evaluation)
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        evaluation["evaluation_json"] = os.path.join(out_dir, "evaluation.json")
        with open(evaluation["evaluation_json"], "w") as stream:
            json.dump(evaluation, stream, indent=2)
    return evaluation


def pick_example(fitted: torch.Tensor, predicted: torch.Tensor, truth: torch.Tensor) -> int:
    """An example where the fitter misses the packet (|xi0 error| > sigma) and the
    network finds it: the largest fitter error among those with network error
    below sigma / 4 (falling back to the largest fitter-minus-network error)."""
    fit_error = (fitted[:, 0] - truth[:, 0]).abs()
    net_error = (predicted[:, 0] - truth[:, 0]).abs()
    found = (fit_error > SIGMA) & (net_error < SIGMA / 4)
    score = torch.where(found, fit_error, fit_error - net_error - 1e9)
    return int(score.argmax())


def plot_example(observed: torch.Tensor, truth: torch.Tensor, fitted: torch.Tensor, predicted: torch.Tensor,
                 network_name: str, path: str) -> str:
    """Figure 1: the noisy series, the true packet, the L-BFGS-B fit and the network's, as PNG."""
    import physgrad
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    packets = physgrad.wave_packet(torch.stack([truth, fitted, predicted]).double(), samples=SAMPLES, sigma=SIGMA)
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


def format_evaluation(evaluation: Dict[str, Any]) -> str:
    """The comparison table as text."""
    header = ("method", "y-loss", "|xi0 err|", "|A err|", "failed", "outside", "y<fit at", "xi0<fit at",
              "y<fitB at", "xi0<fitB at")
    lines = [f"test set: {evaluation['test_size']} examples (seed {evaluation['test_seed']}, noise std "
             f"{evaluation['noise_std']}); failed: |xi0 error| > sigma = {SIGMA:g}; "
             "'<fit at': first training iteration whose 10-iteration mean beats the unbounded fitter "
             "(the paper's), '<fitB at': the bounded one",
             f"{header[0]:<26}" + "".join(f"{h:>12}" for h in header[1:])]
    for name, row in evaluation["rows"].items():
        cells = [f"{row['y_loss']:.4g}", f"{row['xi0_mae']:.4g}", f"{row['amplitude_mae']:.4g}",
                 f"{100 * row['failed']:.1f}%",
                 "-" if row.get("outside_range") is None else f"{100 * row['outside_range']:.1f}%"]
        cells += ["-" if row.get(key) is None else str(row[key]) for key in COLUMNS[5:]]
        lines.append(f"{name:<26}" + "".join(f"{c:>12}" for c in cells))
    if "example" in evaluation:
        example = evaluation["example"]
        lines.append(f"figure-1 example: test index {example['index']}, truth {_pair(example['truth'])}, "
                     f"unbounded fit {_pair(example['fit'])}, {example['network']} {_pair(example['network_params'])}"
                     + (f" -> {evaluation['figure']}" if "figure" in evaluation else ""))
    return "\n".join(lines)


def _pair(values: Sequence[float]) -> str:
    return f"({values[0]:.1f}, {values[1]:.2f})" if all(map(math.isfinite, values)) else str(values)


EXPERIMENT = WavePacketExperiment
