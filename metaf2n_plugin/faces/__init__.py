"""Face pairs for MetaF2N: find faces, align, restore, paste back at x scale (docs/face-pairs.md).

Package conventions: arrays are ``(H, W, 3)`` float32 RGB in [0, 1], tensors ``(N, 3, H, W)`` RGB in [0, 1]
(OpenCV's BGR stays in :mod:`~metaf2n_plugin.image_io` and :mod:`.detection`); points are ``(x, y)`` with
pixel centres at integers (OpenCV's convention).

    from metaf2n_plugin.faces import FacePairExtractor, sample_patches
    from metaf2n_plugin.image_io import read_image

    extractor = FacePairExtractor.from_options({'scale': 4, 'restorer': {'type': 'gpen'}})
    pairs = extractor(read_image('photo.png'), image_path='photo.png')
    batch = sample_patches(pairs, 4, 16, 64)  # 16 patches of 16x16 LR / 64x64 HR per face
"""
from metaf2n_plugin.faces.alignment import align_face, face_template, landmark_box, similarity_transform
from metaf2n_plugin.faces.annotations import Face, LandmarkSource, builtin_photo
from metaf2n_plugin.faces.detection import RetinaFaceDetector
from metaf2n_plugin.faces.extractor import FacePairExtractor
from metaf2n_plugin.faces.mtcnn import MTCNNDetector
from metaf2n_plugin.faces.pair_folders import PairFolderSource, write_pairs
from metaf2n_plugin.faces.pairs import FacePair
from metaf2n_plugin.faces.paste_back import paste_back
from metaf2n_plugin.faces.patches import PatchBatch, sample_patches
from metaf2n_plugin.faces.registry import FACE_SOURCES, RESTORERS, ComponentRegistry, detector_choices
from metaf2n_plugin.faces.restoration import GPENRestorer, IdentityRestorer, OracleRestorer

__all__ = [
    'FACE_SOURCES', 'RESTORERS', 'ComponentRegistry', 'Face', 'FacePair', 'FacePairExtractor', 'GPENRestorer',
    'IdentityRestorer', 'LandmarkSource', 'MTCNNDetector', 'OracleRestorer', 'PairFolderSource', 'PatchBatch',
    'RetinaFaceDetector', 'align_face', 'builtin_photo', 'detector_choices', 'face_template', 'landmark_box',
    'paste_back', 'sample_patches', 'similarity_transform', 'write_pairs'
]
