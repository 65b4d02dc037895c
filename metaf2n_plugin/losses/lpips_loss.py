"""LPIPS as a training loss: MetaF2N's perceptual term (``0.5 * LPIPS_alex``; BasicSR has no LPIPS loss)."""
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from metaf2n_plugin.metrics.lpips_metric import build_lpips, lpips_weights_file


@LOSS_REGISTRY.register()
class LPIPSLoss(nn.Module):
    """``loss_weight * LPIPS(pred, target)``, the ``lpips`` package's v0.1 network, frozen, always in eval mode.

    Args:
        loss_weight: >= 0. reduction: ``'mean'`` (scalar) or ``'none'`` (``(N, 1, 1, 1)``); else ValueError.
        net: ``'alex'`` (MetaF2N's), ``'vgg'`` or ``'squeeze'``.
        weights, download, random_weights: found as for ``calculate_lpips`` (docs/weights.md); a missing
            file is an error naming it and its URL. ``random_weights`` is for tests only.
    """

    def __init__(self,
                 loss_weight=1.0,
                 reduction='mean',
                 net='alex',
                 weights=None,
                 download=False,
                 random_weights=False):
        super().__init__()
        if reduction not in ('mean', 'none'):
            raise ValueError(f'LPIPSLoss: reduction must be mean or none, got {reduction!r}')
        if loss_weight < 0:
            raise ValueError(f'LPIPSLoss: loss_weight must be >= 0, got {loss_weight}')
        self.loss_weight, self.reduction = loss_weight, reduction
        self.lpips = build_lpips(net, lpips_weights_file(net, weights, download, random_weights))
        self.lpips.requires_grad_(False)

    def train(self, mode=True):
        """Stays in eval mode: lpips's heads have dropout."""
        return super().train(False)

    def forward(self, pred, target, weight=None):
        """pred, target: ``(N, 3, H, W)`` RGB in [0, 1]; gradients flow to both. ``weight`` is not supported."""
        if weight is not None:
            raise ValueError('LPIPSLoss takes no per-pixel weight')
        distance = self.lpips(pred, target, normalize=True)
        return self.loss_weight * (distance.mean() if self.reduction == 'mean' else distance)
