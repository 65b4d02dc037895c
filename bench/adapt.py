"""Test-time cost of MetaF2N's adaptation: the inner step on a photo's face patches, then the adapted forward,
against the plain forward of the same photo, on the CPU it runs on.

RRDBNet x4 (64 features, 23 blocks, growth 32; random weights: the cost does not depend on them), MaskNet, a
256 x 256 LQ photo and 16 patch pairs of 16 x 16 LQ / 64 x 64 HQ (one face), eager fp32, torch's default
threads. ``adapted`` = ``adapt_to_faces`` (MaskNet frozen, one SGD step) + the forward with the adapted
parameters. The variants alternate in fresh processes (bench/harness.py).

The original TensorFlow code's figures, the anchor: docs/benchmarks.md.
Target: (inner step + adapted forward) / plain forward <= 1.15.

    python bench/adapt.py [--rounds 2] [--repeats 2] [--size 256] [--blocks 23] [--check]
"""
import os
import sys

from harness import alternate, arguments, flags, fmt_seconds, measure, median_of, paired_ratio, report

TARGET = 1.15


def child(variant, args):
    import torch
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from torch.func import functional_call

    from metaf2n_plugin import adapt_to_faces
    from metaf2n_plugin.archs.masknet_arch import MaskNet

    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=4, num_feat=64, num_block=args.blocks, num_grow_ch=32).eval()
    mask = MaskNet().requires_grad_(False)
    photo = torch.rand(1, 3, args.size, args.size)
    lq, hq = torch.rand(16, 3, 16, 16), torch.rand(16, 3, 64, 64)

    def plain():
        with torch.no_grad():
            net(photo)

    def adapted():
        params = adapt_to_faces(net, mask, lq, hq)
        with torch.no_grad():
            functional_call(net, params, (photo, ))

    def inner():
        adapt_to_faces(net, mask, lq, hq)

    report(measure({'plain': plain, 'adapted': adapted, 'inner': inner}[variant], args.repeats))


def main():
    parser = arguments(__doc__)
    parser.add_argument('--size', type=int, default=256, help='LQ photo side')
    args = parser.parse_args()
    if args.child:
        return child(args.child, args)
    forwarded = flags(args, 'repeats', 'size', 'blocks')
    results = alternate(os.path.abspath(__file__), ['plain', 'adapted', 'inner'], args.rounds, forwarded)
    ratio, ratios = paired_ratio(results, 'adapted', 'plain')
    inner_ratio, _ = paired_ratio(results, 'inner', 'plain')
    print(f'RRDBNet-{args.blocks}, {args.size}x{args.size} LQ, 16 patches 16x16 -> 64x64, CPU fp32, '
          f'{args.rounds} rounds x {args.repeats} runs (medians)')
    print('| variant | time | peak RSS |\n|---|---:|---:|')
    for key, name in (('plain', 'plain forward'), ('adapted', 'inner step + adapted forward'), ('inner',
                                                                                                'inner step alone')):
        print(f'| {name} | {fmt_seconds(median_of(results[key], "seconds"))} | '
              f'{median_of(results[key], "peak_rss_mb"):.0f} MB |')
    print(f'(inner step + adapted forward) / plain forward = {ratio:.3f}, median of the rounds\' '
          f'{", ".join(f"{r:.3f}" for r in ratios)} (target <= {TARGET}; the original TensorFlow code: 1.26); '
          f'inner step / plain forward = {inner_ratio:.3f}')
    if args.check and ratio > TARGET:
        sys.exit(1)


if __name__ == '__main__':
    main()
