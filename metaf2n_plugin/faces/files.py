"""Reading images and writing results: RGB float arrays in, atomic writes out.

Every array that leaves :func:`read_image` is ``(H, W, 3)`` float32 **RGB** in [0, 1]; OpenCV's BGR order
stays inside this module. Images are decoded the way BasicSR's ``imfrombytes(..., flag='color')`` decodes
them, so face coordinates computed here match the images BasicSR's datasets load:

- grayscale images are replicated to three channels;
- an alpha channel is dropped (the colour is kept as stored, not composited);
- 16-bit images are reduced to 8 bits (OpenCV keeps the high byte);
- JPEG EXIF orientation is applied.

:func:`read_photo` and :func:`write_photo` keep what a photo's owner expects back instead (alpha, gray,
16 bits). Writers put the data into a temporary file in the destination folder and then ``os.replace`` it,
so a crash never leaves a half-written file under the final name.
"""
import contextlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass

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


@dataclass
class Photo:
    """A photo as stored, split into what the network sees and what writing it back needs.

    Attributes:
        rgb: ``(H, W, 3)`` float32 RGB in [0, 1], upright (EXIF orientation applied); gray is replicated.
        alpha: ``(H, W)`` float32 in [0, 1], or None.
        gray: True when every pixel has R = G = B (written back with one colour channel).
        bits: 8 or 16, the stored depth per channel.
    """
    rgb: np.ndarray
    alpha: np.ndarray = None
    gray: bool = False
    bits: int = 8


def read_photo(path, check_size=None):
    """Read a photo for super-resolution, keeping its alpha, its grayness and its 16 bits.

    Args:
        path: the image file.
        check_size: called as ``check_size(height, width, bits)`` once the file is decoded, before the pixels
            are converted to float; it raises to refuse the photo.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: empty, truncated or undecodable files, and depths other than 8/16 bits; naming the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'image {path!r} does not exist')
    data = np.fromfile(path, dtype=np.uint8)
    if len(data) == 0:
        raise ValueError(f'cannot read image {path!r}: the file is empty (0 bytes); replace or remove it')
    pixels, kinds, metadata = cv2.imdecodeWithMetadata(data, cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise ValueError(f'cannot read image {path!r}: OpenCV cannot decode it (truncated, or not an image); '
                         'replace it or convert it to PNG')
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'cannot read image {path!r}: {pixels.dtype} pixels; convert it to an 8- or 16-bit PNG')
    exif = [bytes(np.asarray(block).ravel()) for kind, block in zip(kinds, metadata)
            if kind == cv2.IMAGE_METADATA_EXIF]
    pixels = _upright(pixels, _exif_orientation(exif[0]) if exif else 1)
    peak = np.iinfo(pixels.dtype).max
    if check_size is not None:
        check_size(pixels.shape[0], pixels.shape[1], 16 if peak > 255 else 8)
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
    colour = pixels[:, :, :3] if pixels.shape[2] >= 3 else pixels[:, :, :1].repeat(3, axis=2)
    gray = bool((colour[:, :, 0] == colour[:, :, 1]).all() and (colour[:, :, 1] == colour[:, :, 2]).all())
    alpha = pixels[:, :, 3].astype(np.float32) / peak if pixels.shape[2] == 4 else None
    rgb = np.ascontiguousarray(colour[:, :, ::-1], dtype=np.float32) / peak
    return Photo(rgb, alpha, gray, 16 if peak > 255 else 8)


def write_photo(path, photo):
    """Write a :class:`Photo` atomically as PNG: one channel if gray, alpha re-attached, at its depth."""
    peak = 65535 if photo.bits == 16 else 255
    colour = photo.rgb.mean(axis=2, keepdims=True) if photo.gray else photo.rgb[:, :, ::-1]
    if photo.alpha is not None:  # PNG has no BGR + alpha of one colour channel: gray + alpha is written as BGRA
        colour = np.concatenate([colour.repeat(3 // colour.shape[2], axis=2), photo.alpha[:, :, None]], axis=2)
    pixels = (np.clip(colour, 0, 1) * peak).round().astype(np.uint16 if peak > 255 else np.uint8)
    ok, encoded = cv2.imencode('.png', pixels)
    if not ok:
        raise ValueError(f'OpenCV cannot encode {path!r} as PNG')
    write_atomically(os.fspath(path), encoded.tobytes())


def _exif_orientation(exif):
    """The orientation tag (1..8) of an EXIF block (TIFF layout, optionally after ``Exif\\0\\0``); 1 if absent."""
    exif = exif.removeprefix(b'Exif\x00\x00')
    if exif[:2] not in (b'II', b'MM'):
        return 1
    order = '<' if exif[:2] == b'II' else '>'
    try:
        first = struct.unpack_from(order + 'I', exif, 4)[0]
        for entry in range(struct.unpack_from(order + 'H', exif, first)[0]):
            tag, _, _, value = struct.unpack_from(order + 'HHIH', exif, first + 2 + 12 * entry)
            if tag == 0x0112:
                return value if 1 <= value <= 8 else 1
    except struct.error:  # a damaged EXIF block: show the pixels as stored
        pass
    return 1


def _upright(pixels, orientation):
    """Apply an EXIF orientation (1..8) to ``(H, W, ...)`` pixels, as a viewer shows them."""
    if orientation in (5, 6, 7, 8):
        pixels = pixels.swapaxes(0, 1)  # transpose, then flip to make the rotations
    flips = {2: (slice(None), slice(None, None, -1)), 3: (slice(None, None, -1), slice(None, None, -1)),
             4: (slice(None, None, -1), ), 6: (slice(None), slice(None, None, -1)),
             7: (slice(None, None, -1), slice(None, None, -1)), 8: (slice(None, None, -1), )}
    return np.ascontiguousarray(pixels[flips[orientation]]) if orientation in flips else pixels


def write_json(path, obj):
    """Write a dict atomically as UTF-8 JSON, one top-level entry per line."""
    lines = [f'{json.dumps(key)}: {json.dumps(value)}' for key, value in obj.items()]
    write_atomically(os.fspath(path), ('{\n' + ',\n'.join(lines) + '\n}\n').encode('utf-8'))


def write_atomically(path, data):
    """Write ``data`` (bytes) to ``path`` through a temporary file in its folder, then rename it into place."""
    with atomic_file(path) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(path):
    """A binary file to write ``path`` through: a temporary file in its folder, flushed to disk and renamed into
    place when the block ends, removed when it raises. A reader (or a crash) never sees a partial ``path``."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=f'.{os.path.basename(path)}.',
                               suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
