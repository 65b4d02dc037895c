"""Seconds per LQ megapixel of metaf2n-infer's super-resolution pass on the CPU it runs on, by path.

RRDBNet x4 (64 features, 23 blocks, growth 32), a 256 x 256 LQ photo in 128 x 128 tiles with 10 pixels of context
(windows of 138 x 138, clipped at the photo's border; the compiled path's fixed-size ones 148 x 148), torch's
default threads. The timed runs use theta' (the network's weights, perturbed:
new weights of the same shapes, as every photo brings), after a warm-up with the network's own weights, so that
a path that recompiled for new weights would show it. Paths (FastForward's options):

- eager: fp32, NCHW (what BasicSR's runners do);
- channels_last: fp32, NHWC (metaf2n-infer's default on a CPU);
- compiled: fp32, NHWC, torch.compile with the weights as inputs (--compile); its warm-up, the compilation, apart;
- bf16: bfloat16 autocast, NHWC (--bf16; the default where the CPU has AVX-512 BF16 or AMX).

The table marks the default path on this CPU (channels_last in resolve_precision('auto', 'cpu')'s format) and says
which bf16 instructions torch found.

The variants alternate in fresh processes (bench/harness.py). Each child saves its output; the parent prints
every path's largest difference from eager and, for bf16, the PSNR of its clipped output against eager's.
Random weights give outputs that are not pictures: the PSNR measures rounding, not image quality.

Target: compiled fp32 <= 0.5 x eager fp32 s/MP, its output within 1e-4 of eager's.

``--work`` only prints, for a few photo sizes, the LQ pixels the network runs on per photo pixel in metaf2n-infer's
tiles (``--tile 256 --tile-pad 10`` unless given): the even grid's (target <= 1.1) and the fixed-size windows' of
``--compile``. Arithmetic, no timing.

    python bench/infer.py [--rounds 2] [--repeats 1] [--size 256] [--tile 128] [--blocks 23] [--check]
    python bench/infer.py --work [--tile 256] [--tile-pad 10]
"""
import argparse
import os
import sys
import tempfile

from harness import alternate, arguments, flags, fmt_seconds, measure, median_of, paired_ratio, report

TARGET = 0.5
VARIANTS = {
    'eager': {
        'channels_last': False
    },
    'channels_last': {},
    'compiled': {
        'compile': True
    },
    'bf16': {
        'precision': 'bf16'
    }
}
WORK_SIZES = ((320, 221), (500, 375), (257, 257), (1000, 667))  # width, height
WORK_TARGET = 1.1


def child(variant, args):
    import time

    import torch
    from basicsr.archs.rrdbnet_arch import RRDBNet

    from metaf2n_plugin.models.fast_forward import FastForward

    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=4, num_feat=64, num_block=args.blocks, num_grow_ch=32).eval()
    theta = {name: value.detach() + 1e-3 * torch.randn_like(value) for name, value in net.named_parameters()}
    photo = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    fast = FastForward(net, 4, args.tile, args.tile_pad, **VARIANTS[variant])
    start = time.perf_counter()
    fast(None, photo)  # warm-up with the network's own weights (compiles the compiled path)
    warmup = time.perf_counter() - start
    outputs = []
    result = measure(lambda: outputs.append(fast(theta, photo)), args.repeats, warmup=False)
    torch.save(outputs[-1], os.path.join(args.out, f'{variant}.pt'))
    report({**result, 'warmup_seconds': warmup})


def print_work(tile, tile_pad):
    """The table of ``--work``; returns the even grid's largest work per photo pixel."""
    from metaf2n_plugin.models.tiling import work_per_pixel

    print(f'LQ pixels the network runs on per photo pixel, {tile} x {tile} tiles + {tile_pad} px context\n'
          '| LQ photo | even grid (default) | fixed-size windows (--compile) |\n|---|---:|---:|')
    worst = 0
    for width, height in WORK_SIZES:
        even = work_per_pixel(height, width, tile, tile_pad)
        worst = max(worst, even)
        print(f'| {width}x{height} | {even:.3f} | {work_per_pixel(height, width, tile, tile_pad, fixed=True):.3f} |')
    print(f'largest, even grid: {worst:.3f} (target <= {WORK_TARGET})')
    return worst


def main():
    parser = arguments(__doc__)
    parser.add_argument('--size', type=int, default=256, help='LQ photo side')
    parser.add_argument('--tile', type=int, help='LQ tile side (default 128; with --work 256, metaf2n-infer\'s)')
    parser.add_argument('--tile-pad', type=int, default=10, help='LQ context per tile side')
    parser.add_argument('--work', action='store_true', help='print the work per photo pixel of a few sizes, no timing')
    parser.add_argument('--out', help=argparse.SUPPRESS)
    parser.set_defaults(repeats=1)
    args = parser.parse_args()
    if args.tile is None:
        args.tile = 256 if args.work else 128
    if args.work:
        if print_work(args.tile, args.tile_pad) > WORK_TARGET and args.check:
            sys.exit(1)
        return
    if args.child:
        return child(args.child, args)
    import torch

    from metaf2n_plugin.models.precision import cpu_description, resolve_precision

    with tempfile.TemporaryDirectory() as out:
        forwarded = flags(args, 'repeats', 'size', 'tile', 'tile_pad', 'blocks') + ['--out', out]
        results = alternate(os.path.abspath(__file__), list(VARIANTS), args.rounds, forwarded)
        outputs = {variant: torch.load(os.path.join(out, f'{variant}.pt'), weights_only=True) for variant in VARIANTS}
    megapixels = args.size**2 / 1e6
    default = 'bf16' if resolve_precision('auto', 'cpu') == 'bf16' else 'channels_last'
    print(f'CPU: {cpu_description()}; the default path here: {default}')
    print(
        f'RRDBNet-{args.blocks} x4, {args.size}x{args.size} LQ ({megapixels:.3f} MP) in {args.tile}x{args.tile} tiles '
        f'+ {args.tile_pad} px context, CPU, theta\' as inputs, {args.rounds} rounds x {args.repeats} runs (medians)')
    print('| path | s per LQ MP | / eager | warm-up (compile) | peak RSS | max diff from eager |\n'
          '|---|---:|---:|---:|---:|---:|')
    for variant in VARIANTS:
        ratio, _ = paired_ratio(results, variant, 'eager')
        warmups = ', '.join(fmt_seconds(r['warmup_seconds']) for r in results[variant])
        difference = (outputs[variant] - outputs['eager']).abs().max().item()
        label = f'{variant} (default here)' if variant == default else variant
        print(f'| {label} | {median_of(results[variant], "seconds") / megapixels:.1f} | {ratio:.2f} | {warmups} | '
              f'{median_of(results[variant], "peak_rss_mb"):.0f} MB | {difference:.1e} |')
    clipped = [outputs[variant].clamp(0, 1) for variant in ('bf16', 'eager')]
    psnr = 10 * torch.log10(1 / (clipped[0] - clipped[1]).square().mean()).item()
    ratio, ratios = paired_ratio(results, 'compiled', 'eager')
    difference = (outputs['compiled'] - outputs['eager']).abs().max().item()
    print(f'compiled / eager = {ratio:.2f} (rounds: {", ".join(f"{r:.2f}" for r in ratios)}; target <= {TARGET}), '
          f'max |compiled - eager| = {difference:.1e} (target <= 1e-4); bf16 vs eager fp32: PSNR {psnr:.1f} dB '
          '(clipped outputs, random weights)')
    if args.check and (ratio > TARGET or difference > 1e-4):
        sys.exit(1)


if __name__ == '__main__':
    main()
