"""Test-time cost of MetaF2N's adaptation: the inner step on a photo's face patches, then the adapted forward,
against the plain forward of the same photo, on the CPU it runs on.

RRDBNet x4 (64 features, 23 blocks, growth 32; random weights: the cost does not depend on them), MaskNet, a
256 x 256 LQ photo and 16 patch pairs of 16 x 16 LQ / 64 x 64 HQ (one face), eager fp32, torch's default
threads. ``adapted`` = ``adapt_to_faces`` (MaskNet frozen, one SGD step) + the forward with the adapted
parameters. The variants alternate in fresh processes (bench/harness.py).

The original TensorFlow code's figures, the anchor: docs/benchmarks.md.
Target: (inner step + adapted forward) / plain forward <= 1.15.

``--real``: what a user runs. Real-ESRGAN x4plus and the committed MaskNet (weights/RealESRGAN_x4plus.pth and
weights/x4plus_masknet_meta_net_mask.pth: ``make app`` or ``metaf2n-convert pretrained/x4plus_masknet_meta.pth
--download`` writes them), ``PhotoSuperResolver`` with its defaults on a group photo: the built-in photos tiled 3 x 2
(six faces, 384 x 256 LQ, faces from their landmarks, the GT as pseudo GT). Seconds per stage from
``PhotoReport.seconds`` (median of the 2nd and 3rd calls), for the plain network, the default step and the exact
step (``exact_step``, the step of 0.2), in the default precision and in fp32; then every parameter adapted
(``params: ~``), and 40 faces (8 x 5 smaller tiles) with the peak memory. Targets: adapted (faces + step + pass) /
plain <= 1.5 in the default precision where it is bf16, <= 1.3 in fp32.

    python bench/adapt.py [--rounds 2] [--repeats 2] [--size 256] [--blocks 23] [--check]
    python bench/adapt.py --real [--rounds 2] [--check]
"""
import os
import statistics
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


MODEL, MASK = 'weights/RealESRGAN_x4plus.pth', 'weights/x4plus_masknet_meta_net_mask.pth'
REAL_VARIANTS = {  # name: (adapt, precision, exact_step, adaptation changes, grid)
    'plain': (False, 'auto', False, {}, (3, 2)),
    'default': (True, 'auto', False, {}, (3, 2)),
    'exact': (True, 'auto', True, {}, (3, 2)),
    'plain fp32': (False, 'fp32', False, {}, (3, 2)),
    'default fp32': (True, 'fp32', False, {}, (3, 2)),
    'exact fp32': (True, 'fp32', True, {}, (3, 2)),
    'all': (True, 'auto', False, {'params': None}, (3, 2)),
    'all exact': (True, 'auto', True, {'params': None}, (3, 2)),
    'plain 40': (False, 'auto', False, {}, (8, 5)),
    'default 40': (True, 'auto', False, {}, (8, 5)),
}
TARGETS = {'default': 1.5, 'default fp32': 1.3}  # adapted / plain of the same precision


