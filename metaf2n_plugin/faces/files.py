"""Reading images and writing results: RGB float arrays in, atomic writes out.

Every array that leaves :func:`read_image` is ``(H, W, 3)`` float32 **RGB** in [0, 1]; OpenCV's BGR order
stays inside this module. Images are decoded the way BasicSR's ``imfrombytes(..., flag='color')`` decodes
them, so face coordinates computed here match the images BasicSR's datasets load:

- grayscale images are replicated to three channels;
- an alpha channel is dropped (the colour is kept as stored, not composited);
- 16-bit images are reduced to 8 bits (OpenCV keeps the high byte);
- JPEG EXIF orientation is applied.

Writers put the data into a temporary file in the destination folder and then ``os.replace`` it, so a
crash never leaves a half-written file under the final name.
"""
import json
import os
import tempfile

import cv2
import numpy as np

_UMASK = os.umask(0)  # read the process umask (the only way is to set it), then restore it
os.umask(_UMASK)


IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def read_image(path):
    """Read an image file as ``(H, W, 3)`` float32 RGB in [0, 1].

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is empty or not an image OpenCV can decode; the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'image {path!r} does not exist')
    return decode_image(np.fromfile(path, dtype=np.uint8), path)


def decode_image(data, where):
    """Bytes of an image file -> ``(H, W, 3)`` float32 RGB in [0, 1]; ``where`` names the file in errors."""
    if len(data) == 0:
        raise ValueError(f'cannot read image {where!r}: the file is empty (0 bytes); replace or remove it')
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'cannot read image {where!r}: OpenCV cannot decode it (truncated, or not an image); '
                         'replace it or convert it to PNG')
    return bgr_to_rgb_float(bgr)


def bgr_to_rgb_float(bgr):
    """``(H, W, 3)`` uint8 BGR (OpenCV's order) -> ``(H, W, 3)`` float32 RGB in [0, 1]."""
    return np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.float32) / 255.0


def rgb_float_to_bgr_uint8(rgb):
    """``(H, W, 3)`` float RGB in [0, 1] -> ``(H, W, 3)`` uint8 BGR, clipped and rounded."""
    return np.ascontiguousarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)[:, :, ::-1])


def write_image(path, image):
    """Write ``image`` atomically as an 8-bit file whose format follows the extension of ``path``.

    Args:
        path: destination; its folder must exist.
        image: ``(H, W, 3)`` float RGB in [0, 1], or ``(H, W)`` float gray / bool (a mask: True -> 255).
    """
    path = os.fspath(path)
    if image.dtype == bool:
        pixels = image.astype(np.uint8) * 255
    elif image.ndim == 2:
        pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    else:
        pixels = rgb_float_to_bgr_uint8(image)
    try:
        ok, encoded = cv2.imencode(os.path.splitext(path)[1], pixels)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f'OpenCV cannot encode an image for {path!r}; use a .png name')
    write_atomically(path, encoded.tobytes())


def write_json(path, obj):
    """Write a dict atomically as UTF-8 JSON, one top-level entry per line."""
    lines = [f'{json.dumps(key)}: {json.dumps(value)}' for key, value in obj.items()]
    write_atomically(os.fspath(path), ('{\n' + ',\n'.join(lines) + '\n}\n').encode('utf-8'))


def write_atomically(path, data):
    """Write ``data`` (bytes) to ``path`` through a temporary file in its folder, then rename it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{os.path.basename(path)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
