"""The sin and wave-packet experiments: every method runs and writes its outputs,
the B.1 network, the L-BFGS-B comparison table, figure 1, and the --seeds and
evaluate paths of the CLI. Short runs only (a few seconds each)."""
import json

import pytest
import torch

import physgrad
from physgrad import cli
from physgrad.experiments import get_experiment
from physgrad.experiments.wave_packet import (COLUMNS, WavePacketBatch, WavePacketNet, evaluate_against_fitter,
                                              first_iteration_below, pick_example)
from physgrad.nets import count_parameters
from physgrad.training import compare, format_table, read_history, train

PNG = b"\x89PNG\r\n\x1a\n"
SIN_METHODS = ["adam", "adam+pg", "adam+newton", "adam+inverse-gradient", "supervised"]
WAVE_METHODS = ["adam", "adam+newton", "adam+pg", "adam+lbfgs", "supervised"]


def test_sin_network_data_and_metric():
    experiment = get_experiment("sin")
    assert count_parameters(experiment.make_network()) == 461
    assert set(experiment.learning_rates) == set(SIN_METHODS)
    assert all(rate == 2e-3 for rate in experiment.learning_rates.values())
    data = experiment.make_data(3)
    batch = data.sample(1000)
    assert batch.a.shape == (1000,) and 0.1 <= float(batch.a.min()) and float(batch.a.max()) < 10.1
    torch.testing.assert_close(experiment.make_data(3).sample(1000).a, batch.a, rtol=0, atol=0)
    # labels: the minimum nearest to x0 = 1
    torch.testing.assert_close(physgrad.sine(batch.x_star.double(), batch.a.double()),
                               -torch.ones(1000, dtype=torch.float64), rtol=0, atol=1e-6)
    x = experiment.predict(experiment.make_network(), batch)
    assert x.shape == (1000,)
    # the metric is the objective sin(a/x) + 1, 0 at a minimum
    assert float(experiment.x_metric(batch.x_star, batch)) < 1e-6
    objective = (torch.sin(batch.a.double() / x.detach().double()) + 1).mean()
    assert float(experiment.x_metric(x, batch)) == pytest.approx(float(objective), rel=1e-9)


