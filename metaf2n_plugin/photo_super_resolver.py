"""MetaF2N on photos from Python: Algorithm 2 (find and restore the faces, adapt the network to them, super-resolve
the whole photo x4) with the networks and the face pipeline loaded once. ``metaf2n-infer`` (:mod:`metaf2n_plugin.infer`)
is its command line, which adds the files: what a photo keeps, the extra images, the output promise.

    from metaf2n_plugin import PhotoSuperResolver

    resolver = PhotoSuperResolver('weights/MetaF2N_net_g.pth', 'weights/MetaF2N_net_mask.pth')
    output, report = resolver.enhance(image, 'photo.jpg')  # (H, W, 3) RGB in [0, 1] -> (4H, 4W, 3)
"""
import contextlib
import dataclasses
import functools
import inspect
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional, Union

import numpy as np
import torch
from basicsr.utils import img2tensor
from torch import nn

from metaf2n_plugin.checkpoints import masknet_options, network_from, read_checkpoint, state_dict_of
from metaf2n_plugin.errors import (ARGUMENT_NAMES, OptionError, PhotoError, PhotoSizeError, WeightsNotFoundError,
                                   blamed_on, worded_with)
from metaf2n_plugin.faces import FacePair, FacePairExtractor
from metaf2n_plugin.faces.detection import RETINAFACE_MODELS
from metaf2n_plugin.faces.paste_back import paste_faces
from metaf2n_plugin.faces.registry import AUTO, FACE_SOURCES
from metaf2n_plugin.image_io import tensor_to_image
from metaf2n_plugin.memory import available_memory
from metaf2n_plugin.models.adaptation import (AdaptationSettings, AdaptedParameters, adapt_to_photo, frozen_part,
                                              non_finite_output, step_path, stored_adaptation, upsample)
from metaf2n_plugin.models.fast_forward import FastForward
from metaf2n_plugin.models.precision import cpu_description, resolve_precision
from metaf2n_plugin.models.tiling import TILE_PAD
from metaf2n_plugin.names import NET_G_FILE, NET_MASK_FILE, WEIGHTS_DIR
from metaf2n_plugin.sr_network import (SCALE, TrainingOptions, check_scale, check_trained_with, network_from_file,
                                       network_from_options, read_training_options)
from metaf2n_plugin.weights import locate_weights

TILE = 256  # LQ tile side: memory stays bounded whatever the photo's size
MIN_SIDE = 16  # one LR face patch (64 / 4)
MIN_TILE = 32  # smaller tiles spend most of their work on their context (tile_pad)
OFFICIAL_WEIGHTS = 'https://drive.google.com/drive/folders/1R0ekBOXWufM5vu0PZNYeCpAPS2R1w3gf'
DEFAULT_MODEL, DEFAULT_MASK = os.path.join(WEIGHTS_DIR, NET_G_FILE), os.path.join(WEIGHTS_DIR, NET_MASK_FILE)
DEFAULT_RESTORER = {'type': 'gpen', 'size': 512}  # GPEN-BFR-512, MetaF2N's at test time


@dataclasses.dataclass
class PhotoReport:
    """What :meth:`PhotoSuperResolver.enhance` did to one photo.

    ``pairs``: its faces' :class:`~metaf2n_plugin.faces.pairs.FacePair` list (``lq`` ``(h, w, 3)`` LQ face, ``hq``
    ``(4h, 4w, 3)`` restored face, ``mask`` ``(4h, 4w)`` bool where ``hq`` is valid, ``box`` ``(x0, y0, x1, y1)`` in
    LQ pixels); [] without adaptation. ``mask_weights``: per face, MaskNet's ``(4h, 4w)`` float32 W >= 0 on the valid
    pixels, 0 elsewhere, computed when first read (MaskNet over each whole face: no time of the photo's own is spent
    on what is not shown); None without MaskNet (every face pixel weighs 1). ``adapted``: theta' made the output;
    ``reason``: why not (None when adapted). ``inner_loss``: the weighted inner loss before the first step (None
    when not adapted). ``plain``: ``(4H, 4W, 3)`` float32 the plain network's output when asked (the output itself
    when not adapted), else None. ``settings``: the :class:`AdaptationSettings` used (None without adaptation);
    ``precision``: the super-resolution pass's; ``seconds``: the time of ``faces`` and ``adaptation`` (when
    adapting), then ``super_resolution``, or ``super_resolution_and_plain`` when the plain output was asked of an
    adapted photo (one pass gives both: :meth:`~metaf2n_plugin.models.fast_forward.FastForward.pair`), and
    ``plain`` when it was asked of a photo not adapted, and ``paste_faces``; ``patches``: face patch pairs the step
    used (0 without). ``before_paste``: with ``paste_faces``, the ``(4H, 4W, 3)`` output before the restored faces
    were pasted in (None otherwise).
    """
    pairs: list[FacePair]
    adapted: bool
    reason: Optional[str]
    inner_loss: Optional[float]
    plain: Optional[np.ndarray]
    settings: Optional[AdaptationSettings]
    precision: str
    seconds: dict[str, float]
    patches: int = 0
    face_weights: Optional[Callable[[FacePair], np.ndarray]] = dataclasses.field(default=None, repr=False)
    before_paste: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)

    @functools.cached_property
    def mask_weights(self) -> Optional[list[np.ndarray]]:
        return None if self.face_weights is None else [self.face_weights(pair) for pair in self.pairs]


