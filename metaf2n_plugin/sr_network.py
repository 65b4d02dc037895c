"""The networks of a photo run, from what a user has: a BasicSR options file (the one a network was trained with), a
bare weights file of any architecture spandrel knows, or an ``nn.Module``; their scale checked.

MetaF2N is x4 and stays x4: the face pairs (a restored face at 4x its LQ crop), MaskNet's input and the patch
sizes are all x4 ones, and every MaskNet here was trained at x4. A network of another scale is refused by name.
"""
import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Optional

import torch
import yaml
from torch import nn

from metaf2n_plugin.checkpoints import load_state_dict, network_from, rrdbnet_options
from metaf2n_plugin.errors import OptionError, WeightsFileError
from metaf2n_plugin.weight_delta import state_digest

SCALE = 4
PROBE = 32  # LQ side of the probe that measures a network's scale: a multiple of every window size in use (4, 8, 16)
DIGEST_KEY = 'net_g_sha256'  # in a MaskNet file: the SHA-256s (state_digest) of the net_g weights it was trained with
RRDBNET_TRIED = 'BasicSR\'s RRDBNet x4 (keys conv_first, body.<i>.rdb<j>, conv_up1, conv_last)'


@dataclasses.dataclass
class TrainingOptions:
    """What a BasicSR options file gives a photo run. ``path``: the file; ``network_g``, ``network_mask``: the
    networks' options (``network_mask`` None: ``network_mask: ~``); ``adaptation``: its adaptation group ({} without
    one); ``model``, ``mask``: the weights files it names (``path.pretrain_network_*``), else a training run's last
    (``experiments/<name>/models/net_*_latest.pth``)."""
    path: str
    network_g: dict[str, Any]
    network_mask: Optional[dict[str, Any]]
    adaptation: dict[str, Any]
    model: str
    mask: Optional[str]


def read_training_options(path: str) -> TrainingOptions:
    """The :class:`TrainingOptions` of the BasicSR options file at ``path``; OptionError (argument ``opt``) naming
    the file and the key for a file that is not one."""
    where = f'{{argument}} {os.fspath(path)!r}'
    try:
        with open(path, encoding='utf-8') as f:
            opt = yaml.safe_load(f)
    except OSError as error:
        raise OptionError(f'{where}: {error.strerror}', argument='opt', option='opt', value=path) from None
    except yaml.YAMLError as error:
        raise OptionError(f'{where} is not YAML: {error}', argument='opt', option='opt', value=path) from None
    if not (isinstance(opt, dict) and isinstance(opt.get('network_g'), dict) and 'type' in opt['network_g']):
        raise OptionError(
            f'{where} has no network_g: {{type: ...}}; give the options file of a BasicSR training or test '
            '(experiments/<name>/<options>.yml is the copy a training keeps)',
            argument='opt',
            option='opt',
            value=path)
    if opt.get('scale', SCALE) != SCALE:
        raise OptionError(
            f'{where}: scale {opt["scale"]}; {scale_advice()}', argument='opt', option='scale', value=opt['scale'])
    mask_options = options_group(opt, 'network_mask', '{type: MaskNet, ...}', where)
    adaptation = options_group(opt, 'adaptation', 'a group of settings', where) or {}
    paths = opt.get('path') or {}
    run = os.path.join('experiments', str(opt.get('name', '')), 'models')
    model = paths.get('pretrain_network_g') or os.path.join(run, 'net_g_latest.pth')
    mask = None
    if mask_options is not None:
        mask = paths.get('pretrain_network_mask') or os.path.join(run, 'net_mask_latest.pth')
    return TrainingOptions(
        os.fspath(path), dict(opt['network_g']), mask_options and dict(mask_options), dict(adaptation), model, mask)


def options_group(opt: dict[str, Any], key: str, what: str, where: str) -> Optional[dict[str, Any]]:
    """``opt[key]``, a dict or None; OptionError naming ``where`` and the key for anything else."""
    value = opt.get(key)
    if value is not None and not isinstance(value, dict):
        raise OptionError(f'{where}: {key} must be {what} or ~, got {value!r}', argument='opt', option=key, value=value)
    return value


def network_from_options(options: TrainingOptions, model: str) -> tuple[nn.Module, str]:
    """``(net_g, description)``: ``options.network_g`` built by BasicSR's registry with the weights at ``model``
    loaded strictly (``params_ema`` first, as :func:`~metaf2n_plugin.checkpoints.state_dict_of`); WeightsFileError
    naming both files when the weights' shapes contradict the options."""
    state = load_state_dict(model, '{argument}')
    where = f'{{argument}} {model!r} with the network_g of the options file {options.path!r}'
    try:
        net = network_from(state, options.network_g, where)
    except KeyError as error:  # BasicSR's registry: a type nobody registered
        raise OptionError(
            f'the options file {options.path!r}: network_g type {options.network_g["type"]!r} is not registered in '
            f'BasicSR ({error}); import the module that registers it',
            option='network_g',
            value=options.network_g['type']) from None
    described = ', '.join(f'{key} {value}' for key, value in options.network_g.items() if key != 'type')
    return net, f'{options.network_g["type"]} ({described}; from the options file {options.path!r})'


