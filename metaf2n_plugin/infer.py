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

MetaF2N's weights come from metaf2n-convert (the official TensorFlow checkpoint) or from a training run
(experiments/<name>/models/net_g_<iter>.pth and net_mask_<iter>.pth). The output keeps the photo's alpha
(upscaled bicubically), grayness and 16 bits, and is written upright (EXIF orientation applied) as
<stem>_metaf2n.png; an input is never overwritten. A photo that fails is named with the reason, the others are
still processed, and the exit status is then 1 (2: nothing could start, e.g. missing weights).

Faces are found by RetinaFace when its weights are found (or --download), else by MTCNN with the weights in
facenet-pytorch's wheel (weights/wheels/, or fetched from the package registry with --download); the run says
which. --detector picks one.
"""
import glob
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import torch
from basicsr.utils import img2tensor
from tqdm import tqdm

from metaf2n_plugin.checkpoints import (load_state_dict, masknet_options, network_from, read_checkpoint,
                                        rrdbnet_options, state_dict_of)
from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.faces import FacePairExtractor
from metaf2n_plugin.faces.detection import RETINAFACE_MODELS
from metaf2n_plugin.faces.restoration import GPEN_RELEASES
from metaf2n_plugin.image_io import (IMAGE_EXTENSIONS, Photo, image_with_stem, is_image_file, read_image, read_photo,
                                     tensor_to_image, write_image, write_photo)
from metaf2n_plugin.models.adaptation import adapt_to_photo, upsample
from metaf2n_plugin.models.fast_forward import FastForward
from metaf2n_plugin.names import NET_G_FILE, NET_MASK_FILE, WEIGHTS_DIR
from metaf2n_plugin.side_by_side import compose
from metaf2n_plugin.weights import DOWNLOAD_HELP, WEIGHTS_HELP, locate_weights

SCALE = 4
MIN_SIDE = 16  # one LR face patch (64 / 4)
SUFFIX = '_metaf2n'
DETECTORS = ('auto', 'retinaface', 'mtcnn')
OFFICIAL_WEIGHTS = 'https://drive.google.com/drive/folders/1R0ekBOXWufM5vu0PZNYeCpAPS2R1w3gf'


class PhotoError(ValueError):
    """A photo that cannot be processed; the message says why."""


def build_parser():
    parser = parser_from_doc(__doc__, 'metaf2n-infer')
    parser.add_argument('inputs', nargs='+', help='photos: files, folders (their images) or globs')
    parser.add_argument('-o', '--out', default='results', help='output folder (default: results)')
    weights = parser.add_argument_group('weights')
    weights.add_argument(
        '--model',
        default=os.path.join(WEIGHTS_DIR, NET_G_FILE),
        help='the SR network (RRDBNet x4, any size): metaf2n-convert output or net_g_<iter>.pth')
    weights.add_argument(
        '--mask', default=os.path.join(WEIGHTS_DIR, NET_MASK_FILE), help='MaskNet: net_mask_<iter>.pth')
    weights.add_argument('--restorer-weights', help=f'GPEN-BFR-<size>.pth, or its folder ({WEIGHTS_HELP})')
    weights.add_argument(
        '--restorer-size',
        type=int,
        default=512,
        choices=sorted(GPEN_RELEASES),
        help='GPEN-BFR-512 (MetaF2N at test time) or the lighter GPEN-BFR-256; with --gt, the size '
        'faces are aligned at')
    weights.add_argument(
        '--detector-weights',
        help='RetinaFace: detection_Resnet50_Final.pth, or its folder '
        f'({WEIGHTS_HELP}); MTCNN: the facenet-pytorch 2.6.0 wheel or its folder (default: weights/, weights/wheels/)')
    weights.add_argument('--download', action='store_true', help=DOWNLOAD_HELP)
    faces = parser.add_argument_group('adaptation')
    faces.add_argument('--landmarks', help='faces as JSON (keyed by file name, LQ pixels) instead of the detector')
    faces.add_argument('--no-adapt', action='store_true', help='the plain network: no faces, no adaptation')
    faces.add_argument(
        '--detector',
        choices=DETECTORS,
        default='auto',
        help='face detector (default auto: RetinaFace if its weights are found, else MTCNN)')
    faces.add_argument(
        '--no-mask',
        action='store_true',
        help='adapt with every face pixel weighted 1 (MaskNet off, naive face fine-tuning); --mask is not read')
    faces.add_argument(
        '--gt',
        help='a folder of the photos\' ground truth (same stems, x4): the faces\' pseudo GT is '
        'their GT crop (the oracle restorer, as in the demo) instead of GPEN\'s restoration')
    faces.add_argument(
        '--lr',
        type=float,
        help='inner learning rate: the adaptation.lr the model was trained with (default: the one stored in the '
        'MaskNet file by metaf2n-convert, else 0.01, MetaF2N\'s)')
    faces.add_argument(
        '--adapt-params',
        help='regex of the parameters the step adapts, adaptation.params (default: the one stored in the MaskNet '
        'file, else all)')
    faces.add_argument('--seed', type=int, default=0, help='seed of the face patches drawn for the inner step')
    speed = parser.add_argument_group('speed and memory')
    speed.add_argument('--tile', type=int, default=256, help='LQ tile side (0: whole photo; default 256)')
    speed.add_argument('--tile-pad', type=int, default=10, help='LQ context pixels around each tile (default 10)')
    speed.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='torch device (default: cuda when available, else cpu)')
    speed.add_argument('--bf16', action='store_true', help='bfloat16 autocast for the super-resolution pass')
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


def check_output_folder(folder):
    """Create ``folder`` and prove it writable; OSError with the fix otherwise."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OSError(f'output folder {folder!r} cannot be written ({error.strerror or error}); choose another '
                      'with -o') from None


