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
    # a network you trained with BasicSR (any architecture), built from its options file
    metaf2n-infer photos/ --opt experiments/my_run/my_run.yml
    # the restored faces pasted into MetaF2N's output
    metaf2n-infer photos/ --paste-faces
    # the photos shared out over 4 processes (GPUs), the report gathered by the first
    torchrun --standalone --nproc_per_node 4 -m metaf2n_plugin.infer photos/ -o out

MetaF2N's weights come from metaf2n-convert (the official TensorFlow checkpoint) or from a training run
(experiments/<name>/models/net_g_<iter>.pth and net_mask_<iter>.pth). The inner step's settings are those stored in
the MaskNet file (the training's, or the conversion's), else the defaults; --lr, --adapt-params and --adaptation
change one each, and the run says so. The output keeps the photo's alpha (upscaled bicubically), grayness and 16
bits, and is written upright (EXIF orientation applied) as <stem>_metaf2n.png. No file the run writes replaces an
input or another photo's output: such a photo fails by name before anything of it is written. A photo that fails is
named with the reason, the others are still processed, and the exit status is then 1 (2: nothing could start,
e.g. missing weights). Running the same command again skips the photos whose outputs exist (--overwrite redoes
them); <out>/report.jsonl has a line per photo; one run at a time writes an output folder (docs/archive.md).