PathOrNetwork = Union[str, 'os.PathLike[str]', nn.Module]
Options = Union[str, Mapping[str, Any]]  # a face source's or restorer's {type: ..., <arguments>}, or just the type


def log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


class PhotoSuperResolver:
    """Algorithm 2 on one photo at a time (:meth:`enhance`).

    Args:
        model: the x4 SR network: a weights file or any x4 ``nn.Module``. A file is built as ``opt``'s ``network_g``
            says, else read off its shapes: BasicSR's RRDBNet (any size; ``metaf2n-convert``'s output, a training
            run's ``net_g_<iter>.pth``), else any architecture spandrel detects (SRVGGNetCompact, SwinIR, HAT, ...;
            docs/photos.md). Default: ``opt``'s weights, else ``weights/MetaF2N_net_g.pth``.
        mask: MaskNet: its weights file (``net_mask_<iter>.pth``, whose adaptation settings are followed, and which
            is refused with another ``net_g`` than the one it was trained with) or an ``nn.Module``; None weighs every
            face pixel 1 (naive fine-tuning on the faces). Left at its default with ``opt``: ``opt``'s.
        opt: a BasicSR options file (a training's, or its copy in ``experiments/<name>/``): its ``network_g`` and
            ``network_mask`` build the networks, whose weights are ``path.pretrain_network_g`` and
            ``path.pretrain_network_mask``, else the run's last (``experiments/<name>/models/net_*_latest.pth``);
            its ``adaptation`` group changes the settings stored with MaskNet.
        adapt: False runs the plain network: no faces, ``mask`` not read.
        faces: the face source, as ``FacePairExtractor``'s ``source`` option (``'retinaface'``, ``'mtcnn'``,
            ``{'type': 'landmarks', 'json_path': ...}``, ...); ``'auto'`` (or ``{'type': 'auto', 'weights': ...,
            'download': ...}``) is RetinaFace when its weights are found or downloaded, else MTCNN, the choice logged.
        restorer: ``FacePairExtractor``'s ``restorer`` option; ``{'type': 'oracle', 'size': 512}`` takes each face's
            pseudo GT from the GT given to :meth:`enhance`.
        adaptation: :class:`AdaptationSettings` fields that replace those stored in the ``mask`` file (else the
            defaults), each change logged.
        seed: with the photo's name, seeds the face patches drawn for the inner step.
        device: a torch device (default: cuda when available, else cpu); the networks given are moved there.
        precision: of the super-resolution pass, as :func:`~metaf2n_plugin.models.precision.resolve_precision`
            takes it (``'auto'``, ``'fp32'``, ``'bf16'``, ``'fp16'``). The inner step's adapted part runs in fp32;
            what it never differentiates (MaskNet, a frozen RRDBNet body) runs in this precision without a graph
            (:func:`~metaf2n_plugin.models.adaptation.photo_step`).
        exact_step: the step of 0.2 instead: the whole network and MaskNet in fp32 with their graph.
        paste_faces: the output gets each face's restoration (the pseudo GT of the step) blended back in
            (:func:`~metaf2n_plugin.faces.paste_back.paste_faces`): MetaF2N's background with restored faces, as
            GFPGAN users expect; needs ``adapt``.
        tile, tile_pad, compile: as :class:`~metaf2n_plugin.models.fast_forward.FastForward` (tile 0: whole photo).
        log: called with each line worth telling (detector, settings, precision).
        names: deprecated (0.1's way for a front end to name the arguments in the errors; removed in 0.3): the
            errors' ``str()`` then calls ``model``, ``mask`` and ``adaptation`` by these names.

    Raises (:mod:`metaf2n_plugin.errors`, whose ``describe(names)`` a front end uses to call the arguments by its
    own names) :class:`WeightsNotFoundError` for a missing weights file (saying where the official weights are),
    :class:`WeightsFileError` for a file that holds other weights (or a NaN or infinite tensor), :class:`OptionError`
    for an unknown adaptation setting, face source or restorer, a value of the wrong kind, settings that cannot work
    on this network (a ``params`` that matches nothing, patches that cannot fit in the memory for one face), or a
    ``tile``, ``seed`` or ``device`` that cannot work (its ``argument`` says which).
    """

    def __init__(self,
                 model: Optional[PathOrNetwork] = None,
                 mask: Optional[PathOrNetwork] = DEFAULT_MASK,
                 *,
                 opt: Union[str, 'os.PathLike[str]', None] = None,
                 adapt: bool = True,
                 faces: Options = AUTO,
                 restorer: Options = DEFAULT_RESTORER,
                 adaptation: Optional[Mapping[str, Any]] = None,
                 seed: int = 0,
                 device: Union[str, torch.device, None] = None,
                 precision: str = 'auto',
                 tile: int = TILE,
                 tile_pad: int = TILE_PAD,
                 compile: bool = False,
                 exact_step: bool = False,
                 paste_faces: bool = False,
                 log: Callable[[str], None] = log_to_stderr,
                 names: Optional[Mapping[str, str]] = None) -> None:
        if names is not None:
            warnings.warn(
                'PhotoSuperResolver(names=...) is deprecated since 0.2 and will be removed in 0.3: its errors carry '
                'the argument at fault; word them with error.describe(names) (metaf2n_plugin.MetaF2NError)',
                DeprecationWarning,
                stacklevel=2)
        with worded_with(names or {}):
            check_tiling(tile, tile_pad)
            if not (isinstance(seed, int) and 0 <= seed < 2**63):
                raise OptionError(
                    f'{{argument}} must be an integer from 0 to 2**63 - 1, got {seed!r}',
                    argument='seed',
                    option='seed',
                    value=seed)
            self.device = torch_device(device)
            self.precision = resolve_precision(precision, self.device)
            options = None if opt is None else read_training_options(os.fspath(opt))
            if options is not None and mask is DEFAULT_MASK:
                mask = options.mask
            model = model if model is not None else options.model if options is not None else DEFAULT_MODEL
            net_g, net_mask, stored, described = load_networks(model, mask if adapt else None, options)
            log(f'the SR network: {described}')
            self.net_g = net_g.eval().to(self.device)
            self.net_mask = None if net_mask is None else net_mask.eval().requires_grad_(False).to(self.device)
            self.tile, self.tile_pad = tile, tile_pad
            self.forward = FastForward(self.net_g, SCALE, tile, tile_pad, self.device.type == 'cpu', self.precision,
                                       compile)
            first = getattr(self.net_g, 'conv_first', None)
            self.num_feat = getattr(first, 'out_channels', 64)  # RRDBNet's, else x4plus'
            self.free = available_memory(self.device)
            if paste_faces and not adapt:
                raise OptionError(
                    '{argument} needs the faces, which adapt=False does not look for',
                    argument='paste_faces',
                    option='paste_faces',
                    value=paste_faces)
            self.adapt, self.seed, self.exact_step, self.paste_faces = adapt, seed, exact_step, paste_faces
            self.settings: Optional[AdaptationSettings] = None
            self.extractor: Optional[FacePairExtractor] = None
            if adapt:
                stored_in = None
                if stored is not None and isinstance(mask, (str, os.PathLike)):
                    stored_in = repr(os.fspath(mask))
                if options is not None and options.adaptation:  # between the MaskNet file's and the argument's
                    group = f'the adaptation group of {options.path!r}'
                    with adaptation_argument():
                        stored = (stored or AdaptationSettings()).overridden(options.adaptation, group, stored_in, log)
                    stored_in = f'{stored_in} and {group}' if stored_in else group
                self.settings = adaptation_settings(stored, stored_in, adaptation or {}, log)
                with adaptation_argument():
                    self.settings.check_network(self.net_g, SCALE, exact_step)
                log(f'the adaptation step: {step_description(self.net_g, self.settings, self.precision, exact_step)}')
                source = face_source(faces, log)
                self.extractor = FacePairExtractor.from_options({
                    'scale': SCALE,
                    'source': source,
                    'restorer': restorer
                }, self.device)
                self.extractor.load()  # missing weights stop here, before any photo
            machine = f' ({cpu_description()})' if self.device.type == 'cpu' else ''
            log(f'super-resolution in {self.precision} on {self.device}{machine}')

    def check_size(self, height: int, width: int, bits: int = 8) -> None:
        """:class:`PhotoSizeError` for a photo of ``height`` x ``width`` pixels that is smaller than a face patch or
        whose output (``bits`` per channel) would not fit in the memory available."""
        if min(height, width) < MIN_SIDE:
            raise PhotoSizeError(
                f'{width}x{height} pixels; MetaF2N needs at least {MIN_SIDE}x{MIN_SIDE} (one face patch)',
                width=width,
                height=height,
                needed=None,
                available=None,
                largest_side=None)
        needed = memory_needed(height, width, bits, self.tile, self.tile_pad, self.num_feat)
        if self.free is not None and needed > self.free:
            side = largest_square(self.free, bits, self.tile, self.tile_pad, self.num_feat)
            raise PhotoSizeError(
                f'{width}x{height} pixels: its {SCALE * width}x{SCALE * height} output needs about '
                f'{needed / 2**30:.1f} GiB, {self.free / 2**30:.1f} GiB are available (enough for about {side}x{side} '
                f'pixels, {side * side / 1e6:.1f} megapixels); crop it into parts or downscale it' +
                ('' if self.tile else f', or tile it (tile {TILE})'),
                width=width,
                height=height,
                needed=needed,
                available=self.free,
                largest_side=side)

    def enhance(self,
                image: np.ndarray,
                name: str = 'photo',
                gt: Optional[np.ndarray] = None,
                plain: bool = False) -> tuple[np.ndarray, PhotoReport]:
        """Algorithm 2 on one photo; the networks are not changed.

        Args:
            image: ``(H, W, 3)`` RGB, float in [0, 1], uint8 or uint16 (divided by 255 or 65535); H, W >= 16.
            name: the photo's file name: with ``seed`` it seeds the face patches drawn; the ``landmarks`` face
                source looks its faces up by it.
            gt: its ``(4H, 4W, 3)`` ground truth, as ``image``, for the ``oracle`` restorer.
            plain: also give the plain network's output (``report.plain``).

        Returns ``(output, report)``: ``(4H, 4W, 3)`` float32 RGB in [0, 1] and a :class:`PhotoReport`. Raises
        PhotoError for an image of another kind or size, ValueError when its faces cannot be had (e.g. no
        landmarks for ``name``, an oracle restorer without ``gt``).
        """
        bits = 16 if getattr(image, 'dtype', None) == np.uint16 else 8
        image = rgb_float(image, 'image')
        self.check_size(image.shape[0], image.shape[1], bits)
        gt = None if gt is None else rgb_float(gt, 'gt')
        seconds, start = {}, time.perf_counter()
        lq = img2tensor(image, bgr2rgb=False)[None].to(self.device)
        pairs: list[FacePair] = []
        adapted: Optional[AdaptedParameters] = None
        reason: Optional[str] = 'not asked (adapt=False)'
        used = 0
        if self.extractor is not None and self.settings is not None:  # adapt=True
            pairs = self.extractor(image, gt, image_path=name)
            seconds['faces'], start = time.perf_counter() - start, time.perf_counter()
            adapted, patches, reason = adapt_to_photo(self.net_g, self.net_mask, pairs, SCALE, name, self.seed,
                                                      self.settings, self.precision, self.exact_step,
                                                      self.forward.memory_format)
            used = len(patches)
            seconds['adaptation'], start = time.perf_counter() - start, time.perf_counter()
        both = plain and adapted is not None
        sr, plain_sr = self.forward.pair(adapted, None, lq) if both else (self.forward(adapted, lq), None)
        if adapted is not None and self.settings is not None and not sr.isfinite().all():
            adapted, reason = None, non_finite_output(self.settings)
            sr = self.forward(None, lq) if plain_sr is None else plain_sr
        seconds['super_resolution_and_plain' if both else 'super_resolution'] = time.perf_counter() - start
        start = time.perf_counter()
        output = tensor_to_image(sr.clamp_(0, 1))
        unadapted = None
        if plain:
            unadapted = output if adapted is None or plain_sr is None else tensor_to_image(plain_sr.clamp_(0, 1))
            if not both:
                seconds['plain'] = time.perf_counter() - start
        before_paste = None
        if self.paste_faces:
            start, before_paste = time.perf_counter(), output
            output = paste_faces(output, pairs, SCALE)
            seconds['paste_faces'] = time.perf_counter() - start
        inner_loss = None if adapted is None else adapted.inner_losses[0].item()
        weigh = self.face_weights if self.net_mask is not None and self.settings is not None else None
        return output, PhotoReport(pairs, adapted is not None, reason, inner_loss, unadapted, self.settings,
                                   self.precision, seconds, used if adapted is not None else 0, weigh, before_paste)

    @torch.no_grad()
    def face_weights(self, pair: FacePair) -> np.ndarray:
        """MaskNet's ``(4h, 4w)`` float32 weights of one whole face pair, 0 outside its valid pixels, computed as the
        step computes them (in the pass's precision, or fp32 for the exact step)."""
        assert self.net_mask is not None and self.settings is not None, 'a resolver with MaskNet'
        lq, hq = (image[None].to(self.device) for image in img2tensor([pair.lq, pair.hq], bgr2rgb=False))
        masknet = frozen_part(self.net_mask, 'fp32' if self.exact_step else self.precision, self.forward.memory_format)
        weights = masknet(torch.cat([upsample(lq, hq.shape[-2:], self.settings.legacy_bicubic), hq], dim=1))
        return weights[0, 0].cpu().numpy() * pair.mask


