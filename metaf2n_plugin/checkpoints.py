"""Weights files handed in by a user: loaded safely, named in every error, their architecture read off the shapes."""
import os
import pickle

import torch

from metaf2n_plugin.atomic_write import atomic_file
from metaf2n_plugin.errors import WeightsFileError, WeightsNotFoundError

PARAM_KEYS = ('params_ema', 'params')  # BasicSR's keys, the EMA first (what BasicSR tests with)


def read_checkpoint(path, what='weights', map_location='cpu'):
    """The object in a ``.pth`` file, loaded with ``weights_only=True``; errors name ``what`` (e.g. ``'--model'``).

    Raises :class:`~metaf2n_plugin.errors.WeightsNotFoundError` if there is no file,
    :class:`~metaf2n_plugin.errors.WeightsFileError` if it is not a checkpoint that loads safely.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        found = sorted(name for name in os.listdir(path) if name.endswith('.pth'))[:5]
        raise WeightsFileError(
            f'{what}: {path!r} is a folder; give the weights file in it' +
            (f' (it holds {", ".join(found)})' if found else ' (it holds no .pth file)'),
            path=path,
            reason='a folder')
    if not os.path.isfile(path):
        raise WeightsNotFoundError(f'{what}: {path!r} does not exist', missing={what: path})
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError) as error:
        reason = unpickling_reason(error)
        raise WeightsFileError(
            f'{what}: {path!r} is not a PyTorch weights file that can be loaded safely ({reason}); it was not '
            'loaded. Do not load a file of unknown origin with weights_only=False: that can run code in it',
            path=path,
            reason=reason) from None


def unpickling_reason(error):
    """What ``torch.load`` found wrong, without its advice to retry with ``weights_only=False`` (the one thing not to
    do with a file handed in): the line after ``WeightsUnpickler error:``, else the first line."""
    lines = [line.strip() for line in str(error).splitlines()]
    marker = next((i for i, line in enumerate(lines) if 'WeightsUnpickler error' in line), None)
    if marker is not None:
        after = lines[marker].partition('WeightsUnpickler error:')[2].strip()
        detail = after or next((line for line in lines[marker + 1:] if line), '')
        if detail:
            return detail.partition('. Please use')[0][:200]
    return lines[0][:200] if lines and lines[0] else type(error).__name__


def state_dict_of(checkpoint, path, what='weights'):
    """A checkpoint's state dict: ``params_ema``, else ``params``, else the checkpoint itself;
    :class:`~metaf2n_plugin.errors.WeightsFileError` (naming ``path``) when that is no dict of tensors, or when a
    floating tensor holds NaN or an infinity."""
    state = checkpoint
    if isinstance(state, dict):
        state = next((state[key] for key in PARAM_KEYS if isinstance(state.get(key), dict)), state)
    if not (isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())):
        keys = sorted(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise WeightsFileError(
            f'{what}: {os.fspath(path)!r} holds no state dict of tensors under '
            f'{" / ".join(PARAM_KEYS)} or at its top level (found {keys})',
            path=os.fspath(path),
            reason='no state dict')
    broken = non_finite_tensors(state)
    if broken:
        raise WeightsFileError(
            f'{what}: {os.fspath(path)!r} has {broken}; a network with them writes a broken image. Take an earlier '
            'checkpoint or the original file',
            path=os.fspath(path),
            reason='non-finite values')
    return state


def non_finite_tensors(state):
    """``'NaN or infinite values in <k> tensor(s) (<names>)'`` for the floating tensors of ``state`` that hold any,
    or ``''``."""
    broken = [name for name, tensor in state.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if not broken:
        return ''
    return (f'NaN or infinite values in {len(broken)} tensor(s) ({", ".join(broken[:3])}'
            f'{", ..." if len(broken) > 3 else ""})')


def what_it_holds(checkpoint):
    """A few words on what a loaded ``.pth`` holds, for an error that refuses it: whose weights, a training state,
    or its first keys."""
    if not isinstance(checkpoint, dict):
        return f'a {type(checkpoint).__name__}'
    if {'iter', 'optimizers'} <= set(checkpoint):
        return 'a BasicSR training state (experiments/<name>/training_states/<iter>.state)'
    state = next((checkpoint[key] for key in PARAM_KEYS if isinstance(checkpoint.get(key), dict)), checkpoint)
    if 'conv_first.weight' in state:
        return 'an SR network\'s weights (a net_g file)'
    if 'convs.0.weight' in state:
        return 'MaskNet\'s weights (a net_mask file)'
    return f'the keys {sorted(map(str, checkpoint))[:6]}'


def load_state_dict(path, what='weights'):
    """:func:`state_dict_of` the checkpoint at ``path`` (errors as :func:`read_checkpoint`'s)."""
    return state_dict_of(read_checkpoint(path, what), path, what)


def load_named(net, state, path, network):
    """``net.load_state_dict(state, strict=True)``; a mismatch is a WeightsFileError naming ``path`` and
    ``network``."""
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise mismatch(error, path, network) from None


def mismatch(error, path, network):
    """A WeightsFileError naming the file and the network for ``load_state_dict``'s RuntimeError (its first
    lines)."""
    lines = str(error).splitlines()
    detail = ' '.join(line.strip() for line in lines[1:3])[:400]
    return WeightsFileError(
        f'{os.fspath(path)!r} does not fit {network}: {lines[0]} {detail}; is it this network\'s '
        'checkpoint, with the same options?',
        path=os.fspath(path),
        reason=lines[0])


def rrdbnet_options(state, where='the weights'):
    """BasicSR ``RRDBNet`` options read off a state dict's shapes (x4, as MetaF2N; check with :func:`network_from`).
    WeightsFileError naming ``where`` when it is not an x4 RRDBNet's."""
    try:
        first = state['conv_first.weight']
        options = {
            'type': 'RRDBNet',
            'num_in_ch': first.shape[1],
            'num_out_ch': state['conv_last.weight'].shape[0],
            'scale': 4,
            'num_feat': first.shape[0],
            'num_block': len({key.split('.')[1]
                              for key in state if key.startswith('body.')}),
            'num_grow_ch': state['body.0.rdb1.conv1.weight'].shape[0]
        }
    except KeyError as error:
        raise WeightsFileError(f'{where}: no variable {error}; not an RRDBNet\'s weights', reason='not RRDBNet') \
            from None
    if options['num_in_ch'] != 3:
        raise WeightsFileError(
            f'{where}: conv_first takes {options["num_in_ch"]} channels; MetaF2N\'s RRDBNet takes RGB at x4 (3; an x2 '
            'or x1 RRDBNet unshuffles its input to 12 or 48)',
            reason='not x4')
    return options


def masknet_options(state, where='the weights'):
    """``MaskNet`` options read off a state dict's shapes (WeightsFileError naming ``where``); check them with
    :func:`network_from`."""
    try:
        options = {
            'type': 'MaskNet',
            'num_in_ch': state['convs.0.weight'].shape[1],
            'num_feat': state['convs.0.weight'].shape[0],
            'num_conv': len(state) // 2
        }
    except KeyError as error:
        raise WeightsFileError(f'{where}: no variable {error}; not a MaskNet\'s weights', reason='not MaskNet') \
            from None
    return options


def network_from(state, options, where='the weights'):
    """The network ``options`` describe, ``state`` loaded strictly; WeightsFileError naming ``where`` on a missing,
    extra or mis-shaped variable."""
    from basicsr.archs import build_network

    net = build_network(dict(options))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        lines = [
            line.strip()[:200] + ('...' if len(line.strip()) > 200 else '') for line in str(error).splitlines()[1:]
            if line.strip()
        ]
        detail = '; '.join(lines[:2]) + (f'; and {len(lines) - 2} more' if len(lines) > 2 else '')
        raise WeightsFileError(
            f'{where}: its {options["type"]} variables do not fit {options}: {detail or error}',
            reason='shapes') from None
    return net


def save_checkpoint(state, path, key='params', **extras):
    """``{key: state, **extras}`` at ``path``, written atomically (the output folder is created)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_file(path) as f:
        torch.save({key: state, **extras}, f)
