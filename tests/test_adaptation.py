"""adapt_to_faces: MetaF2N's inner step, checked against SGD written out by hand."""
import copy
import dataclasses
import re

import pytest
import torch
from basicsr.archs.edsr_arch import EDSR
from basicsr.archs.rrdbnet_arch import RRDBNet
from basicsr.archs.srvgg_arch import SRVGGNetCompact
from basicsr.archs.swinir_arch import SwinIR
from torch.func import functional_call
from torch.nn import functional as F

from metaf2n_plugin import OptionError, adapt_to_faces, memory
from metaf2n_plugin.archs.masknet_arch import MaskNet
from metaf2n_plugin.models.adaptation import (AdaptationSettings, NonFiniteInnerLoss, photo_step, step_memory_problem,
                                              step_path, stored_adaptation)
from metaf2n_plugin.models.frozen_body import RRDBNetTail, body_features
from metaf2n_plugin.models.tf1_bicubic import tf1_resize_bicubic


def tiny_sr(seed=0):
    torch.manual_seed(seed)
    return SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)


def tiny_mask(seed=1):
    torch.manual_seed(seed)
    return MaskNet(num_feat=8, num_conv=3)


def faces(n=3, size=8, seed=2):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=generator), torch.rand(n, 3, 4 * size, 4 * size, generator=generator)


def hand_written_steps(net, mask, lq, hq, lr, steps, upsample='torch', valid=None):
    """SGD on a copy of ``net``: ``loss.backward()`` and ``p -= lr * p.grad``, the textbook way."""
    net = copy.deepcopy(net)
    up = (
        F.interpolate(lq, scale_factor=4, mode='bicubic', align_corners=False)
        if upsample == 'torch' else tf1_resize_bicubic(lq, hq.shape[-2:]))
    weights = mask(torch.cat([up, hq], 1)).detach()
    for _ in range(steps):
        net.zero_grad()
        error = weights * (hq - net(lq)).abs()
        loss = error.mean() if valid is None else (error * valid).sum() / (3 * valid.sum())
        loss.backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= lr * p.grad
    return dict(net.named_parameters())


def assert_params_equal(adapted, expected):
    """Exact by construction: adapt_to_faces makes the hand-written steps' float32 operations in the same order
    (ATen's ``mean`` is ``sum / numel``, as the all-ones ``valid_mask`` loss), so no rounding can tell them apart."""
    assert adapted.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(adapted[name], expected[name], atol=0, rtol=0, msg=name)


@pytest.mark.parametrize('steps', [1, 2])
def test_steps_equal_hand_written_sgd_and_leave_the_network_untouched(steps):
    net, mask = tiny_sr(), tiny_mask()
    before = copy.deepcopy(net.state_dict())
    lq, hq = faces()
    adapted = adapt_to_faces(net, mask, lq, hq, AdaptationSettings(lr=0.05, steps=steps))
    assert_params_equal(adapted, hand_written_steps(net, mask, lq, hq, 0.05, steps))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert len(adapted.inner_losses) == steps and adapted.mask_weights.shape == (3, 1, 32, 32)
    moved = max((adapted[k] - p).abs().max().item() for k, p in net.named_parameters())
    assert moved > 1e-5


def test_adapted_parameters_run_with_functional_call_and_lower_the_inner_loss():
    net, mask = tiny_sr(), tiny_mask()
    lq, hq = faces()
    adapted = adapt_to_faces(net, mask, lq, hq, AdaptationSettings(lr=0.05))
    weights = adapted.mask_weights.detach()
    after = (weights * (hq - functional_call(net, adapted, (lq, ))).abs()).mean()
    assert after < adapted.inner_losses[0]


