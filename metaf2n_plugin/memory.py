"""How much memory a device can still give, and how much MetaF2N's inner step takes: the checks that refuse a photo
or a setting before it exhausts the memory, instead of an out-of-memory traceback half-way."""
from typing import Optional, Union

import torch
from torch import nn

# Peak memory of the inner step per LR pixel of its patches, for Real-ESRGAN x4plus (RRDBNet, 64 features, 23 blocks)
# with every parameter keeping its graph: 255-264 KiB measured (bench/step_memory.py, docs/benchmarks.md), rounded up.
STEP_BYTES_PER_LR_PIXEL = 300 * 1024
X4PLUS_FEATURES, X4PLUS_BLOCKS = 64, 23


def available_memory(device: Union[str, torch.device, None] = None) -> Optional[int]:
    """Bytes ``device`` can still give: a GPU's free memory, else the OS's MemAvailable; None where neither can be
    read."""
    device = torch.device(device or 'cpu')
    if device.type == 'cuda':
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open('/proc/meminfo') as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith('MemAvailable:'))
    except (OSError, StopIteration):
        return None


def step_memory(net_g: nn.Module, patches: int, patch_size: int, scale: int) -> int:
    """Bytes the inner step needs for ``patches`` patch pairs of HQ side ``patch_size``: their data, and the
    forward's graph, scaled from x4plus' by an RRDBNet's features and blocks (x4plus' figure for other networks)."""
    lr_pixels = patches * (patch_size // scale)**2
    first, body = getattr(net_g, 'conv_first', None), getattr(net_g, 'body', None)
    size = 1.0
    if isinstance(first, nn.Conv2d) and isinstance(body, nn.Sequential):
        size = first.out_channels * len(body) / (X4PLUS_FEATURES * X4PLUS_BLOCKS)
    data = 4 * patches * (3 * 2 + 1) * patch_size**2  # HQ, MaskNet's upsampled LQ, the valid mask, float32
    return int(lr_pixels * STEP_BYTES_PER_LR_PIXEL * size) + data
