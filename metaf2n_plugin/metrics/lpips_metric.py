"""LPIPS v0.1 (Zhang et al., CVPR 2018) as a BasicSR metric (docs/metrics.md). The ``lpips``
package ships the linear heads; the trunk's torchvision weights are looked up offline (:mod:`metaf2n_plugin.weights`).
"""
import functools
import os

import lpips
import torch
from basicsr.utils import get_root_logger
from basicsr.utils.registry import METRIC_REGISTRY
from torchvision import models

from metaf2n_plugin.checkpoints import load_state_dict
from metaf2n_plugin.metrics.backbones import check_options, metric_device, metric_input
from metaf2n_plugin.weights import locate_weights

# lpips trunk name -> the torchvision ImageNet weights that lpips's pretrained trunk is made of
TRUNK_WEIGHTS = {
    'alex': models.AlexNet_Weights.IMAGENET1K_V1,  # alexnet-owt-7be5be79.pth
    'vgg': models.VGG16_Weights.IMAGENET1K_V1,
    'squeeze': models.SqueezeNet1_1_Weights.IMAGENET1K_V1,
}


@METRIC_REGISTRY.register()
def calculate_lpips(img,
                    img2,
                    crop_border=0,
                    net='alex',
                    weights=None,
                    download=False,
                    random_weights=False,
                    device=None,
                    **kwargs):
    """LPIPS distance (float, spatially averaged; 0 for identical images, lower is closer) of ``img`` to ``img2``.

    Args:
        img, img2 (ndarray): (H, W, 3) **BGR** images in [0, 255], uint8 or float (``tensor2img``'s output), of one
            shape (else ValueError); ``img2`` is the reference.
        crop_border (int): pixels cut from each edge of both first.
        net (str): lpips trunk: ``'alex'`` (default, the paper's), ``'vgg'`` or ``'squeeze'``.
        weights, download, random_weights, device: the trunk's torchvision weights file (None: the usual places),
            fetch it when it is nowhere, an untrained trunk (meaningless scores, plumbing tests only), where it runs
            (None: CUDA when available). ``**kwargs``: BasicSR's ``type`` and ``better``, ignored; other keys are a
            ValueError (e.g. a misspelt option).
    """
    check_options('calculate_lpips', kwargs, calculate_lpips)
    if img.shape != img2.shape or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'calculate_lpips needs two (H, W, 3) BGR images of one shape, got {img.shape}, {img2.shape}')
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border]
    network = lpips_network(net, weights, download, random_weights, device)
    on = next(network.parameters()).device
    with torch.no_grad():  # lpips takes RGB in [-1, 1]; normalize=True maps [0, 1] onto it
        return network(metric_input(img, on), metric_input(img2, on), normalize=True).item()


def lpips_network(net='alex', weights=None, download=False, random_weights=False, device=None):
    """``lpips.LPIPS`` v0.1 in eval mode, cached per (trunk, weights file, device); :func:`calculate_lpips`'s arguments.

    The file is looked up on every call, so one that appears later is used; FileNotFoundError when it is nowhere and
    ``download`` is off."""
    return _build_lpips(net, lpips_weights_file(net, weights, download, random_weights), str(metric_device(device)))


def lpips_weights_file(net='alex', weights=None, download=False, random_weights=False):
    """The trunk's weights file (None with ``random_weights``); arguments as :func:`calculate_lpips`'s."""
    if net not in TRUNK_WEIGHTS:
        raise ValueError(f'LPIPS: net must be one of {sorted(TRUNK_WEIGHTS)}, got {net!r}')
    if random_weights:
        return None
    url = TRUNK_WEIGHTS[net].url
    return locate_weights(os.path.basename(url), url, f'LPIPS (net: {net})', weights, download)


@functools.lru_cache(maxsize=None)
def _build_lpips(net, weights_file, device):
    return build_lpips(net, weights_file).to(device)


def build_lpips(net, weights_file):
    """A new ``lpips.LPIPS`` v0.1 in eval mode on the CPU, its trunk loaded from ``weights_file`` (None: random).
    Built untrained first, so that lpips downloads nothing."""
    network = lpips.LPIPS(net=net, version='0.1', pnet_rand=True, verbose=False)
    if weights_file is None:
        get_root_logger().warning(f'LPIPS (net: {net}) runs with a randomly initialised trunk: its scores are '
                                  'meaningless (random_weights is for plumbing tests only).')
    else:
        _load_trunk(network.net, load_state_dict(weights_file, 'metric weights'))
    return network.eval()


def _load_trunk(trunk, state_dict):
    """Strict-load torchvision's ``features.<i>.*`` as lpips's ``slice<k>.<i>.*`` (e.g. ``slice2.3.weight``)."""
    renamed = {}
    for slice_name, block in trunk.named_children():
        for index, _ in block.named_children():
            prefix = f'features.{index}.'
            renamed.update({
                f'{slice_name}.{index}.{key[len(prefix):]}': value
                for key, value in state_dict.items() if key.startswith(prefix)
            })
    trunk.load_state_dict(renamed)
