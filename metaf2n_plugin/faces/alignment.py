"""Five-point face alignment to GPEN's FFHQ-style template, and the affine maps around it.

Coordinates are OpenCV's: ``(x, y)`` with the centre of pixel ``image[i, j]`` at ``(j, i)``. Affine maps
are ``(2, 3)`` float64 arrays ``M`` that send a point ``p`` to ``M[:, :2] @ p + M[:, 2]``, the form
``cv2.warpAffine`` takes. The five landmarks are, in this order: the eye on the image's left, the eye on
the image's right, the nose tip, the mouth corner on the image's left, the mouth corner on the image's right
(RetinaFace's order).

The template is facexlib's ``get_reference_facial_points((S, S), inner_padding_factor=0.25,
outer_padding=(0, 0), default_square=True)``, the call GPEN and MetaF2N make at S = 512. It takes the
96 x 112 reference points of SphereFace/ArcFace, widens the crop to a 112 x 112 square (x + 8), pads it by
0.25 * 112 = 28 on every side (a 168 x 168 crop) and scales that to S x S. At S = 512::

    [[202.0407, 242.8840], [309.4302, 242.2900], [256.0768, 303.9592], [211.9598, 366.8282], [300.8911, 366.3363]]

and at S = 256 exactly half of that. The 112 x 112 square becomes the central two thirds of the aligned
crop, ``[S/6, 5S/6]`` in x and y: the face proper, used by :func:`landmark_box`.
"""
import cv2
import numpy as np
from facexlib.detection.align_trans import get_reference_facial_points

TEMPLATE_CROP = 168.0  # the padded crop of the 112 x 112 square: 112 * (1 + 2 * 0.25)


def face_template(size):
    """GPEN's five reference points for an aligned ``size`` x ``size`` crop: ``(5, 2)`` float64 ``(x, y)``."""
    return get_reference_facial_points((size, size),
                                       inner_padding_factor=0.25,
                                       outer_padding=(0, 0),
                                       default_square=True).astype(np.float64)


def similarity_transform(src, dst):
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) taking ``src`` to ``dst``.

    Solves ``min sum_k |M @ [src_k, 1] - dst_k|^2`` over ``M = [[a, -b, tx], [b, a, ty]]``.

    Args:
        src, dst: ``(K, 2)`` points, K >= 2.

    Returns:
        ``(2, 3)`` float64 affine map.

    Raises:
        ValueError: the points are not finite or all coincide (no scale can be estimated).
    """
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


def apply_affine(matrix, points):
    """``(K, 2)`` points mapped by a ``(2, 3)`` affine map."""
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def compose_affine(outer, inner):
    """The ``(2, 3)`` map ``p -> outer(inner(p))``."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def invert_affine(matrix):
    """Inverse of an invertible ``(2, 3)`` affine map."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def upscale_map(scale):
    """The ``(2, 3)`` map from image pixel coordinates to those of the same image resized by ``scale``.

    Pixel centres scale about the pixel edges: LQ pixel ``x`` covers HQ pixels ``scale * x ... scale * x +
    scale - 1``, whose centre is ``scale * x + (scale - 1) / 2`` (OpenCV's and MATLAB's resize convention).
    """
    shift = (scale - 1) / 2
    return np.array([[scale, 0.0, shift], [0.0, scale, shift]])


def align_face(image, landmarks, size, matrix=None):
    """Warp a face to the ``size`` x ``size`` template with a least-squares similarity transform.

    Args:
        image: ``(H, W, C)`` float image (any channel order; it is kept).
        landmarks: ``(5, 2)`` landmarks in ``image``'s pixel coordinates. Ignored when ``matrix`` is given.
        size: side S of the aligned crop.
        matrix: optional ``(2, 3)`` map from ``image`` to the crop, to reuse one already estimated.

    Returns:
        ``(crop, matrix)``: the ``(S, S, C)`` float32 crop, bicubic, clipped to [0, 1], and the ``(2, 3)``
        map image -> crop. Parts of the crop outside the image repeat the image's edge pixels (GPEN fills
        them black; edge pixels keep the interpolation near the border clean).
    """
    if matrix is None:
        matrix = similarity_transform(landmarks, face_template(size))
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return np.clip(crop, 0, 1).reshape(size, size, -1), matrix


def landmark_box(landmarks):
    """A face box for landmarks that come without one: ``(x0, y0, x1, y1)`` float64.

    It is the bounding box, in image coordinates, of the central ``[S/6, 5S/6]`` square of the aligned crop
    (the 112 x 112 square of the template, before its inner padding): forehead to chin, ear to ear, about
    the box a face detector returns.
    """
    template = face_template(TEMPLATE_CROP)
    back = invert_affine(similarity_transform(landmarks, template))
    corners = np.array([[28.0, 28.0], [140.0, 28.0], [140.0, 140.0], [28.0, 140.0]])
    points = apply_affine(back, corners)
    return np.concatenate([points.min(0), points.max(0)])
