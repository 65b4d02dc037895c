"""Image files in and out as ``(H, W, 3)`` float32 RGB in [0, 1]; OpenCV's BGR order stays here. Writes are atomic.

:func:`read_image` decodes as BasicSR's ``imfrombytes(..., flag='color')`` (gray replicated, alpha dropped, 16 bits
to 8, JPEG EXIF orientation applied), so coordinates match BasicSR's datasets; :func:`read_photo` /
:func:`write_photo` keep a photo's alpha, grayness and 16 bits.
"""
import glob
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional, Union

import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from metaf2n_plugin.atomic_write import write_atomically

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
PathLike = Union[str, os.PathLike[str]]  # a file or folder, as the package's functions take it


def is_image_file(path: PathLike) -> bool:
    """True when ``path`` ends with one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)


def images_in(folder: PathLike) -> list[str]:
    """Sorted paths of the image files in ``folder`` (by extension; hidden files left out)."""
    folder = os.fspath(folder)
    return sorted(
        os.path.join(folder, name) for name in os.listdir(folder)
        if is_image_file(name) and not name.startswith('.') and os.path.isfile(os.path.join(folder, name)))


def image_with_stem(folder: PathLike, stem: str) -> Optional[str]:
    """The image ``<folder>/<stem>.<ext>`` (the first in sorted order), or None."""
    found = sorted(
        path for path in glob.glob(os.path.join(glob.escape(os.fspath(folder)),
                                                glob.escape(stem) + '.*')) if is_image_file(path))
    return found[0] if found else None


def tensor_to_image(tensor: torch.Tensor) -> NDArray[np.float32]:
    """``(1, C, H, W)`` or ``(C, H, W)`` tensor -> ``(H, W, C)`` float32 array on the CPU, values unchanged (BasicSR's
    ``tensor2img`` clamps and makes 8-bit BGR; its ``img2tensor`` is the way back)."""
    return tensor.detach().reshape(tensor.shape[-3:]).permute(1, 2, 0).float().cpu().numpy()


def read_image(path: PathLike) -> NDArray[np.float32]:
    """``(H, W, 3)`` float32 RGB in [0, 1] of an image file; FileNotFoundError if missing, ValueError (naming
    the file) if empty or undecodable."""
    return decode_image(_file_bytes(path), os.fspath(path))


def decode_image(data: Union[bytes, NDArray[np.uint8]], where: str) -> NDArray[np.float32]:
    """Bytes of an image file -> ``(H, W, 3)`` float32 RGB in [0, 1]; ``where`` names the file in errors."""
    if len(data) == 0:
        raise ValueError(_EMPTY.format(where))
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(_UNDECODABLE.format(where))
    return bgr_to_rgb_float(bgr)


_EMPTY = 'cannot read image {!r}: the file is empty (0 bytes); replace or remove it'
_UNDECODABLE = ('cannot read image {!r}: OpenCV cannot decode it (truncated, or not an image); replace it or '
                'convert it to PNG')


def _file_bytes(path: PathLike) -> NDArray[np.uint8]:
    """The bytes of an image file as a uint8 array; FileNotFoundError or ValueError (empty) naming ``path``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'image {os.fspath(path)!r} does not exist')
    data = np.fromfile(path, dtype=np.uint8)
    if len(data) == 0:
        raise ValueError(_EMPTY.format(os.fspath(path)))
    return data


def bgr_to_rgb_float(bgr: np.ndarray) -> NDArray[np.float32]:
    """``(H, W, 3)`` uint8 BGR (OpenCV's order) -> ``(H, W, 3)`` float32 RGB in [0, 1]."""
    return np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.float32) / 255.0


def rgb_float_to_bgr_uint8(rgb: np.ndarray) -> NDArray[np.uint8]:
    """``(H, W, 3)`` float RGB in [0, 1] -> ``(H, W, 3)`` uint8 BGR, clipped and rounded."""
    return np.ascontiguousarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)[:, :, ::-1])


