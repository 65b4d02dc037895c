"""metaf2n-app: MetaF2N in a web page on your computer. Drop a photo or pick a built-in one, and see the faces found,
their restoration, MaskNet's weights on them, and the photo super-resolved x4 by the network adapted to them, against
the plain network; optionally with the restored faces pasted in.

Examples:
    # the page at http://127.0.0.1:7860, with the weights found in weights/
    metaf2n-app
    # a training run's weights added to the page's weights menu
    metaf2n-app --model experiments/run/models/net_g_5000.pth --mask experiments/run/models/net_mask_5000.pth
    # a network trained with BasicSR (any architecture), built from its options file, its last weights
    metaf2n-app --opt experiments/run/train_run.yml
    # GPEN-BFR-256 from a folder of yours, on another port
    metaf2n-app --restorer-weights ~/gpen --restorer-size 256 --port 7861

The page is served on 127.0.0.1 only, with no analytics, no share link and nothing fetched from the internet (its
fonts are the system's). The weights menu lists each weights/<name>_net_mask.pth with weights/<name>_net_g.pth (else
Real-ESRGAN x4plus, weights/RealESRGAN_x4plus.pth), x4plus without MaskNet (every face pixel weighs 1), and --model
with --mask (built from --opt when given); a missing file is named with the command that makes it. Faces are
restored by GPEN when its weights are found (--download fetches them), else, for a photo given with its ground
truth, cut out of the ground truth (the oracle); without either the page shows the plain network's output and says
why. One photo is processed at a time (others wait in the queue), the networks staying loaded between photos. The
output PNG keeps the photo's bits, alpha and grayness, upright, as metaf2n-infer writes it.
"""
import atexit
import contextvars
import dataclasses
import glob
import math
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import Any, Optional

import cv2
import numpy as np
import torch

from metaf2n_plugin.cli import add_face_weights_arguments, parser_from_doc
from metaf2n_plugin.errors import OptionError, message_of
from metaf2n_plugin.faces import builtin_photo
from metaf2n_plugin.faces.registry import AUTO, detector_choices
from metaf2n_plugin.faces.restoration import GPEN_URL
from metaf2n_plugin.image_io import (IMAGE_EXTENSIONS, images_in, is_image_file, read_image, read_photo, write_image,
                                     write_photo)
from metaf2n_plugin.metrics.psnr_y import psnr_y
from metaf2n_plugin.models.precision import resolve_precision
from metaf2n_plugin.names import OUTPUT_SUFFIX, WEIGHTS_DIR
from metaf2n_plugin.ncnn_weights import OUTPUT_FILE
from metaf2n_plugin.photo_super_resolver import SCALE, TILE, PhotoError, PhotoSuperResolver
from metaf2n_plugin.side_by_side import BOX_COLOUR, face_panels, heat_map
from metaf2n_plugin.sr_network import read_training_options
from metaf2n_plugin.weights import locate_weights

HOST, PORT = '127.0.0.1', 7860
X4PLUS_MASKNET = 'x4plus_masknet_meta_net_mask.pth'  # metaf2n-convert's file of pretrained/x4plus_masknet_meta.pth
MASK_END, NET_G_END = '_net_mask.pth', '_net_g.pth'
# how the weights files the menu offers by default are made, in the repository root
MADE_BY = {
    OUTPUT_FILE: '`make demo`, or `metaf2n-convert realesrgan-ncnn --download`',
    X4PLUS_MASKNET: '`make demo`, or `metaf2n-convert pretrained/x4plus_masknet_meta.pth --download`',
}
REAL_SETS = os.path.join('datasets', 'real')  # scripts/make_real_testset.py's sets: LQ/ and GT/ each
BUILTIN_SIDE = 512  # the package photos' top square, their GT; their LQ is 4x smaller
SHOWN_SIDE = 512  # the boxed photo is enlarged (nearest, at most 4x) until its longer side reaches this
KEPT_REQUESTS = 4  # request folders kept; older ones are deleted (Gradio has copied their files by then)
KEPT_RESOLVERS = 2  # PhotoSuperResolvers kept loaded, the most recently used
# PhotoSuperResolver's arguments, as the page calls them
NAMES = {'model': 'model', 'mask': 'MaskNet', 'adaptation': 'the page'}
STAGES = {  # the summary's names of PhotoReport.seconds' stages
    'faces': 'faces',
    'adaptation': 'adaptation step',
    'super_resolution': 'super-resolution',
    'super_resolution_and_plain': 'super-resolution, adapted and plain',
    'plain': 'plain network',
    'paste_faces': 'pasting the faces'
}
HIDDEN_ERRORS = (OSError, ValueError, RuntimeError, MemoryError, cv2.error)  # shown in the page, not as a traceback