def step_description(net_g: nn.Module, settings: AdaptationSettings, precision: str, exact: bool) -> str:
    """How :func:`~metaf2n_plugin.models.adaptation.photo_step` runs for ``net_g`` and ``settings``, for the log."""
    if exact:
        return 'exact (the whole network and MaskNet in fp32, with their graph)'
    tail, why = step_path(net_g, settings)
    if tail is not None:
        return f'the frozen body and MaskNet in {precision} without a graph, the adapted tail in fp32'
    return f'MaskNet in {precision} without a graph; the whole network in fp32 with its graph ({why})'


def check_tiling(tile: int, tile_pad: int) -> None:
    """OptionError for a negative tile or pad, or a tile so small that its context multiplies the work (more than
    ``MIN_TILE``'s)."""
    for name, value in (('tile', tile), ('tile_pad', tile_pad)):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise OptionError(
                f'{{argument}} must be an integer >= 0, got {value!r}', argument=name, option=name, value=value)
    if 0 < tile < MIN_TILE:
        work = ((tile + 2 * tile_pad) / tile)**2
        raise OptionError(
            f'{{argument}} {tile}: each {tile}x{tile} tile runs with {tile_pad} pixels of context on each side, '
            f'about {work:.0f}x the work of the whole photo; give 0 (the whole photo) or at least {MIN_TILE}',
            argument='tile',
            option='tile',
            value=tile)


