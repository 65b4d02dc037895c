"""Tiling and FastForward: even and fixed-size tiles, channels_last, bf16 and torch.compile give the eager output, one
compilation; the even grid's work stays near the photo's."""
import pytest
import torch
from basicsr.archs.rrdbnet_arch import RRDBNet
from torch import nn
from torch.func import functional_call

from metaf2n_plugin.models.fast_forward import FastForward
from metaf2n_plugin.models.frozen_body import RRDBNetBody
from metaf2n_plugin.models.tiling import tile_windows, tiled_forward, work_per_pixel
from tolerances import chain_bound, network_steps


def tiny_rrdbnet():
    torch.manual_seed(0)
    return RRDBNet(3, 3, scale=4, num_feat=8, num_block=1, num_grow_ch=4).eval()


def other_weights(net, seed):
    """A theta' of the same shapes: the network's weights, perturbed."""
    generator = torch.Generator().manual_seed(seed)
    return {
        name: value.detach() + 0.01 * torch.randn(value.shape, generator=generator)
        for name, value in net.named_parameters()
    }


def run_tiled(lq, tile, tile_pad, fixed):
    """``(tiled output, untiled output, windows' shapes, rounding bound)`` of an x2 upsample + 5 x 5 convolution."""
    conv = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(3, 3, 5, padding=2))
    shapes = []

    def forward(x):
        shapes.append(tuple(x.shape[-2:]))
        return conv(x)

    bound = 2 * chain_bound(torch.float32, *network_steps(conv, lq))  # one 3 x 5 x 5 convolution, run twice
    with torch.no_grad():
        return tiled_forward(forward, lq, 2, tile, tile_pad, fixed), conv(lq), shapes, bound


@pytest.mark.parametrize('fixed', [False, True])
@pytest.mark.parametrize('size', [(23, 37), (17, 8), (10, 31), (13, 12)])
def test_the_tiled_result_is_the_untiled_one_in_windows_of_at_most_tile_plus_context(size, fixed):
    torch.manual_seed(0)
    tiled, untiled, shapes, bound = run_tiled(torch.rand(1, 3, *size), 8, 2, fixed)
    torch.testing.assert_close(tiled, untiled, atol=bound, rtol=0)
    assert max(max(shape) for shape in shapes) <= 8 + 2 * 2  # memory does not grow with the photo


def test_fixed_windows_all_have_the_window_size():
    *_, shapes, _ = run_tiled(torch.rand(1, 3, 23, 37), 8, 2, fixed=True)
    assert set(shapes) == {(12, 12)} and len(shapes) == 3 * 5


def test_even_windows_are_as_few_and_as_equal_as_the_window_size_allows():
    *_, shapes, _ = run_tiled(torch.rand(1, 3, 23, 37), 8, 2, fixed=False)
    # 23 rows: ceil((23 - 4) / 8) = 3 tiles, 0:8, 8:14, 14:23 (the border ones 2 longer) -> windows 0:10, 6:16, 12:23;
    # 37 columns: 5 tiles, 0:8, 8:15, 15:21, 21:28, 28:37 -> windows 0:10, 6:17, 13:23, 19:30, 26:37
    assert shapes == [(rows, columns) for rows in (10, 10, 11) for columns in (10, 11, 10, 11, 11)]
    assert tile_windows(23, 8, 2) == [(0, 8, 0, 10), (8, 14, 6, 16), (14, 23, 12, 23)]
    assert tile_windows(12, 8, 2) == [(0, 12, 0, 12)]  # fits one window of 8 + 2 * 2: not cut


def test_work_per_photo_pixel_stays_near_one_with_the_even_grid():
    # even: 2 columns of 160 + 10 px of context inside the photo, 1 row of 221
    assert work_per_pixel(221, 320, 256, 10) == pytest.approx(340 * 221 / (320 * 221))
    # fixed: 2 windows of 276 columns, 0:276 and 44:320
    assert work_per_pixel(221, 320, 256, 10, fixed=True) == pytest.approx(552 / 320)
    assert work_per_pixel(257, 257, 256, 10) == work_per_pixel(257, 257, 256, 10, fixed=True) == 1.0
    # side + 2 * pad * (n - 1), n = 4 columns and 3 rows
    assert work_per_pixel(667, 1000, 256, 10) == pytest.approx((1000 + 60) * (667 + 40) / (1000 * 667))
    assert work_per_pixel(221, 320, 0, 10) == 1.0


