"""Face source ``mtcnn``: the MTCNN cascade (Zhang et al., 2016) with the weights that ship in facenet-pytorch's wheel.

facenet-pytorch 2.6.0 carries MTCNN's three networks as state dicts (``facenet_pytorch/data/{pnet,rnet,onet}.pt``),
but pins torch < 2.3, numpy < 2 and Pillow < 10.3, so it cannot be installed beside this project's dependencies.
:mod:`metaf2n_plugin.package_weights` reads the three files out of the wheel; the networks and the cascade are written
here. What the weights fix, as facenet-pytorch runs them: RGB 0..255 input normalised to ``(x - 127.5) / 128``;
P-Net scores 12 x 12 windows at stride 2 over a pyramid (scales ``12 / min_face * factor**k`` down to a 12 px short
side); R-Net (24 px crops) and O-Net (48 px crops) rescore, move each box edge by an offset times the box's size and
give five landmarks as fractions of the box (x of all five, then y); R-Net and O-Net flatten their features as
``(W, H, C)``, since the original Caffe networks were trained on transposed images. Stage by stage, with the default
thresholds: P-Net score >= 0.6, NMS at IoU 0.5 per scale and 0.7 over all scales, boxes moved and squared; R-Net
score > 0.7, NMS at IoU 0.7, moved and squared; O-Net score > 0.7, landmarks read off the box O-Net saw, box moved,
NMS at 0.7 of the smaller box's area.

Simpler than facenet-pytorch, with landmarks as close to hand-measured ones (``tests/test_mtcnn.py``): boxes are
continuous ``(x0, y0, x1, y1)`` edges (no MATLAB +1/-1), P-Net's windows are mapped back with the resized image's exact
ratio, and crops are cut with ``roi_align`` (averaging bilinear samples, black beyond the image edge, as in the original
MTCNN) instead of clipping a box at the image edge and stretching what is left.
"""
import math
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms, nms, roi_align

from metaf2n_plugin.checkpoints import load_named
from metaf2n_plugin.faces.annotations import Face
from metaf2n_plugin.faces.detection import inside_image
from metaf2n_plugin.faces.registry import FACE_SOURCES
from metaf2n_plugin.image_io import PathLike
from metaf2n_plugin.package_weights import load_member_state, locate_wheel


