"""What the learned metrics (LPIPS, FID) share: where their pretrained backbones come from, which
device they run on, and how BasicSR's images become their input.

LPIPS needs torchvision's ImageNet AlexNet (or VGG16 / SqueezeNet 1.1) and FID needs pytorch-fid's
Inception; neither ships with a package. They are looked up, in this order, at

1. the ``weights_path`` the metric options give (that file and nothing else),
2. ``experiments/pretrained_models/<file>`` under the working directory (BasicSR's habit),
3. ``<torch.hub.get_dir()>/checkpoints/<file>`` (where torchvision and pytorch-fid cache downloads),

and downloaded into 3. only when the options say ``download: true``. Nothing falls back to random
weights: only an explicit ``random_weights: true`` (for plumbing tests) builds an untrained backbone.
"""
import os

import numpy as np
import torch

from metaf2n_plugin.checkpoints import read_checkpoint, state_dict_of

BASICSR_WEIGHTS_DIR = os.path.join('experiments', 'pretrained_models')


def find_weights(file_name, url, what, weights_path=None, download=False):
    """Path of a pretrained weights file, downloading it only when asked.

    Args:
        file_name (str): the file's canonical name, e.g. ``alexnet-owt-7be5be79.pth``.
        url (str): where it is published.
        what (str): what needs it, for the error message (e.g. ``"LPIPS (net: alex)"``).
        weights_path (str | None): an explicit file; when given, the only place looked at.
        download (bool): fetch ``url`` into torch's cache when the file is nowhere.

    Returns:
        str: an existing file.

    Raises:
        FileNotFoundError: naming the file, its URL and where to put it.
    """
    if weights_path is not None:
        if os.path.isfile(weights_path):
            return weights_path
        raise FileNotFoundError(f'{what}: weights_path {weights_path!r} does not exist. It should be {file_name}, '
                                f'published at {url}.')
    cache = os.path.join(torch.hub.get_dir(), 'checkpoints', file_name)  # $TORCH_HOME/hub/checkpoints
    for candidate in (os.path.join(BASICSR_WEIGHTS_DIR, file_name), cache):
        if os.path.isfile(candidate):
            return candidate
    if not download:
        raise FileNotFoundError(
            f'{what} needs {file_name} and found it neither in {os.path.abspath(BASICSR_WEIGHTS_DIR)} nor in '
            f'{os.path.dirname(cache)}. Download {url} into one of them, or give its path as `weights_path` in '
            f'the metric options, or set `download: true` there to fetch it into {os.path.dirname(cache)}.')
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    torch.hub.download_url_to_file(url, cache)
    return cache


def load_weights(path):
    """The state dict in ``path``, on the CPU, loaded with ``weights_only=True`` (no arbitrary pickles)."""
    return state_dict_of(read_checkpoint(path, 'metric weights'), path, 'metric weights')


def metric_device(device=None):
    """``torch.device(device)``, or CUDA when available and ``device`` is None, else the CPU."""
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return torch.device(device)


def bgr_to_rgb_tensor(img, device):
    """(H, W, 3) **BGR** image in [0, 255] (BasicSR's ``tensor2img`` output) -> (1, 3, H, W) float32
    **RGB** tensor in [0, 1] on ``device``."""
    rgb = np.ascontiguousarray(img[..., ::-1], dtype=np.float32)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].to(device) / 255
