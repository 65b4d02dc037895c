"""How large the SSG loss is next to L1, to choose its weight in the MetaF2N outer loss.

On 256 x 256 crops of the tiny data set's backgrounds (``python scripts/make_tiny_dataset.py`` first), with the
USM-sharpened GT as target (as in the outer loss): the task degradation's LQ upsampled bicubically (a poor SR,
three draws), the GT blurred by a 3 x 3 box, and the GT with Gaussian noise of sigma 0.02.

    python bench/ssg_weight.py [--root datasets/tiny]
"""
import glob
import os
import random

import numpy as np
import torch
from basicsr.losses.basic_loss import L1Loss
from basicsr.utils import DiffJPEG
from basicsr.utils.img_process_util import USMSharp
from torch.nn import functional as F

from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.data.degradation import apply_degradation, sample_degradation
from metaf2n_plugin.image_io import read_image
from metaf2n_plugin.losses.ssg_loss import SSGLoss


def main():
    parser = parser_from_doc(__doc__)
    parser.add_argument('--root', default='datasets/tiny')
    args = parser.parse_args()
    paths = sorted(glob.glob(os.path.join(args.root, 'backgrounds', '*.png')))
    if not paths:
        raise SystemExit(f'no backgrounds in {args.root}: run python scripts/make_tiny_dataset.py first')
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    gt = torch.stack([torch.from_numpy(read_image(p)[:256, :256]).permute(2, 0, 1) for p in paths])
    target = USMSharp()(gt)
    ssg, l1, jpeger = SSGLoss(), L1Loss(), DiffJPEG(differentiable=False)
    outputs = []
    for draw in range(3):
        lq = apply_degradation(target, sample_degradation({}, len(gt)), 4, jpeger)
        outputs.append(
            (f'bicubic x4 of the task LQ (draw {draw + 1})', F.interpolate(lq, scale_factor=4,
                                                                           mode='bicubic').clamp(0, 1)))
    outputs.append(('GT blurred by a 3x3 box', F.avg_pool2d(F.pad(target, (1, 1, 1, 1), mode='reflect'), 3, 1)))
    outputs.append(('GT + Gaussian noise, sigma 0.02', (target + 0.02 * torch.randn_like(target)).clamp(0, 1)))
    print(f'{len(paths)} crops of 256 x 256 from {args.root}/backgrounds\n| output | L1 | SSG |\n|---|---:|---:|')
    for name, output in outputs:
        print(f'| {name} | {l1(output, target).item():.4f} | {ssg(output, target).item():.2e} |')


if __name__ == '__main__':
    main()
