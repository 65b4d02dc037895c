"""Cost of the SSG loss: this plugin's shifted-difference formulation vs the naive double unfold.

Both compute the same loss (forward + backward, ``SSGLoss`` defaults, Laplacian mask of the target)
on crops of real photos (scikit-image and matplotlib samples, so the mask density is natural). The
naive formulation is SSL's pure-PyTorch one: unfold the search window around every masked pixel, then
every patch in it (≈ 608 KB per masked pixel), here with reflect-padded full patches so that its
numbers equal ours.

Each variant runs in a fresh process with the default allocator, as a user's training process runs it: a
warm-up call, then ``--repeats`` timed calls (forward + backward). "Peak extra memory" is the process's peak
RSS over all those calls minus its RSS just before the first; the time is the median of the timed calls.
The machine is noisy: read the ratios, which are measured side by side.

Targets (``--check`` exits 1 when one is missed): peak extra memory <= 400 MB at 4x3x256x256; at the
largest size where the unfold formulation fits in ``--unfold-budget-gb``, >= 10x less memory and
>= 3x faster than it.

    python bench/ssg.py [--repeats 3] [--unfold-budget-gb 8] [--check]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from metaf2n_plugin.cli import parser_from_doc

SIZES = [(1, 64), (1, 96), (1, 128), (1, 192), (1, 256), (2, 256), (4, 256)]  # (batch, side)
TARGET_BATCH = (4, 256)
UNFOLD_BYTES_PER_ROW = 3 * 3 * 81 * 625 * 4  # unfolded patches, their difference, its square (fp32, C=3)


def photo_batch(n, side):
    """(n, 3, side, side) RGB in [0, 1]: centre crops of n sample photos (n <= 4)."""
    import numpy as np
    import torch
    from matplotlib import cbook
    from skimage import data
    from skimage.io import imread

    photos = [data.astronaut(), data.coffee(), data.chelsea(), imread(cbook.get_sample_data('grace_hopper.jpg'))]
    crops = []
    for img in photos[:n]:
        y, x = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
        crops.append(np.ascontiguousarray(img[y:y + side, x:x + side, :3]))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255


def unfold_distances(img, mask, patch_size, search_size):
    """Patch distances by the double unfold: (M, search_size²), equal to ``patch_distances``."""
    import torch.nn.functional as F

    reach = search_size // 2 + patch_size // 2
    window = search_size + patch_size - 1
    padded = F.pad(img, (reach, ) * 4, mode='reflect')
    n, y, x = mask[:, 0].nonzero(as_tuple=True)
    rows = padded.unfold(2, window, 1).unfold(3, window, 1)[n, :, y, x]  # (M, C, window, window)
    patches = F.unfold(rows, patch_size)  # (M, C * patch_size², search_size²)
    centre = patches[:, :, search_size**2 // 2:search_size**2 // 2 + 1]
    return (patches - centre).pow(2).mean(dim=1)


def unfold_ssg_loss(pred, target, h=0.004, patch_size=9, search_size=25):
    import torch

    from metaf2n_plugin.losses.ssg_loss import laplacian_mask

    mask = laplacian_mask(target)
    graphs = [torch.softmax(-unfold_distances(img, mask, patch_size, search_size) / h, dim=1) for img in (pred, target)]
    return (graphs[0] - graphs[1]).abs().mean()


def measure(variant, n, side, repeats):
    """Run in a child process: peak extra memory over a warm-up and ``repeats`` calls, their median time."""
    import torch

    from metaf2n_plugin.losses.ssg_loss import SSGLoss, laplacian_mask

    torch.manual_seed(0)
    target = photo_batch(n, side)
    pred = (target + 0.02 * torch.randn_like(target)).clamp(0, 1).requires_grad_()
    loss_fn = SSGLoss() if variant == 'ours' else unfold_ssg_loss

    def step():
        pred.grad = None
        loss = loss_fn(pred, target)
        loss.backward()
        return loss.item()

    rss_before = int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])  # kB
    value = step()  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    return {
        'peak_mb': peak_mb,
        'seconds': statistics.median(seconds),
        'loss': value,
        'rows': int(laplacian_mask(target).sum())
    }


def run_child(variant, n, side, repeats):
    """Memory and time of one variant and size, measured together in a fresh process."""
    proc = subprocess.run(
        [sys.executable, __file__, '--child', variant,
         str(n), str(side), str(repeats)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f'{variant} at {n}x3x{side}x{side} failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mask_rows(n, side):
    from metaf2n_plugin.losses.ssg_loss import laplacian_mask
    return int(laplacian_mask(photo_batch(n, side)).sum())


def main():
    parser = parser_from_doc(__doc__)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument(
        '--unfold-budget-gb',
        type=float,
        default=8.0,
        help='largest estimated memory the unfold formulation may use (3 planes of 608 KB per row)')
    parser.add_argument('--check', action='store_true', help='exit 1 if a target is missed')
    parser.add_argument('--child', nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, n, side, repeats = args.child
        print(json.dumps(measure(variant, int(n), int(side), int(repeats))))
        return

    fits = [s for s in SIZES if mask_rows(*s) * UNFOLD_BYTES_PER_ROW <= args.unfold_budget_gb * 2**30]
    if not fits:
        sys.exit('the unfold formulation fits at no size: raise --unfold-budget-gb')
    n, side = fits[-1]
    ours, naive = run_child('ours', n, side, args.repeats), run_child('unfold', n, side, args.repeats)
    big = run_child('ours', *TARGET_BATCH, args.repeats)
    mem_ratio, speedup = naive['peak_mb'] / ours['peak_mb'], naive['seconds'] / ours['seconds']

    print(f'SSG loss forward+backward, defaults (patch 9, window 25), photo crops; {os.cpu_count()} CPU threads')
    print(f'{"formulation":<16}{"batch":>14}{"masked px":>11}{"peak extra MB":>15}{"seconds":>9}{"loss":>12}')
    for name, (bn, bs), r in [('unfold (naive)', (n, side), naive), ('ours', (n, side), ours),
                              ('ours', TARGET_BATCH, big)]:
        print(f'{name:<16}{f"{bn}x3x{bs}x{bs}":>14}{r["rows"]:>11}{r["peak_mb"]:>15.0f}{r["seconds"]:>9.2f}'
              f'{r["loss"]:>12.4e}')
    print(f'at {n}x3x{side}x{side}: {mem_ratio:.1f}x less memory (target >= 10), {speedup:.1f}x faster (target >= 3)')
    print(f'at {TARGET_BATCH[0]}x3x{TARGET_BATCH[1]}x{TARGET_BATCH[1]}: peak extra {big["peak_mb"]:.0f} MB '
          f'(target <= 400)')
    if abs(ours['loss'] - naive['loss']) > 1e-4 * abs(naive['loss']):
        sys.exit(f'the formulations disagree: {ours["loss"]} vs {naive["loss"]}')
    if args.check and (mem_ratio < 10 or speedup < 3 or big['peak_mb'] > 400):
        sys.exit(1)


if __name__ == '__main__':
    main()
