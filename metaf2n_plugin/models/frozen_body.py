"""The frozen body of an RRDBNet, computed once per task of a fixed task pool (docs/results.md, "The task pool
and the frozen body").

When neither the inner step nor meta-training changes RRDBNet's body (``conv_first``, ``body``, ``conv_body``), its
output on a task's LQ patches is the same at every visit. :class:`FrozenBodyCache` computes it once per pool task,
and the meta-gradient runs through :class:`RRDBNetTail` alone: the same arithmetic on the same values as the whole
network, without the body's forward passes (four per task: inner, outer, and both again for the second-order pass).
"""
import hashlib
import os

import torch
from basicsr.archs.rrdbnet_arch import RRDBNet, pixel_unshuffle
from basicsr.utils import get_root_logger
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from metaf2n_plugin.atomic_write import atomic_file
from metaf2n_plugin.checkpoints import read_checkpoint

BODY = ('conv_first.', 'body.', 'conv_body.')


class RRDBNetTail(nn.Module):
    """RRDBNet's upsampling tail, sharing ``net``'s modules and parameter names (``conv_up1.weight``, ...):
    ``(N, num_feat, h, w)`` body features -> ``(N, num_out_ch, 4h, 4w)``."""

    def __init__(self, net):
        super().__init__()
        self.conv_up1, self.conv_up2 = net.conv_up1, net.conv_up2
        self.conv_hr, self.conv_last = net.conv_hr, net.conv_last
        self.lrelu = net.lrelu

    def forward(self, feat):
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode='nearest')))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode='nearest')))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


class RRDBNetBody(nn.Module):
    """RRDBNet's body, sharing ``net``'s modules and parameter names (``conv_first.weight``, ``body.0...``, ...):
    ``(N, 3, h, w)`` in [0, 1] -> ``(N, num_feat, h', w')``, the tail's input."""

    def __init__(self, net):
        super().__init__()
        self.conv_first, self.body, self.conv_body = net.conv_first, net.body, net.conv_body
        self.scale = net.scale

    def forward(self, lq):
        if self.scale in (1, 2):
            lq = pixel_unshuffle(lq, scale=4 // self.scale)
        feat = self.conv_first(lq)
        return feat + self.conv_body(self.body(feat))


@torch.no_grad()
def body_features(net, lq):
    """RRDBNet's body output (the tail's input), without a graph: :class:`RRDBNetBody`'s forward."""
    return RRDBNetBody(net)(lq)


def frozen_tail(net, changed):
    """``(tail, None)`` when ``net`` is an RRDBNet none of whose body parameters is in ``changed`` (the names the
    inner step adapts or meta-training updates); else ``(None, reason)``."""
    if not isinstance(net, RRDBNet):
        return None, f'{type(net).__name__} is not an RRDBNet (only its body/tail split is known)'
    body = sorted(name for name in changed if name.startswith(BODY))
    if body:
        return None, f'{len(body)} tensor(s) of its body change (e.g. {body[0]})'
    return RRDBNetTail(net), None


def body_digest(net):
    """SHA-256 of the body's parameters and buffers (names, shapes, values): which network a cache belongs to."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        if name.startswith(BODY):
            digest.update(f'{name}{tuple(tensor.shape)}{tensor.dtype}'.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class FrozenBodyCache:
    """Body features of every task of one pool (``MetaF2NTaskPoolDataset``'s file), computed once on the network's
    device and kept beside the pool as ``<pool>.body-<digest>.pth`` for later runs with the same pool and body.

    A cache file is read only when its pool digest and body digest are the run's; ValueError naming the difference.
    """

    def __init__(self, net, pool_path, pool_digest):
        self.digest = body_digest(net)
        self.path = f'{pool_path}.body-{self.digest[:16]}.pth'
        if os.path.isfile(self.path):
            stored = read_checkpoint(self.path, 'the frozen-body cache')
            for key, expected in (('pool_digest', pool_digest), ('body_digest', self.digest)):
                if stored.get(key) != expected:
                    raise ValueError(f'frozen-body cache {self.path!r} has {key} {stored.get(key)!r}, but this run '
                                     f'needs {expected!r}: it belongs to another pool or network; delete it')
            get_root_logger().info(f'frozen body: the features of {len(stored["faces"])} pool tasks read from '
                                   f'{self.path}')
        else:
            pool = read_checkpoint(pool_path, 'the task pool')
            device = next(net.parameters()).device
            stored = {'pool_digest': pool_digest, 'body_digest': self.digest, 'faces': [], 'backgrounds': []}
            for faces, backgrounds in tqdm(
                    list(zip(pool['face_lq_patches'], pool['background_lq'])), desc='frozen body', unit='task'):
                stored['faces'].append(body_features(net, faces.to(device)).cpu())
                stored['backgrounds'].append(body_features(net, backgrounds.to(device)).cpu())
            with atomic_file(self.path) as f:
                torch.save(stored, f)
            get_root_logger().info(f'frozen body: the features of {len(stored["faces"])} pool tasks saved to '
                                   f'{self.path}')
        self.faces, self.backgrounds = stored['faces'], stored['backgrounds']

    def __call__(self, indices, device):
        """``(T,)`` pool indices -> their body features ``(T, F, C, p, p)`` and ``(T, P, C, b, b)`` on ``device``."""
        indices = indices.tolist()
        return (torch.stack([self.faces[i] for i in indices]).to(device),
                torch.stack([self.backgrounds[i] for i in indices]).to(device))