Faces are found by RetinaFace when its weights are found (or --download), else by MTCNN with the weights in
facenet-pytorch's wheel (weights/wheels/, or fetched from the package registry with --download); the run says
which. --detector picks one. The super-resolution pass runs in bf16 where the hardware runs it fast (GPUs, CPUs
with AVX-512 BF16 or AMX), else fp32 (fp16 on GPUs without bf16); the run says which, and --fp32 or --bf16 decide.
"""
import argparse
import contextlib
import functools
import glob
import os
import sys
import time

import cv2
import yaml
from tqdm import tqdm

from metaf2n_plugin.archive import REPORT, FolderBusyError, Ranks, ReportPart, folder_lock, write_report
from metaf2n_plugin.cli import add_face_weights_arguments, check_output_folder, parser_from_doc
from metaf2n_plugin.errors import message_of
from metaf2n_plugin.faces.registry import AUTO, detector_choices
from metaf2n_plugin.image_io import (IMAGE_EXTENSIONS, image_with_stem, is_image_file, read_image, read_photo,
                                     write_image, write_photo)
from metaf2n_plugin.metrics.psnr_y import psnr_y
from metaf2n_plugin.models.tiling import TILE_PAD
from metaf2n_plugin.names import OUTPUT_SUFFIX
from metaf2n_plugin.photo_super_resolver import DEFAULT_MASK, DEFAULT_MODEL, TILE, PhotoError, PhotoSuperResolver
from metaf2n_plugin.side_by_side import compose, face_panels

# PhotoSuperResolver's arguments, as the flags that give them
FLAG_NAMES = {
    'model': '--model',
    'opt': '--opt',
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
        help='the x4 SR network\'s weights: metaf2n-convert output, net_g_<iter>.pth, or a bare file of any '
        f'architecture spandrel detects (default: --opt\'s, else {DEFAULT_MODEL})')
    weights.add_argument(
        '--opt',
        help='a BasicSR options file (the training\'s): network_g, network_mask and adaptation from it, the weights '
        'from its path.pretrain_network_* or experiments/<name>/models/net_*_latest.pth')
    weights.add_argument(
        '--mask', default=DEFAULT_MASK, help=f'MaskNet: net_mask_<iter>.pth (default: --opt\'s, else {DEFAULT_MASK})')
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
    extras = parser.add_argument_group('outputs')
    extras.add_argument(
        '--paste-faces',
        action='store_true',
        help='paste each face\'s restoration (the step\'s pseudo GT) into the output, blended at its edges: '
        'MetaF2N\'s background with restored faces')
    extras.add_argument(
        '--overwrite',
        action='store_true',
        help='redo the photos whose outputs exist (default: skip them, so that a re-run resumes)')
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


def build_resolver(args, ranks=None):
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
        opt=args.opt,
        adapt=not args.no_adapt,
        faces=faces,
        restorer=restorer,
        adaptation=adaptation_changes(args),
        seed=args.seed,
        device=args.device if ranks is None else ranks.device,
        precision=args.precision,
        tile=args.tile,
        tile_pad=args.tile_pad,
        compile=args.compile,
        exact_step=args.exact_step,
        paste_faces=args.paste_faces,
        log=(lambda line: print(f'metaf2n-infer: {line}', file=sys.stderr)) if ranks is None or ranks.rank == 0 else
        (lambda line: None))


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


def outputs_of(path, folder, args):
    """The files of fixed name a photo gets in ``folder``: ``<stem>_metaf2n.png`` (written last), then the
    side-by-side when asked."""
    stem = os.path.join(folder, os.path.splitext(os.path.basename(path))[0])
    return [f'{stem}{OUTPUT_SUFFIX}.png'] + ([f'{stem}_side_by_side.png'] if args.side_by_side else [])


def plan(photos, args):
    """``(claims, taken, to_do, complete)``: each photo's claim on its outputs (None, or the message of the
    PhotoError for a name taken, :func:`claim`) and the paths claimed (inputs and outputs), the same on every rank;
    the photos to run, and those whose outputs all exist (skipped unless ``--overwrite``)."""
    taken = {os.path.realpath(path): f'the input {path!r}' for path in photos}
    claims = {}
    for path in photos:
        try:
            claim(outputs_of(path, args.out, args), os.path.basename(path), taken)
            claims[path] = None
        except PhotoError as error:
            claims[path] = str(error)
    complete = [] if args.overwrite else [
        path for path in photos if claims[path] is None and all(map(os.path.isfile, outputs_of(path, args.out, args)))
    ]
    to_do = [path for path in photos if path not in complete]
    return claims, taken, to_do, complete


def super_resolve(resolver, path, folder, taken, args):
    """One photo into ``folder``: the extra outputs asked for, then ``<stem>_metaf2n.png`` last, so that a photo
    whose output exists is complete (each file written atomically). Returns its :class:`PhotoReport`, its LQ
    megapixels and its PSNR-Y (None without ``--gt``)."""
    name = os.path.basename(path)
    out, *extras = outputs_of(path, folder, args)
    stem = out[:-len(f'{OUTPUT_SUFFIX}.png')]
    photo = read_photo(path, resolver.check_size)
    if photo.frames > 1:
        tqdm.write(
            f'{path}: {photo.frames} frames (an animation or a multi-page file); its first is super-resolved',
            file=sys.stderr)
    gt = ground_truth_of(path, args.gt) if args.gt else None
    sr, report = resolver.enhance(photo.rgb, name, gt, plain=args.side_by_side)
    face_files = [f'{stem}_face{k}.png' for k in range(len(report.pairs))] if args.save_faces else []
    claim(face_files, name, taken)
    if args.side_by_side:
        panels = [('LQ', photo.rgb), ('plain network', report.plain)]
        if report.before_paste is not None:
            panels += [('MetaF2N', report.before_paste), ('MetaF2N + restored faces', sr)]
        else:
            panels.append(('MetaF2N', sr))
        write_image(extras[0], compose(panels, [pair.box for pair in report.pairs]))
    weights = report.mask_weights or [None] * len(report.pairs)
    for face_file, pair, face_weights in zip(face_files, report.pairs, weights):
        write_image(face_file, face_panels(pair, face_weights))
    write_photo(out, photo.upscaled(sr))
    psnr = psnr_y([sr], gt)[0] if gt is not None else None
    return report, photo.rgb.shape[0] * photo.rgb.shape[1] / 1e6, psnr


def record_of(path, report, megapixels, psnr, seconds, run):
    """The ``report.jsonl`` line of a photo done."""
    return {
        'photo': path,
        'status': 'done',
        'faces_found': len(report.pairs),
        'faces_used': len(report.pairs) if report.adapted else 0,
        'patches': report.patches,
        'adapted': report.adapted,
        'reason': report.reason,
        'inner_loss': report.inner_loss,
        'settings': None if report.settings is None else report.settings.to_dict(),
        'precision': report.precision,
        'seconds': {
            key: round(value, 3)
            for key, value in report.seconds.items()
        },
        'total_seconds': round(seconds, 3),
        'psnr_y': None if psnr is None else round(psnr, 4),
        'megapixels': megapixels,
        **run
    }


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        ranks = Ranks.from_environment(args.device)
    except (RuntimeError, ValueError) as error:
        print(f'metaf2n-infer: torchrun\'s process group could not start: {error}', file=sys.stderr)
        return 2
    try:
        return run(args, ranks)
    finally:
        ranks.close()


def run(args, ranks):
    """The run of :func:`main` on this rank (returns its exit status)."""
    say = functools.partial(print, file=sys.stderr) if ranks.rank == 0 else lambda *_, **__: None
    try:
        photos, skipped = collect_inputs(args.inputs)
        if not photos:
            raise FileNotFoundError(f'no images in {", ".join(map(repr, args.inputs))} (extensions: '
                                    f'{" ".join(IMAGE_EXTENSIONS)})')
        check_output_folder(args.out, '-o')
        if args.gt and not os.path.isdir(args.gt):
            raise NotADirectoryError(f'--gt {args.gt!r} is not a folder; give the folder of the photos\' ground '
                                     'truth, one image per photo with the same stem')
        resolver = build_resolver(args, ranks)
        os.makedirs(args.out, exist_ok=True)
    except (OSError, ValueError, RuntimeError) as error:
        say(f'metaf2n-infer: {message_of(error, FLAG_NAMES)}')
        return 2
    for path in skipped:
        say(f'skipped {path}: not an image (extensions: {" ".join(IMAGE_EXTENSIONS)})')
    with contextlib.ExitStack() as stack:
        busy, known = None, {}
        if ranks.rank == 0:
            try:
                stack.enter_context(folder_lock(args.out))
                known = write_report(args.out)  # with the lines of a killed run; its writes' temporary files go
            except FolderBusyError as error:
                busy = str(error)
        busy = ranks.from_rank0(busy)
        if busy:
            say(f'metaf2n-infer: {busy}')
            return 2
        claims, taken, to_do, complete = ranks.from_rank0(plan(photos, args) if ranks.rank == 0 else None)
        if complete:
            say(f'{len(complete)} of {len(photos)} photos already have their outputs in {args.out} (--overwrite '
                'redoes them)')
        records = process(resolver, ranks.share(to_do), claims, taken, args, ranks)
        records = ranks.gathered(records)
        if ranks.rank != 0:
            return 0
        records += [{
            'photo': path,
            'status': 'skipped',
            'reason': 'its outputs existed'
        } for path in complete if path not in known]
        write_report(args.out, records)
        print(summary(records, len(complete), len(photos), args))
        return 1 if any(record['status'] == 'failed' for record in records) else 0


def process(resolver, photos, claims, taken, args, ranks):
    """This rank's share of the photos, each one's line appended to its report part as it ends; returns the
    lines."""
    part = ReportPart(args.out, ranks.rank)
    run = {'rank': ranks.rank, 'run': f'{os.uname().nodename}:{os.getpid()}'}
    try:
        for path in tqdm(photos, desc='metaf2n-infer', unit='photo', disable=ranks.rank != 0 or None):
            start = time.perf_counter()
            try:
                if claims[path] is not None:
                    raise PhotoError(claims[path])
                report, size, psnr = super_resolve(resolver, path, args.out, taken, args)
            except (OSError, ValueError, RuntimeError, cv2.error) as error:
                reason = message_of(error, FLAG_NAMES).splitlines()[0]
                tqdm.write(f'failed {path}: {reason}', file=sys.stderr)
                part.add({'photo': path, 'status': 'failed', 'error': reason, **run})
                continue
            if resolver.adapt and not report.adapted:
                tqdm.write(f'{path}: {report.reason}; written with the plain network', file=sys.stderr)
            part.add(record_of(path, report, size, psnr, time.perf_counter() - start, run))
    finally:
        part.close()
    return part.records


def summary(records, complete, total, args):
    """The run's last line(s): done, skipped, failed, not adapted, faces and speed, then each failed photo."""
    done = [record for record in records if record['status'] == 'done']
    failed = [record for record in records if record['status'] == 'failed']
    seconds = sum(record['total_seconds'] for record in done)
    megapixels = sum(record['megapixels'] for record in done)
    rate = f'{seconds / megapixels:.2f} s per LQ megapixel' if megapixels else 'no pixels processed'
    adapted = 'not adapted (--no-adapt)'
    if not args.no_adapt:
        faces = sum(record['faces_used'] for record in done)
        patches = sum(record['patches'] for record in done)
        not_adapted = sum(not record['adapted'] for record in done)
        adapted = (f'{_count(faces, "face")} used ({_count(patches, "patch pair")} in the step), '
                   f'{_count(not_adapted, "photo")} not adapted (plain network)')
    return (f'{len(done)} of {total} photos super-resolved into {args.out}, {complete} skipped (outputs complete), '
            f'{len(failed)} failed: {adapted}; {rate}; {os.path.join(args.out, REPORT)} has a line per photo' +
            ''.join(f'\n  {record["photo"]}: {record["error"]}' for record in failed))


def _count(number, noun):
    return f'{number} {noun}' + ('' if number == 1 else 's')


if __name__ == '__main__':
    sys.exit(main())