def torch_device(device: Union[str, torch.device, None]) -> torch.device:
    """``device`` as a torch device (None: cuda when available, else cpu); OptionError naming the argument for a
    name torch does not know or a GPU that is not there."""
    try:
        chosen = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    except (RuntimeError, TypeError) as error:
        raise OptionError(
            f'{{argument}} {device!r} is not a torch device ({str(error).splitlines()[0]}); give cpu, '
            'cuda or cuda:<index>',
            argument='device',
            option='device',
            value=device) from None
    if chosen.type == 'cuda' and (not torch.cuda.is_available() or (chosen.index or 0) >= torch.cuda.device_count()):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise OptionError(
            f'{{argument}} {device!r}: this PyTorch sees {count} CUDA device(s); give cpu' +
            (f' or cuda:0 to cuda:{count - 1}' if count else ''),
            argument='device',
            option='device',
            value=device)
    if chosen.type not in ('cpu', 'cuda', 'mps', 'xpu'):
        raise OptionError(
            f'{{argument}} {device!r}: a {chosen.type} device cannot run MetaF2N; give cpu or cuda',
            argument='device',
            option='device',
            value=device)
    return chosen


def load_networks(model: PathOrNetwork,
                  mask: Optional[PathOrNetwork],
                  options: Optional[TrainingOptions] = None) -> tuple[nn.Module, Optional[nn.Module], Any, str]:
    """``(net_g, net_mask, stored, description)``: ``model`` and ``mask`` (a weights file, an ``nn.Module`` passed
    through, or for ``mask`` None) as networks, the :class:`AdaptationSettings` stored in the MaskNet file (None
    without one) and what ``net_g`` is, in words.

    A file is built as ``options`` (a BasicSR options file's :class:`TrainingOptions`) describe it, else as its shapes
    say (:func:`~metaf2n_plugin.sr_network.network_from_file`: BasicSR's RRDBNet, or what spandrel detects); either
    way it must be x4. :class:`WeightsNotFoundError` for a missing file, with where the official weights are and how
    to convert them; :class:`WeightsFileError` for a file no loader recognises, of another scale, whose shapes
    contradict ``options``, or a MaskNet trained with another ``net_g``. Both carry the argument (``'model'`` or
    ``'mask'``) and the file.
    """
    given = (('model', model), ('mask', mask))
    files = {key: os.fspath(path) for key, path in given if isinstance(path, (str, os.PathLike))}
    missing = {key: path for key, path in files.items() if not os.path.exists(path)}
    if missing:
        folder = os.path.dirname(next(iter(missing.values()))) or '.'
        raise WeightsNotFoundError(
            'MetaF2N weights not found: {listing}. ',
            missing=missing,
            advice=f'The official weights are a TensorFlow checkpoint at {OFFICIAL_WEIGHTS} (no direct download link): '
            f'download it, then `metaf2n-convert <checkpoint prefix> --out {folder}` writes {NET_G_FILE} and '
            f'{NET_MASK_FILE} there. Or point {{model}}/{{mask}} at a training run\'s '
            'experiments/<name>/models/net_g_<iter>.pth and net_mask_<iter>.pth' +
            (' (or give opt the run\'s options file)' if options is None else ''))
    with blamed_on('model'):
        if isinstance(model, nn.Module):
            net_g, description = model, type(model).__name__
        elif options is not None:
            net_g, description = network_from_options(options, files['model'])
        else:
            net_g, description = network_from_file(files['model'])
        check_scale(net_g, f'{{argument}} {files.get("model", type(model).__name__)!r}')
    net_mask, stored = mask if isinstance(mask, nn.Module) else None, None
    if 'mask' in files:
        with blamed_on('mask'):
            checkpoint, where = read_checkpoint(files['mask'], '{argument}'), f'{{argument}} {files["mask"]!r}'
            state = state_dict_of(checkpoint, files['mask'], '{argument}')
            mask_options = options.network_mask if options is not None and options.network_mask else None
            net_mask = network_from(state, mask_options or masknet_options(state, where), where)
            stored = stored_adaptation(checkpoint)
            check_trained_with(net_g, checkpoint, files['mask'])
    return net_g, net_mask, stored, description


