"""Faces as five landmarks (+ optional box and score), their JSON form, and the built-in annotated photos.

A face is ``{"landmarks": [[x, y] x 5], "box": [x0, y0, x1, y1], "score": s}`` in **LQ** pixels, landmarks in
:mod:`.alignment`'s order; box and score are optional and other keys ignored (so the ``faces.json`` of
``scripts/extract_face_pairs.py`` reads back). :class:`LandmarkSource` reads one JSON per folder,
``{"<image file name>": {"faces": [face, ...]}, ...}``, or a sidecar per image (``photo.png`` -> ``photo.json``
holding ``{"faces": [...]}``). A faceless image has ``"faces": []``; one missing from the JSON is an error.
"""
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from numpy.typing import NDArray

from metaf2n_plugin.faces.registry import FACE_SOURCES
from metaf2n_plugin.image_io import PathLike, read_image

BUILTIN_JSON = Path(__file__).with_name('builtin_faces.json')


@dataclass(frozen=True, eq=False)
class Face:
    """One face: ``(5, 2)`` float64 ``landmarks``; ``(4,)`` float64 ``box`` ``(x0, y0, x1, y1)`` or None;
    detector ``score`` in [0, 1] or None."""
    landmarks: np.ndarray
    box: Optional[np.ndarray] = None
    score: Optional[float] = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {'landmarks': np.round(self.landmarks, 3).tolist()}
        if self.box is not None:
            obj['box'] = np.round(self.box, 3).tolist()
        if self.score is not None:
            obj['score'] = round(float(self.score), 5)
        return obj

    @classmethod
    def from_json(cls, obj: Any, where: str) -> 'Face':
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


def faces_from_json(entry: Any, where: str) -> list[Face]:
    """``{"faces": [face, ...]}`` -> list of :class:`Face`."""
    if not isinstance(entry, dict) or not isinstance(entry.get('faces'), list):
        raise ValueError(f'{where}: expected {{"faces": [...]}}, got {entry!r}')
    return [Face.from_json(obj, f'{where}, face {i}') for i, obj in enumerate(entry['faces'])]


def _load_json(path: PathLike) -> Any:
    if os.path.isdir(path):
        raise ValueError(f'landmark file {str(path)!r} is a folder; give the JSON file of the faces (keyed by image '
                         'file name), or put a <stem>.json beside each image and give no file')
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f'landmark file {str(path)!r} does not exist') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f'landmark file {str(path)!r} is not valid JSON: {err}') from None


@FACE_SOURCES.register('landmarks')
class LandmarkSource:
    """Face source ``landmarks``: faces from ``json_path`` (keyed by file name), or from sidecars when None."""

    def __init__(self, json_path: Optional[PathLike] = None) -> None:
        self.json_path = None if json_path is None else os.fspath(json_path)
        self._table = None if json_path is None else _load_json(json_path)
        if self._table is not None and not isinstance(self._table, dict):
            raise ValueError(f'landmark file {self.json_path!r} holds a JSON {type(self._table).__name__}; expected '
                             'an object keyed by image file name: {"photo.jpg": {"faces": [{"landmarks": [[x, y] '
                             'x 5]}, ...]}, ...}')

    def __call__(self, image: np.ndarray, image_path: Optional[PathLike]) -> list[Face]:
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


def builtin_photo(name: str) -> tuple[NDArray[np.float32], list[Face]]:
    """``(image, faces)`` of a photo shipped by a dependency, with hand-measured landmarks (no boxes).

    ``name``: ``'astronaut'`` (scikit-image, 512 x 512) or ``'grace_hopper'`` (matplotlib, 512 x 600 high).
    Raises KeyError for another name, ValueError if the dependency's image changed size.
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
