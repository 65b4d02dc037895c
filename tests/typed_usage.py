"""Not a test module: code written as a user of the public API writes it, which `make lint` type-checks with mypy
(setup.cfg's ``files``), so that the front door's hints are proven on their callers' side too. Nothing runs it."""
import warnings

import numpy as np
import torch

from metaf2n_plugin import (FACE_SOURCES, AdaptationSettings, Face, MetaF2NError, PhotoReport, PhotoSuperResolver,
                            adapt_to_faces)


@FACE_SOURCES.register('typed_usage_example', detector=True)
class CornerFace:
    """A detector: one face at a fixed place, whatever the photo."""

    def __call__(self, image: np.ndarray, image_path: str = '') -> list[Face]:
        return [Face(np.array([[10.0, 10.0], [20.0, 10.0], [15.0, 15.0], [11.0, 20.0], [19.0, 20.0]]))]


def super_resolve(image: np.ndarray) -> tuple[np.ndarray, PhotoReport]:
    settings = AdaptationSettings(lr=0.005, steps=1)
    resolver = PhotoSuperResolver(
        'weights/RealESRGAN_x4plus.pth',
        'weights/x4plus_masknet_meta_net_mask.pth',
        faces={'type': 'mtcnn'},
        adaptation=settings.to_dict(),
        device='cpu',
        precision='fp32')
    try:
        return resolver.enhance(image, 'photo.png', plain=True)
    except MetaF2NError as error:
        raise SystemExit(error.describe({'model': '--model'})) from None


def one_step(net_g: torch.nn.Module, lq: torch.Tensor, hq: torch.Tensor) -> dict[str, torch.Tensor]:
    adapted = adapt_to_faces(net_g, None, lq, hq, AdaptationSettings(params='conv_last'))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        adapt_to_faces(net_g, None, lq, hq, lr=0.01)  # 0.1's keywords: still accepted until 0.3
    return dict(adapted)
