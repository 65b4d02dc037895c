"""Write the built-in tiny data set (faces, backgrounds, two small test sets) from photos in scikit-image/matplotlib.

Used by the tests and the demo; takes a few seconds; the same --seed gives the same files. Layout: see
metaf2n_plugin/data/tiny_set.py.

Example:
    python scripts/make_tiny_dataset.py --root datasets/tiny
"""
import sys

from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.data.tiny_set import make_tiny_dataset


def main(argv=None):
    parser = parser_from_doc(__doc__)
    parser.add_argument('--root', default='datasets/tiny', help='output folder (default datasets/tiny)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    print(f'tiny data set -> {make_tiny_dataset(args.root, args.seed, progress=True)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
