"""What the default adaptation step changes against the exact step (``exact_step``, the step of 0.2: the whole
network and MaskNet in fp32, contiguous, with their graph), on the real photos: the inner loss, the adapted
parameters and the output in grey levels.

Both run ``PhotoSuperResolver`` with its defaults (the super-resolution pass in the CPU's default precision) on
Real-ESRGAN x4plus and the committed MaskNet, faces from the landmarks, the GT as pseudo GT; they differ only in the
step. For each photo of the real test sets (``scripts/make_real_testset.py``) and the six-face group photo of
``bench/adapt.py --real``: the inner losses' relative difference; the largest difference of theta' against the
largest change the step made (theta' - theta); and the outputs' largest and mean difference in 8-bit grey levels,
with the share of values that differ. The result is a table for docs/metaf2n.md#the-step-at-test-time.

    python scripts/step_difference.py [--root datasets/real]
"""
import glob
import json
import os
import sys
import tempfile

import numpy as np

from metaf2n_plugin import PhotoSuperResolver
from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.image_io import read_image, read_photo
from metaf2n_plugin.models.adaptation import adapt_to_photo

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'bench'))
from adapt import MASK, MODEL, group_photo  # noqa: E402


def photo_sets(root):
    """``(set, landmarks JSON path, [(name, lq uint8, gt float32), ...])`` of every real set, then the group photo."""
    for folder in sorted(glob.glob(os.path.join(root, 'Real_*'))):
        items = []
        for path in sorted(glob.glob(os.path.join(folder, 'LQ', '*.png'))):
            name = os.path.basename(path)
            lq = (read_photo(path).rgb * 255).round().astype(np.uint8)
            items.append((name, lq, read_image(os.path.join(folder, 'GT', name))))
        yield os.path.basename(folder), os.path.join(folder, 'landmarks.json'), items
    lq, gt, table = group_photo(3, 2)
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
        json.dump(table, f)
    yield 'group (bench/adapt.py --real)', f.name, [('group.png', lq, gt)]


def step_of(resolver, name, lq, gt):
    """``(output in grey levels, theta', inner loss, faces)`` of ``resolver`` on one photo; None when not adapted."""
    output, report = resolver.enhance(lq, name, gt)
    if not report.adapted:
        return None
    pairs = resolver.extractor(lq.astype(np.float32) / 255, gt, image_path=name)
    adapted, _, _ = adapt_to_photo(resolver.net_g, resolver.net_mask, pairs, 4, name, resolver.seed, resolver.settings,
                                   resolver.precision, resolver.exact_step, resolver.forward.memory_format)
    return (output * 255).round(), adapted, report.inner_loss, len(pairs)


def main():
    parser = parser_from_doc(__doc__)
    parser.add_argument('--root', default='datasets/real', help='the real test sets (make_real_testset.py)')
    args = parser.parse_args()
    print('| set | photo | faces | inner loss, relative difference | max abs(theta\' difference) / max abs(step) | '
          'output: max / mean grey-level difference | values that differ |')
    print('|---|---|---:|---:|---:|---:|---:|')
    for set_name, landmarks, items in photo_sets(args.root):
        fast, exact = (
            PhotoSuperResolver(
                MODEL,
                MASK,
                faces={
                    'type': 'landmarks',
                    'json_path': landmarks
                },
                restorer={
                    'type': 'oracle',
                    'size': 512
                },
                device='cpu',
                exact_step=flag,
                log=lambda line: None) for flag in (False, True))
        theta = dict(exact.net_g.named_parameters())
        for name, lq, gt in items:
            ours, theirs = step_of(fast, name, lq, gt), step_of(exact, name, lq, gt)
            if ours is None or theirs is None:
                print(f'| {set_name} | {name} | 0 | not adapted | | | |')
                continue
            step = max((theirs[1][k] - theta[k]).abs().max().item() for k in theta)
            moved = max((ours[1][k] - theirs[1][k]).abs().max().item() for k in theta)
            difference, loss = np.abs(ours[0] - theirs[0]), abs(ours[2] - theirs[2]) / theirs[2]
            print(f'| {set_name} | {name} | {ours[3]} | {loss:.1e} | {moved / step:.1e} | {difference.max():.0f} / '
                  f'{difference.mean():.4f} | {(difference > 0).mean() * 100:.2f} % |')


if __name__ == '__main__':
    main()
