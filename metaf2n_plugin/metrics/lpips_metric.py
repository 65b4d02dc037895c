"""LPIPS (Zhang et al., CVPR 2018), version 0.1, as a BasicSR metric.

``val.metrics: {lpips: {type: calculate_lpips, better: lower}}`` scores each output against its GT with
the ``lpips`` package (AlexNet trunk by default, as MetaF2N reports it). The package ships its linear
heads; the trunk's ImageNet weights are looked up offline (:mod:`metaf2n_plugin.weights`).
"""
import functools
import lpips
import os
import torch
from basicsr.utils import get_root_logger
from basicsr.utils.registry import METRIC_REGISTRY
from torchvision import models

from metaf2n_plugin.checkpoints import load_state_dict
from metaf2n_plugin.metrics.backbones import metric_device, metric_input
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
                    weights_path=None,
                    download=False,
                    random_weights=False,
                    device=None,
                    **kwargs):
    """LPIPS distance between an image and its reference; 0 for identical images, lower is closer.

    Args:
        img (ndarray): (H, W, 3) image, **BGR**, values in [0, 255] (uint8 or float): what BasicSR's
            ``tensor2img`` returns and its validation passes.
        img2 (ndarray): the reference (GT), same shape and order.
        crop_border (int): pixels cut from each edge of both images first.
        net (str): lpips trunk: ``'alex'`` (default, the paper's), ``'vgg'`` or ``'squeeze'``.
        weights_path (str | None): the trunk's torchvision weights file; None looks in the usual places.
        download (bool): fetch the trunk's weights when they are nowhere.
        random_weights (bool): untrained trunk instead; scores are meaningless (plumbing tests only).
        device (str | None): where the network runs; CUDA if available when None.
        **kwargs: other keys of the metric options (``type``, ``better``), ignored.

    Returns:
        float: the distance, spatially averaged.
    """
    if img.shape != img2.shape or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'calculate_lpips needs two (H, W, 3) BGR images of one shape, got {img.shape}, {img2.shape}')
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border]
    network = lpips_network(net, weights_path, download, random_weights, device)
    on = next(network.parameters()).device
    with torch.no_grad():  # lpips takes RGB in [-1, 1]; normalize=True maps [0, 1] onto it
        return network(metric_input(img, on), metric_input(img2, on), normalize=True).item()


def lpips_network(net='alex', weights_path=None, download=False, random_weights=False, device=None):
    """The ``lpips.LPIPS`` v0.1 network, in eval mode, built once per (trunk, weights file, device).

    The arguments are :func:`calculate_lpips`'s. The weights file is looked up on every call (a few
    ``stat`` calls), so a file that appears later is used; the network itself is cached.

    Raises:
        FileNotFoundError: the trunk's weights are nowhere and ``download`` is off.
    """
    return _build_lpips(net, lpips_weights_file(net, weights_path, download, random_weights),
                        str(metric_device(device)))


def lpips_weights_file(net='alex', weights_path=None, download=False, random_weights=False):
    """The trunk's weights file (None with ``random_weights``); arguments as :func:`calculate_lpips`'s."""
    if net not in TRUNK_WEIGHTS:
        raise ValueError(f'LPIPS: net must be one of {sorted(TRUNK_WEIGHTS)}, got {net!r}')
    if random_weights:
        return None
    url = TRUNK_WEIGHTS[net].url
    return locate_weights(os.path.basename(url), url, f'LPIPS (net: {net})', weights_path, download, 'weights_path')


@functools.lru_cache(maxsize=None)
def _build_lpips(net, weights_file, device):
    return build_lpips(net, weights_file).to(device)


def build_lpips(net, weights_file):
    """A new ``lpips.LPIPS`` v0.1 in eval mode on the CPU, its trunk loaded from ``weights_file`` (None: random).

    Built with an untrained trunk (so that lpips downloads nothing), then ``weights_file`` is loaded into it.
    """
    network = lpips.LPIPS(net=net, version='0.1', pnet_rand=True, verbose=False)
    if weights_file is None:
        get_root_logger().warning(f'LPIPS (net: {net}) runs with a randomly initialised trunk: its scores are '
                                  'meaningless (random_weights is for plumbing tests only).')
    else:
        _load_trunk(network.net, load_state_dict(weights_file, 'metric weights'))
    return network.eval()


def _load_trunk(trunk, state_dict):
    """Copy torchvision's ``features.<i>.*`` tensors into lpips's trunk.

    lpips cuts torchvision's ``features`` into ``slice1``, ``slice2``, ... whose layers keep their index
    in ``features`` as their name, so ``features.3.weight`` becomes ``slice2.3.weight``. The strict load
    checks that the file provides every trunk tensor.
    """
    renamed = {}
    for slice_name, block in trunk.named_children():
        for index, _ in block.named_children():
            prefix = f'features.{index}.'
            renamed.update({
                f'{slice_name}.{index}.{key[len(prefix):]}': value
                for key, value in state_dict.items() if key.startswith(prefix)
            })
    trunk.load_state_dict(renamed)