@dataclasses.dataclass(frozen=True)
class WeightsChoice:
    """One entry of the weights menu: the SR network's file and MaskNet's (None: every face pixel weighs 1), and the
    BasicSR options file that builds them (None: read off the files)."""
    label: str
    model: str
    mask: Optional[str]
    opt: Optional[str] = None

    def missing(self):
        """Why the choice cannot run (its missing files, each with the command that makes it), or None."""
        absent = [path for path in (self.model, self.mask) if path is not None and not os.path.isfile(path)]
        if not absent:
            return None
        advice = []
        for path in absent:
            made_by = MADE_BY.get(os.path.basename(path))
            how = f'make it with {made_by} in the repository root' if made_by else 'put the file there'
            advice.append(f'`{path}` ({how})')
        return f'Weights not found: {"; ".join(advice)}. Then press Super-resolve again.'


def weights_choices(model=None, mask=None, folder=WEIGHTS_DIR, opt=None):
    """The weights menu, in order: ``model`` with ``mask`` (the flags; None: none), built as the BasicSR options file
    ``opt`` says when given (its weights when ``model``/``mask`` are None), each ``<name>_net_mask.pth`` of ``folder``
    with ``<name>_net_g.pth`` (else x4plus), and x4plus without MaskNet. Without any MaskNet file the committed
    MaskNet's conversion is offered, so that the page says how to make it; missing files are labelled. OptionError
    for an ``opt`` that is no options file."""
    x4plus = os.path.join(folder, OUTPUT_FILE)
    choices, built_by = [], ''
    if opt:
        options = read_training_options(opt)
        model, mask = model or options.model, mask or options.mask
        built_by = f'{options.network_g["type"]} of {opt}: '
    if model:
        choices.append(WeightsChoice(f'{built_by}{model} + {mask or "no MaskNet (W = 1)"}', model, mask, opt))
    masks = sorted(glob.glob(os.path.join(glob.escape(folder), '*' + MASK_END)))
    for path in masks or [os.path.join(folder, X4PLUS_MASKNET)]:
        name = os.path.basename(path)[:-len(MASK_END)]
        net_g = os.path.join(folder, name + NET_G_END)
        net_g = net_g if os.path.isfile(net_g) else x4plus
        choices.append(WeightsChoice(f'{name} MaskNet on {os.path.basename(net_g)}', net_g, path))
    choices.append(WeightsChoice(f'{os.path.basename(x4plus)}, no MaskNet (W = 1)', x4plus, None))
    return [dataclasses.replace(c, label=c.label + (' (missing)' if c.missing() else '')) for c in choices]


def builtin_photos(folder, real_sets=REAL_SETS):
    """``{label: (LQ path, GT path or None)}``: the real-photo test sets' LQ photos with their GT when ``real_sets``
    exists, else the package photos (astronaut, grace_hopper), their top 512 x 512 as GT and that shrunk 4x
    (``cv2.INTER_AREA``) as LQ, written into ``folder``."""
    if os.path.isdir(real_sets):
        photos = {}
        for lq_folder in sorted(glob.glob(os.path.join(glob.escape(real_sets), '*', 'LQ'))):
            for lq in images_in(lq_folder):
                gt = os.path.join(os.path.dirname(lq_folder), 'GT', os.path.basename(lq))
                label = f'{os.path.basename(os.path.dirname(lq_folder))}/{os.path.basename(lq)}'
                photos[label] = (lq, gt if os.path.isfile(gt) else None)
        return photos
    photos = {}
    for name in ('astronaut', 'grace_hopper'):
        gt = builtin_photo(name)[0][:BUILTIN_SIDE, :BUILTIN_SIDE]
        paths = [os.path.join(folder, kind, f'{name}.png') for kind in ('LQ', 'GT')]
        side = BUILTIN_SIDE // SCALE
        for path, image in zip(paths, (cv2.resize(gt, (side, side), interpolation=cv2.INTER_AREA), gt)):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_image(path, image)
        photos[f'{name}.png'] = tuple(paths)
    return photos


