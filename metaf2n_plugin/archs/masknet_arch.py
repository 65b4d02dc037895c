"""MaskNet: per-pixel weights W of MetaF2N's inner (face) loss ``mean(W * |face_restored - f_theta(face_lq)|)``."""
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


@ARCH_REGISTRY.register()
class MaskNet(nn.Module):
    """``num_conv`` 3x3 convs (``num_in_ch -> num_feat -> ... -> 1``), each followed by a ReLU: weights >= 0, unbounded.

    Kernels start Glorot-uniform (TensorFlow's default, as in the original), biases at zero.

    Args:
        num_in_ch (int): 6 for ``cat([bicubic_up(lq_face), restored_face])``.
        num_feat (int): hidden channels.
        num_conv (int): number of convolutions, >= 2 (else ValueError).
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
