"""MetaF2N's inner step: adapt the SR network to one photo's degradation with a few SGD steps on its faces.

``W = MaskNet(cat[bicubic_up(lq), hq])``, ``L_in = mean(W * |hq - f_theta(lq)|)``, ``theta' = theta - lr * grad L_in``.
The adapted parameters are a dict, used with ``torch.func.functional_call``; the network is never copied or
modified, so meta-training (second order, through ``create_graph``) and testing share this one function.
"""
import numpy as np
import re
import torch
import zlib
from torch.func import functional_call
from torch.nn import functional as F

from metaf2n_plugin.faces.patches import sample_patches
from metaf2n_plugin.models.tf1_bicubic import tf1_resize_bicubic


class NonFiniteInnerLoss(FloatingPointError):
    """The inner loss or its gradient is NaN or infinite: adapting would write non-finite weights."""


class AdaptedParameters(dict):
    """``name -> tensor``: every parameter of ``net_g``, the adapted ones as ``theta'``, for ``functional_call``.

    Attributes:
        mask_weights: ``(N, 1, H, W)`` MaskNet's weights ``W`` (>= 0), with their graph to MaskNet.
        inner_losses: list of ``steps`` detached scalars, the inner loss before each step.
    """
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
        net_g: the SR network f (any BasicSR SR architecture), ``(N, 3, h, w) -> (N, 3, s*h, s*w)``.
        net_mask: MaskNet, ``(N, 6, s*h, s*w) -> (N, 1, s*h, s*w)``; None weighs every pixel 1.
        lq: ``(N, 3, h, w)`` LQ face patches, RGB in [0, 1].
        hq: ``(N, 3, s*h, s*w)`` their pseudo ground truth (restored faces), RGB in [0, 1].
        lr: inner learning rate alpha.
        steps: number of SGD steps.
        params: regex; only parameters whose names match are adapted (None: all).
        create_graph: keep the graph of the gradients, for the second-order meta-gradient.
        valid_mask: ``(N, 1, s*h, s*w)``, 1 where ``hq`` is valid; the mean runs over valid pixels only.
        legacy_bicubic: upsample ``lq`` for MaskNet with TF1's ``resize_bicubic`` (converted official weights).

    Returns:
        :class:`AdaptedParameters`.

    Raises:
        NonFiniteInnerLoss: the loss or a gradient is not finite.
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

    The patches are drawn with a generator seeded by the photo's file name (and ``seed``), so a photo gets the
    same patches whatever else is processed with it.

    Args:
        net_g, net_mask: as :func:`adapt_to_faces` (on the device the patches go to).
        pairs: the photo's :class:`~metaf2n_plugin.faces.pairs.FacePair` list.
        scale: integer SR factor s.
        name: the photo's file name; names it in log lines and seeds the patch draw.
        options: ``lr``, ``steps``, ``params``, ``legacy_bicubic`` of :func:`adapt_to_faces`.

    Returns:
        ``(adapted, patches, reason)``: :class:`AdaptedParameters` (None when the photo has no usable face
        or the loss is not finite, ``reason`` then says which), and the :class:`PatchBatch` used.
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