def half_precision(device):
    """The half precision of ``device``: what ``resolve_precision('auto')`` picks where the hardware runs it fast,
    else bf16 (emulated and slow on CPUs without AVX-512 BF16 or AMX; the resolver warns)."""
    auto = resolve_precision('auto', device)
    return 'bf16' if auto == 'fp32' else auto


def boxed_photo(rgb, boxes):
    """``(kH, kW, 3)`` float32: ``rgb`` ``(H, W, 3)`` enlarged k times (nearest; k <= 4, up to a side of
    :data:`SHOWN_SIDE`) with each of ``boxes`` (``(x0, y0, x1, y1)``, LQ pixels) drawn and numbered from 1."""
    scale = min(4, max(1, math.ceil(SHOWN_SIDE / max(rgb.shape[:2]))))
    pixels = np.clip(cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) * 255, 0, 255)
    pixels = np.ascontiguousarray(pixels.round().astype(np.uint8))
    for number, box in enumerate(boxes, 1):
        x0, y0, x1, y1 = (round(value * scale) for value in box)
        cv2.rectangle(pixels, (x0, y0), (x1, y1), BOX_COLOUR, 2)
        cv2.putText(pixels, str(number), (x0 + 3, y0 + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, BOX_COLOUR, 2, cv2.LINE_AA)
    return pixels.astype(np.float32) / 255


def difference(ours, plain):
    """``(heat map (H, W, 3) float32, its caption)`` of ``|ours - plain|`` (``(H, W, 3)`` in [0, 1]), averaged over
    the channels and scaled by its maximum, which the caption gives in 8-bit grey levels."""
    gap = np.abs(ours - plain).mean(axis=2)
    peak = float(gap.max())
    if peak == 0:
        return heat_map(gap), 'MetaF2N - plain network: identical (no face step)'
    return heat_map(gap / peak), f'|MetaF2N - plain network|, black 0 to yellow {peak * 255:.1f} grey levels'


@dataclasses.dataclass
class PageResult:
    """What the page shows for one request: image files, the face gallery ``[(file, caption)]``, the slider's
    ``(plain file, MetaF2N file)``, the markdown ``summary`` (an error's message when it failed), the output PNG, and
    with the faces pasted the second slider's ``(MetaF2N file, output PNG)`` (else None)."""
    summary: str
    boxed: Optional[str] = None
    faces: Optional[list] = None
    slider: Optional[tuple] = None
    difference: Optional[str] = None
    difference_caption: Optional[str] = None
    download: Optional[str] = None
    pasted: Optional[tuple] = None


class Page:
    """The page's work, without Gradio: the weights menu, the built-in photos, and :meth:`run` on one photo with
    the resolvers kept loaded.

    ``model``, ``mask``: weights files added first to the menu (:func:`weights_choices`), built as the BasicSR
    options file ``opt`` says when given; ``restorer_weights``,
    ``restorer_size``: GPEN's file (or folder) and size; ``detector_weights``: RetinaFace's or MTCNN's;
    ``download``: fetch the missing ones; ``seed``: of the face patches; ``device``: torch's (None: cuda when
    available, else cpu).
    """

    def __init__(self,
                 model: Optional[str] = None,
                 mask: Optional[str] = None,
                 *,
                 opt: Optional[str] = None,
                 restorer_weights: Optional[str] = None,
                 restorer_size: int = 512,
                 detector_weights: Optional[str] = None,
                 download: bool = False,
                 seed: int = 0,
                 device: Optional[str] = None) -> None:
        self.restorer_weights, self.restorer_size = restorer_weights, restorer_size
        self.detector_weights, self.download, self.seed = detector_weights, download, seed
        self.device = device or ('cuda' if torch.cuda.is_available() else 'cpu')  # as PhotoSuperResolver's
        self.folder = tempfile.mkdtemp(prefix='metaf2n-app-')
        atexit.register(shutil.rmtree, self.folder, ignore_errors=True)
        self.choices = {choice.label: choice for choice in weights_choices(model, mask, opt=opt)}
        self.builtins = builtin_photos(os.path.join(self.folder, 'builtin'))
        # key -> (PhotoSuperResolver, the lines it logged)
        self.resolvers: OrderedDict[tuple, tuple[PhotoSuperResolver, list[str]]] = OrderedDict()
        self.requests = 0
        # (Future, function, arguments) for the thread in :meth:`work`
        self.jobs: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple]] = queue.SimpleQueue()

    def submit(self, function, *args):
        """A Future of ``function(*args)``, run by the thread in :meth:`work`."""
        future = Future()
        self.jobs.put((future, function, args))
        return future

    def work(self):
        """Run the submitted jobs one after the other until Ctrl-C or SIGTERM: their KeyboardInterrupt is raised
        again, the job it stopped cancelled (its Future raises CancelledError). Gradio runs each event on a thread of
        its pool, but torch processed a photo faster from the main thread (docs/benchmarks.md): :func:`serve` gives
        the main thread this loop."""
        while True:
            future, function, args = self.jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(*args))
                except Exception as error:  # the caller's to raise
                    future.set_exception(error)
                except BaseException:
                    future.set_exception(CancelledError())
                    raise

    def restorer(self, with_gt):
        """``(FacePairExtractor's restorer option or None, what restores the faces)``: GPEN when its weights are
        found or may be downloaded (--download), else the oracle ``with_gt``, else None with the reason."""
        size = self.restorer_size
        file_name = f'GPEN-BFR-{size}.pth'
        if not self.download:
            try:
                locate_weights(
                    file_name,
                    GPEN_URL + file_name,
                    f'GPEN-{size} (face restorer)',
                    self.restorer_weights,
                    option='--restorer-weights')
            except FileNotFoundError as missing:
                if with_gt:
                    return {'type': 'oracle', 'size': size}, 'their crops of the ground truth (the oracle; no GPEN)'
                return None, str(missing)
        gpen = {'type': 'gpen', 'size': size, 'weights': self.restorer_weights, 'download': self.download}
        return gpen, f'GPEN-BFR-{size}'

    def resolver(self, choice, detector, precision, tile, lr, restorer, paste_faces=False):
        """The :class:`PhotoSuperResolver` of these settings and the lines it logged, loaded once and kept among the
        :data:`KEPT_RESOLVERS` most recently used; ``paste_faces`` is dropped without a ``restorer`` (no face to
        paste)."""
        paste_faces = paste_faces and restorer is not None
        key = (choice, detector, precision, tile, lr, repr(restorer), paste_faces)
        if key in self.resolvers:
            self.resolvers.move_to_end(key)
            return self.resolvers[key]
        lines = []

        def log(line):
            lines.append(line)
            print(f'metaf2n-app: {line}', file=sys.stderr)

        faces = {'type': detector, 'weights': self.detector_weights, 'download': self.download}
        resolver = PhotoSuperResolver(
            choice.model,
            choice.mask,
            opt=choice.opt,
            adapt=restorer is not None,
            faces=faces,
            restorer=restorer,
            adaptation=None if lr is None else {'lr': lr},
            seed=self.seed,
            device=self.device,
            precision=precision,
            tile=tile,
            paste_faces=paste_faces,
            log=log)
        self.resolvers[key] = resolver, lines
        while len(self.resolvers) > KEPT_RESOLVERS:
            self.resolvers.popitem(last=False)
        return resolver, lines

    def request_folder(self):
        """A new folder for one request's images; the folders older than the :data:`KEPT_REQUESTS` last go."""
        self.requests += 1
        for old in range(self.requests - KEPT_REQUESTS, 0, -1):
            shutil.rmtree(os.path.join(self.folder, f'request{old}'), ignore_errors=True)
        folder = os.path.join(self.folder, f'request{self.requests}')
        os.makedirs(folder)
        return folder

    def run(self,
            photo_path,
            gt_path,
            weights,
            lr=None,
            tile=TILE,
            half=True,
            detector=AUTO,
            paste_faces=False,
            progress=None):
        """One photo through the page: a :class:`PageResult`, whose summary holds the reason when it failed.

        ``photo_path``/``gt_path``: the uploaded files (``gt_path`` None: no GT); ``weights``: a label of
        :attr:`choices`; ``lr``: the inner learning rate (None: the stored one); ``tile``: LQ tile side (0: whole
        photo; None: 256); ``half``: half precision for the super-resolution pass; ``detector``: one of
        :func:`~metaf2n_plugin.faces.registry.detector_choices`; ``paste_faces``: the output PNG gets the restored
        faces blended in (:attr:`PageResult.pasted` shows it against MetaF2N's); ``progress(fraction, text)``, if
        given, hears each stage.
        """
        progress = progress or (lambda fraction, text: None)
        start = time.perf_counter()
        name = os.path.basename(photo_path or '')
        try:
            if not photo_path:
                return PageResult('Drop a photo, or pick a built-in one.')
            choice = self.choices[weights]
            if choice.missing():
                return PageResult(choice.missing())
            progress(0.05, 'loading the networks')
            gt = read_ground_truth(gt_path) if gt_path else None
            restorer, restored_by = self.restorer(gt is not None)
            precision = half_precision(self.device) if half else 'fp32'
            tile = TILE if tile is None else int(tile)  # None: the box emptied
            resolver, lines = self.resolver(choice, detector, precision, tile, lr, restorer, paste_faces)
            progress(0.2, 'reading the photo')
            photo = read_uploaded_photo(photo_path, resolver.check_size)
            height, width = photo.rgb.shape[:2]
            if gt is not None and gt.shape[:2] != (SCALE * height, SCALE * width):
                raise PhotoError(f'the ground truth is {gt.shape[1]}x{gt.shape[0]} pixels; for this {width}x{height} '
                                 f'photo it must be {SCALE * width}x{SCALE * height}')
            progress(0.3, 'faces, the adaptation step and the super-resolution')
            output, report = resolver.enhance(photo.rgb, name, gt, plain=True)
            progress(0.9, 'writing the images')
            result = self.show(name, photo, output, report, restorer)
        except HIDDEN_ERRORS as error:
            message = message_of(error, NAMES)
            message = message.replace(photo_path, name) if photo_path else message
            return PageResult(f'**{name or "The request"} could not be processed.** {message}')
        seconds = time.perf_counter() - start
        result.summary = summary(name, photo, report, choice, restored_by, lines, gt, output, seconds, paste_faces)
        return result

    def show(self, name, photo, output, report, restorer):
        """The :class:`PageResult` of the photo ``name`` processed (``output``, ``report``), its images written into
        a new request folder; the summary is left to :func:`summary`."""
        folder = self.request_folder()
        stem = os.path.splitext(name)[0]
        files = {key: os.path.join(folder, f'{key}.png') for key in ('boxed', 'difference')}
        write_image(files['boxed'], boxed_photo(photo.rgb, [pair.box for pair in report.pairs]))
        metaf2n = output if report.before_paste is None else report.before_paste
        shown, caption = difference(metaf2n, report.plain)
        write_image(files['difference'], shown)
        restored = 'GT' if restorer and restorer['type'] == 'oracle' else 'restored'
        faces = []
        weights = report.mask_weights or [None] * len(report.pairs)
        for number, (pair, face_weights) in enumerate(zip(report.pairs, weights), 1):
            path = os.path.join(folder, f'face{number}.png')
            write_image(path, face_panels(pair, face_weights, restored))
            x0, y0, x1, y1 = pair.box
            faces.append((path, f'face {number}: ({x0}, {y0})-({x1}, {y1}), {x1 - x0}x{y1 - y0} LQ pixels'))
        # the slider shows the output PNG itself (with the faces pasted: MetaF2N's before it), and the plain network's,
        # each written as the output PNG is (bits, alpha, gray)
        download, plain = (os.path.join(folder, f'{stem}{end}.png') for end in (OUTPUT_SUFFIX, '_plain'))
        write_photo(download, photo.upscaled(output))
        write_photo(plain, photo.upscaled(report.plain))
        if report.before_paste is None:
            return PageResult('', files['boxed'], faces, (plain, download), files['difference'], caption, download)
        before = os.path.join(folder, f'{stem}_before_paste.png')
        write_photo(before, photo.upscaled(report.before_paste))
        return PageResult('', files['boxed'], faces, (plain, before), files['difference'], caption, download,
                          (before, download))


