"""The face pair: what MetaF2N's inner step trains on."""
import numpy as np
from dataclasses import dataclass

from metaf2n_plugin.faces.annotations import Face


@dataclass
class FacePair:
    """An LQ face crop and its pseudo-ground truth at ``scale`` times the size.

    Attributes:
        lq: ``(h, w, 3)`` float32 RGB in [0, 1], the LQ image at ``box``.
        hq: ``(s*h, s*w, 3)`` float32 RGB in [0, 1], the restored face warped back, at the same place.
        mask: ``(s*h, s*w)`` bool, True where ``hq`` comes from the restored face (train only there).
        face: the face it was made from; None for pairs read from folders.
        box: ``(x0, y0, x1, y1)`` integer crop in LQ pixels, half-open; None for pairs read from folders.
    """
    lq: np.ndarray
    hq: np.ndarray
    mask: np.ndarray
    face: Face = None
    box: tuple = None
