"""A partly meta-trained network as a small file: the trained part of theta as a difference from its base, and MaskNet.

A run with ``train.meta_params`` changes only some of theta's tensors (options/train_x4plus_masknet.yml: none); its
``net_g`` is the base (Real-ESRGAN x4plus, 67 MB) plus a difference in those tensors (none there: the file holds
MaskNet alone, 0.87 MiB). A delta
file holds ``{'net_g_delta': {name: theta - base}, 'params_mask': MaskNet's state dict, 'base': {'file':
..., 'sha256': SHA-256 of the base's tensors}, 'adaptation': the run's adaptation options}``; only that file is
committed, and ``metaf2n-convert <delta file>`` rebuilds the run's ``net_g`` and ``net_mask`` from the base.

    python scripts/export_delta.py experiments/x4plus_masknet_meta --out pretrained/x4plus_masknet_meta.pth
    metaf2n-convert pretrained/x4plus_masknet_meta.pth # -> weights/x4plus_masknet_meta_net_mask.pth
"""
import hashlib
import os

import torch

from metaf2n_plugin.checkpoints import (load_state_dict, masknet_options, network_from, read_checkpoint,
                                        rrdbnet_options, state_dict_of, what_it_holds)
from metaf2n_plugin.errors import WeightsFileError
from metaf2n_plugin.models.adaptation import AdaptationSettings

DELTA_KEY = 'net_g_delta'


def state_digest(state):
    """SHA-256 of a state dict's names and float32 values, in name order: the same weights give the same digest."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def make_delta(net_g, base, net_mask, base_file, adaptation):
    """The delta dict (module docstring) of the state dicts ``net_g`` and ``base``; tensors equal in both are left
    out. ValueError when the two are not the same architecture."""
    if set(net_g) != set(base) or any(net_g[k].shape != base[k].shape for k in base):
        raise ValueError('net_g and the base are not the same network (names or shapes differ)')
    delta = {
        name: (net_g[name].float() - base[name].float())
        for name in base if not torch.equal(net_g[name], base[name])
    }
    return {
        DELTA_KEY: delta,
        'params_mask': net_mask,
        'base': {
            'file': os.path.basename(base_file),
            'sha256': state_digest(base)
        },
        'adaptation': dict(adaptation)
    }


def is_delta(checkpoint):
    return isinstance(checkpoint, dict) and DELTA_KEY in checkpoint


DELTA_KEYS = {
    DELTA_KEY: 'the difference of theta from its base',
    'params_mask': 'MaskNet\'s weights',
    'base': 'the base file\'s name and SHA-256',
    'adaptation': 'the run\'s adaptation settings'
}


def read_delta(path):
    """The delta file at ``path`` (module docstring), every part checked before anything is built from it: MaskNet's
    state fits a MaskNet, the differences are finite tensors, the settings are valid. ValueError naming the file and
    what it holds instead (:func:`~metaf2n_plugin.checkpoints.what_it_holds`)."""
    checkpoint = read_checkpoint(path, 'the delta file')
    where = repr(os.fspath(path))
    if not is_delta(checkpoint):
        raise WeightsFileError(
            f'{where} is not a delta file: it holds {what_it_holds(checkpoint)}. A delta file '
            f'(scripts/export_delta.py) holds {", ".join(DELTA_KEYS)}; a network\'s weights are used as they are '
            '(metaf2n-infer --model/--mask, path.pretrain_network_*), without metaf2n-convert',
            path=os.fspath(path),
            reason='not a delta file')
    missing = [key for key in DELTA_KEYS if key not in checkpoint]
    if missing:
        raise WeightsFileError(
            f'{where} is an incomplete delta file: it has no {", ".join(missing)} '
            f'({"; ".join(DELTA_KEYS[key] for key in missing)}); export it again with scripts/export_delta.py',
            path=os.fspath(path),
            reason='incomplete delta file')
    if checkpoint[DELTA_KEY] != {}:  # no difference at all: MaskNet alone was trained
        state_dict_of(checkpoint[DELTA_KEY], path, f'{DELTA_KEY} of the delta file')
    mask = state_dict_of(checkpoint['params_mask'], path, 'params_mask of the delta file')
    network_from(mask, masknet_options(mask, f'{where} (params_mask)'), f'{where} (params_mask)')
    base = checkpoint['base']
    if not (isinstance(base, dict) and isinstance(base.get('sha256'), str) and isinstance(base.get('file'), str)):
        raise WeightsFileError(
            f'{where}: its base must be {{file: <name>, sha256: <digest>}}, got {base!r}',
            path=os.fspath(path),
            reason='no base digest')
    AdaptationSettings.from_options(checkpoint, f'{where} (adaptation)')
    return checkpoint


def apply_delta(delta, path, base_path):
    """``(net_g state, net_mask state, adaptation, changed)`` of the delta (:func:`read_delta`, read from ``path``)
    on the base at ``base_path``; ``changed``: whether net_g differs from the base. ValueError when the base is not the
    one the delta was made from (its digest differs) or the result is no RRDBNet."""
    base = load_state_dict(base_path, 'the base network')
    expected = delta['base']
    if state_digest(base) != expected['sha256']:
        raise ValueError(f'{os.fspath(path)!r} was made from {expected["file"]} with SHA-256 {expected["sha256"][:12]}'
                         f'..., but {os.fspath(base_path)!r} holds other weights; convert the base again '
                         '(metaf2n-convert realesrgan-ncnn) or give the right one with --base')
    unknown = sorted(set(delta[DELTA_KEY]) - set(base))
    if unknown:
        raise ValueError(f'{os.fspath(path)!r} changes tensors its base has not: {unknown[:3]}')
    net_g = {name: base[name] + delta[DELTA_KEY].get(name, 0) for name in base}
    where = f'{os.fspath(path)!r} on {os.fspath(base_path)!r}'
    network_from(net_g, rrdbnet_options(net_g, where), where)
    return net_g, delta['params_mask'], delta['adaptation'], bool(delta[DELTA_KEY])
