"""Specification tests for the plain-PyTorch GPEN re-implementation.

The fixture tests/fixtures/gpen_keys.json was derived from the upstream GPEN
code (see its ``source`` field): state_dict keys/shapes of the two released
BFR configurations and one forward output of a tiny configuration.
"""
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from metaf2n_plugin.archs.gpen_arch import GPEN, FusedLeakyReLU, fused_leaky_relu, upfirdn2d
from tolerances import chain_bound, gamma, network_steps, rounding_bound

MANIFEST = json.loads((Path(__file__).parent / 'fixtures' / 'gpen_keys.json').read_text())
CONFIGS = MANIFEST['configs']


def _build(config, device='meta'):
    with torch.device(device):
        return GPEN(**CONFIGS[config]['kwargs'])


@pytest.mark.parametrize('config, expected', [('gpen_bfr_512', 71_005_223), ('gpen_bfr_256', 18_879_010)])
def test_parameter_count(config, expected):
    assert CONFIGS[config]['num_params'] == expected
    assert sum(p.numel() for p in _build(config).parameters()) == expected


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_state_dict_matches_upstream_manifest(config):
    ours = {k: list(v.shape) for k, v in _build(config).state_dict().items()}
    assert ours == CONFIGS[config]['state_dict']


def test_strict_load_of_manifest_state_dict():
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) for k, shape in CONFIGS['gpen_bfr_256']['state_dict'].items()}
    net = _build('gpen_bfr_256', device='cpu')
    net.load_state_dict(state, strict=True)
    assert torch.equal(net.final_linear[0].weight, state['final_linear.0.weight'])
    assert torch.equal(net.generator.convs[0].conv.blur.kernel, state['generator.convs.0.conv.blur.kernel'])

    # Same for the 512 model, materialised straight from the (uninitialised) tensors.
    net = _build('gpen_bfr_512')
    state = {k: torch.empty(shape) for k, shape in CONFIGS['gpen_bfr_512']['state_dict'].items()}
    net.load_state_dict(state, strict=True, assign=True)
    assert all(t.device.type == 'cpu' for t in net.state_dict().values())


def _formula_tensor(shape, freq, amp, phase=0.0):
    n = math.prod(shape)
    return (amp * torch.sin(freq * torch.arange(n, dtype=torch.float64) + phase)).float().reshape(shape)


def test_forward_matches_upstream_reference_output():
    ref = MANIFEST['reference_forward']
    net = GPEN(**ref['kwargs']).eval()
    state = net.state_dict()
    for i, key in enumerate(sorted(state)):
        if not key.endswith('.kernel'):
            state[key] = _formula_tensor(state[key].shape, 0.37, 0.5, phase=i)
    net.load_state_dict(state, strict=True)
    shape = ref['output_shape']
    x = _formula_tensor(shape, 0.05, 0.9)
    with torch.no_grad():
        out = net(x)
        out64 = net.double()(x.double())  # the same float32 weights and input, computed in float64
    expected = torch.tensor(ref['output'], dtype=torch.float64).reshape(shape)
    # Upstream's float32 run (its own summation orders), stored with 6 decimals (half a unit of the 6th off).
    terms, magnitude = network_steps(net, x.double())
    upstream = chain_bound(torch.float32, terms, magnitude) + 0.5e-6
    ours64, ours32 = (chain_bound(dtype, terms, magnitude) for dtype in (torch.float64, torch.float32))
    torch.testing.assert_close(out64, expected, atol=upstream + ours64, rtol=0)
    torch.testing.assert_close(out.double(), out64, atol=ours32 + ours64, rtol=0)  # float32 behaviour


@pytest.mark.parametrize('isconcat', [True, False])
def test_forward_backward_small(isconcat):
    torch.manual_seed(0)
    net = GPEN(64, style_dim=64, n_mlp=2, channel_multiplier=1, narrow=0.125, isconcat=isconcat)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    out = net(x)
    assert out.shape == (2, 3, 64, 64)
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_forward_is_deterministic_and_draws_no_random_numbers():
    torch.manual_seed(0)
    net = GPEN(32, style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.0625)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    rng_state = torch.get_rng_state()
    with torch.no_grad():
        outs = [net.eval()(x), net.eval()(x), net.train()(x)]
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(outs[0], outs[2])


