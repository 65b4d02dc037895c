"""Random LR/HR patch pairs from an image's face pairs: the batch of MetaF2N's inner step (step 4)."""
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from basicsr.utils import get_root_logger, img2tensor

from metaf2n_plugin.faces.pairs import FacePair


@dataclass
class PatchBatch:
    """All patches of one image's faces, float32 RGB in [0, 1]: ``lq`` ``(P, 3, p, p)`` with ``p = patch_size //
    scale``; ``hq`` ``(P, 3, patch_size, patch_size)``; ``mask`` ``(P, 1, patch_size, patch_size)`` float32, 1 where
    ``hq`` is valid (0 outside the restored face or in padding); ``face_index`` ``(P,)`` int64, each patch's face
    pair."""
    lq: torch.Tensor
    hq: torch.Tensor
    mask: torch.Tensor
    face_index: torch.Tensor

    def __len__(self) -> int:
        return len(self.lq)


def sample_patches(pairs: Iterable[FacePair],
                   scale: int,
                   num_patches: Optional[int] = None,
                   patch_size: Optional[int] = None,
                   rng: Optional[np.random.Generator] = None,
                   image_name: str = 'image') -> PatchBatch:
    """A :class:`PatchBatch` of up to ``num_patches`` distinct random patch pairs per face pair (P = 0 for none).

    An LR ``p x p`` window at an integer position pairs with the HR window ``scale`` times further. Positions are
    drawn without repetition among those with the most valid HR pixels (fully valid ones if any). A face
    smaller than ``p`` is zero-padded (masked) and used whole; a face without valid pixels is skipped; both are
    logged under ``image_name``. ``rng``: a ``numpy.random.Generator`` (unseeded when None). Raises ValueError
    when ``patch_size`` is not a multiple of ``scale`` or a pair's HQ or mask is not ``scale`` x its LQ.

    ``num_patches`` and ``patch_size`` left out take :class:`~metaf2n_plugin.AdaptationSettings`' defaults (16, 64)
    with a DeprecationWarning: 0.1's defaults, kept until 0.3; pass the settings' values.
    """
    num_patches, patch_size = _given_or_default(num_patches=num_patches, patch_size=patch_size)
    if patch_size % scale:
        raise ValueError(f'patch_size {patch_size} must be a multiple of the scale {scale}')
    rng = np.random.default_rng() if rng is None else rng
    lr_size = patch_size // scale
    lqs, hqs, masks, owners = [], [], [], []
    for index, pair in enumerate(pairs):
        h, w = pair.lq.shape[:2]
        if pair.hq.shape[:2] != (scale * h, scale * w) or pair.mask.shape != pair.hq.shape[:2]:
            raise ValueError(f'{image_name}, face {index}: LQ {w}x{h} needs HQ and mask of '
                             f'{scale * w}x{scale * h}, got {pair.hq.shape[1]}x{pair.hq.shape[0]} and '
                             f'{pair.mask.shape[1::-1]}')
        lq, hq, mask = _pad_to_patch(pair, lr_size, scale)
        if lq.shape[:2] != (h, w):
            get_root_logger().info(f'{image_name}, face {index}: {w}x{h} LR pixels, smaller than a '
                                   f'{lr_size}x{lr_size} patch; used whole, zero-padded and masked.')
        counts = _valid_counts(mask, lr_size, scale)
        if counts.max() == 0:
            get_root_logger().warning(f'{image_name}, face {index}: no valid HQ pixel; face skipped.')
            continue
        candidates = np.argwhere(counts == counts.max())
        for i, j in candidates[rng.choice(len(candidates), min(num_patches, len(candidates)), replace=False)]:
            lqs.append(lq[i:i + lr_size, j:j + lr_size])
            hqs.append(hq[scale * i:scale * i + patch_size, scale * j:scale * j + patch_size])
            masks.append(mask[scale * i:scale * i + patch_size, scale * j:scale * j + patch_size, None])
            owners.append(index)
    return PatchBatch(
        lq=_to_tensor(lqs, lr_size, 3),
        hq=_to_tensor(hqs, patch_size, 3),
        mask=_to_tensor(masks, patch_size, 1),
        face_index=torch.tensor(owners, dtype=torch.int64))


def _given_or_default(**given: Optional[int]) -> tuple[int, ...]:
    """The given values, those left out (None) replaced by AdaptationSettings' defaults with a warning."""
    from metaf2n_plugin.models.adaptation import AdaptationSettings  # it imports this module

    defaults = AdaptationSettings()
    values = []
    for key, value in given.items():
        if value is None:
            warnings.warn(
                f'sample_patches without {key} is deprecated since 0.2 and will be removed in 0.3: pass '
                f'{key}=settings.{key} (metaf2n_plugin.AdaptationSettings; default {getattr(defaults, key)})',
                DeprecationWarning,
                stacklevel=3)
            value = getattr(defaults, key)
        values.append(value)
    return tuple(values)


def _pad_to_patch(pair: FacePair, lr_size: int, scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-pad LQ, HQ and mask at the bottom/right to at least one LR patch; the padding is invalid."""
    h, w = pair.lq.shape[:2]
    pad_h, pad_w = max(lr_size - h, 0), max(lr_size - w, 0)
    lq = np.pad(pair.lq, ((0, pad_h), (0, pad_w), (0, 0)))
    hq = np.pad(pair.hq, ((0, scale * pad_h), (0, scale * pad_w), (0, 0)))
    mask = np.pad(pair.mask.astype(np.float32), ((0, scale * pad_h), (0, scale * pad_w)))
    return lq, hq, mask


def _valid_counts(mask: np.ndarray, lr_size: int, scale: int) -> np.ndarray:
    """Valid HR pixels of the patch at every LR top-left position: ``(H - p + 1, W - p + 1)``."""
    table = np.pad((mask > 0).astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    rows = scale * np.arange(mask.shape[0] // scale - lr_size + 1)
    cols = scale * np.arange(mask.shape[1] // scale - lr_size + 1)
    top, bottom = rows[:, None], rows[:, None] + scale * lr_size
    left, right = cols[None, :], cols[None, :] + scale * lr_size
    return table[bottom, right] - table[top, right] - table[bottom, left] + table[top, left]


def _to_tensor(patches: Sequence[np.ndarray], side: int, channels: int) -> torch.Tensor:
    if not patches:
        return torch.zeros(0, channels, side, side)
    return torch.stack(img2tensor(patches, bgr2rgb=False))
