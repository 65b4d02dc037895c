"""Build the held-out folds: per built-in person, training tasks of everyone else and a test set of that person only.

For each fold (named after the photo it holds out, metaf2n_plugin/data/people.py):

- <root>/<fold>/train/: the tiny data set (scripts/make_tiny_dataset.py) of the other people's faces;
- <root>/<fold>/test/: the real-photo test set (scripts/make_real_testset.py) of the held-out photo only, each photo
  degraded exactly as in the full set.

Each root records its people (people.json); MetaF2NModel refuses training options whose validation sets show a
person of the training faces, and this script refuses a fold that would. Takes about 20 s.

Example:
    python scripts/make_heldout_folds.py --root datasets/heldout
"""
import os
import sys

from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.data.people import FOLDS, check_disjoint, fold_photos
from metaf2n_plugin.data.tiny_set import make_tiny_dataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_real_testset import make_real_testset  # noqa: E402 (a sibling script)


def make_fold(root, held_out, seed=0):
    """Write fold ``held_out`` under ``root/<held_out>``; returns ``(train root, test root)``."""
    train_photos, test_photos = fold_photos(held_out)
    check_disjoint(train_photos, test_photos, f'fold {held_out!r}')
    train, test = os.path.join(root, held_out, 'train'), os.path.join(root, held_out, 'test')
    make_tiny_dataset(train, seed, photos=train_photos)
    make_real_testset(test, seed, photos=test_photos)
    return train, test


def main(argv=None):
    parser = parser_from_doc(__doc__)
    parser.add_argument('--root', default=os.path.join('datasets', 'heldout'), help='output folder (datasets/heldout)')
    parser.add_argument('--folds', nargs='+', default=list(FOLDS), help=f'held-out photos (default: {list(FOLDS)})')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    for held_out in args.folds:
        train, test = make_fold(args.root, held_out, args.seed)
        print(f'fold {held_out}: training {train}, testing {test}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