def load_networks(args, device):
    """``(net_g, net_mask, adaptation)`` on ``device``; net_mask is None with ``--no-adapt`` or ``--no-mask``;
    ``adaptation``: ``lr``, ``params`` (the flags, else the MaskNet file's, else 0.01 and all), ``legacy_bicubic``."""
    missing = [(flag, path) for flag, path in (('--model', args.model), ('--mask', args.mask))
               if not os.path.isfile(path) and not (flag == '--mask' and (args.no_adapt or args.no_mask))]
    if missing:
        listing = ', '.join(f'{flag} {path!r}' for flag, path in missing)
        raise FileNotFoundError(
            f'MetaF2N weights not found: {listing}. The official weights are a TensorFlow checkpoint at '
            f'{OFFICIAL_WEIGHTS} (no direct download; --download cannot fetch them): download it, then '
            f'`metaf2n-convert <checkpoint prefix> --out {os.path.dirname(args.model) or "."}` writes '
            f'{os.path.basename(args.model)} and {os.path.basename(args.mask)} there. Or point --model/--mask at '
            'a training run\'s experiments/<name>/models/net_g_<iter>.pth and net_mask_<iter>.pth.')
    state, where = load_state_dict(args.model, '--model'), f'--model {args.model!r}'
    net_g = network_from(state, rrdbnet_options(state, where), where).eval().to(device)
    stored, net_mask = {}, None
    if not (args.no_adapt or args.no_mask):
        checkpoint = read_checkpoint(args.mask, '--mask')
        state, where = state_dict_of(checkpoint, args.mask, '--mask'), f'--mask {args.mask!r}'
        net_mask = network_from(state, masknet_options(state, where), where).eval().requires_grad_(False).to(device)
        stored = checkpoint if isinstance(checkpoint, dict) else {}
    trained = stored.get('adaptation') or {}
    adaptation = dict(
        lr=args.lr if args.lr is not None else trained.get('lr', 0.01),
        params=args.adapt_params if args.adapt_params is not None else trained.get('params'),
        legacy_bicubic=bool(stored.get('legacy_bicubic')))
    return net_g, net_mask, adaptation


def build_extractor(args, device):
    """The face source and restorer (the oracle with --gt), built now so that missing weights stop the run before
    any photo."""
    source = {'type': 'landmarks', 'json_path': args.landmarks}
    if not args.landmarks:
        detector = choose_detector(args)
        other = ('.pth', '.pt') if detector == 'mtcnn' else ('.whl', )  # the other detector's file: not this one's
        weights = None if str(args.detector_weights).endswith(other) else args.detector_weights
        source = {'type': detector, 'weights': weights, 'download': args.download}
    restorer = {'type': 'oracle', 'size': args.restorer_size}
    if not args.gt:
        restorer.update(type='gpen', weights=args.restorer_weights, download=args.download)
    extractor = FacePairExtractor.from_options({'scale': SCALE, 'source': source, 'restorer': restorer}, device)
    extractor.load()
    return extractor


def choose_detector(args):
    """``--detector``, or for ``auto`` RetinaFace when its weights are found (or downloadable), else MTCNN; says
    which ran and why."""
    if args.detector != 'auto':
        return args.detector
    if str(args.detector_weights).endswith('.whl'):
        return 'mtcnn'
    try:
        locate_weights(RETINAFACE_MODELS['retinaface_resnet50'][1], '', 'RetinaFace', args.detector_weights)
    except FileNotFoundError:
        if not args.download:
            print(
                'metaf2n-infer: RetinaFace\'s weights (detection_Resnet50_Final.pth) not found; faces are found by '
                'MTCNN (facenet-pytorch\'s weights). --detector retinaface --download fetches RetinaFace\'s.',
                file=sys.stderr)
            return 'mtcnn'
    print('metaf2n-infer: faces are found by RetinaFace (ResNet-50)', file=sys.stderr)
    return 'retinaface'


