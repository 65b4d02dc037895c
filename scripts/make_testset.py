r"""Build a paired ×4 test set with faces: GT, LQ, landmarks.json and meta.json (every image's seed and draw).

Single-face sets take aligned HQ faces (FFHQ, CelebA-HQ) and resize them to --gt-size; with --backgrounds, a
multi-face set pastes 2-4 of the faces into each background. --preset iid degrades like training; --preset ood
with blur, noise and JPEG strengths just past the training ranges (see metaf2n_plugin/data/testset_builder.py).
The same inputs and --seed give byte-identical files. An input that cannot be read is reported and skipped;
the others are still written, and the exit status is then 1.

Examples (the six sets of the paper's tables):
    python scripts/make_testset.py --input datasets/FFHQ_test --out datasets/test/FFHQ_iid --preset iid
    python scripts/make_testset.py --input datasets/FFHQ_test --out datasets/test/FFHQ_ood --preset ood
    python scripts/make_testset.py --input datasets/CelebA-HQ_test --out datasets/test/CelebA_iid --preset iid
    python scripts/make_testset.py --input datasets/CelebA-HQ_test --out datasets/test/CelebA_ood --preset ood
    python scripts/make_testset.py --input datasets/FFHQ_test --backgrounds datasets/DIV2K_valid_HR \
        --num-images 100 --out datasets/test/FFHQ_Multi_iid --preset iid
    python scripts/make_testset.py --input datasets/FFHQ_test --backgrounds datasets/DIV2K_valid_HR \
        --num-images 100 --out datasets/test/FFHQ_Multi_ood --preset ood
"""
import sys

from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.data.image_files import list_images
from metaf2n_plugin.data.testset_builder import PRESETS, build_testset


def parse_args(argv):
    parser = parser_from_doc(__doc__)
    parser.add_argument('--input', required=True, help='folder of HQ face images (one face each)')
    parser.add_argument('--out', required=True, help="the set's folder, e.g. datasets/test/FFHQ_iid")
    parser.add_argument('--preset', choices=sorted(PRESETS), default='iid')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--gt-size', type=int, default=512, help='GT side in pixels (default 512)')
    parser.add_argument('--scale', type=int, default=4, help='SR factor (default 4)')
    parser.add_argument('--landmarks', help="JSON of the inputs' landmarks; default: aligned faces (GPEN template)")
    parser.add_argument('--backgrounds', help='folder of background images: build a multi-face set')
    parser.add_argument('--num-images', type=int, help='multi-face images to make (default: one per background)')
    parser.add_argument('--faces-per-image', type=int, nargs=2, default=[2, 4], metavar=('MIN', 'MAX'))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        inputs = list_images(args.input, what='input')
        backgrounds = list_images(args.backgrounds, what='background') if args.backgrounds else None
        report = build_testset(inputs, args.out, args.preset, args.seed, args.gt_size, args.scale, args.landmarks,
                               backgrounds, args.num_images, tuple(args.faces_per_image))
    except (OSError, ValueError) as err:  # missing or empty folders, bad options
        print(err, file=sys.stderr)
        return 2
    for path, reason in report.skipped:
        print(f'skipped {path}: {reason}', file=sys.stderr)
    print(f'{len(report.written)} images written, {len(report.skipped)} skipped -> {args.out}')
    return 1 if report.skipped else 0


if __name__ == '__main__':
    sys.exit(main())
