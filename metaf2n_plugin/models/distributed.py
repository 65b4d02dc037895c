"""The torch.distributed steps MetaF2NModel takes instead of DistributedDataParallel (why:
docs/metaf2n.md, Distributed). Without an initialised process group they act on one process."""
from collections import OrderedDict

import numpy as np
import torch
import torch.distributed as dist


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def broadcast_from_rank0(tensors):
    """Overwrite every tensor (weights, buffers) with rank 0's, in place."""
    if is_distributed():
        for tensor in tensors:
            dist.broadcast(tensor, src=0)


def average_gradients(params, count):
    """Turn each ``.grad``, summed over this rank's ``count`` tasks, into the mean over all ranks' tasks.

    A parameter no rank has a gradient for keeps ``grad = None``. Returns False when no rank had a task."""
    params = list(params)
    if is_distributed():
        device = params[0].device
        grads = [p.grad.flatten() if p.grad is not None else torch.zeros(p.numel(), device=device) for p in params]
        flags = torch.tensor([p.grad is not None for p in params] + [count], dtype=grads[0].dtype, device=device)
        flat = torch.cat(grads + [flags])
        dist.all_reduce(flat)
        summed, flags = flat[:-len(flags)].split([p.numel() for p in params]), flat[-len(flags):]
        count = int(flags[-1].item())
        for p, grad, has_grad in zip(params, summed, flags[:-1].tolist()):
            p.grad = grad.view_as(p) if has_grad else None
    if count == 0:
        return False
    for p in params:
        if p.grad is not None:
            p.grad.div_(count)
    return True


def mean_log(logs):
    """``{term: mean}`` over a list of per-task ``{term: scalar}`` of every rank; terms may differ between tasks."""
    logs = [{key: float(value) for key, value in log.items()} for log in logs]
    if is_distributed():
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, logs)
        logs = [log for rank in gathered for log in rank]
    keys = dict.fromkeys(key for log in logs for key in log)
    return OrderedDict((key, float(np.mean([log[key] for log in logs if key in log]))) for key in keys)
