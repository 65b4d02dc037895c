"""MetaF2N's test data: LQ photos with faces, their GT when there is one, and where their faces are."""
import os

import numpy as np
import torch
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from metaf2n_plugin.data.image_files import dataroot, list_images
from metaf2n_plugin.errors import OptionError, UnknownComponentError
from metaf2n_plugin.faces import LandmarkSource, PairFolderSource
from metaf2n_plugin.faces.registry import FACE_SOURCES
from metaf2n_plugin.image_io import read_image


@DATASET_REGISTRY.register()
class MetaF2NPairedFaceDataset(data.Dataset):
    """The degraded-face paired test set: LQ photos, optional GT, and a face source (docs/data.md).

    Options (YAML keys)::

        dataroot_lq: folder of LQ photos
        dataroot_gt: GT photos of the same names, s times larger; omit for real-world photos (no-reference metrics)
        scale: 4     set by BasicSR from the top-level scale
        face_source: a detector (retinaface, mtcnn or another registered one) or ~ (the default): the model
                     detects, with its face_pairs.source (which names the detector); the item has no face keys
                     {type: landmarks, json_path: ...}: 5 landmarks per face in LQ pixels; json_path omitted or ~:
                     an <image stem>.json sidecar per LQ photo
                     {type: pairs, root: <folder with Face_LQ/ and Face_HQ/>}: precomputed face pairs

    Item, float32 RGB in [0, 1] (the test loader adds a leading 1 to tensors, lists strings, lists K faces)::

        lq (3, h, w), lq_path; gt (3, s*h, s*w), gt_path only with dataroot_gt; face_source: the type
        landmarks (K, 5, 2) float32 (x, y) in LQ pixels, K >= 0          only for 'landmarks'
        face_lq, face_hq, face_mask: K (3, h_k, w_k), (3, s*h_k, s*w_k), (1, s*h_k, s*w_k) (1 = valid), 'pairs' only

    Raises FileNotFoundError (a missing folder, an LQ photo without its GT) and ValueError (empty folder, unknown
    face source; and, all named in one error at build time, unreadable images and LQ/GT sizes not ``scale`` apart).
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.scale = opt.get('scale', 4)
        self.lq_paths = list_images(dataroot(opt, 'dataroot_lq', 'the LQ photos'), what='LQ')
        self.gt_paths = None
        if opt.get('dataroot_gt') is not None:
            self.gt_paths = [os.path.join(opt['dataroot_gt'], os.path.basename(p)) for p in self.lq_paths]
            for lq_path, gt_path in zip(self.lq_paths, self.gt_paths):
                if not os.path.isfile(gt_path):
                    raise FileNotFoundError(f'LQ photo {lq_path!r} has no GT {gt_path!r}; GT files must have the '
                                            'same names as the LQ files (or omit dataroot_gt for real-world photos)')
        source = opt.get('face_source')
        source = {'type': source} if isinstance(source, str) else dict(source or {'type': 'retinaface'})
        self.face_source = source.pop('type', None)
        if self.face_source == 'landmarks':
            self.faces = LandmarkSource(source.get('json_path'))
        elif self.face_source == 'pairs':
            if not source.get('root'):
                raise ValueError('face_source {type: pairs} needs `root`: the folder that holds Face_LQ/ and Face_HQ/')
            self.faces = PairFolderSource(source['root'])
        elif self.face_source not in FACE_SOURCES.detectors():
            detectors = FACE_SOURCES.detectors()
            choices = ['landmarks', 'pairs', *detectors]
            raise UnknownComponentError(
                f'unknown face_source type {self.face_source!r}; choose one of {choices} ({" or ".join(detectors)}, '
                'the default retinaface: the model detects the faces)',
                option='face_source',
                value=self.face_source,
                kind='face source',
                name=self.face_source,
                choices=choices)
        elif source:
            raise OptionError(
                f'face_source {self.face_source} takes no options, got {sorted(source)}: the model detects the faces, '
                'so set the detector in the model options, face_pairs.source',
                option='face_source',
                value=dict(source))

        self._check_files()

    def _check_files(self):
        """Read every photo now (and its GT): all unusable files are named in one error, before any test runs."""
        bad = []
        for index in range(len(self.lq_paths)):
            try:
                self._images(index)
            except (OSError, ValueError) as error:
                bad.append(str(error))
        if bad:
            raise ValueError(f'test set {self.opt.get("name", "?")!r}: {len(bad)} of {len(self.lq_paths)} photos are '
                             'unusable; replace or remove them:\n  ' + '\n  '.join(bad))

    def _images(self, index):
        """``(lq, gt or None)`` of photo ``index``, their sizes checked."""
        lq_path = self.lq_paths[index]
        lq = read_image(lq_path)
        if self.gt_paths is None:
            return lq, None
        gt_path = self.gt_paths[index]
        gt = read_image(gt_path)
        (h, w), s = lq.shape[:2], self.scale
        if gt.shape[:2] != (s * h, s * w):
            raise ValueError(f'GT {gt_path!r} is {gt.shape[1]}x{gt.shape[0]}, but LQ {lq_path!r} is {w}x{h}: '
                             f'at scale {s} the GT must be {s * w}x{s * h}')
        return lq, gt

    def __len__(self):
        return len(self.lq_paths)

    def __getitem__(self, index):
        lq_path = self.lq_paths[index]
        lq, gt = self._images(index)
        item = {'lq': img2tensor(lq, bgr2rgb=False), 'lq_path': lq_path, 'face_source': self.face_source}
        if gt is not None:
            item.update(gt=img2tensor(gt, bgr2rgb=False), gt_path=self.gt_paths[index])
        if self.face_source == 'landmarks':
            faces = self.faces(lq, lq_path)
            landmarks = np.array([face.landmarks for face in faces], dtype=np.float32).reshape(-1, 5, 2)
            item['landmarks'] = torch.from_numpy(landmarks)
        elif self.face_source == 'pairs':
            pairs = self.faces.pairs(lq_path, self.scale)
            item['face_lq'] = [img2tensor(pair.lq, bgr2rgb=False) for pair in pairs]
            item['face_hq'] = [img2tensor(pair.hq, bgr2rgb=False) for pair in pairs]
            item['face_mask'] = [img2tensor(pair.mask[:, :, None].astype(np.float32), bgr2rgb=False) for pair in pairs]
        return item