def read_uploaded_photo(path, check_size):
    """:func:`~metaf2n_plugin.image_io.read_photo`; a file that cannot be decoded and has no image extension is
    called what it is (ValueError)."""
    try:
        return read_photo(path, check_size)
    except ValueError as error:
        if isinstance(error, PhotoError) or is_image_file(path):
            raise
        extension = os.path.splitext(path)[1] or 'no extension'
        raise ValueError(f'{os.path.basename(path)!r} is not an image ({extension}); the page reads photos: '
                         f'{" ".join(IMAGE_EXTENSIONS)}') from None


def read_ground_truth(path):
    """The uploaded ground truth, ``(4H, 4W, 3)`` float32 RGB in [0, 1]; ValueError naming it as the ground truth."""
    try:
        return read_image(path)
    except ValueError as error:
        raise ValueError(f'the ground truth: {error}') from None


def summary(name, photo, report, choice, restored_by, lines, gt, output, seconds, paste_faces=False):
    """The page's markdown summary of the photo ``name`` (a :class:`~metaf2n_plugin.image_io.Photo`) processed:
    faces used (or why none), the faces pasted when ``paste_faces`` asked for them, the weights, the time, the
    settings and precision logged by its resolver (``lines``), and the outputs' PSNR-Y against ``gt`` when given."""
    height, width = photo.rgb.shape[:2]
    used = len(report.pairs)
    found = f'{used} face{"s" * (used != 1)}'
    if report.adapted:
        heading = f'{found} used'
        faces = (f'{found} used, restored by {restored_by}; the network took its step on them (inner loss before it '
                 f'{report.inner_loss:.4g})')
    elif report.settings is None:  # no restorer: the plain network was asked for
        heading, faces = 'no faces used', f'not adapted: {restored_by}. The output is the plain network\'s'
    else:
        heading = 'no faces used'
        faces = f'{found} found, not adapted: {report.reason}. The output is the plain network\'s'
    kind = [f'{photo.bits} bits'] + ['gray'] * photo.gray + ['with alpha'] * (photo.alpha is not None)
    stages = ', '.join(f'{STAGES[stage]} {value:.1f} s' for stage, value in report.seconds.items())
    rows = [
        f'### {name}: {heading}',
        f'- **photo**: {width}x{height} pixels, {", ".join(kind)} -> {SCALE * width}x{SCALE * height}',
        f'- **faces**: {faces}',
        *([f'- **faces pasted**: {pasted_faces(report)}'] if paste_faces else []),
        f'- **weights**: {choice.label}',
        f'- **time**: {seconds:.1f} s on the server ({stages})',
        '- **settings**, as loaded:',
        *(f'  - `{line}`' for line in lines),
    ]
    if gt is not None:
        pasted = report.before_paste is not None
        images = [report.before_paste, report.plain, output] if pasted else [output, report.plain]
        ours, plain, *with_faces = psnr_y(images, gt)
        row = (f'- **PSNR-Y against the ground truth**: MetaF2N {ours:.2f} dB, plain network {plain:.2f} dB '
               f'({ours - plain:+.2f} dB)')
        if with_faces:
            row += f'; MetaF2N with the faces pasted {with_faces[0]:.2f} dB'
        rows.append(row)
    return '\n'.join(rows)


