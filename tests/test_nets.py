import re

import pytest
import torch

from dip_lightning.errors import InputError
from dip_lightning.nets import AutoEncoder, ConvNet, SkipNet


def test_paper_skip_net_matches_dip_reference_size():
    # DIP's skip net, 5 scales x 128 channels, 4 skip channels, 32 input channels: about 2.2 M parameters
    net = SkipNet(32, 3)
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(2.22e6, rel=0.01)


@pytest.mark.parametrize("dim, size", [(1, (64,)), (2, (32, 32))])
def test_nets_keep_spatial_size_and_output_range(dim, size):
    for net in (SkipNet(4, 2, width=8, depth=3, dim=dim), AutoEncoder(4, 2, width=8, depth=3, dim=dim),
                ConvNet(4, 2, width=8, depth=2, dim=dim, sigmoid=True)):
        out = net(torch.rand(2, 4, *size))
        assert out.shape == (2, 2, *size)
        assert 0 <= out.min() and out.max() <= 1


def test_per_scale_channels_override_width_and_depth():
    net = SkipNet(3, 1, channels_down=[8, 16], channels_up=[8, 16], channels_skip=[0, 4])
    assert net.depth == 2 and net.size_multiple == 4
    assert net.body.skip is None and net.body.deeper.skip is not None
    assert net(torch.rand(1, 3, 16, 16)).shape == (1, 1, 16, 16)


def test_auto_encoder_has_no_skip_connections():
    net = AutoEncoder(3, 3, width=8, depth=2)
    assert net.body.skip is None and net.body.deeper.skip is None


@pytest.mark.parametrize("kwargs, message", [
    ({"activation": "swish"}, "unknown activation"),
    ({"padding_mode": "mirror"}, "unknown padding_mode"),
    ({"upsample_mode": "cubic"}, "unknown upsample mode"),
    ({"downsample_mode": "lanczos"}, "unknown downsample mode"),
    ({"channels_down": [8], "channels_up": [8, 8]}, "one entry per scale"),
])
def test_bad_network_options_say_what_to_choose(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SkipNet(3, 3, width=8, depth=2, **kwargs)


def _runs(net, size) -> bool:
    """Whether a training-mode forward and backward pass works on an input of `size`, cropped as a task does."""
    cropped = [side - side % net.size_multiple for side in size]
    if 0 in cropped:
        return False
    try:
        net(torch.rand(1, 2, *cropped)).sum().backward()
        return True
    except (ValueError, RuntimeError):  # BatchNorm: one value per channel; reflection padding: too few pixels
        return False


@pytest.mark.parametrize("make", [SkipNet, AutoEncoder, ConvNet])
@pytest.mark.parametrize("padding_mode", ["reflect", "zeros", "replicate", "circular"])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_every_size_a_network_accepts_runs_and_a_refusal_names_a_working_choice(make, padding_mode, batch_norm):
    for depth, dim in [(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (3, 2)]:
        net = make(2, 1, width=2, depth=depth, padding_mode=padding_mode, batch_norm=batch_norm, dim=dim)
        for side in range(1, 2 ** (depth + 2) + 1):
            size = (side,) if dim == 1 else (side, side + 3)
            try:
                net.check_size(size)
            except InputError as refusal:
                message = str(refusal)
                assert "too small" in message and f"at least {net.min_side} px" in message
                choice = re.search(r"model\.net\.depth=(\d+)", message)
                if choice:  # the depth it names does fit
                    make(2, 1, width=2, depth=int(choice[1]), padding_mode=padding_mode, batch_norm=batch_norm,
                         dim=dim).check_size(size)
                continue
            assert _runs(net, size), (depth, dim, size)
        if dim == 1:  # in 1D the rule is exact: every refused size fails
            assert not _runs(net, (net.min_side - 1,)) or net.min_side == 1