def adaptation_settings(stored: Optional[AdaptationSettings], stored_in: Optional[str], changes: Mapping[str, Any],
                        log: Callable[[str], None]) -> AdaptationSettings:
    """The settings ``stored`` in the MaskNet file (``stored_in``; None: the defaults) with ``changes`` (a dict of
    :class:`AdaptationSettings` fields, the ``adaptation`` argument), each change to stored settings logged, then
    the settings used. :class:`OptionError` (its argument ``'adaptation'``) for an unknown field or a value of the
    wrong kind."""
    source = ARGUMENT_NAMES['adaptation']
    with adaptation_argument():
        settings = (stored or AdaptationSettings()).overridden(changes, source, stored_in, log)
    origin = f'stored in {stored_in}' if stored_in is not None else 'the defaults'
    log(f'adaptation: {settings.to_dict()} ({origin}{f", changed by {source}" if changes else ""})')
    return settings


@contextlib.contextmanager
def adaptation_argument() -> Iterator[None]:
    """Inside, an OptionError about the adaptation settings is blamed on the ``adaptation`` argument, so that a
    front end names it its own way (``{argument}: ...``)."""
    source = ARGUMENT_NAMES['adaptation']
    try:
        yield
    except OptionError as error:
        if error.argument is not None:
            raise
        template = error.template.replace(source, '{argument}')
        if '{argument}' not in template:
            template = '{argument}: ' + template
        raise OptionError(template, argument='adaptation', **error.data) from None


