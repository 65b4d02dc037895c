"""MetaF2N's inner step, shared by meta-training and testing (README, "MetaF2N: meta-training and adaptation")."""
import re
import zlib

import numpy as np
import torch
from torch.func import functional_call
from torch.nn import functional as F

from metaf2n_plugin.faces.patches import sample_patches
from metaf2n_plugin.models.tf1_bicubic import tf1_resize_bicubic


class NonFiniteInnerLoss(FloatingPointError):
    """The inner loss or its gradient is NaN or infinite: adapting would write non-finite weights."""


class AdaptedParameters(dict):
    """``name -> tensor`` of every parameter of ``net_g`` (the adapted ones as theta'), for ``functional_call``.

    ``mask_weights``: MaskNet's ``(N, 1, H, W)`` W >= 0, with its graph; ``inner_losses``: the loss before each step."""
    mask_weights = None
    inner_losses = ()


def adapt_to_faces(net_g,
                   net_mask,
                   lq,
                   hq,
                   lr=1e-2,
                   steps=1,
                   params=None,
                   create_graph=False,
                   valid_mask=None,
                   legacy_bicubic=False):
    """``steps`` plain SGD steps of ``net_g`` on face patch pairs, weighted per pixel by ``net_mask``.

    Args:
        net_g: any BasicSR SR network, ``(N, 3, h, w) -> (N, 3, s*h, s*w)``.
        net_mask: MaskNet, ``(N, 6, s*h, s*w) -> (N, 1, s*h, s*w)``; None weighs every pixel 1.
        lq, hq: ``(N, 3, h, w)`` LQ face patches and ``(N, 3, s*h, s*w)`` their pseudo GT, RGB in [0, 1].
        lr, steps, params: alpha; number of steps; regex of the parameter names to adapt (None: all).
        create_graph: keep the gradients' graph, for the second-order meta-gradient.
        valid_mask: ``(N, 1, s*h, s*w)``, 1 where ``hq`` is valid; the mean runs over valid pixels only.
        legacy_bicubic: upsample ``lq`` for MaskNet with TF1's ``resize_bicubic`` (converted official weights).

    Returns :class:`AdaptedParameters`. Raises ValueError when ``params`` matches no parameter, and
    :class:`NonFiniteInnerLoss` when the loss or a gradient is not finite.
    """
    theta = dict(net_g.named_parameters())
    names = [name for name in theta if params is None or re.search(params, name)]
    if not names:
        raise ValueError(f'adaptation params {params!r} matches no parameter of {type(net_g).__name__}')
    weights = None
    if net_mask is not None:
        weights = net_mask(torch.cat([upsample(lq, hq.shape[-2:], legacy_bicubic), hq], dim=1))
    losses = []
    for _ in range(steps):
        loss = inner_loss(functional_call(net_g, theta, (lq, )), hq, weights, valid_mask)
        grads = torch.autograd.grad(
            loss, [theta[name] for name in names], create_graph=create_graph,
            allow_unused=True)  # a parameter the forward does not use keeps its value
        grads = {name: grad for name, grad in zip(names, grads) if grad is not None}
        if not torch.isfinite(loss + sum(grad.sum() for grad in grads.values())):
            raise NonFiniteInnerLoss(f'inner loss {loss.item()} or its gradient is not finite')
        theta = {**theta, **{name: theta[name] - lr * grad for name, grad in grads.items()}}
        losses.append(loss.detach())
    adapted = AdaptedParameters(theta)
    adapted.mask_weights, adapted.inner_losses = weights, losses
    return adapted


def adapt_to_photo(net_g, net_mask, pairs, scale, name, seed=0, num_patches=16, patch_size=64, **options):
    """Algorithm 2's adaptation to one photo: ``num_patches`` patch pairs per face, then :func:`adapt_to_faces`.

    ``pairs``: the photo's ``FacePair`` list; ``name``: its file name, for log lines and, with ``seed``, to seed the
    patch draw (a photo gets the same patches whatever else is processed); ``options``: ``lr``, ``steps``, ``params``,
    ``legacy_bicubic``. ``net_g`` and ``net_mask`` as in :func:`adapt_to_faces`; the patches go to ``net_g``'s device.

    Returns ``(adapted, patches, reason)``: :class:`AdaptedParameters`, or None when the photo has no usable face or
    the loss is not finite (``reason`` says which); and the ``PatchBatch`` used.
    """
    rng = np.random.default_rng(zlib.crc32(name.encode()) + seed)
    patches = sample_patches(pairs, scale, num_patches, patch_size, rng, name)
    if len(patches) == 0:
        return None, patches, 'no usable face'
    device = next(net_g.parameters()).device
    with torch.enable_grad():
        try:
            adapted = adapt_to_faces(
                net_g,
                net_mask,
                patches.lq.to(device),
                patches.hq.to(device),
                valid_mask=patches.mask.to(device),
                **options)
        except NonFiniteInnerLoss as error:
            return None, patches, str(error)
    return adapted, patches, None


def inner_loss(sr, hq, weights=None, valid_mask=None):
    """``mean(W * |hq - sr|)`` over the valid pixels and the channels; W and valid_mask ``(N, 1, H, W)`` or None."""
    error = (hq - sr).abs()
    if weights is not None:
        error = error * weights
    if valid_mask is None:
        return error.mean()
    return (error * valid_mask).sum() / (valid_mask.sum() * error.size(1)).clamp(min=1)


def upsample(lq, size, legacy_bicubic=False):
    """``(N, C, h, w)`` -> ``(N, C, *size)`` bicubic: PyTorch's (half-pixel centres) or TF1's legacy resize."""
    if legacy_bicubic:
        return tf1_resize_bicubic(lq, tuple(size))
    return F.interpolate(lq, size=tuple(size), mode='bicubic', align_corners=False)
