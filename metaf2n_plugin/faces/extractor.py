"""(LQ face, pseudo-HQ face) pairs of a photo: MetaF2N's inference steps 1-3 as one component.

Options (:meth:`FacePairExtractor.from_options`; the types: docs/face-pairs.md), e.g. in a model's YAML::

    face_pairs:
      scale: 4
      source: {type: retinaface, model: retinaface_resnet50, weights: weights, score_threshold: 0.9}
      restorer: {type: gpen, size: 512, channel_multiplier: 2, narrow: 1, weights: weights, batch_size: 4}

Keys besides ``type`` are the registered class's arguments (:mod:`~metaf2n_plugin.faces.registry`); a bare string
means ``{type: <string>}``. Source and restorer are built (weights looked up) when first needed.
"""
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from basicsr.utils import img2tensor
from numpy.typing import NDArray

from metaf2n_plugin.faces.alignment import align_face, compose_affine, invert_affine, landmark_box, upscale_map
from metaf2n_plugin.faces.annotations import Face
from metaf2n_plugin.faces.pair_folders import PairFolderSource
from metaf2n_plugin.faces.pairs import FacePair
from metaf2n_plugin.faces.paste_back import paste_back
from metaf2n_plugin.faces.registry import FACE_SOURCES, RESTORERS
from metaf2n_plugin.faces.restoration import Restorer
from metaf2n_plugin.image_io import PathLike, tensor_to_image
from metaf2n_plugin.option_checks import option_group

# what finds or looks up an image's faces: ``(image, image_path) -> list[Face]``, or the pairs on disk
FaceSource = Union[Callable[[np.ndarray, Optional[PathLike]], list[Face]], PairFolderSource]