def face_source(source: Options, log: Callable[[str], None]) -> dict[str, Any]:
    """``FacePairExtractor``'s ``source`` option with type ``auto`` decided (:func:`chosen_detector`), and a
    detector's ``weights`` dropped when they are another detector's file (its ``weights_suffixes``: a wheel is
    MTCNN's, a .pth RetinaFace's); ``weights`` and ``download`` left unset are dropped for a detector that takes
    neither."""
    source = {'type': source} if isinstance(source, str) else dict(source)
    if source['type'] == AUTO:
        source['type'] = chosen_detector(source.get('weights'), source.get('download', False), log)
    entry = FACE_SOURCES.entry(source['type'])
    weights = str(source.get('weights'))
    others = {suffix for name in FACE_SOURCES.detectors() for suffix in FACE_SOURCES.entry(name).weights_suffixes}
    if any(map(weights.endswith, others)) and not any(map(weights.endswith, entry.weights_suffixes)):
        source['weights'] = None
    takes = inspect.signature(entry.cls).parameters
    for key in ('weights', 'download'):
        if key not in takes and not source.get(key):
            source.pop(key, None)
    return source


def chosen_detector(weights: Optional[str] = None,
                    download: bool = False,
                    log: Callable[[str], None] = log_to_stderr) -> str:
    """``'retinaface'`` when its weights are found at ``weights`` (a file or folder; None: the usual places) or may
    be downloaded, else ``'mtcnn'`` (also for a wheel as ``weights``); the choice is logged."""
    if str(weights).endswith('.whl'):
        return 'mtcnn'
    try:
        locate_weights(RETINAFACE_MODELS['retinaface_resnet50'][1], '', 'RetinaFace', weights)
    except FileNotFoundError:
        if not download:
            log('RetinaFace\'s weights (detection_Resnet50_Final.pth) not found; faces are found by MTCNN '
                '(facenet-pytorch\'s weights); metaf2n-infer --detector retinaface --download (Python: '
                'faces={\'type\': \'retinaface\', \'download\': True}) fetches RetinaFace\'s.')
            return 'mtcnn'
    log('faces are found by RetinaFace (ResNet-50)')
    return 'retinaface'