def write_image(path: PathLike, image: np.ndarray) -> None:
    """Write ``(H, W, 3)`` float RGB, ``(H, W)`` float gray or bool (True -> 255) atomically as 8 bits, in the
    format of ``path``'s extension (its folder must exist); ValueError if OpenCV cannot encode it."""
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
    """A photo as stored: ``rgb`` ``(H, W, 3)`` upright (EXIF applied), gray replicated; ``alpha`` ``(H, W)``
    float32 in [0, 1] or None; ``gray`` when every pixel has R = G = B; ``bits`` 8 or 16 per channel; ``frames``:
    how many frames or pages the file holds (``rgb`` is the first)."""
    rgb: np.ndarray
    alpha: Optional[np.ndarray] = None
    gray: bool = False
    bits: int = 8
    frames: int = 1

    def upscaled(self, rgb: np.ndarray) -> 'Photo':
        """The photo with ``rgb`` ``(sH, sW, 3)`` (its super-resolution) as pixels, the alpha resized to match
        (bicubic, clipped to [0, 1]); grayness and bits kept, for :func:`write_photo`."""
        alpha = self.alpha
        if alpha is not None:
            alpha = np.clip(cv2.resize(alpha, rgb.shape[1::-1], interpolation=cv2.INTER_CUBIC), 0, 1)
        return Photo(rgb, alpha, self.gray, self.bits)


def read_photo(path: PathLike, check_size: Optional[Callable[[int, int, int], object]] = None) -> Photo:
    """A :class:`Photo` of the file at ``path``. ``check_size(height, width, bits)``, if given, is called
    before the float conversion and raises to refuse the photo. FileNotFoundError if missing; ValueError (naming
    the file) if empty, undecodable or not 8/16 bits."""
    path = os.fspath(path)
    data = _file_bytes(path)
    decoded, kinds, metadata = cv2.imdecodeWithMetadata(data, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise ValueError(_UNDECODABLE.format(path))
    if decoded.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'cannot read image {path!r}: {decoded.dtype} pixels; convert it to an 8- or 16-bit PNG')
    exif = [bytes(np.asarray(block).ravel()) for kind, block in zip(kinds, metadata) if kind == cv2.IMAGE_METADATA_EXIF]
    pixels = _upright(decoded, _exif_orientation(exif[0]) if exif else 1)
    peak = np.iinfo(pixels.dtype).max
    if check_size is not None:
        check_size(pixels.shape[0], pixels.shape[1], 16 if peak > 255 else 8)
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
    colour = pixels[:, :, :3] if pixels.shape[2] >= 3 else pixels[:, :, :1].repeat(3, axis=2)
    gray = bool((colour[:, :, 0] == colour[:, :, 1]).all() and (colour[:, :, 1] == colour[:, :, 2]).all())
    alpha = pixels[:, :, 3].astype(np.float32) / peak if pixels.shape[2] == 4 else None
    rgb = np.ascontiguousarray(colour[:, :, ::-1], dtype=np.float32) / peak
    return Photo(rgb, alpha, gray, 16 if peak > 255 else 8, _frame_count(path))


def _frame_count(path: str) -> int:
    """Frames of an animation or pages of a TIFF at ``path`` (1 when OpenCV cannot count them)."""
    try:
        return max(int(cv2.imcount(path)), 1)
    except cv2.error:
        return 1


def write_photo(path: PathLike, photo: Photo) -> None:
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


def _exif_orientation(exif: bytes) -> int:
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


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to ``(H, W, ...)`` pixels, as a viewer shows them."""
    if orientation in (5, 6, 7, 8):
        pixels = pixels.swapaxes(0, 1)  # transpose, then flip to make the rotations
    flips = {
        2: (slice(None), slice(None, None, -1)),
        3: (slice(None, None, -1), slice(None, None, -1)),
        4: (slice(None, None, -1), ),
        6: (slice(None), slice(None, None, -1)),
        7: (slice(None, None, -1), slice(None, None, -1)),
        8: (slice(None, None, -1), )
    }
    return np.ascontiguousarray(pixels[flips[orientation]]) if orientation in flips else pixels