def test_params_regex_adapts_only_the_matching_parameters():
    net, mask = tiny_sr(), tiny_mask()
    lq, hq = faces()
    adapted = adapt_to_faces(net, mask, lq, hq, AdaptationSettings(params=r'^body\.0\.'))
    changed = {name for name, p in net.named_parameters() if not torch.equal(adapted[name], p)}
    assert changed == {'body.0.weight', 'body.0.bias'}
    assert all(adapted[name] is p for name, p in net.named_parameters() if name not in changed)
    with pytest.raises(ValueError, match="adaptation.params 'nothing' matches no parameter of SRVGGNetCompact"):
        adapt_to_faces(net, mask, lq, hq, AdaptationSettings(params='nothing'))


def test_valid_mask_restricts_the_mean_to_valid_pixels():
    net, mask = tiny_sr(), tiny_mask()
    lq, hq = faces()
    all_valid = adapt_to_faces(net, mask, lq, hq, valid_mask=torch.ones(3, 1, 32, 32))
    assert_params_equal(all_valid, adapt_to_faces(net, mask, lq, hq))
    valid = torch.ones(3, 1, 32, 32)
    valid[:, :, :, 20:] = 0
    garbage = hq.clone()
    garbage[..., 20:] = 1e3  # the loss must not see invalid pixels
    restricted = adapt_to_faces(net, mask, lq, garbage, valid_mask=valid)
    assert adapt_to_faces(net, mask, lq, garbage).inner_losses[0] > 100 * restricted.inner_losses[0]
    assert_params_equal(restricted, hand_written_steps(net, mask, lq, garbage, 0.01, 1, valid=valid))


def test_legacy_bicubic_feeds_masknet_tf1_resized_faces():
    net, mask = tiny_sr(), tiny_mask()
    lq, hq = faces()
    legacy = adapt_to_faces(net, mask, lq, hq, AdaptationSettings(lr=0.05, legacy_bicubic=True))
    assert_params_equal(legacy, hand_written_steps(net, mask, lq, hq, 0.05, 1, upsample='tf1'))
    assert not torch.allclose(legacy.mask_weights, adapt_to_faces(net, mask, lq, hq).mask_weights)


def test_without_masknet_every_pixel_weighs_one():
    net = tiny_sr()
    lq, hq = faces()
    ones = lambda x: torch.ones_like(x[:, :1])  # noqa: E731
    assert_params_equal(adapt_to_faces(net, None, lq, hq), hand_written_steps(net, ones, lq, hq, 0.01, 1))