def test_sin_adam_is_the_clipped_adjoint():
    experiment = get_experiment("sin")
    batch = experiment.make_data(0).sample(64)
    x = (0.05 + torch.rand(64, generator=torch.Generator().manual_seed(1))).requires_grad_()
    experiment.y_loss(experiment.simulate(x, batch, "adjoint"), batch).backward()
    derivative = -batch.a / x.detach() ** 2 * torch.cos(batch.a / x.detach())
    expected = derivative.clamp(-1, 1) * (torch.sin(batch.a / x.detach()) + 1)
    torch.testing.assert_close(x.grad, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.usefixtures("one_thread")  # trains in this process
def test_sin_every_method_over_two_seeds_writes_per_seed_and_mean_results(tmp_path):
    results = compare(get_experiment("sin"), SIN_METHODS, iterations=6, batch_size=32, seeds=[5, 6],
                      out_dir=str(tmp_path), checkpoints=[3, 6], progress=False)
    for seed in (5, 6):
        for method in SIN_METHODS:
            assert (tmp_path / f"seed{seed}" / f"{method}.csv").is_file()
            assert (tmp_path / f"seed{seed}" / f"{method}.pt").is_file()
        assert (tmp_path / f"seed{seed}" / "learning_curves.png").read_bytes()[:8] == PNG
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == PNG
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metric"] == "objective" and saved["seeds"] == [5, 6]
    per_seed = saved["x_mae_per_seed"]
    for method in SIN_METHODS:
        mean = [(per_seed["5"][method][i] + per_seed["6"][method][i]) / 2 for i in range(2)]
        assert saved["x_mae"][method] == pytest.approx(mean)
    assert per_seed["5"]["adam"] != per_seed["6"]["adam"]
    table = format_table(results)
    assert "mean over seeds 5, 6 of the objective" in table and "seed 6:" in table
    log = read_history(str(tmp_path / "seed5" / "adam+pg.csv"))
    assert log.iteration == list(range(1, 7)) and all(0 <= v <= 2 for v in log.x_mae)


@pytest.mark.usefixtures("one_thread")  # trains in this process
def test_sin_physical_gradients_lower_the_objective():
    # Seed 5 starts with outputs away from x = 0; there the op's inverse (the minimum
    # nearest in x) leads the network to a minimum. From outputs near 0, where the
    # minima crowd, it need not (see benchmarks/RESULTS.md).
    history = train(get_experiment("sin"), "adam+pg", iterations=50, batch_size=1000, seed=5, progress=False)
    assert not history.diverged
    first, last = sum(history.x_mae[:5]) / 5, sum(history.x_mae[-10:]) / 10
    assert last < 0.5 * first, (first, last)


def test_wave_packet_network_has_the_b1_architecture_and_output_ranges():
    network = WavePacketNet()
    convolutions = [m for m in network.modules() if isinstance(m, torch.nn.Conv1d)]
    pools = [m for m in network.modules() if isinstance(m, torch.nn.MaxPool1d)]
    linears = [m for m in network.modules() if isinstance(m, torch.nn.Linear)]
    assert len(pools) == 5 and len(convolutions) == 10
    assert all(c.kernel_size == (3,) and c.out_channels == 16 for c in convolutions)
    assert [(m.in_features, m.out_features) for m in linears] == [(128, 64), (64, 32), (32, 2)]
    # convolutions 1*16*3+16 + 9 * (16*16*3+16); dense 128*64+64 + 64*32+32 + 32*2+2
    assert count_parameters(network) == 64 + 9 * 784 + 8256 + 2080 + 66 == 17522
    with torch.no_grad():
        for layer in linears[-1:]:
            layer.bias.copy_(torch.tensor([1e3, 0.0]))  # saturate the sigmoid
        params = network(100 * torch.randn(7, 256))
    assert params.shape == (7, 2)
    assert float(params[:, 0].max()) == pytest.approx(230.4)
    with torch.no_grad():
        linears[-1].bias.copy_(torch.tensor([-1e3, 0.0]))
        assert float(network(torch.zeros(3, 256))[:, 0].min()) == pytest.approx(25.6)
        linears[-1].weight.zero_()
        linears[-1].bias.zero_()
        torch.testing.assert_close(network(torch.randn(3, 256)), torch.tensor([[128.0, 2.0]] * 3))


def test_wave_packet_data_is_seeded_and_in_range():
    experiment = get_experiment("wave-packet")
    assert experiment.name == "wave-packet" and get_experiment("wave_packet").name == "wave-packet"
    batch = experiment.make_data(4).sample(500)
    assert batch.x_star.shape == (500, 2) and batch.y_star.shape == (500, 256)
    assert 25.6 <= float(batch.x_star[:, 0].min()) and float(batch.x_star[:, 0].max()) < 230.4
    assert 1.0 <= float(batch.x_star[:, 1].min()) and float(batch.x_star[:, 1].max()) < 4.0
    noise = batch.y_star.double() - physgrad.wave_packet(batch.x_star.double())
    assert float(noise.std()) == pytest.approx(1.0, rel=0.02)
    torch.testing.assert_close(experiment.make_data(4).sample(500).y_star, batch.y_star, rtol=0, atol=0)


@pytest.mark.usefixtures("one_thread")  # trains in this process
def test_wave_packet_every_method_trains_and_compare_ends_with_the_fitter_table(tmp_path, capsys):
    experiment = get_experiment("wave-packet", test_size=40)
    for method in WAVE_METHODS:
        history = train(experiment, method, iterations=2, batch_size=4, seed=0, out_dir=str(tmp_path / "train"),
                        progress=False)
        assert len(history.x_mae) == 2 and not history.diverged, method
        assert (tmp_path / "train" / f"{method}.csv").is_file()
    status = cli.main(["compare", "wave-packet", "--methods", "adam,adam+pg", "--iterations", "3",
                       "--batch-size", "4", "--checkpoints", "3", "--no-progress", "--threads", "1",
                       "--out", str(tmp_path / "compare")])
    printed = capsys.readouterr().out
    assert status == 0 and "xi0-MAE at iteration" in printed and "L-BFGS fit (unbounded)" in printed
    saved = json.loads((tmp_path / "compare" / "results.json").read_text())
    rows = saved["evaluation"]["rows"]
    assert list(rows) == ["L-BFGS fit (unbounded)", "L-BFGS-B fit (bounded)", "initial guess", "adam", "adam+pg"]
    assert set(COLUMNS[:4]) <= set(rows["adam"]) and "outside_range" in rows["L-BFGS-B fit (bounded)"]
    assert set(COLUMNS) - {"outside_range"} <= set(rows["adam+pg"])
    assert all(0.0 <= row["failed"] <= 1.0 for row in rows.values())
    assert (tmp_path / "compare" / "wave_packet_example.png").read_bytes()[:8] == PNG
    assert (tmp_path / "compare" / "evaluation.json").is_file()
    # the evaluate subcommand reloads the networks and logs and gives the same table
    status = cli.main(["evaluate", "wave-packet", "--run", str(tmp_path / "compare"), "--out", str(tmp_path / "ev")])
    again = capsys.readouterr().out
    assert status == 0 and (tmp_path / "ev" / "wave_packet_example.png").read_bytes()[:8] == PNG
    header = "method  y-loss  |xi0 err|  |A err|  failed  outside  y<fit at  xi0<fit at  y<fitB at  xi0<fitB at"
    assert " ".join(again.split("\n")[1].split()) == " ".join(header.split())
    assert again.split("\n")[2:6] == saved["evaluation"]["text"].split("\n")[2:6]


def test_evaluation_rows_are_the_fitter_and_network_errors():
    experiment = get_experiment("wave-packet", test_size=30)

    class Oracle(torch.nn.Module):
        """Predicts the truth: looked up by the observation."""

        def __init__(self, batch: WavePacketBatch):
            super().__init__()
            self.batch = batch
            self.dummy = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))

        def forward(self, y):
            return self.batch.x_star.double() + 0 * self.dummy

    from physgrad.experiments.wave_packet import TEST_SEED, WavePacketData
    batch = WavePacketData(TEST_SEED, dtype=torch.float64).sample(30)
    evaluation = evaluate_against_fitter(experiment, {"oracle": Oracle(batch)})
    oracle, fit = evaluation["rows"]["oracle"], evaluation["rows"]["L-BFGS-B fit (bounded)"]
    unbounded = evaluation["rows"]["L-BFGS fit (unbounded)"]
    assert oracle["xi0_mae"] == 0 and oracle["amplitude_mae"] == 0 and oracle["failed"] == 0
    assert oracle["y_loss"] == pytest.approx(0.5 * 256, rel=0.2)  # the noise alone
    fitted_free, _ = physgrad.wave_packet_fit(batch.y_star, bounded=False)
    assert unbounded["xi0_mae"] == pytest.approx(float((fitted_free[:, 0] - batch.x_star[:, 0]).abs().mean()))
    outside = (fitted_free[:, 0] < 25.6) | (fitted_free[:, 0] > 230.4) | (fitted_free[:, 1].abs() > 8)
    assert unbounded["outside_range"] == pytest.approx(float(outside.double().mean()))
    assert fit["outside_range"] == 0  # the bounds hold
    fitted, _ = physgrad.wave_packet_fit(batch.y_star)
    assert fit["xi0_mae"] == pytest.approx(float((fitted[:, 0] - batch.x_star[:, 0]).abs().mean()))
    assert fit["failed"] == pytest.approx(float(((fitted[:, 0] - batch.x_star[:, 0]).abs() > 20).double().mean()))
    assert fit["failed"] > 0  # some packets are too far from the start for L-BFGS-B
    index = evaluation["example"]["index"]
    assert abs(fitted_free[index, 0] - batch.x_star[index, 0]) > 20


def test_first_iteration_below_and_pick_example():
    assert first_iteration_below([5.0] * 10 + [0.0] * 10, 2.5, window=10) == 15
    assert first_iteration_below([5.0] * 20, 1.0) is None
    truth = torch.tensor([[50.0, 2.0], [200.0, 2.0], [100.0, 2.0]])
    fitted = torch.tensor([[128.0, 2.0], [128.0, 2.0], [101.0, 2.0]])
    predicted = torch.tensor([[52.0, 2.0], [150.0, 2.0], [100.0, 2.0]])
    assert pick_example(fitted, predicted, truth) == 0  # example 1: the network misses too