class FacePairExtractor:
    """Find (or look up) the faces of an LQ photo, align them at ``restorer.size``, restore, paste back at ``scale``.

    ``source`` is a callable ``(image, image_path) -> list[Face]`` or a :class:`PairFolderSource` (then
    ``restorer`` may be None). Raises ValueError unless ``scale`` is a positive integer.
    """

    def __init__(self, source: Optional[FaceSource], restorer: Optional[Restorer], scale: int = 4) -> None:
        if int(scale) != scale or scale < 1:
            raise ValueError(f'scale must be a positive integer, got {scale}')
        self._source, self._restorer, self.scale = source, restorer, int(scale)
        self._build_source: Optional[Callable[[], FaceSource]] = None
        self._build_restorer: Optional[Callable[[], Restorer]] = None

    @classmethod
    def from_options(cls,
                     opt: Optional[Mapping[str, Any]],
                     device: Union[str, torch.device] = 'cpu') -> 'FacePairExtractor':
        """Build from an options dict (module docstring); ValueError naming an unknown key."""
        opt = option_group({'face_pairs': opt}, 'face_pairs', ('scale', 'source', 'restorer'))
        extractor = cls(None, None, opt.get('scale', 4))
        source = FACE_SOURCES.builder(opt.get('source', 'retinaface'), device)
        extractor._build_source = source
        if source.func is not PairFolderSource:
            extractor._build_restorer = RESTORERS.builder(opt.get('restorer', 'gpen'), device)
        return extractor

    @property
    def source(self) -> Optional[FaceSource]:
        if self._source is None and self._build_source is not None:
            self._source = self._build_source()
        return self._source

    @property
    def restorer(self) -> Optional[Restorer]:
        if self._restorer is None and self._build_restorer is not None:
            self._restorer = self._build_restorer()
        return self._restorer

    def load(self) -> tuple[Optional[FaceSource], Optional[Restorer]]:
        """Build the source and the restorer now, so that missing weights are reported before any work."""
        return self.source, self.restorer

    def pairs_of_item(self, data: Mapping[str, Any]) -> list[FacePair]:
        """Face pairs of one collated (batch 1) ``MetaF2NPairedFaceDataset`` item, by its ``face_source``: the item's
        own pairs, its landmarks (aligned and restored here), or this extractor's source (``retinaface``)."""
        kind = data.get('face_source', ['retinaface'])[0]
        if kind == 'pairs':
            pairs = zip(data['face_lq'], data['face_hq'], data['face_mask'])
            return [
                FacePair(tensor_to_image(lq), tensor_to_image(hq),
                         tensor_to_image(mask)[:, :, 0] > 0.5) for lq, hq, mask in pairs
            ]
        faces: Optional[list[Face]] = None
        if kind == 'landmarks':
            faces = [Face(landmarks.double().numpy()) for landmarks in data['landmarks'][0]]
        gt = tensor_to_image(data['gt']) if 'gt' in data else None
        return self(tensor_to_image(data['lq']), gt, data['lq_path'][0], faces=faces)

    def __call__(self,
                 lq: np.ndarray,
                 gt: Optional[np.ndarray] = None,
                 image_path: Optional[PathLike] = None,
                 faces: Optional[Sequence[Face]] = None) -> list[FacePair]:
        """One :class:`FacePair` per face of the ``(H, W, 3)`` float32 RGB LQ photo in [0, 1] ([] without faces).

        ``gt`` (``(s*H, s*W, 3)``) is for the ``oracle`` restorer; the ``landmarks`` and ``pairs`` sources look
        faces up by ``image_path``; given ``faces`` (in ``lq``'s pixels) replace the source's. Raises ValueError
        for bad image arrays, a GT of the wrong size, or a face outside the image.
        """
        name = repr(image_path) if image_path is not None else 'the LQ image'
        lq = _checked_image(lq, name)
        source = self.source if faces is None else None  # built only when the faces are to be found
        if isinstance(source, PairFolderSource):
            if image_path is None:
                raise ValueError('the pairs face source needs image_path: pairs are named after the image')
            return source.pairs(image_path, self.scale)
        height, width = lq.shape[:2]
        if gt is not None:
            gt = _checked_image(gt, f'the GT of {name}')
            if gt.shape[:2] != (self.scale * height, self.scale * width):
                raise ValueError(f'the GT of {name} is {gt.shape[1]}x{gt.shape[0]}; at scale {self.scale} '
                                 f'the {width}x{height} LQ image needs a {self.scale * width}x'
                                 f'{self.scale * height} GT')
        if faces is None:
            if source is None:
                raise ValueError(f'{name}: no faces given, and this extractor has no face source to find them; '
                                 'pass faces=[...] or give it a source')
            faces = source(lq, image_path)
        if not faces:
            return []
        boxes = [_crop_box(face, width, height, f'{name}, face {i}') for i, face in enumerate(faces)]
        if self.restorer is None:
            raise ValueError(f'{name}: its faces need a restorer, and this extractor has none (the pairs source '
                             'brings restored faces); give face_pairs a restorer and another source')
        size = self.restorer.size
        aligned, matrices = zip(*(align_face(lq, face.landmarks, size) for face in faces))
        gt_aligned: Optional[torch.Tensor] = None
        if self.restorer.needs_gt and gt is not None:
            hq_to_lq = invert_affine(upscale_map(self.scale))
            gt_aligned = torch.stack(
                img2tensor([align_face(gt, None, size, compose_affine(m, hq_to_lq))[0] for m in matrices],
                           bgr2rgb=False))
        restored = self.restorer(torch.stack(img2tensor(list(aligned), bgr2rgb=False)), gt_aligned)
        restored_array = restored.permute(0, 2, 3, 1).numpy()  # (N, S, S, 3)
        pairs = []
        for face, box, matrix, face_hq in zip(faces, boxes, matrices, restored_array):
            hq, mask = paste_back(face_hq, matrix, box, self.scale)
            x0, y0, x1, y1 = box
            pairs.append(FacePair(lq[y0:y1, x0:x1].copy(), hq, mask, face, box))
        return pairs


def build_restorer(opt: Union[str, Mapping[str, Any], None], device: Union[str, torch.device] = 'cpu') -> Restorer:
    """A restorer from its options: ``{type: gpen | oracle | identity, ...}`` or just the type."""
    return RESTORERS.builder(opt, device)()


def _checked_image(image: object, name: str) -> NDArray[np.float32]:
    """``image`` as float32 after checking that it is an ``(H, W, 3)`` float array."""
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
            and np.issubdtype(image.dtype, np.floating)):
        got = f'{image.dtype} array of shape {image.shape}' if isinstance(image, np.ndarray) else type(image)
        raise ValueError(f'{name}: expected an (H, W, 3) float RGB array in [0, 1] (see '
                         f'metaf2n_plugin.image_io.read_image), got {got}')
    return image.astype(np.float32, copy=False)


def _crop_box(face: Face, width: int, height: int, where: str) -> tuple[int, int, int, int]:
    """The integer crop ``(x0, y0, x1, y1)`` (half-open) of a face's box, clipped to the image."""
    box = face.box if face.box is not None else landmark_box(face.landmarks)
    x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x1, y1 = min(width, math.floor(box[2]) + 1), min(height, math.floor(box[3]) + 1)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f'{where}: box {np.round(box, 1).tolist()} (landmarks {np.round(face.landmarks, 1).tolist()}) '
                         f'lies outside the {width}x{height} image; landmarks and boxes are in LQ pixel coordinates')
    return x0, y0, x1, y1
