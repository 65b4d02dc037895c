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

from metaf2n_plugin.checkpoints import load_state_dict, read_checkpoint

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


def apply_delta(path, base_path):
    """``(net_g state, net_mask state, adaptation, changed)`` of the delta file at ``path`` on the base at
    ``base_path``; ``changed``: whether net_g differs from the base. ValueError when the base is not the one the delta
    was made from (its digest differs)."""
    checkpoint = read_checkpoint(path, 'the delta file')
    base = load_state_dict(base_path, 'the base network')
    expected = checkpoint['base']
    if state_digest(base) != expected['sha256']:
        raise ValueError(f'{os.fspath(path)!r} was made from {expected["file"]} with SHA-256 {expected["sha256"][:12]}'
                         f'..., but {os.fspath(base_path)!r} holds other weights; convert the base again '
                         '(metaf2n-convert realesrgan-ncnn) or give the right one with --base')
    net_g = {name: base[name] + checkpoint[DELTA_KEY].get(name, 0) for name in base}
    return net_g, checkpoint['params_mask'], checkpoint['adaptation'], bool(checkpoint[DELTA_KEY])