def rgb_float(image: Any, what: str) -> np.ndarray:
    """``(H, W, 3)`` float32 RGB in [0, 1] of an ``(H, W, 3)`` float array in [0, 1], uint8 or uint16 array;
    PhotoError naming ``what`` for anything else."""
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        got = f'shape {image.shape}' if isinstance(image, np.ndarray) else type(image).__name__
        raise PhotoError(f'{what}: expected an (H, W, 3) RGB numpy array, got {got}')
    if image.dtype in (np.uint8, np.uint16):
        return image.astype(np.float32) / np.iinfo(image.dtype).max
    if not np.issubdtype(image.dtype, np.floating):
        raise PhotoError(f'{what}: expected float values in [0, 1], uint8 or uint16, got {image.dtype}')
    low, high = float(image.min()), float(image.max())
    if not (0 <= low and high <= 1):  # NaN fails too
        raise PhotoError(f'{what}: float values must lie in [0, 1], found [{low:.4g}, {high:.4g}]')
    return image.astype(np.float32, copy=False)


def memory_needed(height: int, width: int, bits: int, tile: int, tile_pad: int, num_feat: int) -> int:
    """Bytes a photo needs: the float32 output, its conversion to ``bits``, and one window's activations."""
    output = 4 * 3 * SCALE**2 * height * width
    window = tile + 2 * tile_pad
    side = min(window, height) * min(window, width) if tile else height * width
    activations = 4 * num_feat * 3 * SCALE**2 * side  # a few full-resolution feature maps of the window
    return 2 * output + 3 * (bits // 8) * SCALE**2 * height * width + activations


def largest_square(free: int, bits: int, tile: int, tile_pad: int, num_feat: int) -> int:
    """The side of the largest square photo whose :func:`memory_needed` fits in ``free`` bytes (0 if none)."""
    low, high = 0, 1
    while memory_needed(high, high, bits, tile, tile_pad, num_feat) <= free:
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        if memory_needed(middle, middle, bits, tile, tile_pad, num_feat) <= free:
            low = middle
        else:
            high = middle
    return low
