"""One meta-training task degraded on the device: LQ faces and background patches that share one degradation.

The :class:`~metaf2n_plugin.data.metaf2n_task_dataset.MetaF2NTaskDataset` hands over HQ images, the task's
degradation draw and patch positions; :class:`TaskDegrader` (called from the model's ``feed_data``) degrades,
restores the faces when a restorer is given, chooses the face patches and cuts, task by task::

    self.degrader = TaskDegrader(scale=4)                                   # in the model's __init__
    tasks = self.degrader(data, device=self.device, restorer=restore)      # in feed_data; data = the loader's batch

As in the original MetaF2N, backgrounds are degraded from their USM-sharpened GT (as Real-ESRGAN does) and
faces from the plain GT; a face patch is the first of ``face_patch_tries`` random candidates whose pseudo-GT
patch (the restored face, or the GT without a restorer) has ``log(mean squared gradient) >= -6``, else the last.
A crop is ``(y, x, size)`` in LQ pixels: the LQ patch ``lq[y:y+size, x:x+size]`` and the HQ patch ``s`` times
further and larger.
"""
import numpy as np
import torch
from basicsr.utils import DiffJPEG
from basicsr.utils.img_process_util import USMSharp
from dataclasses import dataclass

from metaf2n_plugin.data.degradation import apply_degradation, select_images, task_draw


def random_crops(image, lq_size, scale, count):
    """``count`` uniformly random LQ-aligned patch positions in a ``(3, H, W)`` HQ image: ``(count, 3)`` int64.

    H and W are multiples of ``scale``; each row is ``(y, x, p)`` in LQ pixels, ``p = lq_size``.
    """
    height, width = image.shape[-2] // scale, image.shape[-1] // scale
    ys = np.random.randint(0, height - lq_size + 1, count)
    xs = np.random.randint(0, width - lq_size + 1, count)
    return torch.from_numpy(np.stack([ys, xs, np.full(count, lq_size)], axis=1).astype(np.int64))


def choose_detailed_crops(references, candidates, scale, min_log_gradient):
    """MetaF2N's face patch retry: per image, the first candidate whose HQ patch has detail, else the last.

    Args:
        references: ``(F, 3, H, W)`` the images scored (pseudo ground truths), RGB in [0, 1].
        candidates: ``(F, K, 3)`` int64 crops ``(y, x, p)`` in LQ pixels, in the order they were drawn.
        scale: integer SR factor s.
        min_log_gradient: threshold of :func:`log_mean_squared_gradient` (MetaF2N: -6).

    Returns:
        ``(F, 3)`` int64, the chosen crops.
    """
    scores = torch.stack([
        log_mean_squared_gradient(cut_patches(reference.expand(len(boxes), -1, -1, -1), boxes, scale))
        for reference, boxes in zip(references, candidates)
    ])
    passed = (scores >= min_log_gradient).cpu()
    passed[:, -1] = True  # the last candidate when none has detail
    return candidates[torch.arange(len(candidates)), passed.int().argmax(dim=1)]


def log_mean_squared_gradient(patches):
    """``log(mean(dx^2) + mean(dy^2))`` of ``(..., C, h, w)`` patches in [0, 1] (forward differences): ``(...)``.

    -inf for a flat patch.
    """
    dx = torch.diff(patches, dim=-1).square().mean(dim=(-3, -2, -1))
    dy = torch.diff(patches, dim=-2).square().mean(dim=(-3, -2, -1))
    return torch.log(dx + dy)


def crop(image, box, scale=1):
    """The window of an LQ crop ``(y, x, p)`` in a ``(..., H, W)`` array or tensor ``scale`` times the LQ size."""
    y, x, size = (scale * int(v) for v in box)
    return image[..., y:y + size, x:x + size]


def cut_patches(images, crops, scale=1):
    """One patch per image: ``(N, C, H, W)`` tensor and ``(N, 3)`` crops ``(y, x, p)`` -> ``(N, C, s*p, s*p)``.

    ``scale=1`` cuts LQ images; ``scale=s`` cuts their HQ counterparts (GT, or the model's restored faces).
    """
    return torch.stack([crop(image, box, scale) for image, box in zip(images, crops.tolist())])