def network_from_file(path: str) -> tuple[nn.Module, str]:
    """``(net_g, description)`` of a bare weights file: BasicSR's x4 RRDBNet when it has that layout (any size, the
    fast step's network), else whatever spandrel detects in it (ESRGAN's old layout, SRVGGNetCompact, SwinIR, HAT,
    ...). WeightsFileError naming the file and every loader tried when none recognises it."""
    state = load_state_dict(path, '{argument}')
    where = f'{{argument}} {path!r}'
    first = state.get('conv_first.weight')
    if first is not None and first.ndim == 4 and first.shape[1] == 3 and 'body.0.rdb1.conv1.weight' in state:
        options = rrdbnet_options(state, where)
        net = network_from(state, options, where)
        return net, (f'RRDBNet (num_feat {options["num_feat"]}, num_block {options["num_block"]}, '
                     f'num_grow_ch {options["num_grow_ch"]})')
    tried = [RRDBNET_TRIED + ': not this layout']
    try:
        import spandrel
    except ImportError:
        tried.append('spandrel: not installed (pip install spandrel, or pip install "metaf2n-plugin[infer]")')
    else:
        try:
            descriptor = spandrel.ModelLoader().load_from_state_dict(state)
        except spandrel.UnsupportedModelError:
            count = len(spandrel.MAIN_REGISTRY.architectures())
            tried.append(f'spandrel {spandrel.__version__}: none of its {count} architectures matches')
        except (RuntimeError, ValueError, KeyError, TypeError, AssertionError) as error:
            tried.append(f'spandrel {spandrel.__version__}: {type(error).__name__} {str(error).splitlines()[0][:160]}')
        else:
            if not isinstance(descriptor, spandrel.ImageModelDescriptor):
                tried.append(f'spandrel {spandrel.__version__}: a {descriptor.architecture.name} ({descriptor.purpose}'
                             ' model), not super-resolution')
            else:
                name = descriptor.architecture.name
                return descriptor.model, f'{name} (x{descriptor.scale}, detected by spandrel {spandrel.__version__})'
    keys = ', '.join(sorted(state)[:4])
    raise WeightsFileError(
        f'{where}: no loader recognises these weights (first keys: {keys}). Tried: {"; ".join(tried)}. For a '
        'network trained with BasicSR, give its options file too (--opt)',
        path=path,
        reason='unrecognised weights')


def scale_advice() -> str:
    return (f'MetaF2N adapts x{SCALE} networks only: its face pairs, MaskNet and patch sizes are x{SCALE} ones (and '
            f'so is every MaskNet trained here); give an x{SCALE} network')


def check_scale(net: nn.Module, where: str) -> None:
    """OptionError naming ``where`` when ``net`` does not take an RGB image to ``SCALE`` times its size, measured on a
    ``PROBE`` x ``PROBE`` image (the network on the CPU or its device, without gradients)."""
    device = next(net.parameters()).device
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, 3, PROBE, PROBE, device=device))
    except RuntimeError as error:
        raise WeightsFileError(
            f'{where}: the network does not run on an RGB image ({str(error).splitlines()[0][:200]})',
            reason='not RGB') from None
    if out.shape[1] != 3 or out.shape[-2] != SCALE * PROBE or out.shape[-1] != SCALE * PROBE:
        scale = out.shape[-1] / PROBE
        raise WeightsFileError(
            f'{where}: a x{scale:g} network ({tuple(out.shape[1:])} from a 3x{PROBE}x{PROBE} image); '
            f'{scale_advice()}',
            reason='scale')


def net_g_digest(net: nn.Module) -> str:
    """The SHA-256 (:func:`~metaf2n_plugin.weight_delta.state_digest`) of a network's weights, as a MaskNet file
    stores those it was trained with."""
    return state_digest({name: tensor.cpu() for name, tensor in net.state_dict().items()})


def check_trained_with(net_g: nn.Module, checkpoint: Mapping[str, Any], mask_path: str) -> None:
    """WeightsFileError (argument ``mask``) when the MaskNet file ``checkpoint`` stores the digests of the networks it
    was trained with and ``net_g``'s is not among them; files without digests (converted or older) pass."""
    stored = checkpoint.get(DIGEST_KEY) if isinstance(checkpoint, dict) else None
    if not stored:
        return
    digest = net_g_digest(net_g)
    if digest not in stored:
        raise WeightsFileError(
            f'{{argument}} {mask_path!r} was trained with another SR network (SHA-256 {stored[0][:12]}...), not '
            f'with the SR network given ({digest[:12]}...); give the net_g saved with it (the same run and '
            'iteration), or adapt without MaskNet',
            argument='mask',
            path=mask_path,
            reason='another network')
