"""Faces as five landmarks (+ optional box and score), their JSON form, and the built-in annotated photos.

JSON form of one face (``Face.to_json``)::

    {"landmarks": [[x, y], x 5], "box": [x0, y0, x1, y1], "score": 0.99}

``landmarks`` are in the order of :mod:`metaf2n_plugin.faces.alignment` (image-left eye, image-right eye,
nose tip, image-left mouth corner, image-right mouth corner), in pixel coordinates of the **LQ** image
(pixel centres at integers); ``box`` (the face's bounding box, e.g. a detector's) and ``score`` are
optional. Unknown keys are ignored, so the JSON that ``scripts/extract_face_pairs.py`` writes can be read
back as landmarks.

Two layouts are read by :class:`LandmarkSource`:

- one JSON per folder: ``{"<image file name>": {"faces": [face, ...]}, ...}``;
- one sidecar per image: ``photo.png`` -> ``photo.json`` holding ``{"faces": [face, ...]}``.

An image without faces is listed with ``"faces": []``; an image missing from the JSON is an error.
"""
import json
import numpy as np
import os
from dataclasses import dataclass
from pathlib import Path

from metaf2n_plugin.image_io import read_image

BUILTIN_JSON = Path(__file__).with_name('builtin_faces.json')


@dataclass(frozen=True, eq=False)
class Face:
    """One face of an image.

    Attributes:
        landmarks: ``(5, 2)`` float64 ``(x, y)`` in the image's pixel coordinates.
        box: ``(4,)`` float64 ``(x0, y0, x1, y1)``, or None when only landmarks are known.
        score: detector confidence in [0, 1], or None.
    """
    landmarks: np.ndarray
    box: np.ndarray = None
    score: float = None

    def to_json(self):
        obj = {'landmarks': np.round(self.landmarks, 3).tolist()}
        if self.box is not None:
            obj['box'] = np.round(self.box, 3).tolist()
        if self.score is not None:
            obj['score'] = round(float(self.score), 5)
        return obj

    @classmethod
    def from_json(cls, obj, where):
        """Parse one face; ``where`` (e.g. ``"faces.json, 'a.png', face 2"``) prefixes every error."""
        try:
            landmarks = np.asarray(obj['landmarks'], dtype=np.float64)
            box = None if obj.get('box') is None else np.asarray(obj['box'], dtype=np.float64)
            score = None if obj.get('score') is None else float(obj['score'])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f'{where}: expected {{"landmarks": [[x, y] x 5], "box": [x0, y0, x1, y1] '
                             f'(optional), "score": s (optional)}}, got {obj!r} ({err})') from None
        if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
            raise ValueError(f'{where}: "landmarks" must be 5 finite [x, y] pairs, got {obj["landmarks"]!r}')
        if box is not None and (box.shape != (4, ) or not np.isfinite(box).all()):
            raise ValueError(f'{where}: "box" must be 4 finite numbers [x0, y0, x1, y1], got {obj["box"]!r}')
        return cls(landmarks, box, score)


def faces_from_json(entry, where):
    """``{"faces": [face, ...]}`` -> list of :class:`Face`."""
    if not isinstance(entry, dict) or not isinstance(entry.get('faces'), list):
        raise ValueError(f'{where}: expected {{"faces": [...]}}, got {entry!r}')
    return [Face.from_json(obj, f'{where}, face {i}') for i, obj in enumerate(entry['faces'])]


def _load_json(path):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f'landmark file {str(path)!r} does not exist') from None
    except json.JSONDecodeError as err:
        raise ValueError(f'landmark file {str(path)!r} is not valid JSON: {err}') from None


class LandmarkSource:
    """Face source ``landmarks``: faces listed in JSON (see the module docstring for the layouts).

    Args:
        json_path: one JSON for a whole folder, keyed by image file name; None to read a sidecar
            ``<image stem>.json`` next to each image.
    """

    def __init__(self, json_path=None):
        self.json_path = None if json_path is None else os.fspath(json_path)
        self._table = None if json_path is None else _load_json(json_path)

    def __call__(self, image, image_path):
        """Faces of the image at ``image_path`` (``image`` itself is not looked at)."""
        if image_path is None:
            raise ValueError('the landmarks face source needs the image path: faces are looked up by file name')
        name = os.path.basename(image_path)
        if self._table is None:
            sidecar = os.path.splitext(image_path)[0] + '.json'
            return faces_from_json(_load_json(sidecar), repr(sidecar))
        if name not in self._table:
            raise ValueError(f'{self.json_path!r} has no entry for image {name!r}; add "{name}": '
                             '{"faces": [...]} (an empty list for an image without faces)')
        return faces_from_json(self._table[name], f'{self.json_path!r}, {name!r}')


def builtin_photo(name):
    """A real photo that ships inside a dependency, with its measured faces.

    Args:
        name: ``'astronaut'`` (scikit-image's ``astronaut.png``, 512 x 512) or ``'grace_hopper'``
            (matplotlib's ``grace_hopper.jpg``, 512 wide, 600 high).

    Returns:
        ``(image, faces)``: ``(H, W, 3)`` float32 RGB in [0, 1] and a list of :class:`Face` (landmarks only).
    """
    table = _load_json(BUILTIN_JSON)
    if name not in table:
        raise KeyError(f'no built-in photo {name!r}; choose one of {sorted(table)}')
    if name == 'astronaut':
        import skimage.data
        image = skimage.data.astronaut().astype(np.float32) / 255.0
    else:
        import matplotlib.cbook
        image = read_image(matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False))
    width, height = table[name]['size']
    if image.shape != (height, width, 3):
        raise ValueError(f'built-in photo {name!r} is {image.shape[1]}x{image.shape[0]}, the annotations '
                         f'were measured on {width}x{height}: the dependency changed the image')
    return image, faces_from_json(table[name], f'built-in annotations, {name!r}')
