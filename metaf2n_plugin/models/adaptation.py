"""MetaF2N's inner step, shared by meta-training and testing (docs/metaf2n.md)."""
import dataclasses
import math
import re
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Optional

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from metaf2n_plugin import memory
from metaf2n_plugin.errors import OptionError
from metaf2n_plugin.faces.pairs import FacePair
from metaf2n_plugin.faces.patches import PatchBatch, sample_patches
from metaf2n_plugin.models.frozen_body import RRDBNetBody, frozen_tail
from metaf2n_plugin.models.precision import AUTOCAST_DTYPES
from metaf2n_plugin.models.tf1_bicubic import tf1_resize_bicubic
from metaf2n_plugin.option_checks import checked_regex, checked_value, option_group


@dataclasses.dataclass(frozen=True)
class AdaptationSettings:
    """Everything the inner step depends on, the same in meta-training and at test time (options group
    ``adaptation``; saved with MaskNet's weights, so that a trained network is adapted as it was trained).

    ``lr``: alpha, the step size; ``steps``: SGD steps; ``params``: regex of the adapted parameter names of net_g
    (None: all); ``legacy_bicubic``: MaskNet sees the LQ face upsampled by TF1's ``resize_bicubic`` (converted
    official weights); ``num_patches``: patch pairs drawn per face of a photo; ``patch_size``: their HQ side.
    """
    lr: float = 0.01
    steps: int = 1
    params: Optional[str] = None
    legacy_bicubic: bool = False
    num_patches: int = 16
    patch_size: int = 64

    KINDS: ClassVar[dict[str, tuple[tuple[type, ...], Optional[Callable[[Any], bool]], str]]] = dict(
        lr=((float, int), lambda v: math.isfinite(v) and v >= 0, 'a finite number >= 0'),
        steps=((int, ), lambda v: v >= 1, 'an integer >= 1'),
        params=((str, type(None)), None, 'a regex of parameter names, or ~ for all'),
        legacy_bicubic=((bool, ), None, 'true or false'),
        num_patches=((int, ), lambda v: v >= 1, 'an integer >= 1'),
        patch_size=((int, ), lambda v: v >= 1, 'an integer >= 1'))

    def __post_init__(self) -> None:
        for name, (kinds, condition, meaning) in self.KINDS.items():
            checked_value(f'adaptation.{name}', getattr(self, name), kinds, condition, meaning)
        checked_regex('adaptation.params', self.params, PARAMS_HINT)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], where: str = 'the options') -> 'AdaptationSettings':
        """The settings of ``options['adaptation']`` (defaults for the keys it lacks); OptionError naming ``where``
        and a key it does not know, a value of the wrong kind or a ``params`` that is no regex."""
        return in_place(where, lambda: cls(**option_group(options, 'adaptation', cls.names(), where)))

    @classmethod
    def names(cls) -> list[str]:
        return [field.name for field in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def overridden(self, values: Optional[Mapping[str, Any]], source: str, stored_in: Optional[str],
                   log: Callable[[str], None]) -> 'AdaptationSettings':
        """These settings with ``values`` (a dict, e.g. from options or flags) taking precedence; ``log(line)`` is
        called for each value that differs from the one stored in ``stored_in`` (skipped when that is None).
        ValueError naming ``source`` for a key that is no setting, or a value of the wrong kind."""
        values = option_group({'adaptation': values}, 'adaptation', self.names(), source)
        changed = {name: value for name, value in values.items() if value != getattr(self, name)}
        settings = in_place(source, lambda: dataclasses.replace(self, **changed))
        if stored_in is not None:
            for name, value in changed.items():
                log(f'adaptation.{name}: {value!r} from {source}, not the {getattr(self, name)!r} stored in {stored_in}'
                    )
        return settings

    def check_network(self, net_g: nn.Module, scale: int, exact: bool = False) -> None:
        """OptionError when ``params`` matches no parameter of ``net_g``, when the step on one face's patches needs
        more memory than its device has (:func:`step_memory_problem`), or when ``patch_size`` is no
        multiple of ``scale``. ``exact``: as :func:`photo_step`."""
        adapted_names(net_g, self.params)
        if self.patch_size % scale:
            raise OptionError(
                f'adaptation.patch_size {self.patch_size} must be a multiple of the scale {scale} (64: '
                f'{64 // scale}x{64 // scale} LQ pixels)',
                option='adaptation.patch_size',
                value=self.patch_size)
        problem = step_memory_problem(net_g, 1, self, scale, exact)
        if problem is not None:
            raise OptionError(problem, option='adaptation.num_patches', value=self.num_patches)


PARAMS_HINT = '~ for every parameter, or e.g. conv_up1|conv_up2|conv_hr|conv_last for the tail'


def in_place(where: str, make: Callable[[], AdaptationSettings]) -> AdaptationSettings:
    """``make()``, an OptionError it raises starting with ``where``: (e.g. the MaskNet file that stored the value)."""
    try:
        return make()
    except OptionError as error:
        if error.template.startswith(where):
            raise
        raise OptionError(f'{where}: {error.template}', argument=error.argument, **error.data) from None


def stored_adaptation(checkpoint: Any) -> Optional[AdaptationSettings]:
    """The :class:`AdaptationSettings` saved in a MaskNet checkpoint (``'adaptation'``; files converted before it
    existed store only ``'legacy_bicubic'``), or None when it holds none."""
    if not isinstance(checkpoint, dict):
        return None
    if checkpoint.get('adaptation') is not None:
        return AdaptationSettings.from_options(checkpoint, 'the MaskNet file')
    if checkpoint.get('legacy_bicubic') is not None:
        return AdaptationSettings.from_options({'adaptation': {
            'legacy_bicubic': checkpoint['legacy_bicubic']
        }}, 'the MaskNet file')
    return None


def adapted_names(net_g: nn.Module, params: Optional[str]) -> list[str]:
    """The names of ``net_g``'s parameters that ``params`` (a regex, None: all) adapts; OptionError naming
    ``adaptation.params`` when there are none."""
    names = [name for name, _ in net_g.named_parameters() if params is None or re.search(params, name)]
    if not names:
        raise OptionError(
            f'adaptation.params {params!r} matches no parameter of {type(net_g).__name__} (its first: '
            f'{", ".join(name for name, _ in list(net_g.named_parameters())[:3])}); give {PARAMS_HINT}',
            option='adaptation.params',
            value=params)
    return names


def step_memory_problem(net_g: nn.Module,
                        faces: int,
                        settings: AdaptationSettings,
                        scale: int,
                        exact: bool = False) -> Optional[str]:
    """Why the step on ``faces`` faces' patches (``settings.num_patches`` each, of side ``settings.patch_size``)
    cannot run on ``net_g``'s device (it needs more memory than is available, :mod:`metaf2n_plugin.memory`), with
    the ``num_patches`` that would fit; None when it fits or the memory cannot be read. ``exact``: as
    :func:`photo_step` (the whole network keeps its graph)."""
    available = memory.available_memory(next(net_g.parameters()).device)
    whole = exact or step_path(net_g, settings)[0] is None
    patches = faces * settings.num_patches
    needed = memory.step_memory(net_g, patches, settings.patch_size, scale, whole)
    if available is None or needed <= available:
        return None
    per_face = available // max(memory.step_memory(net_g, faces, settings.patch_size, scale, whole), 1)
    fix = (f'adaptation.num_patches {per_face} would fit' if per_face else 'even one patch per face does not fit; '
           'lower adaptation.patch_size (64 by default)')
    return (f'the adaptation step on {faces} face(s) x {settings.num_patches} patches of {settings.patch_size}x'
            f'{settings.patch_size} pixels needs about {needed / 2**30:.1f} GiB, {available / 2**30:.1f} GiB are '
            f'available; {fix}')


def non_finite_output(settings: AdaptationSettings) -> str:
    """Why a photo whose θ' is finite but whose adapted output is not gets the plain network's output."""
    return f'the adapted network\'s output is not finite (adaptation.lr {settings.lr:g} too large?)'


class NonFiniteInnerLoss(FloatingPointError):
    """The inner loss, a gradient or an adapted parameter is NaN or infinite: the adapted network would write a
    broken image."""


class AdaptedParameters(dict):
    """``name -> tensor`` of every parameter of ``net_g`` (the adapted ones as theta'), for ``functional_call``.

    ``mask_weights``: MaskNet's ``(N, 1, H, W)`` W >= 0, with its graph; ``inner_losses``: the loss before each step."""
    mask_weights: Optional[Tensor] = None
    inner_losses: Sequence[Tensor] = ()


def adapt_to_faces(net_g: nn.Module,
                   net_mask: Optional[Callable[[Tensor], Tensor]],
                   lq: Tensor,
                   hq: Tensor,
                   settings: AdaptationSettings = AdaptationSettings(),
                   create_graph: bool = False,
                   valid_mask: Optional[Tensor] = None,
                   net_input: Optional[Tensor] = None,
                   memory_format: torch.memory_format = torch.contiguous_format,
                   **removed: Any) -> AdaptedParameters:
    """``settings.steps`` plain SGD steps of ``net_g`` on face patch pairs, weighted per pixel by ``net_mask``.

    Args:
        net_g: any BasicSR SR network, ``(N, 3, h, w) -> (N, 3, s*h, s*w)``.
        net_mask: MaskNet, ``(N, 6, s*h, s*w) -> (N, 1, s*h, s*w)``; None weighs every pixel 1.
        lq, hq: ``(N, 3, h, w)`` LQ face patches and ``(N, 3, s*h, s*w)`` their pseudo GT, RGB in [0, 1].
        settings: :class:`AdaptationSettings` (``lr``, ``steps``, ``params`` and ``legacy_bicubic`` act here).
        create_graph: keep the gradients' graph, for the second-order meta-gradient.
        valid_mask: ``(N, 1, s*h, s*w)``, 1 where ``hq`` is valid; the mean runs over valid pixels only.
        net_input: what ``net_g`` sees instead of ``lq`` (MaskNet still sees ``lq``): e.g. the cached body features
            when ``net_g`` is an :class:`~metaf2n_plugin.models.frozen_body.RRDBNetTail`.
        memory_format: of ``net_g``'s input and 4-D parameters in the step (``torch.channels_last``: faster
            convolutions on CPUs; the same arithmetic, its sums in another order).
        removed: the keywords of 0.1 (``lr``, ``steps``, ``params``, ``legacy_bicubic``), still taken until 0.3
            with a DeprecationWarning: they replace the fields of ``settings`` of the same names.

    Returns :class:`AdaptedParameters`. Raises OptionError (a ValueError) when ``settings.params`` matches no
    parameter, and :class:`NonFiniteInnerLoss` when the loss, a gradient or an adapted parameter is not finite.
    """
    settings = with_removed_keywords(settings, removed, 'adapt_to_faces')
    theta: dict[str, Tensor] = {
        name: value.contiguous(memory_format=memory_format) if value.dim() == 4 else value
        for name, value in net_g.named_parameters()
    }
    names = adapted_names(net_g, settings.params)
    weights: Optional[Tensor] = None
    if net_mask is not None:
        weights = net_mask(torch.cat([upsample(lq, hq.shape[-2:], settings.legacy_bicubic), hq], dim=1))
    losses: list[Tensor] = []
    net_input = (lq if net_input is None else net_input).contiguous(memory_format=memory_format)
    for _ in range(settings.steps):
        loss = inner_loss(functional_call(net_g, theta, (net_input, )), hq, weights, valid_mask)
        gradients = torch.autograd.grad(
            loss, [theta[name] for name in names], create_graph=create_graph,
            allow_unused=True)  # a parameter the forward does not use keeps its value
        grads = {name: grad for name, grad in zip(names, gradients) if grad is not None}
        if not torch.isfinite(loss + sum(grad.sum() for grad in grads.values())):
            raise NonFiniteInnerLoss(f'inner loss {loss.item()} or its gradient is not finite')
        theta = {**theta, **{name: theta[name] - settings.lr * grad for name, grad in grads.items()}}
        if not all(bool(theta[name].isfinite().all()) for name in grads):
            raise NonFiniteInnerLoss(f'an adapted parameter is not finite (adaptation.lr {settings.lr:g} too large?)')
        losses.append(loss.detach())
    adapted = AdaptedParameters(theta)
    adapted.mask_weights, adapted.inner_losses = weights, losses
    return adapted


def with_removed_keywords(settings: AdaptationSettings, removed: Mapping[str, Any],
                          function: str) -> AdaptationSettings:
    """``settings`` with the :class:`AdaptationSettings` fields that 0.1 took as keywords of ``function``, each
    warned about (DeprecationWarning, naming the replacement); TypeError for any other keyword, as Python's own."""
    for key in removed:
        if key not in REMOVED_KEYWORDS:
            raise TypeError(f'{function}() got an unexpected keyword argument {key!r}')
        warnings.warn(
            f'{function}({key}=...) is deprecated since 0.2 and will be removed in 0.3: pass '
            f'settings=AdaptationSettings({key}=...) (metaf2n_plugin.AdaptationSettings)',
            DeprecationWarning,
            stacklevel=3)
    return dataclasses.replace(settings, **removed) if removed else settings


REMOVED_KEYWORDS = ('lr', 'steps', 'params', 'legacy_bicubic')


def adapt_to_photo(
    net_g: nn.Module,
    net_mask: Optional[nn.Module],
    pairs: Sequence[FacePair],
    scale: int,
    name: str,
    seed: int = 0,
    settings: AdaptationSettings = AdaptationSettings(),
    precision: str = 'fp32',
    exact: bool = False,
    memory_format: torch.memory_format = torch.contiguous_format
) -> tuple[Optional[AdaptedParameters], PatchBatch, Optional[str]]:
    """Algorithm 2's adaptation to one photo: ``settings.num_patches`` patch pairs of side ``settings.patch_size``
    per face, then :func:`adapt_to_faces` with ``settings``, as :func:`photo_step` runs it.

    ``pairs``: the photo's ``FacePair`` list; ``name``: its file name, for log lines and, with ``seed``, to seed the
    patch draw (a photo gets the same patches whatever else is processed). ``net_g`` and ``net_mask`` as in
    :func:`adapt_to_faces`; the patches go to ``net_g``'s device. ``precision`` (of the super-resolution pass),
    ``exact`` and ``memory_format``: as :func:`photo_step`.

    Returns ``(adapted, patches, reason)``: :class:`AdaptedParameters`, or None when the photo has no usable face,
    when its faces' patches would need more memory than is available, or when the loss or θ' is not finite
    (``reason`` says which); and the ``PatchBatch`` used.
    """
    problem = step_memory_problem(net_g, len(pairs), settings, scale, exact)
    if problem is not None:
        return None, sample_patches([], scale, settings.num_patches, settings.patch_size), problem
    rng = np.random.default_rng(zlib.crc32(name.encode()) + seed)
    patches = sample_patches(pairs, scale, settings.num_patches, settings.patch_size, rng, name)
    if len(patches) == 0:
        return None, patches, 'no usable face'
    device = next(net_g.parameters()).device
    with torch.enable_grad():
        try:
            adapted = photo_step(net_g, net_mask, patches.lq.to(device), patches.hq.to(device), patches.mask.to(device),
                                 settings, precision, exact, memory_format)
        except NonFiniteInnerLoss as error:
            return None, patches, str(error)
    return adapted, patches, None


def photo_step(net_g: nn.Module,
               net_mask: Optional[nn.Module],
               lq: Tensor,
               hq: Tensor,
               valid_mask: Tensor,
               settings: AdaptationSettings,
               precision: str = 'fp32',
               exact: bool = False,
               memory_format: torch.memory_format = torch.contiguous_format) -> AdaptedParameters:
    """The test-time step (:func:`adapt_to_faces`, no meta-gradient), with what it never differentiates run as the
    super-resolution pass runs: without a graph, in ``precision`` (``'fp32'``, ``'bf16'``, ``'fp16'``) and in
    ``memory_format`` (the adapted part too: ``torch.channels_last`` is faster on CPUs).

    MaskNet's weights, and when ``settings.params`` leaves RRDBNet's body frozen (:func:`step_path`) the body's
    features of the patches, are computed so; the adapted part keeps fp32 and its graph. In fp32 and the contiguous
    format the result equals ``exact``'s bit for bit; bf16 rounds those inputs to the step, channels_last reorders
    sums (docs/metaf2n.md#the-step-at-test-time). ``exact``: the step of 0.2, the whole network and MaskNet in fp32,
    contiguous, with their graph. Returns the :class:`AdaptedParameters` of all of ``net_g`` (arguments as
    :func:`adapt_to_faces`').
    """
    if exact:
        return adapt_to_faces(net_g, net_mask, lq, hq, settings, valid_mask=valid_mask)
    mask = None if net_mask is None else frozen_part(net_mask, precision, memory_format)
    tail, _ = step_path(net_g, settings)
    if tail is None:
        return adapt_to_faces(net_g, mask, lq, hq, settings, valid_mask=valid_mask, memory_format=memory_format)
    features = frozen_part(RRDBNetBody(net_g), precision, memory_format)(lq)
    adapted_tail = adapt_to_faces(
        tail, mask, lq, hq, settings, valid_mask=valid_mask, net_input=features, memory_format=memory_format)
    adapted = AdaptedParameters({**dict(net_g.named_parameters()), **adapted_tail})
    adapted.mask_weights, adapted.inner_losses = adapted_tail.mask_weights, adapted_tail.inner_losses
    return adapted


def step_path(net_g: nn.Module, settings: AdaptationSettings) -> tuple[Optional[nn.Module], Optional[str]]:
    """``(tail, None)`` when the parameters ``settings.params`` adapts leave ``net_g``'s body frozen (an RRDBNet whose
    tail alone is adapted: the step runs the body without a graph), else ``(None, why the whole network keeps its
    graph)``."""
    return frozen_tail(net_g, set(adapted_names(net_g, settings.params)))


def frozen_part(function: Callable[[Tensor], Tensor],
                precision: str,
                memory_format: torch.memory_format = torch.contiguous_format) -> Callable[[Tensor], Tensor]:
    """``function`` run without a graph, in ``precision``'s autocast, on its input in ``memory_format``, its output
    float32: a part of the step that is never differentiated."""
    dtype = AUTOCAST_DTYPES[precision]

    def run(x: Tensor) -> Tensor:
        with torch.no_grad(), torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            return function(x.contiguous(memory_format=memory_format)).float()

    return run


def inner_loss(sr: Tensor, hq: Tensor, weights: Optional[Tensor] = None, valid_mask: Optional[Tensor] = None) -> Tensor:
    """``mean(W * |hq - sr|)`` over the valid pixels and the channels; W and valid_mask ``(N, 1, H, W)`` or None."""
    error = (hq - sr).abs()
    if weights is not None:
        error = error * weights
    if valid_mask is None:
        return error.mean()
    return (error * valid_mask).sum() / (valid_mask.sum() * error.size(1)).clamp(min=1)


def upsample(lq: Tensor, size: Sequence[int], legacy_bicubic: bool = False) -> Tensor:
    """``(N, C, h, w)`` -> ``(N, C, *size)`` bicubic: PyTorch's (half-pixel centres) or TF1's legacy resize."""
    if legacy_bicubic:
        return tf1_resize_bicubic(lq, tuple(size))
    return F.interpolate(lq, size=tuple(size), mode='bicubic', align_corners=False)