def ground_truth_of(path, folder):
    """The image in ``folder`` with the stem of ``path``, read as RGB float; PhotoError if there is none."""
    stem = os.path.splitext(os.path.basename(path))[0]
    found = image_with_stem(folder, stem)
    if found is None:
        raise PhotoError(f'no ground truth {stem}.* in --gt {folder!r}')
    return read_image(found)


def memory_needed(height, width, bits, tile, tile_pad, num_feat):
    """Bytes a photo needs: the float32 output, its conversion to ``bits``, and one window's activations."""
    output = 4 * 3 * SCALE**2 * height * width
    window = tile + 2 * tile_pad
    side = min(window, height) * min(window, width) if tile else height * width
    activations = 4 * num_feat * 3 * SCALE**2 * side  # a few full-resolution feature maps of the window
    return 2 * output + 3 * (bits // 8) * SCALE**2 * height * width + activations


def available_memory():
    """Bytes the OS can still give (MemAvailable), or None where /proc/meminfo does not exist."""
    try:
        with open('/proc/meminfo') as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith('MemAvailable:'))
    except (OSError, StopIteration):
        return None


class PhotoSuperResolver:
    """Algorithm 2 on one photo at a time, with the networks and the face pipeline loaded once.

    ``extractor`` None: the plain network (no faces); ``net_mask`` None: adapted with every face pixel weighted 1.
    The keyword options are metaf2n-infer's flags:
    ``gt_folder`` is ``--gt``; ``lr``, ``params`` and ``legacy_bicubic`` may come from a converted MaskNet file
    (:func:`load_networks`).
    """

    def __init__(self,
                 net_g,
                 net_mask=None,
                 extractor=None,
                 device='cpu',
                 *,
                 legacy_bicubic=False,
                 lr=0.01,
                 params=None,
                 seed=0,
                 gt_folder=None,
                 tile=256,
                 tile_pad=10,
                 bf16=False,
                 compile=False,
                 save_faces=False,
                 side_by_side=False):
        self.net_g, self.net_mask, self.extractor, self.device = net_g, net_mask, extractor, torch.device(device)
        self.adaptation = dict(lr=lr, params=params, legacy_bicubic=legacy_bicubic)
        self.seed, self.gt_folder, self.tile, self.tile_pad = seed, gt_folder, tile, tile_pad
        self.extras = dict(save_faces=save_faces, side_by_side=side_by_side)
        self.forward = FastForward(net_g, SCALE, tile, tile_pad, self.device.type == 'cpu', bf16, compile)
        self.num_feat = net_g.conv_first.out_channels
        self.free = available_memory()

    def check_size(self, height, width, bits):
        if min(height, width) < MIN_SIDE:
            raise PhotoError(f'{width}x{height} pixels; MetaF2N needs at least {MIN_SIDE}x{MIN_SIDE} (one face patch)')
        needed = memory_needed(height, width, bits, self.tile, self.tile_pad, self.num_feat)
        if self.free is not None and needed > self.free:
            raise PhotoError(f'{width}x{height} pixels: its {SCALE * width}x{SCALE * height} output needs about '
                             f'{needed / 2**30:.1f} GiB, {self.free / 2**30:.1f} GiB are available; crop it into parts '
                             'or downscale it' + ('' if self.tile else ', or tile it (--tile 256)'))

    def __call__(self, path, out_path):
        """Super-resolve one photo into ``out_path``.

        Returns:
            ``(faces used, LQ megapixels, why not adapted)``; the last is None when adapted or with --no-adapt.
        """
        name = os.path.basename(path)
        photo = read_photo(path, self.check_size)
        lq = img2tensor(photo.rgb, bgr2rgb=False)[None].to(self.device)
        adapted, pairs, reason = None, [], None
        if self.extractor is not None:
            gt = ground_truth_of(path, self.gt_folder) if self.gt_folder else None
            pairs = self.extractor(photo.rgb, gt, image_path=path)
            adapted, _, reason = adapt_to_photo(self.net_g, self.net_mask, pairs, SCALE, name, self.seed,
                                                **self.adaptation)
        sr = tensor_to_image(self.forward(adapted, lq))
        alpha = None
        if photo.alpha is not None:
            alpha = np.clip(cv2.resize(photo.alpha, sr.shape[1::-1], interpolation=cv2.INTER_CUBIC), 0, 1)
        write_photo(out_path, Photo(sr, alpha, photo.gray, photo.bits))
        stem = os.path.splitext(out_path)[0].removesuffix(SUFFIX)
        if self.extras['save_faces']:
            self.save_faces(pairs, stem)
        if self.extras['side_by_side']:
            plain = sr if adapted is None else tensor_to_image(self.forward(None, lq))
            boxes = [pair.box for pair in pairs]
            write_image(f'{stem}_side_by_side.png',
                        compose([('LQ', photo.rgb), ('plain network', plain), ('MetaF2N', sr)], boxes))
        faces_used = len(pairs) if adapted is not None else 0
        return faces_used, photo.rgb.shape[0] * photo.rgb.shape[1] / 1e6, reason

    @torch.no_grad()
    def save_faces(self, pairs, stem):
        """``<stem>_face<k>.png``: the LQ face, its restoration (valid pixels) and MaskNet's weights W / max W."""
        for k, pair in enumerate(pairs):
            lq, hq = (image[None].to(self.device) for image in img2tensor([pair.lq, pair.hq], bgr2rgb=False))
            weights = torch.ones_like(hq[:, :1]) if self.net_mask is None else self.net_mask(
                torch.cat([upsample(lq, hq.shape[-2:], self.adaptation['legacy_bicubic']), hq], dim=1))
            weights = weights[0, 0].cpu().numpy() * pair.mask
            peak = float(weights.max())
            shown = np.repeat((weights / peak if peak > 0 else weights)[:, :, None], 3, axis=2)
            write_image(
                f'{stem}_face{k}.png',
                compose([('LQ face', pair.lq), ('restored', pair.hq * pair.mask[:, :, None]),
                         (f'W / {peak:.3g}', shown)], []))


