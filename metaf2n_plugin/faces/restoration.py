"""Face restorers: turn aligned LQ faces into pseudo-ground-truth faces (MetaF2N's step 2).

Every restorer is called as ``restorer(faces, gt_faces=None)``:

- ``faces``: ``(N, 3, S, S)`` float32 tensor, aligned LQ faces, **RGB** in [0, 1], on any device;
- ``gt_faces``: the same crops of the GT image, or None; only restorers with ``needs_gt`` use them;
- returns ``(N, 3, S, S)`` float32 RGB in [0, 1] on ``faces``' device.

``S`` is the restorer's ``size``: faces are aligned to the template at that size.
"""
import torch
from torch.nn import functional as F

from metaf2n_plugin.archs.gpen_arch import GPEN
from metaf2n_plugin.checkpoints import load_named, load_state_dict
from metaf2n_plugin.weights import locate_weights

GPEN_URL = 'https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/'
# Architecture of the released checkpoints GPEN-BFR-<size>.pth: 512 restores at test time, 256 in training.
GPEN_RELEASES = {512: {'channel_multiplier': 2, 'narrow': 1}, 256: {'channel_multiplier': 1, 'narrow': 0.5}}


class IdentityRestorer:
    """Restorer ``identity``: returns the aligned LQ faces unchanged, i.e. the bicubic-upsampled LQ face.

    Pasted back, it gives a bicubic upscaling of the face region: a restorer that adds nothing, for tests.
    """
    needs_gt = False

    def __init__(self, size=512):
        self.size = size

    def __call__(self, faces, gt_faces=None):
        return faces


class OracleRestorer:
    """Restorer ``oracle``: the same aligned crop of the ground-truth image.

    The upper-bound ablation (a perfect face restorer), and the way to run without restorer weights when a
    GT image exists.
    """
    needs_gt = True

    def __init__(self, size=512):
        self.size = size

    def __call__(self, faces, gt_faces=None):
        if gt_faces is None:
            raise ValueError('the oracle restorer needs the GT image of every LQ image '
                             '(pass gt=..., or --gt in scripts/extract_face_pairs.py)')
        return gt_faces


class GPENRestorer:
    """Restorer ``gpen``: GPEN face restoration, batched, without gradients, on the device you choose.

    Args:
        size, channel_multiplier, narrow, style_dim, n_mlp: the :class:`GPEN` architecture; left at None,
            channel_multiplier and narrow are those of the released model of that size, ``GPEN_RELEASES``
            (512: 2, 1 at test time; 256: 1, 0.5 in training).
        weights, download: the checkpoint file (``GPEN-BFR-<size>.pth``) or its folder, and whether to fetch it
            from GPEN's model page (:mod:`metaf2n_plugin.weights`).
        batch_size: faces per forward pass.
        device: torch device for the network.
    """
    needs_gt = False

    def __init__(self,
                 size=512,
                 channel_multiplier=None,
                 narrow=None,
                 weights=None,
                 download=False,
                 batch_size=4,
                 style_dim=512,
                 n_mlp=8,
                 device='cpu'):
        release = GPEN_RELEASES.get(size, {'channel_multiplier': 2, 'narrow': 1})
        channel_multiplier = release['channel_multiplier'] if channel_multiplier is None else channel_multiplier
        narrow = release['narrow'] if narrow is None else narrow
        file_name = f'GPEN-BFR-{size}.pth'
        path = locate_weights(file_name, GPEN_URL + file_name, f'GPEN-{size} (face restorer)', weights, download)
        self.size = size
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.net = GPEN(size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=channel_multiplier, narrow=narrow)
        load_named(self.net, load_state_dict(path, 'GPEN weights'), path,
                   f'GPEN-{size} (channel_multiplier {channel_multiplier}, narrow {narrow})')
        self.net.eval().requires_grad_(False).to(self.device)

    @torch.no_grad()
    def __call__(self, faces, gt_faces=None):
        restored = [
            self.net(chunk.to(self.device) * 2 - 1).clamp_(-1, 1).add_(1).div_(2).float().to(faces.device)
            for chunk in faces.split(self.batch_size)
        ]
        return torch.cat(restored) if restored else faces.clone()


RESTORERS = {'gpen': GPENRestorer, 'oracle': OracleRestorer, 'identity': IdentityRestorer}


@torch.no_grad()
def restore_lq_faces(restorer, faces, scale):
    """Pseudo ground truth of whole aligned LQ faces, as MetaF2N's training makes it.

    The LQ faces are bicubic-upsampled to the restorer's size (MetaF2N: 64 -> 256 for GPEN-BFR-256), restored,
    and resized (area / bicubic) to ``scale`` times the LQ size when that differs.

    Args:
        restorer: a restorer that needs no GT (``gpen``, ``identity``).
        faces: ``(N, 3, h, w)`` LQ faces, RGB in [0, 1], on any device.
        scale: integer SR factor s.

    Returns:
        ``(N, 3, s*h, s*w)`` RGB in [0, 1] on ``faces``' device.
    """
    size = (scale * faces.shape[-2], scale * faces.shape[-1])
    up = F.interpolate(faces, size=(restorer.size, restorer.size), mode='bicubic', align_corners=False).clamp(0, 1)
    restored = restorer(up)
    if restored.shape[-2:] == size:
        return restored
    mode = 'area' if restorer.size > size[0] else 'bicubic'
    return F.interpolate(restored, size=size, mode=mode).clamp(0, 1)