def group_photo(columns, rows):
    """``(lq uint8 (H, W, 3), gt float32 (4H, 4W, 3), landmarks table)``: the built-in photos tiled ``columns`` x
    ``rows``, each tile ``384 // columns`` LQ pixels wide (square), its face's landmarks moved with it."""
    import cv2
    import numpy as np

    from metaf2n_plugin.faces import builtin_photo

    side = 4 * (384 // columns)
    tiles = []
    for name in ('astronaut', 'grace_hopper'):
        image, faces = builtin_photo(name)
        height, width = image.shape[:2]
        scale = np.array([side / width, side / height])
        tiles.append((cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA), faces[0].landmarks * scale))
    gt = np.zeros((rows * side, columns * side, 3), np.float32)
    landmarks = []
    for index in range(columns * rows):
        row, column = divmod(index, columns)
        image, points = tiles[index % 2]
        gt[row * side:(row + 1) * side, column * side:(column + 1) * side] = image
        landmarks.append({'landmarks': ((points + [column * side, row * side]) / 4).tolist()})
    lq = cv2.resize(gt, (gt.shape[1] // 4, gt.shape[0] // 4), interpolation=cv2.INTER_AREA)
    return (lq * 255).round().astype(np.uint8), gt, {'group.png': {'faces': landmarks}}


def real_child(variant, args):
    import json
    import tempfile

    import torch

    from metaf2n_plugin import PhotoSuperResolver

    adapt, precision, exact, changes, grid = REAL_VARIANTS[variant]
    lq, gt, table = group_photo(*grid)
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
        json.dump(table, f)
    resolver = PhotoSuperResolver(
        MODEL,
        MASK,
        adapt=adapt,
        faces={
            'type': 'landmarks',
            'json_path': f.name
        },
        restorer={
            'type': 'oracle',
            'size': 512
        },
        adaptation=changes,
        device='cpu',
        precision=precision,
        exact_step=exact,
        log=lambda line: None)
    calls = []

    def step():
        calls.append(resolver.enhance(lq, 'group.png', gt)[1])

    result = measure(step, args.repeats)
    os.remove(f.name)
    stages = {
        key: sorted(report.seconds[key] for report in calls[1:])[len(calls[1:]) // 2]
        for key in calls[-1].seconds
    }
    report({
        **result, 'stages': stages,
        'patches': calls[-1].patches,
        'faces': len(calls[-1].pairs),
        'precision': calls[-1].precision,
        'threads': torch.get_num_threads(),
        'size': list(lq.shape[:2])
    })


def real_main(args):
    if not all(os.path.isfile(path) for path in (MODEL, MASK)):
        sys.exit(f'--real needs {MODEL} and {MASK}: metaf2n-convert pretrained/x4plus_masknet_meta.pth --download '
                 'writes them (or make app)')
    results = alternate(
        os.path.abspath(__file__), list(REAL_VARIANTS), args.rounds, ['--real', *flags(args, 'repeats')])
    first = results['default'][0]
    print(
        f'PhotoSuperResolver, Real-ESRGAN x4plus + committed MaskNet, group photo {first["size"][1]}x'
        f'{first["size"][0]} LQ, {first["faces"]} faces ({first["patches"]} patch pairs), {first["threads"]} threads, '
        f'{args.rounds} rounds (medians of rounds; each round the median of calls 2 and 3)')
    print('| variant | precision | faces | adaptation | super-resolution | adapted / plain | peak RSS |')
    print('|---|---|---:|---:|---:|---:|---:|')
    missed = []
    for variant, (adapt, _, _, _, grid) in REAL_VARIANTS.items():
        rounds = results[variant]
        stage = {
            key: statistics.median(r['stages'].get(key, 0.0) for r in rounds)
            for key in ('faces', 'adaptation', 'super_resolution')
        }
        plain_key = 'plain' + (' fp32' if 'fp32' in variant else '') + (' 40' if grid == (8, 5) else '')
        plain = [r['stages']['super_resolution'] for r in results[plain_key]]
        ratio = statistics.median(sum(r['stages'].values()) / p for r, p in zip(rounds, plain)) if adapt else 1.0
        print(f'| {variant} ({rounds[0]["faces"]} faces, {rounds[0]["patches"]} patches) | {rounds[0]["precision"]} | '
              f'{stage["faces"]:.2f} | {stage["adaptation"]:.2f} | {stage["super_resolution"]:.2f} | {ratio:.2f} | '
              f'{median_of(rounds, "peak_rss_mb") / 1024:.2f} GiB |')
        target = TARGETS.get(variant)
        if target is not None and (rounds[0]['precision'] == 'bf16' or 'fp32' in variant) and ratio > target:
            missed.append(f'{variant} {ratio:.2f} > {target}')
    if missed:
        print('targets missed: ' + '; '.join(missed))
    if args.check and missed:
        sys.exit(1)


def main():
    parser = arguments(__doc__)
    parser.add_argument('--size', type=int, default=256, help='LQ photo side')
    parser.add_argument('--real', action='store_true', help='the real case (module docstring)')
    args = parser.parse_args()
    if args.child:
        return (real_child if args.real else child)(args.child, args)
    if args.real:
        return real_main(args)
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
