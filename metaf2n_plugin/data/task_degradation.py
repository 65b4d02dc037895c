"""Degrades a collated meta-training task on the device and cuts its patches (docs/data.md, for the rules).

A crop is ``(y, x, size)`` in LQ pixels: LQ patch ``lq[y:y+size, x:x+size]``, the HQ one ``s`` times further and
larger. Usage, in the model: ``tasks = TaskDegrader(scale=4)(data, device=device, restorer=restore)``.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from basicsr.utils import DiffJPEG
from basicsr.utils.img_process_util import USMSharp

from metaf2n_plugin.data.degradation import apply_degradation, select_images, task_draw


def random_crops(image, lq_size, scale, count):
    """``count`` random crops ``(y, x, lq_size)`` of a ``(3, H, W)`` HQ image, H, W multiples of scale: ``(count, 3)``
    int64, in LQ pixels."""
    height, width = image.shape[-2] // scale, image.shape[-1] // scale
    ys = np.random.randint(0, height - lq_size + 1, count)
    xs = np.random.randint(0, width - lq_size + 1, count)
    return torch.from_numpy(np.stack([ys, xs, np.full(count, lq_size)], axis=1).astype(np.int64))


def choose_detailed_crops(references, candidates, scale, min_log_gradient):
    """Per image, the first candidate crop whose HQ patch scores >= ``min_log_gradient`` (MetaF2N: -6), else the last.

    references: ``(F, 3, H, W)`` pseudo-GTs, RGB in [0, 1]; candidates: ``(F, K, 3)`` int64 LQ crops, in draw order.
    Returns ``(F, 3)`` int64.
    """
    scores = torch.stack([
        log_mean_squared_gradient(cut_patches(reference.expand(len(boxes), -1, -1, -1), boxes, scale))
        for reference, boxes in zip(references, candidates)
    ])
    passed = (scores >= min_log_gradient).cpu()
    passed[:, -1] = True  # the last candidate when none has detail
    return candidates[torch.arange(len(candidates)), passed.int().argmax(dim=1)]


def log_mean_squared_gradient(patches):
    """``log(mean(dx^2) + mean(dy^2))`` (forward differences) of ``(..., C, h, w)`` patches: ``(...)``; -inf if flat."""
    dx = torch.diff(patches, dim=-1).square().mean(dim=(-3, -2, -1))
    dy = torch.diff(patches, dim=-2).square().mean(dim=(-3, -2, -1))
    return torch.log(dx + dy)


def crop(image, box, scale=1):
    """The window of an LQ crop ``(y, x, p)`` in a ``(..., H, W)`` array or tensor ``scale`` times the LQ size."""
    y, x, size = (scale * int(v) for v in box)
    return image[..., y:y + size, x:x + size]


def cut_patches(images, crops, scale=1):
    """One patch per image: ``(N, C, H, W)``, ``(N, 3)`` LQ crops -> ``(N, C, s*p, s*p)``; ``scale=s`` for HQ."""
    return torch.stack([crop(image, box, scale) for image, box in zip(images, crops.tolist())])


@dataclass
class DegradedTasks:
    """T tasks of F faces and P background patches, on the device; images RGB float32 in [0, 1].

    face_lq ``(T, F, 3, Hf/s, Wf/s)`` whole LQ faces (the restorer's input); face_lq_patches ``(T, F, 3, pf, pf)``
    (inner input); face_gt_patches and face_hq_patches ``(T, F, 3, s*pf, s*pf)``: GT, and the inner target (restored
    faces' patches, or the GT's without a restorer; None until restored); face_crops ``(T, F, 3)`` int64 LQ crops;
    background_lq ``(T, P, 3, pb, pb)`` (outer input); background_gt (D's real images) and background_gt_usm (GT
    USM-sharpened before cutting: the outer pixel/perceptual target), ``(T, P, 3, s*pb, s*pb)``.
    """
    face_lq: torch.Tensor
    face_lq_patches: torch.Tensor
    face_gt_patches: torch.Tensor
    face_crops: torch.Tensor
    background_lq: torch.Tensor
    background_gt: torch.Tensor
    background_gt_usm: torch.Tensor
    face_hq_patches: Optional[torch.Tensor] = None


class TaskDegrader(torch.nn.Module):
    """Degrades collated ``MetaF2NTaskDataset`` tasks at integer ``scale`` (DiffJPEG, USMSharp) on the data's device."""

    def __init__(self, scale=4):
        super().__init__()
        self.scale = scale
        self.jpeger = DiffJPEG(differentiable=False)
        self.usm_sharpener = USMSharp()
        self.requires_grad_(False)  # DiffJPEG keeps its tables as nn.Parameters

    @torch.no_grad()
    def forward(self, data, device=None, restorer=None):
        """Degrade T tasks and cut their patches -> :class:`DegradedTasks` on ``device`` (default: ``face_gt``'s).

        data: the loader's batch, ``face_gt`` ``(T, F, 3, Hf, Wf)``, ``background_gt`` ``(T, P, 3, Hb, Wb)``,
        ``face_crop_candidates`` ``(T, F, K, 3)``, ``background_crops`` ``(T, P, 3)``, ``face_patch_min_log_gradient``
        ``(T,)``, ``degradation`` (collated draws). restorer: ``(F, 3, h, w) -> (F, 3, s*h, s*w)`` in [0, 1] on the
        same device; None uses the GT faces (oracle).
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