def output_path(path, folder, taken):
    """``<folder>/<stem>_metaf2n.png``; PhotoError when it is an input or another photo's output."""
    out = os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + SUFFIX + '.png')
    key = os.path.realpath(out)
    if key in taken:
        raise PhotoError(f'its output {out!r} would overwrite {taken[key]}; rename one of them')
    taken[key] = f'the output of {os.path.basename(path)!r}'
    return out


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.tile < 0 or args.tile_pad < 0:
        parser.error(f'--tile and --tile-pad must be >= 0, got {args.tile} and {args.tile_pad}')
    try:
        photos, skipped = collect_inputs(args.inputs)
        if not photos:
            raise FileNotFoundError(f'no images in {", ".join(map(repr, args.inputs))} (extensions: '
                                    f'{" ".join(IMAGE_EXTENSIONS)})')
        check_output_folder(args.out)
        if args.compile and not args.tile:
            raise ValueError('--compile needs --tile (one compilation serves tiles of one size)')
        net_g, net_mask, adaptation = load_networks(args, args.device)
        extractor = None if args.no_adapt else build_extractor(args, args.device)
        options = {
            name: getattr(args, name)
            for name in ('seed', 'tile', 'tile_pad', 'bf16', 'compile', 'save_faces', 'side_by_side')
        }
        model = PhotoSuperResolver(net_g, net_mask, extractor, args.device, gt_folder=args.gt, **adaptation, **options)
    except (OSError, ValueError, RuntimeError) as error:
        print(f'metaf2n-infer: {error}', file=sys.stderr)
        return 2
    for path in skipped:
        print(f'skipped {path}: not an image (extensions: {" ".join(IMAGE_EXTENSIONS)})', file=sys.stderr)
    taken = {os.path.realpath(path): f'the input {path!r}' for path in photos}
    failed, faces, without_faces, megapixels = [], 0, 0, 0.0
    start = time.perf_counter()
    for path in tqdm(photos, desc='metaf2n-infer', unit='photo'):
        try:
            used, size, reason = model(path, output_path(path, args.out, taken))
        except (OSError, ValueError, RuntimeError, cv2.error) as error:
            failed.append((path, str(error).splitlines()[0]))
            tqdm.write(f'failed {path}: {failed[-1][1]}', file=sys.stderr)
            continue
        if reason is not None:
            tqdm.write(f'{path}: {reason}; written with the plain network', file=sys.stderr)
        faces += used
        without_faces += reason is not None
        megapixels += size
    seconds = time.perf_counter() - start
    done = len(photos) - len(failed)
    rate = f'{seconds / megapixels:.2f} s per LQ megapixel' if megapixels else 'no pixels processed'
    adapted = 'not adapted (--no-adapt)'
    if not args.no_adapt:
        adapted = (f'{_count(faces, "face")} used, {_count(without_faces, "photo")} without a usable face '
                   '(plain network)')
    print(f'{done} of {len(photos)} photos super-resolved into {args.out}: {adapted}; {rate}' +
          (f'; {len(failed)} failed:' if failed else '') + ''.join(f'\n  {path}: {reason}' for path, reason in failed))
    return 1 if failed else 0


def _count(number, noun):
    return f'{number} {noun}' + ('' if number == 1 else 's')


if __name__ == '__main__':
    sys.exit(main())