def test_bf16_autocast_close_to_fp32():
    torch.manual_seed(0)
    net = GPEN(32, style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.0625).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = net(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = net(x)
    assert low.shape == ref.shape and torch.isfinite(low).all()
    # bf16 autocast rounds each convolution's input, weights and output, and at most one elementwise result, to
    # bfloat16 (sums stay float32): 4 bfloat16 terms per layer, plus both runs' float32 sums. (A loose bound: it
    # checks that autocast ran, not how close bfloat16 stays.)
    terms, magnitude = network_steps(net, x)
    bound = chain_bound(torch.bfloat16, [4] * len(terms), magnitude) + 2 * chain_bound(torch.float32, terms, magnitude)
    assert 0 < (low.float() - ref).abs().max() <= bound
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max()  # what bf16 promises, as in test_fast_forward.py


def _naive_upfirdn2d(x, kernel, up, down, pad):
    """Literal definition: zero insertion, zero padding, true convolution (flipped kernel), subsampling."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    upsampled = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
    upsampled[:, :, ::up, ::up] = x
    p0, p1 = pad
    padded = torch.zeros(n, c, h * up + p0 + p1, w * up + p0 + p1, dtype=x.dtype)
    padded[:, :, p0:p0 + h * up, p0:p0 + w * up] = upsampled
    out_h = (padded.shape[2] - kh) // down + 1
    out_w = (padded.shape[3] - kw) // down + 1
    out = torch.zeros(n, c, out_h, out_w, dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = padded[:, :, i:i + (out_h - 1) * down + 1:down, j:j + (out_w - 1) * down + 1:down]
            out += kernel[kh - 1 - i, kw - 1 - j] * window
    return out


@pytest.mark.parametrize('up, down, pad', [(2, 1, (2, 1)), (1, 2, (2, 2)), (1, 1, (1, 1)), (2, 2, (1, 2))])
def test_upfirdn2d_matches_naive_definition(up, down, pad):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 6, generator=gen, dtype=torch.float64)
    kernel = torch.randn(4, 3, generator=gen, dtype=torch.float64)  # asymmetric: the flip matters
    expected = _naive_upfirdn2d(x, kernel, up, down, pad)
    out = upfirdn2d(x, kernel, up=up, down=down, pad=pad)
    assert out.shape == expected.shape
    # float64: each output a 4 x 3-tap dot product (+ 1 for the products), twice, in two orders.
    bound = 2 * rounding_bound(torch.float64, terms=4 * 3 + 1, magnitude=kernel.abs().sum() * x.abs().max())
    torch.testing.assert_close(out, expected, atol=bound.item(), rtol=0)


def test_fused_leaky_relu_formula():
    x = torch.tensor([[-1.0, 2.0]])
    b = torch.tensor([0.5, 0.5])
    expected = torch.tensor([[-0.1 * math.sqrt(2), 2.5 * math.sqrt(2)]])  # one rounding to float32
    # x + b is exact; the slope, the product, sqrt(2) and the scaling round: 4 + 1 roundings in all.
    torch.testing.assert_close(fused_leaky_relu(x, b), expected, rtol=gamma(torch.float32, 5), atol=0)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, 4, generator=gen)
    act = FusedLeakyReLU(5)
    with torch.no_grad():
        act.bias.copy_(torch.randn(5, generator=gen))
    expected = math.sqrt(2) * F.leaky_relu(x + act.bias.view(1, 5, 1, 1), 0.2)
    torch.testing.assert_close(act(x), expected, atol=0, rtol=0)  # exact by construction: the same operations


def test_rejects_size_that_is_not_a_power_of_two():
    with pytest.raises(ValueError):
        GPEN(96)
