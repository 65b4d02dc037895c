"""metaf2n-infer: MetaF2N on your photos. Faces are found and restored, the network adapts to the photo in one
step on them (Algorithm 2), then super-resolves the whole photo x4.

Examples:
    # one photo, written as results/photo_metaf2n.png
    metaf2n-infer photo.jpg
    # folders (their images) and globs, into out/
    metaf2n-infer photos/ 'more/*.png' -o out
    # faces given as landmarks: no detector
    metaf2n-infer photo.jpg --landmarks faces.json
    # the plain network: no faces needed
    metaf2n-infer photo.jpg --no-adapt
    # Real-ESRGAN x4plus adapted naively (MaskNet off: every face pixel weighs 1), faces found by MTCNN
    metaf2n-infer photo.jpg --model weights/RealESRGAN_x4plus.pth --no-mask --lr 0.001 --detector mtcnn
    # two inner steps instead of the number stored with MaskNet
    metaf2n-infer photo.jpg --adaptation steps=2

MetaF2N's weights come from metaf2n-convert (the official TensorFlow checkpoint) or from a training run
(experiments/<name>/models/net_g_<iter>.pth and net_mask_<iter>.pth). The inner step's settings are those stored in
the MaskNet file (the training's, or the conversion's), else the defaults; --lr, --adapt-params and --adaptation
change one each, and the run says so. The output keeps the photo's alpha (upscaled bicubically), grayness and 16
bits, and is written upright (EXIF orientation applied) as <stem>_metaf2n.png. No file the run writes replaces an
input or another photo's output: such a photo fails by name before anything of it is written. A photo that fails is
named with the reason, the others are still processed, and the exit status is then 1 (2: nothing could start,
e.g. missing weights).

Faces are found by RetinaFace when its weights are found (or --download), else by MTCNN with the weights in
facenet-pytorch's wheel (weights/wheels/, or fetched from the package registry with --download); the run says
which. --detector picks one. The super-resolution pass runs in bf16 where the hardware runs it fast (GPUs, CPUs
with AVX-512 BF16 or AMX), else fp32 (fp16 on GPUs without bf16); the run says which, and --fp32 or --bf16 decide.
"""
import argparse
import contextlib
import glob
import os
import sys
import time

import cv2
import yaml
from tqdm import tqdm

from metaf2n_plugin.cli import add_face_weights_arguments, check_output_folder, parser_from_doc
from metaf2n_plugin.errors import message_of
from metaf2n_plugin.faces.registry import AUTO, detector_choices
from metaf2n_plugin.image_io import (IMAGE_EXTENSIONS, image_with_stem, is_image_file, read_image, read_photo,
                                     write_image, write_photo)
from metaf2n_plugin.models.tiling import TILE_PAD
from metaf2n_plugin.names import OUTPUT_SUFFIX
from metaf2n_plugin.photo_super_resolver import DEFAULT_MASK, DEFAULT_MODEL, TILE, PhotoError, PhotoSuperResolver
from metaf2n_plugin.side_by_side import compose, face_panels

# PhotoSuperResolver's arguments, as the flags that give them
FLAG_NAMES = {
    'model': '--model',
    'mask': '--mask',
    'adaptation': 'the flags',
    'seed': '--seed',
    'device': '--device',
    'tile': '--tile',
    'tile_pad': '--tile-pad'
}