def test_channels_last_tiles_equal_eager_and_bf16_stays_close():
    net = tiny_rrdbnet()
    theta = other_weights(net, 1)
    lq = torch.rand(1, 3, 30, 26)
    with torch.no_grad():
        eager = functional_call(net, theta, (lq, ))
    fast = FastForward(net, 4, tile=0, channels_last=True)
    terms, magnitude = network_steps(lambda x: functional_call(net, theta, (x, )), lq)
    bound = 2 * chain_bound(torch.float32, terms, magnitude)  # two runs of the network, in their own orders
    torch.testing.assert_close(fast(theta, lq), eager, rtol=0, atol=bound)
    with torch.no_grad():
        own = 2 * chain_bound(torch.float32, *network_steps(net, lq))
        torch.testing.assert_close(FastForward(net, 4)(None, lq), net(lq), rtol=0, atol=own)  # None: the net's own
    bf16 = FastForward(net, 4, precision='bf16')(theta, lq)
    # bf16 autocast rounds each convolution's input, weights and output to bfloat16 (sums stay float32): a loose
    # bound, checking that autocast ran and stayed finite rather than how close bfloat16 stays.
    bf16_bound = chain_bound(torch.bfloat16, [4] * len(terms), magnitude) + bound
    assert bf16.dtype == torch.float32 and 0 < (bf16 - eager).abs().max() <= bf16_bound
    # What the fast path promises (docs/photos.md: bf16 outputs near fp32's): not rounding luck, since autocast rounds
    # inputs and weights to bfloat16 alike on every CPU; only the float32 sums' order differs, far below this.
    assert (bf16 - eager).abs().max() < 0.05


@pytest.mark.e2e  # about 40 s of compilation when torch's inductor cache is cold
def test_one_compilation_serves_new_weights_and_every_photo_size():
    torch._dynamo.reset()
    net = tiny_rrdbnet()
    fast = FastForward(net, 4, tile=12, tile_pad=4, compile=True)
    eager = FastForward(net, 4, tile=12, tile_pad=4, channels_last=False)
    compiled_frames = []
    original = torch._dynamo.convert_frame.ConvertFrameAssert.__call__

    def counting(self, frame, *args, **kwargs):
        compiled_frames.append(frame.f_code.co_name)
        return original(self, frame, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch._dynamo.convert_frame.ConvertFrameAssert, '__call__', counting)
        for seed, size in ((1, (24, 40)), (2, (33, 21)), (3, (20, 20))):
            theta, lq = other_weights(net, seed), torch.rand(1, 3, *size)
            terms, magnitude = network_steps(lambda x: functional_call(net, theta, (x, )), lq)
            bound = 2 * chain_bound(torch.float32, terms, magnitude)  # compiled and eager, each in its own orders
            torch.testing.assert_close(fast(theta, lq), eager(theta, lq), rtol=0, atol=bound)
    assert compiled_frames.count('_functional') == 1


@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
@pytest.mark.parametrize('tile', [0, 12])
def test_a_pair_that_differs_in_the_tail_alone_equals_two_passes_from_one_body_pass(precision, tile, monkeypatch):
    net = tiny_rrdbnet()
    tail = ('conv_up1.', 'conv_up2.', 'conv_hr.', 'conv_last.')
    own, perturbed = dict(net.named_parameters()), other_weights(net, 1)
    theta = {name: perturbed[name] if name.startswith(tail) else own[name] for name in own}
    lq = torch.rand(1, 3, 30, 26)
    fast = FastForward(net, 4, tile=tile, tile_pad=4, precision=precision)
    alone = fast(theta, lq), fast(None, lq)
    bodies = []
    forward = RRDBNetBody.forward
    monkeypatch.setattr(RRDBNetBody, 'forward', lambda self, x: bodies.append(x.shape) or forward(self, x))
    adapted, plain = fast.pair(theta, None, lq)
    assert torch.equal(adapted, alone[0]) and torch.equal(plain, alone[1])
    windows = len(tile_windows(30, tile, 4)) * len(tile_windows(26, tile, 4)) if tile else 1
    assert not torch.equal(adapted, plain) and len(bodies) == windows  # one body pass per window
    changed_body = other_weights(net, 2)  # every tensor differs: two whole passes, each its own
    both = fast.pair(changed_body, None, lq)
    assert torch.equal(both[0], fast(changed_body, lq)) and torch.equal(both[1], alone[1])
