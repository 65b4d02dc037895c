"""Replaying a computation's random numbers (dropout, drop path), so that the graphs the meta-gradient recomputes
equal the first pass's, as ``torch.utils.checkpoint`` does."""
import contextlib

import torch


def rng_state(device):
    """The random state to replay a computation on ``device`` from: the CPU's and, on CUDA, the device's."""
    device = torch.device(device)
    cuda = torch.cuda.get_rng_state(device) if device.type == 'cuda' else None
    return torch.get_rng_state(), cuda


@contextlib.contextmanager
def replayed_rng(state, device):
    """Run the block with the random numbers of ``state`` (:func:`rng_state`); restore the random state after it."""
    device = torch.device(device)
    cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == 'cuda' else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield
