"""GPEN (Yang et al., CVPR 2021) face restorer: upstream's ``FullGenerator`` in plain PyTorch.

The compiled ops (``fused_bias_act``, ``upfirdn2d``) are rewritten with ``F.leaky_relu``, ``F.pad`` and
``F.conv2d`` (CPU and CUDA, autocast, differentiable). Parameter and buffer names and shapes are upstream's, so
``GPEN-BFR-512.pth`` (``GPEN(512, channel_multiplier=2, narrow=1)``) and ``GPEN-BFR-256.pth`` (``GPEN(256, 1,
0.5)``), bare state_dicts, load with ``strict=True`` (docs/weights.md). Images are N x 3 x S x S RGB in [-1, 1]
in and out; the output is not clamped, as upstream.
"""
import math

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

# FIR taps of the encoder's downsampling and of the ToRGB skip upsampling. Upstream
# hard-codes these (only the decoder's upsampling convs follow ``blur_kernel``).
FIXED_BLUR_TAPS = (1, 3, 3, 1)


def make_blur_kernel(taps, gain=1.0):
    """Separable FIR taps (k,) -> normalised 2-D kernel (k, k) whose sum is ``gain``."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    if k.ndim == 1:
        k = k[:, None] * k[None, :]
    return k / k.sum() * gain


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """Zero-insert by ``up``, pad, FIR-filter with ``kernel`` (kh, kw; flipped, per channel), keep every ``down``-th.

    ``pad`` = (before, after) on both spatial axes after the insertion; negative crops.
    (N, C, H, W) -> (N, C, (H*up + before + after - kh) // down + 1, ...).
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = kernel.flip((0, 1)).to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


def fused_leaky_relu(x, bias, negative_slope=0.2, scale=math.sqrt(2)):
    """``scale * leaky_relu(x + bias)`` with ``bias`` (C,) added along dim 1 of x (N, C, ...)."""
    bias = bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x + bias, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Learned per-channel bias followed by sqrt(2)-scaled leaky ReLU (slope 0.2)."""

    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return fused_leaky_relu(x, self.bias)


class PixelNorm(nn.Module):
    """Normalise (N, D) latents to unit root-mean-square along D."""

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Blur(nn.Module):
    """Fixed FIR filter (buffer ``kernel``, sum ``gain``) applied via :func:`upfirdn2d` with optional upsampling."""

    def __init__(self, taps, pad, up=1, gain=1.0):
        super().__init__()
        self.register_buffer('kernel', make_blur_kernel(taps, gain))
        self.pad, self.up = tuple(pad), up

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.up, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate: N(0, 1) weight scaled by 1/sqrt(fan_in) at run time."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear with equalised learning rate: weight ``* lr_mul / sqrt(in_dim)``, bias ``* lr_mul``.

    With ``activate`` the bias goes through :func:`fused_leaky_relu` instead of being added.
    """

    def __init__(self, in_dim, out_dim, bias_init=0.0, lr_mul=1.0, activate=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim, ), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul, self.activate = lr_mul, activate

    def forward(self, x):
        if self.activate:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class ConvLayer(nn.Sequential):
    """Encoder block: [Blur] -> bias-free EqualConv2d -> FusedLeakyReLU.

    ``downsample``: blur then stride 2, (N, C_in, H, W) -> (N, C_out, H/2, W/2); else 'same' padding.
    """

    def __init__(self, in_channels, out_channels, kernel_size, downsample=False):
        layers = []
        if downsample:
            p = len(FIXED_BLUR_TAPS) - 2 + kernel_size - 1
            layers.append(Blur(FIXED_BLUR_TAPS, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False))
        layers.append(FusedLeakyReLU(out_channels))
        super().__init__(*layers)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated (optionally demodulated) conv: x (N, C_in, H, W), style (N, style_dim).

    Output (N, C_out, H, W), or (N, C_out, 2H, 2W) with ``upsample`` (stride-2 transposed conv, then blur).
    """

    def __init__(self,
                 in_channels,
                 out_channels,
                 kernel_size,
                 style_dim,
                 demodulate=True,
                 upsample=False,
                 blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.demodulate, self.upsample = demodulate, upsample
        if upsample:
            # The stride-2 transposed conv yields 2H + k - 2 samples; this pad brings the
            # blur output to 2H, and gain 4 compensates the zeros the stride inserts.
            p = len(blur_kernel) - 2 - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x, style):
        n, c_in, h, w = x.shape
        _, c_out, _, k, _ = self.weight.shape
        weight = self.weight * self.scale * self.modulation(style).view(n, 1, c_in, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        x = x.reshape(1, n * c_in, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * c_in, c_out, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=n)
            return self.blur(out.view(n, c_out, *out.shape[2:]))
        out = F.conv2d(x, weight.reshape(n * c_out, c_in, k, k), padding=k // 2, groups=n)
        return out.view(n, c_out, h, w)


class NoiseInjection(nn.Module):
    """Inject a noise map scaled by a learned scalar: concatenated (N, C+C', H, W) or added (N, C, H, W)."""

    def __init__(self, isconcat=True):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.isconcat = isconcat

    def forward(self, x, noise):
        if self.isconcat:
            return torch.cat((x, self.weight * noise), dim=1)
        return x + self.weight * noise


class StyledConv(nn.Module):
    """Modulated 3x3 conv -> noise injection -> FusedLeakyReLU; output has 2*C_out channels if isconcat."""

    def __init__(self, in_channels, out_channels, style_dim, upsample=False, blur_kernel=(1, 3, 3, 1), isconcat=True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection(isconcat)
        self.activate = FusedLeakyReLU(out_channels * (2 if isconcat else 1))

    def forward(self, x, style, noise):
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) plus bias, added to the 2x-upsampled previous skip."""

    def __init__(self, in_channels, style_dim, upsample=True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if upsample:
            p = len(FIXED_BLUR_TAPS) - 2
            self.upsample = Blur(FIXED_BLUR_TAPS, pad=((p + 1) // 2 + 1, p // 2), up=2, gain=4)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    """Learned constant (1, C, 4, 4) tensor, repeated over the batch."""

    def __init__(self, channels, size=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch):
        return self.input.repeat(batch, 1, 1, 1)


def gpen_channels(channel_multiplier, narrow):
    """Feature width per resolution, shared by the GPEN encoder and decoder."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16, 2048: 8}
    return {res: int(c * narrow) if res <= 32 else int(c * channel_multiplier * narrow) for res, c in base.items()}


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 decoder whose per-layer noise inputs are supplied by the caller (GPEN's encoder features)."""

    def __init__(self, size, style_dim, n_mlp, channels, blur_kernel, lr_mlp, isconcat):
        super().__init__()
        mult = 2 if isconcat else 1
        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activate=True) for _ in range(n_mlp)])
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], style_dim, blur_kernel=blur_kernel, isconcat=isconcat)
        self.to_rgb1 = ToRGB(channels[4] * mult, style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = channels[4]
        for log_res in range(3, int(math.log2(size)) + 1):
            out_ch = channels[2**log_res]
            self.convs.append(
                StyledConv(in_ch * mult, out_ch, style_dim, upsample=True, blur_kernel=blur_kernel, isconcat=isconcat))
            self.convs.append(StyledConv(out_ch * mult, out_ch, style_dim, blur_kernel=blur_kernel, isconcat=isconcat))
            self.to_rgbs.append(ToRGB(out_ch * mult, style_dim))
            in_ch = out_ch

    def forward(self, z, noises):
        """z: (N, style_dim); noises: (N, C_r, r, r) for r = 4, 8, ..., size -> (N, 3, size, size).

        One w drives every layer (no truncation or mixing, as GPEN); both convs at r get the same noise map.
        """
        w = self.style(z)
        out = self.conv1(self.input(z.shape[0]), w, noises[0])
        skip = self.to_rgb1(out, w)
        for i, noise in enumerate(noises[1:]):
            out = self.convs[2 * i](out, w, noise)
            out = self.convs[2 * i + 1](out, w, noise)
            skip = self.to_rgbs[i](out, w, skip)
        return skip


@ARCH_REGISTRY.register()
class GPEN(nn.Module):
    """GPEN generator (upstream ``FullGenerator``): encoder + StyleGAN2 decoder fed with encoder features.

    Args:
        size: resolution S, a power of two in [8, 2048] (else ValueError).
        channel_multiplier: width multiplier for resolutions >= 64; narrow: global width multiplier.
        isconcat: concatenate encoder features to the decoder's (True, as released) instead of adding them.
        lr_mlp: learning-rate multiplier of the n_mlp-layer mapping MLP.
        blur_kernel: taps of the decoder's upsampling convs (the others use ``FIXED_BLUR_TAPS``, as upstream).
    """

    def __init__(self,
                 size,
                 style_dim=512,
                 n_mlp=8,
                 channel_multiplier=2,
                 narrow=1,
                 isconcat=True,
                 lr_mlp=0.01,
                 blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        log_size = int(math.log2(size))
        if 2**log_size != size or not 8 <= size <= 2048:
            raise ValueError(f'size must be a power of two in [8, 2048], got {size}')
        channels = gpen_channels(channel_multiplier, narrow)
        self.size = size
        self.generator = StyleGAN2Generator(size, style_dim, n_mlp, channels, blur_kernel, lr_mlp, isconcat)
        # ecd0 maps RGB to features at full resolution; ecd1..ecd{log_size-2} halve it down to 4x4.
        self.ecd0 = nn.Sequential(ConvLayer(3, channels[size], 1))
        for i in range(1, log_size - 1):
            in_ch, out_ch = channels[size >> (i - 1)], channels[size >> i]
            self.add_module(f'ecd{i}', nn.Sequential(ConvLayer(in_ch, out_ch, 3, downsample=True)))
        self.num_encoders = log_size - 1
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 16, style_dim, activate=True))

    def forward(self, x):
        """(N, 3, S, S) aligned faces, RGB in [-1, 1] -> restored (N, 3, S, S), nominally [-1, 1], not clamped.

        Deterministic: the decoder's noise inputs are the encoder features.
        """
        feats = []
        for i in range(self.num_encoders):
            x = getattr(self, f'ecd{i}')(x)
            feats.append(x)
        z = self.final_linear(x.flatten(1))
        return self.generator(z, feats[::-1])
