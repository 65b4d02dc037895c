"""Face pairs on disk in the original MetaF2N layout, plus an optional mask folder (ours)::

    <root>/Face_LQ/<image stem>_<i>.png     LQ face crop, h x w; i counts the image's faces from 0
    <root>/Face_HQ/<image stem>_<i>.png     pseudo ground truth, scale*h x scale*w
    <root>/Face_Mask/<image stem>_<i>.png   valid HQ pixels (255); without it all are valid, as in the original
"""
import os
import re
from collections.abc import Iterable

import numpy as np

from metaf2n_plugin.faces.pairs import FacePair
from metaf2n_plugin.faces.registry import FACE_SOURCES
from metaf2n_plugin.image_io import PathLike, read_image, write_image

LQ_DIR, HQ_DIR, MASK_DIR = 'Face_LQ', 'Face_HQ', 'Face_Mask'


def pair_indices(root: PathLike, stem: str) -> list[int]:
    """Sorted face indices ``i`` of the files ``<root>/Face_LQ/<stem>_<i>.png``."""
    folder = os.path.join(root, LQ_DIR)
    pattern = re.compile(rf'{re.escape(stem)}_(\d+)\.png')
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(int(m[1]) for m in map(pattern.fullmatch, names) if m)


@FACE_SOURCES.register('pairs')
class PairFolderSource:
    """Face source ``pairs``: the precomputed pairs under ``root``; FileNotFoundError without its LQ/HQ folders."""

    def __init__(self, root: PathLike) -> None:
        if not os.path.isdir(os.path.join(root, LQ_DIR)) or not os.path.isdir(os.path.join(root, HQ_DIR)):
            raise FileNotFoundError(f'{root!r} must hold the folders {LQ_DIR}/ and {HQ_DIR}/ '
                                    '(scripts/extract_face_pairs.py writes them)')
        self.root = root

    def pairs(self, image_path: PathLike, scale: int) -> list[FacePair]:
        """The pairs of the image at ``image_path`` (by file-name stem); [] when it has none.

        Raises ValueError, naming the files, for a missing HQ file or an HQ file or mask not ``scale`` x the LQ.
        """
        stem = os.path.splitext(os.path.basename(image_path))[0]
        pairs = []
        for i in pair_indices(self.root, stem):
            lq_path, hq_path, mask_path = (
                os.path.join(self.root, d, f'{stem}_{i}.png') for d in (LQ_DIR, HQ_DIR, MASK_DIR))
            if not os.path.isfile(hq_path):
                raise ValueError(f'{lq_path!r} has no partner {hq_path!r}; re-run scripts/extract_face_pairs.py')
            lq, hq = read_image(lq_path), read_image(hq_path)
            h, w = lq.shape[:2]
            if hq.shape[:2] != (scale * h, scale * w):
                raise ValueError(f'{hq_path!r} is {hq.shape[1]}x{hq.shape[0]}, but {lq_path!r} is {w}x{h}: '
                                 f'at scale {scale} the HQ face must be {scale * w}x{scale * h}')
            if os.path.isfile(mask_path):
                mask = read_image(mask_path)[:, :, 0] > 0.5
            else:
                mask = np.ones(hq.shape[:2], dtype=bool)
            if mask.shape != hq.shape[:2]:
                raise ValueError(f'{mask_path!r} is {mask.shape[1]}x{mask.shape[0]}, unlike {hq_path!r}')
            pairs.append(FacePair(lq, hq, mask))
        return pairs


def write_pairs(root: PathLike, stem: str, pairs: Iterable[FacePair]) -> None:
    """Write an image's pairs (atomically, file by file), removing any left from an earlier run."""
    for folder in (LQ_DIR, HQ_DIR, MASK_DIR):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for i in pair_indices(root, stem):
        for folder in (LQ_DIR, HQ_DIR, MASK_DIR):
            stale = os.path.join(root, folder, f'{stem}_{i}.png')
            if os.path.exists(stale):
                os.remove(stale)
    for i, pair in enumerate(pairs):
        write_image(os.path.join(root, HQ_DIR, f'{stem}_{i}.png'), pair.hq)
        write_image(os.path.join(root, MASK_DIR, f'{stem}_{i}.png'), pair.mask)
        write_image(os.path.join(root, LQ_DIR, f'{stem}_{i}.png'), pair.lq)
