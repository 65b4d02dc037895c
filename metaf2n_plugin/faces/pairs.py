"""The face pair: what MetaF2N's inner step trains on."""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from metaf2n_plugin.faces.annotations import Face


@dataclass
class FacePair:
    """An LQ face crop and its pseudo ground truth at s times the size.

    Attributes:
        lq: ``(h, w, 3)`` float32 RGB in [0, 1], the LQ image at ``box``; hq: ``(s*h, s*w, 3)``, the same, the
            restored face warped back there.
        mask: ``(s*h, s*w)`` bool, True where ``hq`` comes from the restored face (train only there).
        face, box: the :class:`Face` and its integer half-open crop ``(x0, y0, x1, y1)`` in LQ pixels; None for
            pairs read from folders.
    """
    lq: np.ndarray
    hq: np.ndarray
    mask: np.ndarray
    face: Optional[Face] = None
    box: Optional[tuple[int, int, int, int]] = None