@dataclass
class DegradedTasks:
    """T tasks of F faces and P background patches, on the device; all RGB float32 in [0, 1].

    Attributes:
        face_lq: ``(T, F, 3, Hf/s, Wf/s)`` whole LQ faces (what the face restorer is given).
        face_lq_patches: ``(T, F, 3, pf, pf)`` LQ face patches, the inner step's input.
        face_gt_patches: ``(T, F, 3, s*pf, s*pf)`` their HQ faces (GT).
        face_crops: ``(T, F, 3)`` int64 ``(y, x, pf)`` in LQ pixels: cut restored faces with
            ``cut_patches(restored, face_crops[t], scale)``.
        background_lq: ``(T, P, 3, pb, pb)`` LQ background patches, the outer step's input.
        background_gt: ``(T, P, 3, s*pb, s*pb)`` their GT (the discriminator's real images).
        background_gt_usm: ``(T, P, 3, s*pb, s*pb)`` the GT USM-sharpened (sharpened before cutting), the
            outer step's pixel/perceptual target.
        face_hq_patches: ``(T, F, 3, s*pf, s*pf)`` the inner step's target: patches of the restored faces, or
            ``face_gt_patches`` when no restorer ran; None until someone restored the faces.
    """
    face_lq: torch.Tensor
    face_lq_patches: torch.Tensor
    face_gt_patches: torch.Tensor
    face_crops: torch.Tensor
    background_lq: torch.Tensor
    background_gt: torch.Tensor
    background_gt_usm: torch.Tensor
    face_hq_patches: torch.Tensor = None


class TaskDegrader(torch.nn.Module):
    """Degrades collated tasks of :class:`~metaf2n_plugin.data.metaf2n_task_dataset.MetaF2NTaskDataset`.

    Holds BasicSR's ``DiffJPEG`` (non-differentiable rounding) and ``USMSharp``; it moves itself to the device
    of the data it is given, so no device is hard-coded.

    Args:
        scale: integer SR factor s (the options' ``scale``).
    """

    def __init__(self, scale=4):
        super().__init__()
        self.scale = scale
        self.jpeger = DiffJPEG(differentiable=False)
        self.usm_sharpener = USMSharp()
        self.requires_grad_(False)  # DiffJPEG keeps its tables as nn.Parameters

    @torch.no_grad()
    def forward(self, data, device=None, restorer=None):
        """Degrade T tasks, one batch of faces and one of backgrounds per task, and cut the patches.

        Args:
            data: the loader's batch: ``face_gt`` ``(T, F, 3, Hf, Wf)``, ``background_gt`` ``(T, P, 3, Hb, Wb)``,
                ``face_crop_candidates`` ``(T, F, K, 3)``, ``background_crops`` ``(T, P, 3)``,
                ``face_patch_min_log_gradient`` ``(T,)`` and the collated draws ``degradation`` (see
                :mod:`~metaf2n_plugin.data.degradation`), on any device.
            device: where to work; by default the device of ``data['face_gt']``.
            restorer: callable ``(F, 3, h, w) LQ faces -> (F, 3, s*h, s*w)`` pseudo ground truth on the same
                device, RGB in [0, 1]; None takes the GT faces (the oracle).

        Returns:
            :class:`DegradedTasks` on ``device``, ``face_hq_patches`` included.
        """
        device = data['face_gt'].device if device is None else torch.device(device)
        self.to(device)
        face_gt, background_gt = data['face_gt'].to(device), data['background_gt'].to(device)
        num_faces, s = face_gt.shape[1], self.scale
        parts = {name: [] for name in DegradedTasks.__dataclass_fields__}
        for t in range(face_gt.shape[0]):
            draw = task_draw(data['degradation'], t)
            faces, backgrounds_usm = face_gt[t], self.usm_sharpener(background_gt[t])
            background_crops = data['background_crops'][t]
            face_lq = apply_degradation(faces, select_images(draw, slice(0, num_faces)), s, self.jpeger)
            background_lq = apply_degradation(backgrounds_usm, select_images(draw, slice(num_faces, None)), s,
                                              self.jpeger)
            face_hq = faces if restorer is None else restorer(face_lq)
            face_crops = choose_detailed_crops(face_hq, data['face_crop_candidates'][t], s,
                                               float(data['face_patch_min_log_gradient'][t]))
            parts['face_lq'].append(face_lq)
            parts['face_lq_patches'].append(cut_patches(face_lq, face_crops))
            parts['face_gt_patches'].append(cut_patches(faces, face_crops, s))
            parts['face_hq_patches'].append(cut_patches(face_hq, face_crops, s))
            parts['face_crops'].append(face_crops.to(device))
            parts['background_lq'].append(cut_patches(background_lq, background_crops))
            parts['background_gt'].append(cut_patches(background_gt[t], background_crops, s))
            parts['background_gt_usm'].append(cut_patches(backgrounds_usm, background_crops, s))
        return DegradedTasks(**{name: torch.stack(values) for name, values in parts.items()})
