"""How much memory a device can still give, and how much MetaF2N's inner step takes: the checks that refuse a photo
or a setting before it exhausts the memory, instead of an out-of-memory traceback half-way."""
from typing import Optional, Union

import torch
from torch import nn

# Peak memory of the inner step per LR pixel of its patches, for Real-ESRGAN x4plus (RRDBNet, 64 features, 23
# blocks), measured by bench/step_memory.py (docs/benchmarks.md) and rounded up: with the whole network's graph
# (every parameter adapted, or the exact step) 255-264 KiB; with the body frozen and run without a graph (the tail
# adapted, photo_step in fp32) 29-31 KiB.
STEP_BYTES_PER_LR_PIXEL = 300 * 1024
TAIL_BYTES_PER_LR_PIXEL = 36 * 1024
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


def step_memory(net_g: nn.Module, patches: int, patch_size: int, scale: int, whole: bool = True) -> int:
    """Bytes the inner step needs for ``patches`` patch pairs of HQ side ``patch_size``: their data, and the graph,
    scaled from x4plus' by an RRDBNet's features (and blocks, for the ``whole`` network's graph; else the tail's
    alone); x4plus' figure for other networks."""
    lr_pixels = patches * (patch_size // scale)**2
    first, body = getattr(net_g, 'conv_first', None), getattr(net_g, 'body', None)
    width, depth = 1.0, 1.0
    if isinstance(first, nn.Conv2d) and isinstance(body, nn.Sequential):
        width, depth = first.out_channels / X4PLUS_FEATURES, len(body) / X4PLUS_BLOCKS
    graph = STEP_BYTES_PER_LR_PIXEL * width * depth if whole else TAIL_BYTES_PER_LR_PIXEL * width
    data = 4 * patches * (3 * 2 + 1) * patch_size**2  # HQ, MaskNet's upsampled LQ, the valid mask, float32
    return int(lr_pixels * graph) + data