def _flatten_transposed(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, W * H * C)``, the order of the dense weights trained on transposed images."""
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(nn.Module):
    """Proposal network: ``(N, 3, H, W)`` normalised image -> face probability ``(N, H', W')`` in [0, 1] and box
    offsets ``(N, 4, H', W')`` of the 12 x 12 windows at stride 2, ``H' = ceil((H - 2) / 2) - 4``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x).softmax(1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """Refinement network: ``(N, 3, 24, 24)`` normalised crops -> face probability ``(N,)``, box offsets ``(N, 4)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu4(self.dense4(_flatten_transposed(self.prelu3(self.conv3(x)))))
        return self.dense5_1(x).softmax(1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output network: ``(N, 3, 48, 48)`` normalised crops -> face probability ``(N,)``, box offsets ``(N, 4)`` and
    landmarks ``(N, 10)`` as fractions of the crop (x of the five points, then y)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu5(self.dense5(_flatten_transposed(self.prelu4(self.conv4(x)))))
        return self.dense6_1(x).softmax(1)[:, 1], self.dense6_2(x), self.dense6_3(x)


def pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """P-Net's scales: ``12 / min_face`` times powers of ``factor`` while the short side stays >= 12 px."""
    scales = []
    scale = 12 / min_face
    while min(height, width) * scale >= 12:
        scales.append(scale)
        scale *= factor
    return scales


def regress(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``(K, 4)`` boxes ``(x0, y0, x1, y1)`` with each coordinate moved by its offset times the box's width (x) or
    height (y)."""
    return boxes + offsets * (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)


def square(boxes: torch.Tensor) -> torch.Tensor:
    """``(K, 4)`` squares of side ``max(width, height)`` centred on the ``(K, 4)`` boxes."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).amax(1, keepdim=True) / 2
    return torch.cat([centre - half, centre + half], 1)


def nms_min(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS of ``(K, 4)`` boxes in 'Min' mode: a box goes when its intersection with a better-scoring kept box
    exceeds ``threshold`` times the smaller of the two areas. Returns the kept indices, best score first."""
    order = scores.argsort(descending=True, stable=True)
    boxes = boxes[order]
    corner0 = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    corner1 = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    overlap = (corner1 - corner0).clamp(min=0).prod(2)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(1)
    overlap = overlap / torch.minimum(area[:, None], area[None, :]).clamp(min=1e-12)
    keep = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
    for i in range(len(boxes)):
        if keep[i]:
            keep[i + 1:] &= overlap[i, i + 1:] <= threshold
    return order[keep]


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) / 128


def _crops(pixels: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``(K, 3, size, size)`` normalised crops of the ``(K, 4)`` boxes (edges) of ``(1, 3, H, W)`` 0..255 pixels."""
    return _normalise(roi_align(pixels, [boxes], size, sampling_ratio=-1, aligned=True))


@FACE_SOURCES.register('mtcnn', detector=True, weights_suffixes=('.whl', ))
class MTCNNDetector:
    """Faces and their five landmarks by MTCNN, with facenet-pytorch's weights (module docstring).

    ``weights``: facenet-pytorch's 2.6.0 wheel or a folder holding it, else ``weights/`` and its ``wheels/``;
    ``download`` fetches the wheel with ``pip download`` (:func:`~metaf2n_plugin.package_weights.locate_wheel`).
    ``min_face``: the smallest face side searched for, in pixels; ``thresholds``: the face probabilities P-Net,
    R-Net and O-Net require; ``factor``: the ratio of consecutive pyramid scales.
    """

    def __init__(self,
                 weights: Optional[PathLike] = None,
                 download: bool = False,
                 min_face: float = 20,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709,
                 device: Union[str, torch.device] = 'cpu') -> None:
        wheel = locate_wheel('facenet-pytorch', weights, download)
        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for net, name in ((self.pnet, 'pnet'), (self.rnet, 'rnet'), (self.onet, 'onet')):
            member = f'facenet_pytorch/data/{name}.pt'
            load_named(net, load_member_state(wheel, member), f'{wheel}:{member}', f'MTCNN {name}')
            net.to(self.device).eval()
        self.min_face = min_face
        self.thresholds = thresholds
        self.factor = factor

    @torch.no_grad()
    def __call__(self, image: np.ndarray, image_path: Optional[PathLike] = None) -> list[Face]:
        """:class:`Face` list of an ``(H, W, 3)`` float32 **RGB** image in [0, 1], best score first ([] without
        faces): ``(5, 2)`` float64 landmarks (:mod:`.alignment`'s order) and box ``(x0, y0, x1, y1)`` (its edges) in
        the image's pixels, score in [0, 1]. Boxes covering no pixel are dropped; ``image_path`` is unused."""
        height, width = image.shape[:2]
        pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None] * 255
        pixels = pixels.to(self.device)
        boxes = self._propose(pixels)
        if len(boxes):
            boxes = self._refine(pixels, boxes)
        if not len(boxes):
            return []
        boxes, scores, landmarks = self._output(pixels, boxes)
        box_array = boxes.cpu().double().numpy() - 0.5  # edges -> OpenCV's coordinates (pixel centres at integers)
        landmark_array = landmarks.cpu().double().numpy() - 0.5
        found = zip(landmark_array, box_array, scores.tolist())
        return [Face(points, box, score) for points, box, score in found if inside_image(box, width, height)]

    def _propose(self, pixels: torch.Tensor) -> torch.Tensor:
        """Stage 1, P-Net over the pyramid: ``(K, 4)`` square candidate boxes."""
        height, width = pixels.shape[-2:]
        box_parts, score_parts, offset_parts, level_parts = [], [], [], []
        for level, scale in enumerate(pyramid_scales(height, width, self.min_face, self.factor)):
            size = (math.ceil(height * scale), math.ceil(width * scale))
            prob, offset = self.pnet(_normalise(F.interpolate(pixels, size, mode='area')))
            rows, cols = torch.nonzero(prob[0] >= self.thresholds[0], as_tuple=True)
            corner = torch.stack([cols, rows], 1) * 2
            step = torch.tensor([width / size[1], height / size[0]], device=pixels.device)  # resized px -> image px
            box_parts.append(torch.cat([corner, corner + 12], 1) * step.repeat(2))
            score_parts.append(prob[0, rows, cols])
            offset_parts.append(offset[0, :, rows, cols].T)
            level_parts.append(torch.full_like(rows, level))
        if not box_parts:
            return pixels.new_zeros(0, 4)
        boxes, scores, offsets, levels = map(torch.cat, (box_parts, score_parts, offset_parts, level_parts))
        keep = batched_nms(boxes, scores, levels, 0.5)
        keep = keep[nms(boxes[keep], scores[keep], 0.7)]
        return square(regress(boxes[keep], offsets[keep]))

    def _refine(self, pixels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Stage 2, R-Net on 24 px crops: the ``(K, 4)`` boxes that pass, moved and squared."""
        scores, offsets = self.rnet(_crops(pixels, boxes, 24))
        passed = scores > self.thresholds[1]
        boxes, scores, offsets = boxes[passed], scores[passed], offsets[passed]
        keep = nms(boxes, scores, 0.7)
        return square(regress(boxes[keep], offsets[keep]))

    def _output(self, pixels: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 3, O-Net on 48 px crops: boxes ``(K, 4)``, scores ``(K,)`` and landmarks ``(K, 5, 2)`` of the
        faces that pass, best score first."""
        scores, offsets, points = self.onet(_crops(pixels, boxes, 48))
        passed = scores > self.thresholds[2]
        boxes, scores, offsets, points = boxes[passed], scores[passed], offsets[passed], points[passed]
        size = boxes[:, 2:] - boxes[:, :2]
        landmarks = boxes[:, None, :2] + points.reshape(-1, 2, 5).transpose(1, 2) * size[:, None]
        boxes = regress(boxes, offsets)
        keep = nms_min(boxes, scores, 0.7)
        return boxes[keep], scores[keep], landmarks[keep]
