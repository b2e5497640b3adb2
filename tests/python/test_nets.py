"""The paper's networks: U-net (B.3, B.5) and MLP (B.2)."""
import pytest
import torch

from physgrad.nets import UNet, count_parameters, mlp


def test_default_unet_has_the_papers_37697_parameters():
    assert count_parameters(UNet()) == 37_697


def test_five_level_two_channel_unet_has_the_fluid_experiments_49570_parameters():
    assert count_parameters(UNet(in_channels=2, out_channels=2, levels=5)) == 49_570


@pytest.mark.parametrize("shape", [(64, 64), (60, 80), (37, 23), (8, 8)])
def test_unet_output_has_the_input_grid_for_even_and_odd_sizes(shape):
    torch.manual_seed(0)
    net = UNet().double()
    x = torch.randn(2, 1, *shape, dtype=torch.float64, requires_grad=True)
    y = net(x)
    assert y.shape == (2, 1, *shape)
    y.square().sum().backward()
    # the input gradient is the loss's derivative: a central difference along a random direction
    # (to 1e-3: over the many ReLU and max-pool kinks the difference is not exact)
    direction = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eps = 1e-6
        difference = (net(x + eps * direction).square().sum() - net(x - eps * direction).square().sum()) / (2 * eps)
    assert (x.grad * direction).sum().item() == pytest.approx(difference.item(), rel=1e-3)


def test_fluid_unet_maps_two_channels_to_two_channels():
    net = UNet(in_channels=2, out_channels=2, levels=5)
    assert net(torch.randn(2, 2, 64, 64)).shape == (2, 2, 64, 64)


def test_unet_accepts_per_level_filters_and_checks_their_count():
    assert UNet(filters=(8, 16, 32, 64))(torch.randn(2, 1, 32, 32)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="3 filter counts for 4 levels"):
        UNet(filters=(8, 16, 32))


def test_unet_rejects_input_without_channel_dimension():
    with pytest.raises(ValueError, match=r"\[B, C, ny, nx\]"):
        UNet()(torch.zeros(2, 16, 16))


def test_scripted_unet_matches_eager():
    torch.manual_seed(0)
    net = UNet().eval()
    scripted = torch.jit.script(net)
    x = torch.randn(2, 1, 60, 80)
    torch.testing.assert_close(scripted(x), net(x))


def test_sin_experiments_mlp_has_461_parameters_and_maps_batches():
    net = mlp([1, 10, 20, 10, 1])
    assert count_parameters(net) == 461
    assert net(torch.rand(5, 1)).shape == (5, 1)
    assert isinstance(net[-1], torch.nn.Linear), "no activation after the output layer"


def test_mlp_uses_the_given_activation():
    net = mlp([2, 3, 1], activation=torch.nn.Tanh)
    assert [type(m) for m in net] == [torch.nn.Linear, torch.nn.Tanh, torch.nn.Linear]
