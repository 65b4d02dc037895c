"""MetaF2N's test data: LQ photos with faces, their GT when there is one, and where their faces are."""
import numpy as np
import os
import torch
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from metaf2n_plugin.data.image_files import dataroot, list_images
from metaf2n_plugin.faces import LandmarkSource, PairFolderSource
from metaf2n_plugin.image_io import read_image

FACE_SOURCES = ('retinaface', 'landmarks', 'pairs')  # the extractor's source types (faces.extractor)


@DATASET_REGISTRY.register()
class MetaF2NPairedFaceDataset(data.Dataset):
    """The degraded-face paired dataset: LQ photos, optional GT, and a face source.

    Options (YAML keys)::

        dataroot_lq: folder of LQ photos
        dataroot_gt: folder of GT photos with the same file names, s times larger; omit it for real-world
                     photos (no GT: only no-reference metrics such as NIQE make sense)
        scale: 4             set by BasicSR from the options' top-level scale
        face_source: retinaface  (or ~) the model's detector finds the faces (no face keys in the item)
        face_source: {type: landmarks, json_path: <dataroot_lq>/../landmarks.json}
                             5 landmarks per face in LQ pixels (metaf2n_plugin.faces.annotations); json_path
                             omitted or ~ -> a sidecar <image stem>.json next to each LQ photo
        face_source: {type: pairs, root: <folder with Face_LQ/ and Face_HQ/>}
                             precomputed face pairs (metaf2n_plugin.faces.pair_folders)

    Item (BasicSR's test loader uses batch size 1: it adds a leading 1 to every tensor, turns strings into
    lists of one string and the face lists into lists of K ``(1, ...)`` tensors)::

        lq:          (3, h, w) float32 RGB in [0, 1]
        lq_path:     str
        gt:          (3, s*h, s*w) float32 RGB in [0, 1]       only with dataroot_gt
        gt_path:     str                                       only with dataroot_gt
        face_source: 'retinaface' | 'landmarks' | 'pairs'
        landmarks:   (K, 5, 2) float32 (x, y) in LQ pixels, K >= 0 faces        only for 'landmarks'
        face_lq:     list of K (3, h_k, w_k) LQ face crops                      only for 'pairs'
        face_hq:     list of K (3, s*h_k, s*w_k) pseudo ground truths           only for 'pairs'
        face_mask:   list of K (1, s*h_k, s*w_k) float32, 1 where face_hq is valid  only for 'pairs'

    Images are read like BasicSR reads them (grayscale replicated, alpha dropped, 16-bit reduced to 8-bit).

    Raises:
        FileNotFoundError: a missing folder, or an LQ photo without its GT file (named).
        ValueError: an empty folder, an unknown face source type, or, all named in one error when the dataset is
            built, unreadable images and LQ/GT pairs whose sizes are not exactly ``scale`` apart.
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
        elif self.face_source != 'retinaface':
            raise ValueError(f'unknown face_source type {self.face_source!r}; choose one of {FACE_SOURCES} '
                             '(retinaface, the default: the model detects the faces)')

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
