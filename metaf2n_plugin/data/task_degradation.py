"""One meta-training task degraded on the device: LQ faces and background patches that share one degradation.

The :class:`~metaf2n_plugin.data.metaf2n_task_dataset.MetaF2NTaskDataset` hands over HQ images, the task's
degradation draw and the patch positions; :class:`TaskDegrader` (called from the model's ``feed_data``)
degrades, sharpens and cuts, task by task, each task as one batch of faces and one of backgrounds::

    self.degrader = TaskDegrader(scale=4).to(self.device)          # in the model's __init__
    tasks = self.degrader(data, device=self.device)                # in feed_data; data = the loader's batch

Patch positions are chosen by the dataset on the CPU, where the HQ images already are, so the face patch's
gradient test (:func:`choose_crop`) costs no device synchronisation; the degrader only cuts.
A crop is ``(y, x, size)`` in LQ pixels: the LQ patch ``lq[y:y+size, x:x+size]`` and the HQ patch ``s`` times
further and larger.
"""
from dataclasses import dataclass

import numpy as np
import torch
from basicsr.utils import DiffJPEG
from basicsr.utils.img_process_util import USMSharp

from metaf2n_plugin.data.degradation import apply_degradation, select_images, task_draw


def choose_crop(image, lq_size, scale, tries=1, min_log_gradient=-np.inf):
    """A random LQ-aligned patch position; with ``tries > 1``, MetaF2N's gradient-based retry for faces.

    Draws up to ``tries`` positions uniformly and keeps the first whose HQ patch has
    ``log_mean_squared_gradient(patch) >= min_log_gradient``; if none has, the last one drawn. The dataset
    tests the GT face (MetaF2N: 6 tries, threshold -6): the pseudo ground truth does not exist yet then.

    Args:
        image: ``(3, H, W)`` float32 RGB in [0, 1], the HQ image; H and W multiples of ``scale``.
        lq_size: LQ patch side p (MetaF2N: 32 for faces, 64 for backgrounds at x4).
        scale: integer SR factor s.

    Returns:
        ``(y, x, p)`` in LQ pixels, ints.
    """
    height, width = image.shape[-2] // scale, image.shape[-1] // scale
    for _ in range(tries):
        box = (int(np.random.randint(0, height - lq_size + 1)), int(np.random.randint(0, width - lq_size + 1)), lq_size)
        if log_mean_squared_gradient(crop(image, box, scale)) >= min_log_gradient:
            break
    return box


def log_mean_squared_gradient(patch):
    """``log(mean(dx^2) + mean(dy^2))`` of a ``(3, h, w)`` array in [0, 1] (forward differences); -inf if flat."""
    energy = np.mean(np.diff(patch, axis=-1)**2) + np.mean(np.diff(patch, axis=-2)**2)
    return float(np.log(energy)) if energy > 0 else -np.inf


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
        face_gt_patches: ``(T, F, 3, s*pf, s*pf)`` their HQ faces (GT; the model may use restored faces instead).
        face_crops: ``(T, F, 3)`` int64 ``(y, x, pf)`` in LQ pixels: cut restored faces with
            ``cut_patches(restored, face_crops[t], scale)``.
        background_lq: ``(T, P, 3, pb, pb)`` LQ background patches, the outer step's input.
        background_gt: ``(T, P, 3, s*pb, s*pb)`` their GT (the discriminator's real images).
        background_gt_usm: ``(T, P, 3, s*pb, s*pb)`` the GT USM-sharpened (sharpened before cutting), the
            outer step's pixel/perceptual target.
    """
    face_lq: torch.Tensor
    face_lq_patches: torch.Tensor
    face_gt_patches: torch.Tensor
    face_crops: torch.Tensor
    background_lq: torch.Tensor
    background_gt: torch.Tensor
    background_gt_usm: torch.Tensor


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
    def forward(self, data, device=None):
        """Degrade T tasks, one batch of faces and one of backgrounds per task.

        Args:
            data: the loader's batch: ``face_gt`` ``(T, F, 3, Hf, Wf)``, ``background_gt`` ``(T, P, 3, Hb, Wb)``,
                ``face_crops`` ``(T, F, 3)``, ``background_crops`` ``(T, P, 3)`` and the collated draws
                ``degradation`` (see :mod:`~metaf2n_plugin.data.degradation`), on any device.
            device: where to work; by default the device of ``data['face_gt']``.

        Returns:
            :class:`DegradedTasks` on ``device``.
        """
        device = data['face_gt'].device if device is None else torch.device(device)
        self.to(device)
        face_gt, background_gt = data['face_gt'].to(device), data['background_gt'].to(device)
        num_faces, s = face_gt.shape[1], self.scale
        parts = {name: [] for name in DegradedTasks.__dataclass_fields__}
        for t in range(face_gt.shape[0]):
            draw = task_draw(data['degradation'], t)
            faces, backgrounds = face_gt[t], background_gt[t]
            face_crops, background_crops = data['face_crops'][t], data['background_crops'][t]
            face_lq = apply_degradation(faces, select_images(draw, slice(0, num_faces)), s, self.jpeger)
            background_lq = apply_degradation(backgrounds, select_images(draw, slice(num_faces, None)), s,
                                              self.jpeger)
            parts['face_lq'].append(face_lq)
            parts['face_lq_patches'].append(cut_patches(face_lq, face_crops))
            parts['face_gt_patches'].append(cut_patches(faces, face_crops, s))
            parts['face_crops'].append(face_crops.to(device))
            parts['background_lq'].append(cut_patches(background_lq, background_crops))
            parts['background_gt'].append(cut_patches(backgrounds, background_crops, s))
            parts['background_gt_usm'].append(cut_patches(self.usm_sharpener(backgrounds), background_crops, s))
        return DegradedTasks(**{name: torch.stack(values) for name, values in parts.items()})
