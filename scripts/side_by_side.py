"""Side-by-side images of a test run: LQ | unadapted | adapted | GT, with the face boxes.

    python scripts/side_by_side.py results/<name>/visualization/<dataset> --lq <LQ folder>
        [--gt <GT folder>] [--landmarks <landmarks JSON>] [--suffix <suffix>] [--out <folder>]

For every LQ image ``<stem>.<ext>``, the run's outputs are found in the visualization folder as BasicSR
saves them: ``<stem>_<suffix>.png``, the (adapted) output, and, when the model saves one,
``<stem>_<suffix>_unadapted.png``, the unadapted network's output. ``<suffix>`` is ``val.suffix`` of the
test options, or else the run's name (BasicSR's default), which ``--suffix`` defaults to. The panels are shown at the
output's size (the LQ enlarged with nearest neighbour, so that its pixels stay visible), labelled, and,
given a landmarks JSON (the format ``scripts/extract_face_pairs.py`` writes; LQ coordinates), with
every face's box on every panel. Panels missing for an image (no GT, no unadapted output) are left out.

Results are written atomically to ``--out`` (default: ``<run>/side_by_side/<dataset>``, next to the
visualization folder). An image that cannot be read is reported and skipped; the exit status is then 1.
"""
import os
import sys

from tqdm import tqdm

from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.faces import LandmarkSource, landmark_box
from metaf2n_plugin.image_io import image_with_stem, images_in, read_image, write_image
from metaf2n_plugin.names import UNADAPTED
from metaf2n_plugin.side_by_side import compose


def panels_of(lq_path, visualization, suffix, gt_folder):
    """``[(label, path)]`` of one image's panels, in display order; ValueError when it has no output."""
    stem = os.path.splitext(os.path.basename(lq_path))[0]
    adapted = os.path.join(visualization, f'{stem}_{suffix}.png')
    unadapted = os.path.join(visualization, f'{stem}_{suffix}{UNADAPTED}.png')
    if not os.path.isfile(adapted):
        raise ValueError(f'no output {adapted} for {lq_path}; was it in the test set, and is --suffix right?')
    panels = [('LQ', lq_path)] + [('unadapted', unadapted)] * os.path.isfile(unadapted) + [('adapted', adapted)]
    gt = None if gt_folder is None else image_with_stem(gt_folder, stem)
    panels += [('GT', gt)] if gt else []
    return panels


def main(argv=None):
    parser = parser_from_doc(__doc__)
    parser.add_argument('visualization', help='results/<name>/visualization/<dataset> of a basicsr.test run')
    parser.add_argument('--lq', required=True, help='the dataset\'s LQ folder')
    parser.add_argument('--gt', help='the dataset\'s GT folder')
    parser.add_argument('--landmarks', help='landmarks JSON of the LQ images (boxes drawn when given)')
    parser.add_argument('--suffix', help="the outputs' suffix: val.suffix, or the run's name (the default)")
    parser.add_argument('--out', help='output folder (default: <run>/side_by_side/<dataset>)')
    args = parser.parse_args(argv)
    visualization = os.path.normpath(args.visualization)
    run = os.path.dirname(os.path.dirname(visualization))
    suffix = args.suffix or os.path.basename(run)
    out = args.out or os.path.join(run, 'side_by_side', os.path.basename(visualization))
    lq_paths = images_in(args.lq) if os.path.isdir(args.lq) else []
    if not lq_paths:
        parser.error(f'no images in {args.lq}')
    os.makedirs(out, exist_ok=True)
    faces = LandmarkSource(args.landmarks) if args.landmarks else None
    failed = []
    for lq_path in tqdm(lq_paths, desc='side by side', unit='image'):
        try:
            panels = [(label, read_image(path)) for label, path in panels_of(lq_path, visualization, suffix, args.gt)]
            found = faces(panels[0][1], lq_path) if faces else []
            boxes = [face.box if face.box is not None else landmark_box(face.landmarks) for face in found]
            stem = os.path.splitext(os.path.basename(lq_path))[0]
            write_image(os.path.join(out, f'{stem}.png'), compose(panels, boxes))
        except (OSError, ValueError) as error:
            tqdm.write(f'skipped {lq_path}: {error}', file=sys.stderr)
            failed.append(os.path.basename(lq_path))
    print(f'{len(lq_paths) - len(failed)} side-by-side images in {out}' +
          (f'; {len(failed)} failed: {", ".join(failed)}' if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
