"""Paste a restored aligned face back into the image at ``scale`` times its size (MetaF2N's step 3)."""
import cv2
import numpy as np

from metaf2n_plugin.faces.alignment import compose_affine, invert_affine, upscale_map


def paste_back(restored, matrix, box, scale):
    """The ``scale``x crop, at ``box``, of the canvas onto which the restored face is warped back.

    MetaF2N warps the restored face with the inverse alignment transform, scaled, onto a black
    ``scale*W x scale*H`` canvas and crops the face box from it. This warps straight into the crop (the same
    pixels, without the canvas), and differs in three ways:

    - the scaling follows pixel centres (:func:`upscale_map`), where the original multiplies the whole inverse
      matrix by the scale, shifting the face by (scale - 1) / 2 HQ pixels;
    - a face that shrinks on the way back is first reduced with area averaging, so the warp does not alias;
    - a validity mask tells which pixels the warped face covers; the original trains on the black rest.

    Args:
        restored: ``(S, S, 3)`` float32 restored aligned face, RGB in [0, 1].
        matrix: ``(2, 3)`` alignment map from LQ pixel coordinates to the aligned crop.
        box: ``(x0, y0, x1, y1)`` integer face box in LQ pixels, half-open, inside the LQ image.
        scale: integer super-resolution factor s.

    Returns:
        ``(hq, mask)``: ``(s*h, s*w, 3)`` float32 RGB in [0, 1] and ``(s*h, s*w)`` bool, where
        ``h, w = y1 - y0, x1 - x0``; the HQ pixel ``(i, j)`` of the crop is the canvas pixel
        ``(s*y0 + i, s*x0 + j)``.
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
