"""MetaF2N for BasicSR. Importing it applies the BasicSR fixes (``compat``) and registers the plugin's classes
in BasicSR's registries; BasicSR's runners import it on their own (docs/basicsr.md).

The public API (``__all__``), for photos and for adaptation in your own code (docs/photos.md)::

    from metaf2n_plugin import PhotoSuperResolver, AdaptationSettings

    resolver = PhotoSuperResolver('weights/RealESRGAN_x4plus.pth', 'weights/x4plus_masknet_meta_net_mask.pth',
                                  faces='mtcnn', adaptation={'steps': 1})
    output, report = resolver.enhance(image, 'photo.png')  # (H, W, 3) RGB in [0, 1] -> (4H, 4W, 3), PhotoReport

Face sources and restorers are registered by name in ``FACE_SOURCES`` and ``RESTORERS`` (docs/design.md).
"""
from metaf2n_plugin import compat

compat.apply()  # must run before the registries below import basicsr

from metaf2n_plugin import archs, data, losses, metrics, models  # noqa: F401  (registers classes)
from metaf2n_plugin.errors import (MetaF2NError, OptionError, PhotoError, PhotoSizeError, UnknownComponentError,
                                   WeightsFileError, WeightsNotFoundError)
from metaf2n_plugin.faces import (FACE_SOURCES, RESTORERS, Face, FacePair, FacePairExtractor, GPENRestorer,
                                  IdentityRestorer, LandmarkSource, MTCNNDetector, OracleRestorer, PairFolderSource,
                                  RetinaFaceDetector)
from metaf2n_plugin.models.adaptation import AdaptationSettings, AdaptedParameters, adapt_to_faces, adapt_to_photo
from metaf2n_plugin.models.meta_gradient import task_meta_gradient
from metaf2n_plugin.photo_super_resolver import PhotoReport, PhotoSuperResolver

__version__ = '0.2.0'

__all__ = [
    # photos
    'PhotoSuperResolver',
    'PhotoReport',
    'AdaptationSettings',
    # the adaptation step and the meta-gradient, for your own loops
    'adapt_to_faces',
    'adapt_to_photo',
    'task_meta_gradient',
    'AdaptedParameters',
    # face sources, restorers and their registries
    'FACE_SOURCES',
    'RESTORERS',
    'Face',
    'FacePair',
    'FacePairExtractor',
    'RetinaFaceDetector',
    'MTCNNDetector',
    'LandmarkSource',
    'PairFolderSource',
    'GPENRestorer',
    'OracleRestorer',
    'IdentityRestorer',
    # errors
    'MetaF2NError',
    'OptionError',
    'UnknownComponentError',
    'PhotoError',
    'PhotoSizeError',
    'WeightsFileError',
    'WeightsNotFoundError'
]