def pasted_faces(report):
    """The summary's words for the faces pasted into the output, or why none were."""
    if report.before_paste is None:
        return 'none: no face was restored'
    pasted = sum(pair.box is not None for pair in report.pairs)
    if not pasted:
        return 'none: no face was found'
    return f'{pasted} restored face{"s" * (pasted != 1)} blended into MetaF2N\'s output: the output PNG'


QUEUE_POLL, PROGRESS_POLL = 0.02, 0.2  # seconds between the Gradio queue's checks (see serve)
SYSTEM_FONTS = ('ui-sans-serif', 'system-ui', 'sans-serif')  # Gradio's themes otherwise name fonts to load
SYSTEM_MONO = ('ui-monospace', 'Consolas', 'monospace')
INTRO = """# MetaF2N on your photo
Drop a photo (or pick a built-in one): its faces are found and restored, the network takes one gradient step on
them, weighted per pixel by MaskNet, then super-resolves the whole photo x4. Nothing leaves your computer."""


def build_blocks(page):
    """``(blocks, theme)``: the page's Gradio Blocks on ``page`` (:class:`Page`), its processing events sharing one
    queue slot, and a theme of system fonts for ``launch``."""
    import gradio as gr  # here: importing metaf2n_plugin or another command must not import Gradio

    found = [label for label, choice in page.choices.items() if not choice.missing()]
    with gr.Blocks(title='MetaF2N', analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.File(label='photo', elem_id='photo')
                gt = gr.File(
                    label='its ground truth, 4x (optional: PSNR, and the faces\' pseudo GT without GPEN)', elem_id='gt')
                builtin = gr.Dropdown(list(page.builtins), value=None, label='or a built-in photo', elem_id='builtin')
                weights = gr.Dropdown(
                    list(page.choices), value=(found or list(page.choices))[0], label='weights', elem_id='weights')
                with gr.Accordion('settings', open=False):
                    lr = gr.Number(None, label='inner learning rate (empty: the one stored with MaskNet)')
                    tile = gr.Number(TILE, label='tile, LQ pixels (0: the whole photo at once)', precision=0, minimum=0)
                    half = gr.Checkbox(
                        resolve_precision('auto', page.device) != 'fp32',
                        label=f'half precision ({half_precision(page.device)}) for the super-resolution pass')
                    detector = gr.Radio(
                        detector_choices(), value=AUTO, label='face detector (auto: RetinaFace if found)')
                paste = gr.Checkbox(False, label='paste the restored faces into the output PNG', elem_id='paste')
                run = gr.Button('Super-resolve', variant='primary', elem_id='run')
            with gr.Column(scale=2):
                summary_box = gr.Markdown(elem_id='summary')
                download = gr.File(label='output PNG', elem_id='download', interactive=False)
        with gr.Row():
            boxed = gr.Image(label='faces found, numbered', type='filepath', format='png', elem_id='boxed')
            faces = gr.Gallery(
                label='per face: LQ | restored (or GT) | MaskNet W',
                columns=1,
                format='png',
                preview=False,
                object_fit='contain',
                elem_id='faces')
        with gr.Row():
            slider = gr.ImageSlider(label='plain network | MetaF2N', type='filepath', format='png', elem_id='slider')
            gap = gr.Image(label='difference', type='filepath', format='png', elem_id='difference')
        with gr.Row():
            pasted = gr.ImageSlider(
                label='MetaF2N | MetaF2N with the restored faces pasted',
                type='filepath',
                format='png',
                visible=False,
                elem_id='pasted')

        def process(photo, gt, weights, lr, tile, half, detector, paste, progress=gr.Progress()):
            inputs = (photo, gt, weights, lr, tile, half, detector, paste, lambda done, text: progress(done, text))
            # on the thread in Page.work, in this event's context (progress reaches the page through it)
            try:
                result = page.submit(contextvars.copy_context().run, page.run, *inputs).result()
            except CancelledError:
                result = PageResult('**metaf2n-app was stopped** before this photo was done.')
            shown_gap = gr.Image(result.difference, label=result.difference_caption or 'difference')
            shown_pasted = gr.ImageSlider(result.pasted, visible=result.pasted is not None)
            return result.summary, result.download, result.boxed, result.faces, result.slider, shown_gap, shown_pasted

        work = dict(
            fn=process,
            inputs=[photo, gt, weights, lr, tile, half, detector, paste],
            outputs=[summary_box, download, boxed, faces, slider, gap, pasted],
            concurrency_limit=1,
            concurrency_id='metaf2n')  # one photo at a time, whichever event asks
        run.click(**work, api_name='super_resolve')  # the endpoint of bench/app.py
        hidden = dict(work, api_visibility='private')
        gt.upload(**hidden)
        photo.upload(lambda: (None, None), None, [gt, builtin], queue=False, api_visibility='private').then(**hidden)
        builtin.input(
            lambda label: page.builtins[label], builtin, [photo, gt], queue=False,
            api_visibility='private').then(**hidden)
    return blocks, gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO)


