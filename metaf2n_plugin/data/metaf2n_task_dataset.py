"""MetaF2N's meta-training tasks: HQ faces and HQ natural crops that will share one random degradation."""
import cv2
import numpy as np
import torch
from basicsr.utils import FileClient, get_root_logger
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from metaf2n_plugin.data.degradation import degradation_options, sample_degradation
from metaf2n_plugin.data.image_files import check_headers, dataroot, list_images
from metaf2n_plugin.data.task_degradation import random_crops
from metaf2n_plugin.image_io import decode_image


@DATASET_REGISTRY.register()
class MetaF2NTaskDataset(data.Dataset):
    """One HQ task per item (docs/data.md); ``TaskDegrader`` degrades it on the device.

    Item ``i`` holds face ``i`` plus random other faces and backgrounds: an epoch (``len`` = faces) uses every face.

    Options (YAML keys; defaults are the original's)::

        dataroot_face: aligned HQ faces (e.g. FFHQ at 256); meta_info_face: optional list file
        dataroot_background: HQ natural images (e.g. DF2K cut to 400 x 400); meta_info_background: optional
        io_backend: {type: disk} or {type: lmdb} (both roots then end with .lmdb)
        scale: 4                      set by BasicSR from the options' top-level scale
        faces_per_task: 4, patches_per_task: 4
        face_size: 256                faces of another size are resized to it (cv2.INTER_AREA / INTER_CUBIC)
        face_patch_size: 128, background_patch_size: 256      HQ sides of the patches
        face_patch_tries: 6, face_patch_min_log_gradient: -6.0    candidates; the model keeps the first whose
                                      pseudo-GT patch has log(mean squared gradient) >= this, else the last
        background_size: 400          a random crop of this side from each background (smaller ones: error)
        use_hflip: true               one horizontal flip, drawn per task, for all of its images
        + every key of metaf2n_plugin.data.degradation.DEGRADATION_DEFAULTS (kernel_list, noise_range2, ...)

    Item (one task; BasicSR's loader adds a leading task dimension T)::

        face_gt:          (F, 3, face_size, face_size) float32 RGB in [0, 1]
        background_gt:    (P, 3, background_size, background_size) float32 RGB in [0, 1]
        face_crop_candidates: (F, face_patch_tries, 3) int64 (y, x, p) in LQ pixels, p = face_patch_size / scale
        face_patch_min_log_gradient: float
        background_crops: (P, 3) int64 (y, x, p) in LQ pixels, p = background_patch_size / scale
        degradation:      the draw for the F + P images (metaf2n_plugin.data.degradation); faces first
        face_paths, background_paths: the files, joined by newlines (a string collates into a list of T)

    Raises ValueError at build time for sizes not multiples of ``scale``, patches larger than their images, too
    few faces, and (all named at once) empty or non-image files. Images failing later are logged and redrawn;
    RuntimeError after 10 failures in a row.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.scale = opt.get('scale', 4)
        self.faces_per_task = opt.get('faces_per_task', 4)
        self.patches_per_task = opt.get('patches_per_task', 4)
        self.face_size = opt.get('face_size', 256)
        self.face_patch_size = opt.get('face_patch_size', 128)
        self.background_size = opt.get('background_size', 400)
        self.background_patch_size = opt.get('background_patch_size', 256)
        self.degradation = degradation_options(opt)
        for key in ('face_size', 'face_patch_size', 'background_size', 'background_patch_size'):
            if getattr(self, key) % self.scale:
                raise ValueError(f'{key} ({getattr(self, key)}) must be a multiple of the scale {self.scale}')
        if self.face_patch_size > self.face_size or self.background_patch_size > self.background_size:
            raise ValueError('face_patch_size and background_patch_size may not exceed face_size and '
                             'background_size')
        self.io_backend_opt = dict(opt.get('io_backend', {'type': 'disk'}))
        backend = self.io_backend_opt['type']
        self.face_paths = list_images(
            dataroot(opt, 'dataroot_face', 'aligned face images (e.g. FFHQ)'), opt.get('meta_info_face'), backend,
            'face')
        self.background_paths = list_images(
            dataroot(opt, 'dataroot_background', 'natural images (e.g. DF2K)'), opt.get('meta_info_background'),
            backend, 'background')
        if backend == 'disk':
            check_headers(self.face_paths, 'face')
            check_headers(self.background_paths, 'background')
        self.replacements = 0
        if len(self.face_paths) < self.faces_per_task:
            raise ValueError(f'face folder {opt["dataroot_face"]!r} has {len(self.face_paths)} images, fewer '
                             f'than faces_per_task ({self.faces_per_task})')
        if backend == 'lmdb':
            self.io_backend_opt['db_paths'] = [opt['dataroot_face'], opt['dataroot_background']]
            self.io_backend_opt['client_keys'] = ['face', 'background']
        self.file_client = None

    def __len__(self):
        return len(self.face_paths)

    def __getitem__(self, index):
        if self.file_client is None:
            opt = dict(self.io_backend_opt)
            self.file_client = FileClient(opt.pop('type'), **opt)
        others = np.random.choice(
            np.delete(np.arange(len(self.face_paths)), index), self.faces_per_task - 1, replace=False)
        faces, face_paths = zip(*(self._drawn(self._face, self.face_paths, i) for i in [index, *others]))
        backgrounds, background_paths = zip(
            *(self._drawn(self._background, self.background_paths, i)
              for i in np.random.randint(0, len(self.background_paths), self.patches_per_task)))
        faces, backgrounds = np.stack(faces), np.stack(backgrounds)
        if self.opt.get('use_hflip', True) and np.random.uniform() < 0.5:
            faces, backgrounds = faces[..., ::-1], backgrounds[..., ::-1]
        faces, backgrounds = np.ascontiguousarray(faces), np.ascontiguousarray(backgrounds)
        tries = self.opt.get('face_patch_tries', 6)
        face_crops = [random_crops(face, self.face_patch_size // self.scale, self.scale, tries) for face in faces]
        background_crops = [
            random_crops(bg, self.background_patch_size // self.scale, self.scale, 1) for bg in backgrounds
        ]
        return {
            'face_gt': torch.from_numpy(faces),
            'background_gt': torch.from_numpy(backgrounds),
            'face_crop_candidates': torch.stack(face_crops),
            'face_patch_min_log_gradient': float(self.opt.get('face_patch_min_log_gradient', -6.0)),
            'background_crops': torch.cat(background_crops),
            'degradation': sample_degradation(self.degradation,
                                              len(faces) + len(backgrounds)),
            'face_paths': '\n'.join(face_paths),
            'background_paths': '\n'.join(background_paths),
        }

    def _drawn(self, read, paths, index, tries=10):
        """``(read(paths[index]), path)``; an image that fails is logged by name and another one is drawn."""
        for _ in range(tries):
            try:
                return read(paths[index]), paths[index]
            except (OSError, ValueError) as error:
                self.replacements += 1
                get_root_logger().warning(f'{error}; drawing another image instead (replacement {self.replacements} '
                                          'of this data loader worker)')
                index = np.random.randint(len(paths))
        raise RuntimeError(f'{tries} images in a row failed to load (the last: {paths[index]!r}); check the data')

    def _read(self, path, key):
        return decode_image(self.file_client.get(path, key), path)

    def _face(self, path):
        """``(3, face_size, face_size)`` float32 RGB in [0, 1]."""
        image = self._read(path, 'face')
        height, width = image.shape[:2]
        if height != width:
            raise ValueError(f'face image {path!r} is {width}x{height}; faces must be square aligned crops '
                             f'(e.g. FFHQ), resized to face_size {self.face_size}')
        if height != self.face_size:
            shrink = height > self.face_size
            image = cv2.resize(
                image, (self.face_size, self.face_size),
                interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC).clip(0, 1)
        return image.transpose(2, 0, 1)

    def _background(self, path):
        """A random ``(3, background_size, background_size)`` crop, float32 RGB in [0, 1]."""
        image = self._read(path, 'background')
        height, width = image.shape[:2]
        size = self.background_size
        if height < size or width < size:
            raise ValueError(f'background image {path!r} is {width}x{height}, smaller than background_size '
                             f'{size}; remove it or lower background_size')
        top, left = np.random.randint(0, height - size + 1), np.random.randint(0, width - size + 1)
        return image[top:top + size, left:left + size].transpose(2, 0, 1)
