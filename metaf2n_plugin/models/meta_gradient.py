"""One task's meta-gradient (Algorithm 1, lines 5-9): adapt on the task's faces, the outer loss of theta' on its
backgrounds, and that loss's gradient pushed back through the inner step into theta and MaskNet. The two-pass exact
meta-gradient and the patch-by-patch outer backward: docs/metaf2n.md."""
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Optional

import torch
from torch import Tensor, nn
from torch.func import functional_call

from metaf2n_plugin.models.adaptation import AdaptationSettings, adapt_to_faces, inner_loss
from metaf2n_plugin.models.recompute import replayed_rng, rng_state

OuterLoss = Callable[[Tensor, Tensor, Optional[Tensor]], Mapping[str, Tensor]]


def task_meta_gradient(net_g: nn.Module,
                       net_mask: nn.Module,
                       faces: tuple[Tensor, Tensor],
                       backgrounds: tuple[Tensor, Tensor],
                       outer_loss: OuterLoss,
                       settings: AdaptationSettings = AdaptationSettings(),
                       first_order: bool = False,
                       outer_chunk: int = 1,
                       log_inner_after: bool = False,
                       face_input: Optional[Tensor] = None) -> tuple[Tensor, 'OrderedDict[str, Tensor]']:
    """Add one task's meta-gradient ``dL_out(theta') / d(theta, MaskNet)`` to the ``.grad`` of their parameters.

    Args:
        net_g: the SR network (theta), in the mode to train in; net_mask: MaskNet (its parameters get the
            second-order term through the mask weights W).
        faces: ``(lq, hq)``: ``(F, 3, p, p)`` LQ face patches and ``(F, 3, s*p, s*p)`` their pseudo GT, in [0, 1].
        backgrounds: ``(lq, target)``: ``(P, 3, b, b)`` background patches and ``(P, 3, s*b, s*b)`` their target.
        outer_loss: ``(sr, target, mask_weights) -> {name: scalar}``, the terms summed into L_out.
        settings: the inner step's :class:`AdaptationSettings`.
        first_order: drop the second-order term (theta' is treated as theta plus a constant).
        outer_chunk: background patches per recomputed outer forward (0: all in one graph).
        log_inner_after: also log the inner loss of theta' (``l_inner_after``), without touching the random state.
        face_input: what ``net_g`` sees of the faces instead of their LQ patches (``adapt_to_faces``' ``net_input``):
            with an ``RRDBNetTail`` as ``net_g``, the faces' and (as ``backgrounds[0]``) the backgrounds' body features.

    Returns ``(sr, losses)``: theta''s ``(P, 3, s*b, s*b)`` output and the logged terms, detached. Raises
    FloatingPointError (a non-finite inner or outer loss) before any gradient is written.
    """
    (lq, hq), device = faces, faces[0].device
    inner_rng = rng_state(device)
    adapted = adapt_to_faces(net_g, net_mask, lq, hq, settings, net_input=face_input)
    fast = adapted if first_order else {k: v.detach().requires_grad_(v.requires_grad) for k, v in adapted.items()}

    def loss_of_output(sr: Tensor, target: Tensor) -> Mapping[str, Tensor]:
        return outer_loss(sr, target, adapted.mask_weights)

    sr, losses = outer_backward(net_g, fast, *backgrounds, loss_of_output, outer_chunk)
    if not first_order:  # push g = dL_out/dtheta' through theta' = theta - lr * grad L_in(theta, W)
        with replayed_rng(inner_rng, device):
            again = adapt_to_faces(net_g, net_mask, lq, hq, settings, create_graph=True, net_input=face_input)
        names = [name for name in fast if fast[name].grad is not None]
        torch.autograd.backward([again[name] for name in names], [fast[name].grad for name in names])
    assert adapted.mask_weights is not None  # net_mask is a MaskNet here
    log = OrderedDict(l_inner_before=adapted.inner_losses[0], mask_mean=adapted.mask_weights.detach().mean(), **losses)
    if log_inner_after:
        with torch.no_grad(), replayed_rng(rng_state(device), device):  # the random state is restored after it
            inputs = lq if face_input is None else face_input
            log['l_inner_after'] = inner_loss(functional_call(net_g, adapted, (inputs, )), hq, adapted.mask_weights)
    return sr, log


def outer_backward(net_g: nn.Module,
                   fast: dict[str, Tensor],
                   background: Tensor,
                   target: Tensor,
                   outer_loss: Callable[[Tensor, Tensor], Mapping[str, Tensor]],
                   outer_chunk: int = 1) -> tuple[Tensor, dict[str, Tensor]]:
    """The outer loss of ``SR = f_fast(background)`` and its backward into ``fast`` (and MaskNet, through W),
    ``outer_chunk`` patches at a time (each recomputed with its graph and random numbers; 0: all at once).

    ``outer_loss``: ``(sr, target) -> {name: scalar}``. Returns ``(sr, losses)``, both detached; FloatingPointError,
    before any backward, if the loss is not finite.
    """
    device = background.device
    if outer_chunk:
        chunks = torch.arange(len(background)).split(outer_chunk)
        states, outputs = [], []
        with torch.no_grad():
            for chunk in chunks:
                states.append(rng_state(device))
                outputs.append(functional_call(net_g, fast, (background[chunk], )))
        sr = torch.cat(outputs).requires_grad_()
    else:
        sr = functional_call(net_g, fast, (background, ))
    losses = outer_loss(sr, target)
    terms = list(losses.values())
    total = sum(terms[1:], terms[0])
    if not torch.isfinite(total):
        raise FloatingPointError(f'outer loss {total.item()} is not finite')
    total.backward()
    if outer_chunk:
        assert sr.grad is not None  # sr requires grad and L_out depends on it
        for chunk, state in zip(chunks, states):
            with replayed_rng(state, device):
                functional_call(net_g, fast, (background[chunk], )).backward(sr.grad[chunk])
    return sr.detach(), {key: value.detach() for key, value in losses.items()}