def build_parser():
    parser = parser_from_doc(__doc__, 'metaf2n-app')
    parser.add_argument('--port', type=int, default=PORT, help=f'port on 127.0.0.1 (default {PORT})')
    weights = parser.add_argument_group('weights')
    weights.add_argument(
        '--model',
        help='an x4 SR network to add to the weights menu, first: an RRDBNet, or any architecture spandrel detects')
    weights.add_argument('--mask', help='its MaskNet (default: none, every face pixel weighs 1; with --opt, its)')
    weights.add_argument(
        '--opt',
        help='the BasicSR options file a network was trained with: the menu\'s first entry is built from it, its '
        'weights those it names or the run\'s last (docs/photos.md)')
    add_face_weights_arguments(weights)
    parser.add_argument('--seed', type=int, default=0, help='seed of the face patches drawn for the inner step')
    parser.add_argument('--device', help='torch device (default: cuda when available, else cpu)')
    return parser


def page_of(args):
    """The :class:`Page` that metaf2n-app's parsed flags describe."""
    return Page(
        args.model,
        args.mask,
        opt=args.opt,
        restorer_weights=args.restorer_weights,
        restorer_size=args.restorer_size,
        detector_weights=args.detector_weights,
        download=args.download,
        seed=args.seed,
        device=args.device)


