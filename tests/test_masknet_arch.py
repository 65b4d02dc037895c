"""MaskNet: the layer stack of the paper's mask network, non-negative weights, built from options."""
import pytest
import torch
from basicsr.archs import build_network


def test_options_build_the_original_stack():
    net = build_network({'type': 'MaskNet', 'num_in_ch': 6, 'num_feat': 64, 'num_conv': 8})
    shapes = [tuple(conv.weight.shape) for conv in net.convs]
    assert shapes == [(64, 6, 3, 3)] + [(64, 64, 3, 3)] * 6 + [(1, 64, 3, 3)]
    # 6*64*9+64 + 6*(64*64*9+64) + 64*9+1
    assert sum(p.numel() for p in net.parameters()) == 225_665
    assert all(torch.count_nonzero(conv.bias) == 0 for conv in net.convs)


def test_output_is_one_nonnegative_weight_per_pixel():
    torch.manual_seed(0)
    net = build_network({'type': 'MaskNet', 'num_feat': 16})
    lq_up, restored = torch.rand(2, 3, 20, 24), torch.rand(2, 3, 20, 24)
    weights = net(torch.cat([lq_up, restored], dim=1))
    assert weights.shape == (2, 1, 20, 24)
    assert weights.min() >= 0 and weights.max() > 0


def test_last_relu_clips_negative_predictions_to_zero():
    net = build_network({'type': 'MaskNet', 'num_feat': 8, 'num_conv': 3})
    with torch.no_grad():
        net.convs[-1].bias.fill_(-1e3)
    assert torch.count_nonzero(net(torch.rand(1, 6, 8, 8))) == 0


def test_matches_a_plain_sequential_reference():
    torch.manual_seed(0)
    net = build_network({'type': 'MaskNet', 'num_feat': 8, 'num_conv': 3})
    x = torch.rand(1, 6, 9, 9)
    ref = x
    for conv in net.convs:
        ref = torch.relu(torch.nn.functional.conv2d(ref, conv.weight, conv.bias, padding=1))
    torch.testing.assert_close(net(x), ref)  # exact by construction: the same F.conv2d and ReLU calls


def test_needs_at_least_two_convolutions():
    with pytest.raises(ValueError, match='num_conv >= 2'):
        build_network({'type': 'MaskNet', 'num_conv': 1})