def build_parser():
    parser = parser_from_doc(__doc__, 'metaf2n-infer')
    parser.add_argument('inputs', nargs='+', help='photos: files, folders (their images) or globs')
    parser.add_argument('-o', '--out', default='results', help='output folder (default: results)')
    weights = parser.add_argument_group('weights')
    weights.add_argument(
        '--model',
        default=DEFAULT_MODEL,
        help='the SR network (RRDBNet x4, any size): metaf2n-convert output or net_g_<iter>.pth')
    weights.add_argument('--mask', default=DEFAULT_MASK, help='MaskNet: net_mask_<iter>.pth')
    add_face_weights_arguments(weights)
    faces = parser.add_argument_group('adaptation')
    faces.add_argument('--landmarks', help='faces as JSON (keyed by file name, LQ pixels) instead of the detector')
    faces.add_argument('--no-adapt', action='store_true', help='the plain network: no faces, no adaptation')
    faces.add_argument(
        '--detector',
        choices=detector_choices(),
        default=AUTO,
        help='face detector (default auto: RetinaFace if its weights are found, else MTCNN)')
    faces.add_argument(
        '--no-mask',
        action='store_true',
        help='adapt with every face pixel weighted 1 (MaskNet off, naive face fine-tuning); --mask is not read')
    faces.add_argument(
        '--gt',
        help='a folder of the photos\' ground truth (same stems, x4): the faces\' pseudo GT is '
        'their GT crop (the oracle restorer, as in the demo) instead of GPEN\'s restoration')
    faces.add_argument('--lr', type=float, help='inner learning rate: --adaptation lr=LR')
    faces.add_argument('--adapt-params', help='regex of the parameters the step adapts: --adaptation params=REGEX')
    faces.add_argument(
        '--adaptation',
        action='append',
        type=adaptation_item,
        default=[],
        metavar='KEY=VALUE',
        help='one adaptation setting (lr, steps, params, legacy_bicubic, num_patches, patch_size), the value read '
        'as YAML; repeatable (default: those stored in the MaskNet file, else MetaF2N\'s)')
    faces.add_argument('--seed', type=int, default=0, help='seed of the face patches drawn for the inner step')
    speed = parser.add_argument_group('speed and memory')
    speed.add_argument('--tile', type=int, default=TILE, help=f'LQ tile side (0: whole photo; default {TILE})')
    speed.add_argument(
        '--tile-pad', type=int, default=TILE_PAD, help=f'LQ context pixels around each tile (default {TILE_PAD})')
    speed.add_argument('--device', help='torch device (default: cuda when available, else cpu)')
    precision = speed.add_mutually_exclusive_group()
    precision.add_argument(
        '--fp32',
        dest='precision',
        action='store_const',
        const='fp32',
        default='auto',
        help='float32 super-resolution (default: bf16 where the hardware runs it fast, else fp32)')
    precision.add_argument(
        '--bf16',
        dest='precision',
        action='store_const',
        const='bf16',
        help='bfloat16 autocast for the super-resolution pass (slow on CPUs without AVX-512 BF16 or AMX)')
    speed.add_argument(
        '--exact-step',
        action='store_true',
        help='the adaptation step of 0.2: the whole network and MaskNet in fp32 with their graph (default: what the '
        'step never differentiates runs in the pass\'s precision without a graph)')
    speed.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the network for the tile size (needs --tile and a C++ compiler)')
    extras = parser.add_argument_group('extra outputs')
    extras.add_argument(
        '--save-faces', action='store_true', help='<stem>_face<k>.png: LQ face | restored face | MaskNet weights')
    extras.add_argument(
        '--side-by-side',
        action='store_true',
        help='<stem>_side_by_side.png: LQ | plain network | MetaF2N, face boxes drawn')
    return parser


def adaptation_item(text):
    """``KEY=VALUE`` -> ``(KEY, VALUE)``, e.g. ``steps=2`` -> ``('steps', 2)``: ``params``' value is taken as written
    (a regex; ``~`` for all), the others are read as YAML, numbers such as ``1e-3`` included (YAML 1.1 reads a
    string there)."""
    key, sep, value = text.partition('=')
    key = key.strip()
    if not (sep and key):
        raise argparse.ArgumentTypeError(f'expected KEY=VALUE (e.g. steps=2), got {text!r}')
    if key == 'params':
        return key, None if value.strip() in ('~', 'null', '') else value
    try:
        read = yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f'{text!r}: its value is not YAML ({error.problem})') from None
    if isinstance(read, str):
        with contextlib.suppress(ValueError):
            read = float(read)
    return key, read


