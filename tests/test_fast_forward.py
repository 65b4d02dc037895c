"""FastForward: tiles of one size, channels_last, bf16 and torch.compile give the eager output, one compilation."""
import pytest
import torch
from basicsr.archs.rrdbnet_arch import RRDBNet
from torch import nn
from torch.func import functional_call

from metaf2n_plugin.models.fast_forward import FastForward
from metaf2n_plugin.models.tiling import tiled_forward
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


def test_every_window_has_the_same_size_and_the_result_is_the_untiled_one():
    conv = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(3, 3, 5, padding=2))
    shapes = []

    def forward(x):
        shapes.append(tuple(x.shape[-2:]))
        return conv(x)

    lq = torch.rand(1, 3, 23, 37)
    bound = 2 * chain_bound(torch.float32, *network_steps(conv, lq))  # one 3 x 5 x 5 convolution, run twice
    with torch.no_grad():
        torch.testing.assert_close(tiled_forward(forward, lq, 2, tile=8, tile_pad=2), conv(lq), atol=bound, rtol=0)
    assert set(shapes) == {(12, 12)} and len(shapes) == 3 * 5


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
    bf16 = FastForward(net, 4, bf16=True)(theta, lq)
    # bf16 autocast rounds each convolution's input, weights and output to bfloat16 (sums stay float32): a loose
    # bound, checking that autocast ran and stayed finite rather than how close bfloat16 stays.
    bf16_bound = chain_bound(torch.bfloat16, [4] * len(terms), magnitude) + bound
    assert bf16.dtype == torch.float32 and 0 < (bf16 - eager).abs().max() <= bf16_bound
    # What the fast path promises (README: bf16 outputs near fp32's): not rounding luck, since autocast rounds inputs
    # and weights to bfloat16 alike on every CPU; only the float32 sums' order differs, far below this.
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
