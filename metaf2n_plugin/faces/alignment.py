"""Five-point face alignment to GPEN's FFHQ template, and the affine maps around it.

Affine maps are ``(2, 3)`` float64 ``M`` sending ``p`` to ``M[:, :2] @ p + M[:, 2]`` (``cv2.warpAffine``'s form).
Landmark order (RetinaFace's): image-left eye, image-right eye, nose tip, image-left and image-right mouth corner.
The template is facexlib's ``get_reference_facial_points`` with inner padding 0.25, as GPEN and MetaF2N call it:
the 112 x 112 ArcFace square, padded by 28 a side (168) and scaled to S, so the square is ``[S/6, 5S/6]``.
"""
from typing import Optional

import cv2
import numpy as np
from facexlib.detection.align_trans import get_reference_facial_points
from numpy.typing import ArrayLike

TEMPLATE_CROP = 168.0  # the padded crop of the 112 x 112 square: 112 * (1 + 2 * 0.25)


def face_template(size: float) -> np.ndarray:
    """GPEN's five reference points for an aligned ``size`` x ``size`` crop: ``(5, 2)`` float64 ``(x, y)``."""
    return get_reference_facial_points((size, size),
                                       inner_padding_factor=0.25,
                                       outer_padding=(0, 0),
                                       default_square=True).astype(np.float64)


def similarity_transform(src: ArrayLike, dst: ArrayLike) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, shift; no reflection) taking ``(K, 2)`` ``src`` to
    ``dst``, K >= 2, as a ``(2, 3)`` float64 map; ValueError for other shapes, non-finite or coinciding points."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f'need two (K, 2) point sets with K >= 2, got shapes {src.shape} and {dst.shape}')
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError(f'landmarks must be finite numbers, got {src.tolist()}')
    x, y = src[:, 0], src[:, 1]
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    rows = np.concatenate([np.stack([x, -y, ones, zeros], 1), np.stack([y, x, zeros, ones], 1)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)
    if not (np.square(src - src.mean(0)).sum() > 1e-12 and a * a + b * b > 1e-12):
        raise ValueError(f'degenerate landmarks {src.tolist()}: they coincide, so no face size can be estimated')
    return np.array([[a, -b, tx], [b, a, ty]])


def apply_affine(matrix: np.ndarray, points: ArrayLike) -> np.ndarray:
    """``(K, 2)`` points mapped by a ``(2, 3)`` affine map."""
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The ``(2, 3)`` map ``p -> outer(inner(p))``."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def invert_affine(matrix: ArrayLike) -> np.ndarray:
    """Inverse of an invertible ``(2, 3)`` affine map."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def upscale_map(scale: float) -> np.ndarray:
    """The ``(2, 3)`` map from pixel coordinates to those of the image resized by ``scale``, about pixel
    centres: ``x -> scale * x + (scale - 1) / 2`` (OpenCV's and MATLAB's resize convention)."""
    shift = (scale - 1) / 2
    return np.array([[scale, 0.0, shift], [0.0, scale, shift]])


def align_face(image: np.ndarray,
               landmarks: Optional[ArrayLike],
               size: int,
               matrix: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``(H, W, C)`` ``image`` (any channel order) to the ``size`` x ``size`` template fitted to ``(5, 2)``
    ``landmarks``; a given ``matrix`` (image -> crop) is used instead of the fit (``landmarks`` may then be None).

    Returns ``(crop, matrix)``: the ``(S, S, C)`` crop in ``image``'s dtype (bicubic, clipped to [0, 1]) and the
    ``(2, 3)`` map image -> crop. Outside the image the crop repeats edge pixels (GPEN fills black). ValueError
    without ``landmarks`` and ``matrix``.
    """
    if matrix is None:
        if landmarks is None:
            raise ValueError('align_face needs the landmarks, or the matrix (image -> crop) to use instead of them')
        matrix = similarity_transform(landmarks, face_template(size))
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return np.clip(crop, 0, 1).reshape(size, size, -1), matrix


def landmark_box(landmarks: ArrayLike) -> np.ndarray:
    """A face box ``(x0, y0, x1, y1)`` float64 for landmarks without one: the image-space bounding box of the
    template's 112 x 112 square (``[S/6, 5S/6]``), about what a face detector returns."""
    template = face_template(TEMPLATE_CROP)
    back = invert_affine(similarity_transform(landmarks, template))
    corners = np.array([[28.0, 28.0], [140.0, 28.0], [140.0, 140.0], [28.0, 140.0]])
    points = apply_affine(back, corners)
    return np.concatenate([points.min(0), points.max(0)])