def serve(page, port, wait=True):
    """Serve ``page`` (:class:`Page`) on 127.0.0.1:``port`` (offline: module docstring). ``wait``: its work runs on
    this thread until Ctrl-C; else on a new thread, and the running Gradio Blocks are returned (``.close()`` stops
    them)."""
    os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'  # what Blocks made elsewhere in this process read
    blocks, theme = build_blocks(page)
    blocks.queue(default_concurrency_limit=1)
    # Gradio 6.31's queue checks for new events every 1 ms (progress every 10 ms): on 2 cores these wake-ups slow
    # the super-resolution measurably (docs/benchmarks.md); a request waits at most 20 ms more instead
    blocks._queue.sleep_when_free = QUEUE_POLL
    blocks._queue.progress_update_sleep_when_free = PROGRESS_POLL
    blocks.launch(
        server_name=HOST,
        server_port=port,
        share=False,
        theme=theme,
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        enable_monitoring=False,
        run_history=False,
        footer_links=['api', 'settings'],
        prevent_thread_lock=True,
        quiet=not wait)
    if not wait:
        threading.Thread(target=page.work, name='metaf2n-app work', daemon=True).start()
        return blocks
    try:
        page.work()
    except KeyboardInterrupt:
        blocks.close()


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.mask and not (args.model or args.opt):
        parser.error('--mask needs --model (or --opt)')
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped as by Ctrl-C: the temporary files go
    try:
        page = page_of(args)
    except OptionError as error:
        parser.error(message_of(error, {'opt': '--opt'}))
    print(f'metaf2n-app: the page is at http://{HOST}:{args.port} (this computer only); Ctrl-C stops it', flush=True)
    serve(page, args.port)
    return 0


if __name__ == '__main__':
    sys.exit(main())