def adaptation_changes(args):
    """The adaptation settings the flags give, ``{field: value}``; ValueError for one given twice."""
    shorthands = (('lr', args.lr), ('params', args.adapt_params))
    items = args.adaptation + [(key, value) for key, value in shorthands if value is not None]
    keys = [key for key, _ in items]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f'adaptation settings given twice: {", ".join(twice)} (--lr is --adaptation lr=..., '
                         '--adapt-params --adaptation params=...)')
    return dict(items)


def collect_inputs(arguments):
    """``(photos, skipped)``: image files named by files, folders and globs (sorted, once each), and the
    non-image files of the folders. Raises FileNotFoundError for an argument that names nothing."""
    photos, skipped, seen = [], [], set()
    for argument in arguments:
        if os.path.isdir(argument):
            entries = sorted(os.path.join(argument, name) for name in os.listdir(argument) if not name.startswith('.'))
            files = [path for path in entries if os.path.isfile(path)]
            found = [path for path in files if is_image_file(path)]
            skipped += [path for path in files if path not in found]
        elif os.path.isfile(argument):
            found = [argument]
        else:
            found = sorted(path for path in glob.glob(argument) if os.path.isfile(path))
            if not found:
                raise FileNotFoundError(f'{argument!r}: no such file or folder, and no file matches it as a glob')
        for path in found:
            if os.path.realpath(path) not in seen:
                seen.add(os.path.realpath(path))
                photos.append(path)
    return photos, skipped


def build_resolver(args):
    """The :class:`PhotoSuperResolver` the flags describe (networks and face pipeline loaded, or the error)."""
    faces = {'type': args.detector, 'weights': args.detector_weights, 'download': args.download}
    if args.landmarks:
        faces = {'type': 'landmarks', 'json_path': args.landmarks}
    restorer = {'type': 'oracle', 'size': args.restorer_size}
    if not args.gt:
        restorer.update(type='gpen', weights=args.restorer_weights, download=args.download)
    return PhotoSuperResolver(
        args.model,
        None if args.no_mask else args.mask,
        adapt=not args.no_adapt,
        faces=faces,
        restorer=restorer,
        adaptation=adaptation_changes(args),
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        tile=args.tile,
        tile_pad=args.tile_pad,
        compile=args.compile,
        exact_step=args.exact_step,
        log=lambda line: print(f'metaf2n-infer: {line}', file=sys.stderr))


def ground_truth_of(path, folder):
    """The image in ``folder`` with the stem of ``path``, read as RGB float; PhotoError if there is none."""
    stem = os.path.splitext(os.path.basename(path))[0]
    found = image_with_stem(folder, stem)
    if found is None:
        raise PhotoError(f'no ground truth {stem}.* in --gt {folder!r}')
    return read_image(found)


def claim(paths, photo, taken):
    """Record ``paths`` in ``taken`` (real path -> what it is) as ``photo``'s outputs; PhotoError naming both files,
    and none recorded, when one is an input or another photo's output."""
    for path in paths:
        owner = taken.get(os.path.realpath(path))
        if owner is not None:
            raise PhotoError(f'its output {path!r} would overwrite {owner}; rename one of them')
    taken.update((os.path.realpath(path), f'the output of {photo!r}') for path in paths)


