"""Face restorers: aligned LQ faces -> pseudo-ground-truth faces (MetaF2N's step 2).

``restorer(faces, gt_faces=None)`` takes ``(N, 3, S, S)`` float32 aligned LQ faces, RGB in [0, 1], on any device,
S being ``restorer.size``, and returns the restored faces, the same shape and range, on ``faces``' device;
``gt_faces``, the same crops of the GT image, is used only by restorers with ``needs_gt``.
"""
from typing import Optional, Protocol, Union

import torch
from torch.nn import functional as F

from metaf2n_plugin.archs.gpen_arch import GPEN
from metaf2n_plugin.checkpoints import load_named, load_state_dict
from metaf2n_plugin.faces.registry import RESTORERS
from metaf2n_plugin.image_io import PathLike
from metaf2n_plugin.weights import locate_weights

GPEN_URL = 'https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/'
# Architecture of the released checkpoints GPEN-BFR-<size>.pth: 512 restores at test time, 256 in training.
GPEN_RELEASES: dict[int, dict[str, float]] = {
    512: dict(channel_multiplier=2, narrow=1),
    256: dict(channel_multiplier=1, narrow=0.5),
}


class Restorer(Protocol):
    """What a restorer offers (module docstring): its face ``size`` S, ``needs_gt``, and the call."""
    size: int
    needs_gt: bool

    def __call__(self, faces: torch.Tensor, gt_faces: Optional[torch.Tensor] = None) -> torch.Tensor:
        ...


@RESTORERS.register('identity')
class IdentityRestorer:
    """Restorer ``identity``: the aligned LQ faces unchanged (pasted back, a bicubic upscaling), for tests."""
    needs_gt = False

    def __init__(self, size: int = 512) -> None:
        self.size = size

    def __call__(self, faces: torch.Tensor, gt_faces: Optional[torch.Tensor] = None) -> torch.Tensor:
        return faces


@RESTORERS.register('oracle')
class OracleRestorer:
    """Restorer ``oracle``: the same aligned crop of the GT image (the upper bound; needs no weights)."""
    needs_gt = True

    def __init__(self, size: int = 512) -> None:
        self.size = size

    def __call__(self, faces: torch.Tensor, gt_faces: Optional[torch.Tensor] = None) -> torch.Tensor:
        if gt_faces is None:
            raise ValueError('the oracle restorer needs the GT image of every LQ image '
                             '(pass gt=..., or --gt in scripts/extract_face_pairs.py)')
        return gt_faces


@RESTORERS.register('gpen')
class GPENRestorer:
    """Restorer ``gpen``: GPEN, ``batch_size`` faces per pass, without gradients, on ``device``.

    ``channel_multiplier`` and ``narrow`` left at None are those of the release of that ``size``
    (``GPEN_RELEASES``). ``weights``/``download``: ``GPEN-BFR-<size>.pth``, as in :mod:`metaf2n_plugin.weights`.
    """
    needs_gt = False

    def __init__(self,
                 size: int = 512,
                 channel_multiplier: Optional[float] = None,
                 narrow: Optional[float] = None,
                 weights: Optional[PathLike] = None,
                 download: bool = False,
                 batch_size: int = 4,
                 style_dim: int = 512,
                 n_mlp: int = 8,
                 device: Union[str, torch.device] = 'cpu') -> None:
        release = GPEN_RELEASES.get(size, {'channel_multiplier': 2, 'narrow': 1})
        channel_multiplier = release['channel_multiplier'] if channel_multiplier is None else channel_multiplier
        narrow = release['narrow'] if narrow is None else narrow
        file_name = f'GPEN-BFR-{size}.pth'
        path = locate_weights(file_name, GPEN_URL + file_name, f'GPEN-{size} (face restorer)', weights, download,
                              '`weights` (--restorer-weights)')
        self.size = size
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.net = GPEN(size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=channel_multiplier, narrow=narrow)
        load_named(self.net, load_state_dict(path, 'GPEN weights'), path,
                   f'GPEN-{size} (channel_multiplier {channel_multiplier}, narrow {narrow})')
        self.net.eval().requires_grad_(False).to(self.device)

    @torch.no_grad()
    def __call__(self, faces: torch.Tensor, gt_faces: Optional[torch.Tensor] = None) -> torch.Tensor:
        restored = [
            self.net(chunk.to(self.device) * 2 - 1).clamp_(-1, 1).add_(1).div_(2).float().to(faces.device)
            for chunk in faces.split(self.batch_size)
        ]
        return torch.cat(restored) if restored else faces.clone()


@torch.no_grad()
def restore_lq_faces(restorer: Restorer, faces: torch.Tensor, scale: int) -> torch.Tensor:
    """``(N, 3, s*h, s*w)`` pseudo ground truth, on ``faces``' device, of ``(N, 3, h, w)`` aligned LQ faces (RGB in
    [0, 1]), as MetaF2N's training
    makes it: bicubic up to ``restorer.size`` (64 -> 256 for GPEN-BFR-256), restored (a restorer without
    ``needs_gt``), then area/bicubic resized to ``scale`` x when that differs."""
    size = (scale * faces.shape[-2], scale * faces.shape[-1])
    up = F.interpolate(faces, size=(restorer.size, restorer.size), mode='bicubic', align_corners=False).clamp(0, 1)
    restored = restorer(up)
    if restored.shape[-2:] == size:
        return restored
    mode = 'area' if restorer.size > size[0] else 'bicubic'
    return F.interpolate(restored, size=size, mode=mode).clamp(0, 1)