def test_create_graph_keeps_the_path_to_masknet():
    net, mask = tiny_sr(), tiny_mask()
    lq, hq = faces()
    first_order = adapt_to_faces(net, mask, lq, hq)
    second_order = adapt_to_faces(net, mask, lq, hq, create_graph=True)
    target = 'body.0.weight'
    grad_mask = torch.autograd.grad(second_order[target].sum(), list(mask.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grad_mask)
    assert first_order[target].grad_fn is not None  # theta' = theta - lr * g still depends on theta
    assert torch.autograd.grad(first_order[target].sum(), list(mask.parameters()), allow_unused=True) == (None, ) * 6


def test_non_finite_inner_loss_raises_before_any_weight_is_written():
    net, mask = tiny_sr(), tiny_mask()
    lq, hq = faces()
    hq[0, 0, 0, 0] = float('nan')
    with pytest.raises(NonFiniteInnerLoss, match='not finite'):
        adapt_to_faces(net, mask, lq, hq)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_an_adapted_parameter_that_is_not_finite_raises_with_the_rate():
    net = tiny_sr()
    lq, hq = faces()
    gradients = torch.autograd.grad(F.l1_loss(net(lq), hq), list(net.parameters()))
    largest = max(grad.abs().max().item() for grad in gradients)
    lr = 2 * torch.finfo(torch.float32).max / largest  # finite, but lr * g overflows float32 for the largest g
    with pytest.raises(
            NonFiniteInnerLoss, match=re.escape(f'an adapted parameter is not finite (adaptation.lr {lr:g} too')):
        adapt_to_faces(net, None, lq, hq, AdaptationSettings(lr=lr))


@pytest.mark.parametrize('changes, message', [
    ({
        'lr': float('inf')
    }, 'adaptation.lr must be a finite number >= 0, got float inf'),
    ({
        'lr': float('nan')
    }, 'adaptation.lr must be a finite number >= 0, got float nan'),
    ({
        'params': '(['
    }, "adaptation.params '([' is not a regular expression (unterminated character set at position 1)"),
    ({
        'params': '*'
    }, "adaptation.params '*' is not a regular expression (nothing to repeat at position 0); give ~ "),
])
def test_settings_refuse_a_rate_that_is_not_finite_and_a_params_that_is_no_regex(changes, message):
    with pytest.raises(OptionError) as error:
        AdaptationSettings(**changes)
    assert str(error.value).startswith(message) and error.value.option == f'adaptation.{next(iter(changes))}'


@pytest.mark.parametrize('stored, message', [
    ({
        'legacy_bicubic': 'no'
    }, "the MaskNet file: adaptation.legacy_bicubic must be true or false, got str 'no'"),
    ({
        'adaptation': {
            'params': '(['
        }
    }, "the MaskNet file: adaptation.params '([' is not a regular expression"),
    ({
        'adaptation': {
            'lr': 1e400
        }
    }, 'the MaskNet file: adaptation.lr must be a finite number >= 0, got float inf'),
])
def test_settings_stored_in_a_masknet_file_are_checked_as_options_are(stored, message):
    with pytest.raises(OptionError, match=re.escape(message)):
        stored_adaptation({'params': {}, **stored})


def test_the_memory_check_offers_the_largest_patch_count_that_fits(monkeypatch):
    net = RRDBNet(3, 3, scale=4, num_feat=8, num_block=1, num_grow_ch=4)
    settings = AdaptationSettings(num_patches=200000)
    available = 2**30
    monkeypatch.setattr(memory, 'available_memory', lambda device=None: available)
    problem = step_memory_problem(net, 3, settings, 4)
    fits = int(re.search(r'adaptation.num_patches (\d+) would fit', problem)[1])
    assert memory.step_memory(net, 3 * fits, 64, 4) <= available < memory.step_memory(net, 3 * (fits + 1), 64, 4)
    assert problem.startswith('the adaptation step on 3 face(s) x 200000 patches of 64x64 pixels needs about ')
    assert step_memory_problem(net, 3, dataclasses.replace(settings, num_patches=fits), 4) is None
    huge = step_memory_problem(net, 1, AdaptationSettings(patch_size=100000), 4)
    assert huge.endswith('even one patch per face does not fit; lower adaptation.patch_size (64 by default)')


def test_the_memory_estimate_grows_with_an_rrdbnets_width_and_depth():
    small, wide = (RRDBNet(3, 3, scale=4, num_feat=f, num_block=b, num_grow_ch=4) for f, b in ((8, 1), (16, 2)))
    data = 4 * 7 * 64**2  # the patch data: HQ, MaskNet's upsampled LQ, the valid mask
    assert memory.step_memory(small, 1, 64, 4) == data + int(16**2 * memory.STEP_BYTES_PER_LR_PIXEL * 8 / (64 * 23))
    graph = memory.step_memory(small, 1, 64, 4) - data
    assert abs(memory.step_memory(wide, 1, 64, 4) - data - 4 * graph) <= 4  # twice the features, twice the blocks


@pytest.mark.parametrize('name, net', [
    ('RRDBNet', lambda: RRDBNet(3, 3, scale=4, num_feat=8, num_block=1, num_grow_ch=4)),
    ('SRVGGNetCompact', lambda: SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)),
    ('SwinIR', lambda: SwinIR(
        upscale=4,
        img_size=8,
        window_size=4,
        depths=[1],
        embed_dim=12,
        num_heads=[2],
        mlp_ratio=2,
        upsampler='pixelshuffle')),
    ('EDSR', lambda: EDSR(3, 3, num_feat=8, num_block=1, upscale=4)),
])
def test_any_basicsr_sr_architecture_adapts(name, net):
    torch.manual_seed(0)
    net = net()
    lq, hq = faces(n=2)
    adapted = adapt_to_faces(net, tiny_mask(), lq, hq, AdaptationSettings(lr=0.1))
    with torch.no_grad():
        out, plain = functional_call(net, adapted, (lq, )), net(lq)
    assert out.shape == plain.shape == (2, 3, 32, 32)
    assert (out - plain).abs().max() > 1e-6


