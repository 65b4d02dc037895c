"""Who is in the built-in data, and the held-out split: no person on both sides of training and testing.

Each data builder that takes built-in photos writes ``people.json`` (``{"people": [...]}``) at its root; the
datasets' folders find it by walking up (:func:`people_of`). A fold is named after the photo it holds out:
``fold_folders`` gives its training root (every other person's faces) and its test root (that photo only).
"""
import json
import os

from metaf2n_plugin.atomic_write import write_json

# built-in photo -> the person it shows (scikit-image's astronaut is Eileen Collins)
PEOPLE = {'astronaut': 'Eileen Collins', 'grace_hopper': 'Grace Hopper'}
PEOPLE_FILE = 'people.json'
FOLDS = tuple(sorted(PEOPLE))  # one fold per held-out photo


def checked_photos(photos, where):
    """``photos`` as a sorted tuple of built-in photo names; ValueError naming ``where`` and an unknown name."""
    unknown = sorted(set(photos) - set(PEOPLE))
    if unknown or not photos:
        raise ValueError(f'{where}: unknown built-in photo(s) {unknown or "(none given)"}; choose from {list(PEOPLE)}')
    return tuple(sorted(set(photos)))


def check_disjoint(train_photos, test_photos, where='the split', hint=''):
    """ValueError naming every person whose photo is on both sides (``hint`` ends its message)."""
    shared = sorted(PEOPLE[photo] for photo in set(train_photos) & set(test_photos))
    if shared:
        raise ValueError(f'{where} puts {", ".join(shared)} both in training and in testing: a held-out result '
                         f'needs disjoint people (hold each person out in their own fold){hint}')


def fold_photos(held_out):
    """``(training photos, test photos)`` of the fold that holds out ``held_out``."""
    (held_out, ) = checked_photos([held_out], 'fold')
    return tuple(photo for photo in sorted(PEOPLE) if photo != held_out), (held_out, )


def write_people(root, photos):
    """Record which built-in photos' people a data root holds."""
    os.makedirs(root, exist_ok=True)
    write_json(os.path.join(root, PEOPLE_FILE), {'photos': list(photos), 'people': [PEOPLE[p] for p in photos]})


def people_of(folder, levels=3):
    """The built-in photos recorded in the nearest ``people.json`` at ``folder`` or up to ``levels`` parents above
    it, or None when there is none (data not made by this project's builders)."""
    folder = os.path.abspath(folder)
    for _ in range(levels + 1):
        path = os.path.join(folder, PEOPLE_FILE)
        if os.path.isfile(path):
            with open(path, encoding='utf-8') as f:
                return tuple(json.load(f)['photos'])
        folder = os.path.dirname(folder)
    return None


def check_options_disjoint(datasets):
    """Given BasicSR's ``datasets`` options, ValueError when a person of the training faces (``dataroot_face``) is
    in a validation or test set (``dataroot_lq``). Sets without a ``people.json`` are not checked."""
    hint = ' (or set val.held_out: false, to watch training on its own people rather than to measure it)'
    train = datasets.get('train') or {}
    train_photos = people_of(train['dataroot_face']) if train.get('dataroot_face') else None
    if train_photos is None:
        return
    for key, dataset in datasets.items():
        if key != 'train' and dataset.get('dataroot_lq'):
            test_photos = people_of(dataset['dataroot_lq'])
            if test_photos is not None:
                check_disjoint(train_photos, test_photos, f'datasets.{key} ({dataset.get("name", key)})', hint)
