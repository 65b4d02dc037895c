"""Paste a restored aligned face back into the image at ``scale`` times its size (MetaF2N's step 3)."""
from collections.abc import Iterable

import cv2
import numpy as np

from metaf2n_plugin.faces.alignment import compose_affine, invert_affine, upscale_map
from metaf2n_plugin.faces.pairs import FacePair


def paste_back(restored: np.ndarray, matrix: np.ndarray, box: tuple[int, int, int, int],
               scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Warp the ``(S, S, 3)`` float32 restored face back by the inverse of ``matrix`` (LQ -> crop) at ``scale`` s,
    straight into the HQ crop of ``box`` (integer, half-open, in the LQ image) rather than a whole black canvas.

    Returns ``(hq, mask)``: ``(s*h, s*w, 3)`` float32 and ``(s*h, s*w)`` bool (pixels the face covers), HQ pixel
    ``(i, j)`` being canvas pixel ``(s*y0 + i, s*x0 + j)``. Deviations (pixel-centre scaling, area-averaging a
    shrinking face, the mask): docs/face-pairs.md.
    """
    size = restored.shape[0]
    x0, y0, x1, y1 = box
    out_w, out_h = scale * (x1 - x0), scale * (y1 - y0)
    to_canvas = compose_affine(upscale_map(scale), invert_affine(matrix))
    to_window = compose_affine(np.array([[1.0, 0.0, -scale * x0], [0.0, 1.0, -scale * y0]]), to_canvas)

    source, source_to_window = restored, to_window
    zoom = np.sqrt(abs(np.linalg.det(to_window[:, :2])))
    if zoom < 1:
        small = max(1, round(size * zoom))
        source = cv2.resize(restored, (small, small), interpolation=cv2.INTER_AREA)
        source_to_window = compose_affine(to_window, upscale_map(size / small))
    hq = cv2.warpAffine(
        source, source_to_window, (out_w, out_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)

    back = invert_affine(to_window)
    ys, xs = np.mgrid[0:out_h, 0:out_w]
    u = back[0, 0] * xs + back[0, 1] * ys + back[0, 2]
    v = back[1, 0] * xs + back[1, 1] * ys + back[1, 2]
    mask = (u >= 0) & (u <= size - 1) & (v >= 0) & (v <= size - 1)
    return np.clip(hq, 0, 1).reshape(out_h, out_w, -1), mask


def blend_weights(mask: np.ndarray) -> np.ndarray:
    """The ``(H, W)`` float32 weights in [0, 1] with which a restored face (valid on the bool ``mask``, a
    :class:`~metaf2n_plugin.faces.pairs.FacePair`'s) replaces the image under it: 1 inside, feathered to 0 over a band
    of about 8% of the face's side that ends 2% inside the mask's edge (eroded, then blurred), so that no seam shows
    and no pixel outside the mask counts. Exactly 1 where the band does not reach: the blend mask, where the pasted
    face is the restored face itself."""
    side = min(mask.shape)
    margin, radius = max(1, round(0.02 * side)), max(1, round(0.04 * side))
    # eroded by the blur's radius and the margin: the blur's (2 radius + 1)-square support stays inside the mask
    inside = cv2.erode(mask.astype(np.uint8), np.ones((2 * (margin + radius) + 1, ) * 2, np.uint8), borderValue=0)
    weights = cv2.GaussianBlur(inside.astype(np.float32), (2 * radius + 1, ) * 2, 0, borderType=cv2.BORDER_CONSTANT)
    core = cv2.erode(inside, np.ones((2 * radius + 1, ) * 2, np.uint8), borderValue=0).astype(bool)
    weights[core] = 1
    return np.clip(weights, 0, 1)


def paste_faces(image: np.ndarray, pairs: Iterable[FacePair], scale: int) -> np.ndarray:
    """``image`` ``(sH, sW, 3)`` float32 (a photo's super-resolution) with each pair's restored face (``pair.hq`` at
    ``pair.box``) blended in by :func:`blend_weights`, in the pairs' order (a later face over an earlier one where
    they overlap); a new array. Pairs without a box (read from folders) are skipped."""
    pasted = image.copy()
    for pair in pairs:
        if pair.box is None:
            continue
        x0, y0, x1, y1 = (scale * value for value in pair.box)
        weights = blend_weights(pair.mask)[:, :, None]
        region = pasted[y0:y1, x0:x1]
        pasted[y0:y1, x0:x1] = weights * pair.hq + (1 - weights) * region
    return pasted
