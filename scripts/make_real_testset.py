"""Build the real-photo test set: the built-in photos with faces, degraded as make_testset.py does, at 3 LQ sizes.

The photos are the ones this project's dependencies ship (nothing is downloaded, no photo is committed): scikit-image's
astronaut and matplotlib's grace_hopper, each squared to its top 512 x 512 (Grace Hopper's face is in the top 512 of
600 rows), with the hand-measured landmarks of metaf2n_plugin/faces/builtin_faces.json. For each preset (iid:
training's degradations; ood: past them) and GT side (512, 384, 256: LQ 128, 96, 64, the photo shrunk with
cv2.INTER_AREA first) a set of both photos is built, seeded by its index:

- <root>/sources/<photo>.png, landmarks.json: the squared photos and their faces;
- <root>/provenance.json: each photo's package, version, file and SHA-256;
- <root>/Real_<preset>_<LQ side>/{GT,LQ}/, landmarks.json, meta.json: 6 sets of 2 photos;
- <root>/people.json: the people shown (--photos keeps only some; a photo is degraded alike whichever others are in).

The faces then span (MTCNN's box width at full size, 86 and 171 px, over 4, 5.33 and 8) about 22, 16 and 11 px
(astronaut) and 43, 32 and 21 px (Grace Hopper): larger LQ faces would need photos with larger faces than these
packages ship.

Example:
    python scripts/make_real_testset.py --root datasets/real
"""
import hashlib
import importlib.metadata
import os
import sys

from metaf2n_plugin.atomic_write import write_json
from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.data.people import checked_photos, write_people
from metaf2n_plugin.data.testset_builder import build_testset
from metaf2n_plugin.faces import builtin_photo
from metaf2n_plugin.image_io import write_image

PHOTOS = {'astronaut': 'scikit-image', 'grace_hopper': 'matplotlib'}
GT_SIDES = (512, 384, 256)
PRESETS = ('iid', 'ood')


def photo_file(name):
    """The file the package ships the photo in."""
    if name == 'astronaut':
        import skimage.data
        return os.path.join(skimage.data.data_dir, 'astronaut.png')
    import matplotlib.cbook
    return str(matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False))


def set_names():
    """The sets' folder names, in build order (their index is their seed offset)."""
    return [f'Real_{preset}_{side // 4}' for preset in PRESETS for side in GT_SIDES]


def make_real_testset(root, seed=0, photos=tuple(PHOTOS)):
    """Write the sets of ``photos`` under ``root`` (module docstring); returns the sets' folders."""
    photos = checked_photos(photos, 'make_real_testset')
    write_people(root, photos)
    sources = os.path.join(root, 'sources')
    os.makedirs(sources, exist_ok=True)
    landmarks, provenance, inputs = {}, {}, []
    for name, package in PHOTOS.items():
        image, (face, ) = builtin_photo(name)
        path = os.path.join(sources, f'{name}.png')
        write_image(path, image[:512, :512])
        inputs.append(path)
        landmarks[f'{name}.png'] = {'faces': [{'landmarks': face.landmarks.tolist()}]}
        with open(photo_file(name), 'rb') as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        provenance[name] = {
            'package': package,
            'version': importlib.metadata.version(package),
            'file': os.path.relpath(photo_file(name),
                                    importlib.metadata.distribution(package).locate_file('')),
            'sha256': digest,
            'used': 'top-left 512 x 512'
        }
    write_json(os.path.join(sources, 'landmarks.json'), landmarks)
    write_json(os.path.join(root, 'provenance.json'), provenance)
    folders = []
    for k, name in enumerate(set_names()):
        preset, side = name.split('_')[1], int(name.split('_')[2]) * 4
        folder = os.path.join(root, name)
        report = build_testset(
            inputs,
            folder,
            preset,
            seed + k,
            side,
            4,
            os.path.join(sources, 'landmarks.json'),
            progress=False,
            only=photos)
        if report.skipped:
            raise ValueError(f'{name}: {report.skipped}')
        folders.append(folder)
    return folders


def main(argv=None):
    parser = parser_from_doc(__doc__)
    parser.add_argument('--root', default=os.path.join('datasets', 'real'), help='output folder (datasets/real)')
    parser.add_argument('--seed', type=int, default=0, help='set k is built with seed + k (default 0)')
    parser.add_argument('--photos', nargs='+', default=list(PHOTOS), help=f'built-in photos (default: {list(PHOTOS)})')
    args = parser.parse_args(argv)
    for folder in make_real_testset(args.root, args.seed, args.photos):
        print(folder)
    return 0


if __name__ == '__main__':
    sys.exit(main())
