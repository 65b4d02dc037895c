"""Face source ``retinaface``: facexlib's RetinaFace detector, weights loaded from a path you choose."""
import warnings
from typing import Optional, Union

import cv2
import numpy as np
import torch
from facexlib.detection.retinaface import RetinaFace

from metaf2n_plugin.checkpoints import load_named, load_state_dict
from metaf2n_plugin.faces.annotations import Face
from metaf2n_plugin.faces.registry import FACE_SOURCES
from metaf2n_plugin.image_io import PathLike
from metaf2n_plugin.weights import locate_weights

FACEXLIB_RELEASE = 'https://github.com/xinntao/facexlib/releases/download/v0.1.0/'
# model name -> (facexlib's network name, official weight file)
RETINAFACE_MODELS = {
    'retinaface_resnet50': ('resnet50', 'detection_Resnet50_Final.pth'),
    'retinaface_mobile0.25': ('mobile0.25', 'detection_mobilenet0.25_Final.pth'),
}


def build_retinaface(model: str, device: Union[str, torch.device]) -> RetinaFace:
    """facexlib's ``RetinaFace`` network for ``model`` on ``device``, randomly initialised and in eval mode."""
    if model not in RETINAFACE_MODELS:
        raise ValueError(f'unknown RetinaFace model {model!r}; choose one of {sorted(RETINAFACE_MODELS)}')
    with warnings.catch_warnings():  # facexlib builds its ResNet-50 with torchvision's deprecated `pretrained`
        warnings.filterwarnings('ignore', category=UserWarning, module='torchvision.models._utils')
        return RetinaFace(network_name=RETINAFACE_MODELS[model][0], half=False, device=torch.device(device))


@FACE_SOURCES.register('retinaface', detector=True, weights_suffixes=('.pth', ))
class RetinaFaceDetector:
    """Faces and their five landmarks by RetinaFace (MetaF2N's step 1).

    ``model``: ``'retinaface_resnet50'`` (MetaF2N's) or ``'retinaface_mobile0.25'``; ``weights``/``download``
    as in :mod:`metaf2n_plugin.weights`. Faces scoring above ``score_threshold`` are kept, after NMS at
    ``nms_threshold`` IoU. A photo whose long side exceeds ``resize_above`` is detected at a long side of
    ``resize_to`` (MetaF2N: 1500 -> 1000) and the results scaled back.
    """

    def __init__(self,
                 model: str = 'retinaface_resnet50',
                 weights: Optional[PathLike] = None,
                 download: bool = False,
                 score_threshold: float = 0.9,
                 nms_threshold: float = 0.4,
                 resize_above: int = 1500,
                 resize_to: int = 1000,
                 device: Union[str, torch.device] = 'cpu') -> None:
        self.net = build_retinaface(model, device)
        file_name = RETINAFACE_MODELS[model][1]
        path = locate_weights(file_name, FACEXLIB_RELEASE + file_name, f'RetinaFace ({model})', weights, download,
                              '`weights` (--detector-weights)')
        state = load_state_dict(path, 'RetinaFace weights')
        load_named(self.net, {k.removeprefix('module.'): v for k, v in state.items()}, path, f'RetinaFace {model}')
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.resize_above = resize_above
        self.resize_to = resize_to

    @torch.no_grad()
    def __call__(self, image: np.ndarray, image_path: Optional[PathLike] = None) -> list[Face]:
        """:class:`Face` list of an ``(H, W, 3)`` float **RGB** image in [0, 1] (not BGR, not uint8), best first;
        landmarks and box in the image's pixels, score set. Boxes covering no pixel are dropped; ``image_path`` is
        unused."""
        bgr: np.ndarray = np.ascontiguousarray(image[:, :, ::-1] * 255, dtype=np.float32)  # RetinaFace takes BGR 0..255
        height, width = bgr.shape[:2]
        if max(height, width) > self.resize_above:
            factor = self.resize_to / max(height, width)
            bgr = cv2.resize(bgr, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
        back = np.array([width / bgr.shape[1], height / bgr.shape[0]])
        rows = self.net.detect_faces(bgr, conf_threshold=self.score_threshold, nms_threshold=self.nms_threshold)
        boxes = [row[:4].astype(np.float64) * np.tile(back, 2) for row in rows]
        return [
            Face(landmarks=row[5:15].reshape(5, 2).astype(np.float64) * back, box=box, score=float(row[4]))
            for row, box in zip(rows, boxes) if inside_image(box, width, height)
        ]


def inside_image(box: np.ndarray, width: int, height: int) -> bool:
    """Whether a box ``(x0, y0, x1, y1)`` covers at least one pixel centre of a ``width`` x ``height`` image."""
    x0, y0, x1, y1 = box
    return max(x0, 0) <= min(x1, width - 1) and max(y0, 0) <= min(y1, height - 1) and x0 < x1 and y0 < y1
