"""Drawing from the global random generators with a seed of one's own, leaving the caller's state as it was.

BasicSR's kernels (``random_mixed_kernels``) and noise (``add_gaussian_noise_pt``) draw from ``numpy.random`` and
torch's global generator and take no generator argument, so a local ``numpy.random.Generator`` cannot stand in."""
import contextlib
import random

import numpy as np
import torch


@contextlib.contextmanager
def seeded_globally(seed):
    """Run the block with ``random``, ``numpy.random`` and torch's CPU generator seeded with ``seed``; then give
    them back the states they had (the CUDA generators are neither seeded nor touched)."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