def test_a_parameter_the_forward_does_not_use_keeps_its_value():
    net, mask = tiny_sr(), tiny_mask()
    net.unused = torch.nn.Linear(2, 2)
    lq, hq = faces()
    adapted = adapt_to_faces(net, mask, lq, hq)
    assert adapted['unused.weight'] is net.unused.weight
    assert not torch.equal(adapted['body.0.weight'], net.body[0].weight)


TAIL = '^(conv_up1|conv_up2|conv_hr|conv_last)\\.'


def step_inputs():
    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=4, num_feat=8, num_block=2, num_grow_ch=4)
    lq, hq = faces(n=6, size=16)
    valid = (torch.rand(6, 1, 64, 64, generator=torch.Generator().manual_seed(3)) > 0.2).float()
    return net, tiny_mask().requires_grad_(False), lq, hq, valid


def assert_same_step(adapted, expected):
    assert torch.equal(adapted.inner_losses[0], expected.inner_losses[0])
    assert torch.equal(adapted.mask_weights, expected.mask_weights)
    assert_params_equal(adapted, expected)


@pytest.mark.parametrize('params', [TAIL, None])
def test_the_exact_switch_is_todays_step_and_in_fp32_the_fast_step_equals_it_bit_for_bit(params):
    net, mask, lq, hq, valid = step_inputs()
    settings = AdaptationSettings(lr=0.5, params=params)
    today = adapt_to_faces(net, mask, lq, hq, settings, valid_mask=valid)  # 0.2's step: all in fp32, with graphs
    assert_same_step(photo_step(net, mask, lq, hq, valid, settings, 'bf16', exact=True), today)
    fast = photo_step(net, mask, lq, hq, valid, settings, 'fp32')
    assert_same_step(fast, today)
    assert fast.mask_weights.grad_fn is None  # MaskNet ran without a graph
    tail, why = step_path(net, settings)
    assert (tail is None, why) == ((False, None) if params else (True, '64 tensor(s) of its body change (e.g. '
                                                                 'body.0.rdb1.conv1.bias)'))


def test_in_bf16_the_fast_step_is_todays_step_on_the_bf16_features_and_weights():
    """What changes in bf16, and nothing else: the body's features and MaskNet's weights are bf16's (autocast), the
    tail's forward, its gradient and the update are fp32 as today."""
    net, mask, lq, hq, valid = step_inputs()
    settings = AdaptationSettings(lr=0.5, params=TAIL)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        features = body_features(net, lq).float()
        weights = mask(torch.cat([F.interpolate(lq, scale_factor=4, mode='bicubic'), hq], 1)).float()
    expected = adapt_to_faces(
        RRDBNetTail(net), lambda x: weights, lq, hq, settings, valid_mask=valid, net_input=features)
    fast = photo_step(net, mask, lq, hq, valid, settings, 'bf16')
    assert torch.equal(fast.inner_losses[0], expected.inner_losses[0]) and torch.equal(fast.mask_weights, weights)
    assert all(torch.equal(fast[name], value) for name, value in expected.items())
    assert all(fast[name] is value for name, value in net.named_parameters() if name not in expected)
    today = adapt_to_faces(net, mask, lq, hq, settings, valid_mask=valid)
    assert 0 < (fast.inner_losses[0] - today.inner_losses[0]).abs() < 1e-3  # bf16's rounding, not another step