def super_resolve(resolver, path, folder, taken, args):
    """One photo into ``folder``: ``<stem>_metaf2n.png`` and the extra outputs asked for, each path claimed
    (:func:`claim`) before any is written. Returns its :class:`PhotoReport` and its LQ megapixels."""
    name = os.path.basename(path)
    stem = os.path.join(folder, os.path.splitext(name)[0])
    out, side_by_side = f'{stem}{OUTPUT_SUFFIX}.png', f'{stem}_side_by_side.png'
    claim([out, side_by_side] if args.side_by_side else [out], name, taken)
    photo = read_photo(path, resolver.check_size)
    if photo.frames > 1:
        tqdm.write(
            f'{path}: {photo.frames} frames (an animation or a multi-page file); its first is super-resolved',
            file=sys.stderr)
    gt = ground_truth_of(path, args.gt) if args.gt else None
    sr, report = resolver.enhance(photo.rgb, name, gt, plain=args.side_by_side)
    face_files = [f'{stem}_face{k}.png' for k in range(len(report.pairs))] if args.save_faces else []
    claim(face_files, name, taken)
    write_photo(out, photo.upscaled(sr))
    if args.side_by_side:
        write_image(
            side_by_side,
            compose([('LQ', photo.rgb), ('plain network', report.plain), ('MetaF2N', sr)],
                    [pair.box for pair in report.pairs]))
    weights = report.mask_weights or [None] * len(report.pairs)
    for face_file, pair, face_weights in zip(face_files, report.pairs, weights):
        write_image(face_file, face_panels(pair, face_weights))
    return report, photo.rgb.shape[0] * photo.rgb.shape[1] / 1e6


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        photos, skipped = collect_inputs(args.inputs)
        if not photos:
            raise FileNotFoundError(f'no images in {", ".join(map(repr, args.inputs))} (extensions: '
                                    f'{" ".join(IMAGE_EXTENSIONS)})')
        check_output_folder(args.out, '-o')
        if args.gt and not os.path.isdir(args.gt):
            raise NotADirectoryError(f'--gt {args.gt!r} is not a folder; give the folder of the photos\' ground '
                                     'truth, one image per photo with the same stem')
        resolver = build_resolver(args)
        os.makedirs(args.out, exist_ok=True)
    except (OSError, ValueError, RuntimeError) as error:
        print(f'metaf2n-infer: {message_of(error, FLAG_NAMES)}', file=sys.stderr)
        return 2
    for path in skipped:
        print(f'skipped {path}: not an image (extensions: {" ".join(IMAGE_EXTENSIONS)})', file=sys.stderr)
    taken = {os.path.realpath(path): f'the input {path!r}' for path in photos}
    failed, faces, patches, not_adapted, megapixels = [], 0, 0, 0, 0.0
    start = time.perf_counter()
    for path in tqdm(photos, desc='metaf2n-infer', unit='photo'):
        try:
            report, size = super_resolve(resolver, path, args.out, taken, args)
        except (OSError, ValueError, RuntimeError, cv2.error) as error:
            failed.append((path, message_of(error, FLAG_NAMES).splitlines()[0]))
            tqdm.write(f'failed {path}: {failed[-1][1]}', file=sys.stderr)
            continue
        if resolver.adapt and not report.adapted:
            tqdm.write(f'{path}: {report.reason}; written with the plain network', file=sys.stderr)
            not_adapted += 1
        faces += len(report.pairs) if report.adapted else 0
        patches += report.patches
        megapixels += size
    seconds = time.perf_counter() - start
    done = len(photos) - len(failed)
    rate = f'{seconds / megapixels:.2f} s per LQ megapixel' if megapixels else 'no pixels processed'
    adapted = 'not adapted (--no-adapt)'
    if not args.no_adapt:
        adapted = (f'{_count(faces, "face")} used ({_count(patches, "patch pair")} in the step), '
                   f'{_count(not_adapted, "photo")} not adapted (plain network)')
    print(f'{done} of {len(photos)} photos super-resolved into {args.out}: {adapted}; {rate}' +
          (f'; {len(failed)} failed:' if failed else '') + ''.join(f'\n  {path}: {reason}' for path, reason in failed))
    return 1 if failed else 0


def _count(number, noun):
    return f'{number} {noun}' + ('' if number == 1 else 's')


if __name__ == '__main__':
    sys.exit(main())
