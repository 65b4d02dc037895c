"""MaskNet: the per-pixel weights of MetaF2N's inner (face) loss.

Faces restored by a face restorer are only a pseudo ground truth; some of their pixels (hair,
background, hallucinated detail) say little about the photo's degradation. MaskNet looks at the
bicubic-upsampled LQ face next to its restoration and predicts how much each pixel should count in
the inner loss ``mean(W * |face_restored - f_theta(face_lq)|)``.
"""
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


@ARCH_REGISTRY.register()
class MaskNet(nn.Module):
    """A plain stack of 3x3 convolutions with ReLUs, ending in a ReLU so that weights are >= 0.

    ``num_conv`` convolutions (stride 1, padding 1): ``num_in_ch -> num_feat``, then
    ``num_conv - 2`` times ``num_feat -> num_feat``, then ``num_feat -> 1``; every one followed by a
    ReLU. The weights are unbounded above. Kernels start Glorot-uniform (TensorFlow's default, which the
    original used), biases at zero.

    Args:
        num_in_ch (int): input channels; 6 for ``cat([bicubic_up(lq_face), restored_face])``.
        num_feat (int): channels of the hidden layers.
        num_conv (int): number of convolutions, >= 2.
    """

    def __init__(self, num_in_ch=6, num_feat=64, num_conv=8):
        super().__init__()
        if num_conv < 2:
            raise ValueError(f'MaskNet needs num_conv >= 2, got {num_conv}')
        channels = [num_in_ch] + [num_feat] * (num_conv - 1) + [1]
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3, 1, 1) for c_in, c_out in zip(channels, channels[1:]))
        for conv in self.convs:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x):
        """(N, num_in_ch, H, W), RGB in [0, 1] -> per-pixel loss weights (N, 1, H, W), >= 0."""
        for conv in self.convs:
            x = nn.functional.relu(conv(x))
        return x
