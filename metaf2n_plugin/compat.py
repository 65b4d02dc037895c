"""Every workaround for BasicSR 1.4.2 on today's PyTorch and torchvision (and one for torchrun's restarts), each
acting only where needed.

:func:`apply` runs them; ``metaf2n_plugin/__init__.py`` calls it before anything else touches ``basicsr``.
What each fixes and why: docs/basicsr.md (numbered as the fixes here).
"""
import contextlib
import importlib
import importlib.util
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metaf2n_plugin.atomic_write import atomic_file, leftovers

RUNNERS = {'basicsr.train': 'train_pipeline', 'basicsr.test': 'test_pipeline'}


def apply():
    """Apply every fix; call before the first ``import basicsr`` of the process."""
    _alias_functional_tensor()
    import basicsr.test
    import basicsr.train
    for module_name, pipeline in RUNNERS.items():
        spec = sys.modules[module_name].__spec__
        if not isinstance(spec.loader, RunInWorkingDirectory):
            spec.loader = RunInWorkingDirectory(spec.loader, pipeline)
    basicsr.train.load_resume_state = load_resume_state
    import basicsr.utils.options
    basicsr.utils.options.init_dist = init_dist
    from basicsr.models import base_model
    if base_model.BaseModel.load_network is not load_network:
        load_network.basicsr = base_model.BaseModel.load_network
        base_model.BaseModel.load_network = load_network
    if not isinstance(base_model.torch, TorchWithAtomicSave):
        base_model.torch = TorchWithAtomicSave()
    import basicsr.metrics.fid
    import scipy
    if tuple(int(part) for part in scipy.__version__.split('.')[:2]) >= (1, 16):
        basicsr.metrics.fid.linalg = SqrtmWithoutDisp()


def _alias_functional_tensor():
    """Fix 1: alias ``torchvision.transforms.functional_tensor``, removed in torchvision 0.17 (BasicSR #663)."""
    old_name = 'torchvision.transforms.functional_tensor'
    if old_name not in sys.modules and importlib.util.find_spec(old_name) is None:
        sys.modules[old_name] = importlib.import_module('torchvision.transforms._functional_tensor')


class RunInWorkingDirectory:
    """Fix 2: ``python -m basicsr.train|test`` rooted at the working directory (BasicSR PR #595).

    BasicSR's loader but for :meth:`get_code`: only the ``__main__`` script becomes ``<pipeline>(os.getcwd())``.
    """

    def __init__(self, loader, pipeline):
        self._loader = loader
        self._pipeline = pipeline

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def get_code(self, fullname):
        source = f'import os\nfrom {fullname} import {self._pipeline}\n{self._pipeline}(os.getcwd())\n'
        return compile(source, f'<{fullname} rooted at the working directory (metaf2n_plugin.compat)>', 'exec')


def load_resume_state(opt):
    """Fixes 3 and 8: ``load_resume_state`` without CUDA; ``--auto_resume`` takes the newest state that loads,
    naming unreadable ones in a warning. No upstream report found; ``weights_only=True`` works since pytorch #98921.

    Args:
        opt (dict): parsed BasicSR options; reads ``auto_resume``, ``num_gpu`` and ``path``.

    Returns:
        dict | None: the training state (``epoch``, ``iter``, ``optimizers``, ``schedulers``), or None
        for a fresh start. Sets ``opt['path']['resume_state']`` like BasicSR does.

    Raises:
        ValueError: an explicit ``path.resume_state`` that does not load, naming it.
    """
    from basicsr.utils import get_root_logger, scandir

    from metaf2n_plugin.checkpoints import read_checkpoint

    device = torch.device('cuda', torch.cuda.current_device()) if opt['num_gpu'] != 0 else torch.device('cpu')
    path = opt['path'].get('resume_state')
    if not opt['auto_resume']:
        return None if path is None else _resumed(opt, read_checkpoint(path, 'training state', map_location=device))
    state_dir = opt['path']['training_states']
    for folder in filter(None, (state_dir, opt['path'].get('models'))):  # what a killed save left behind
        for leftover in leftovers(folder):
            with contextlib.suppress(OSError):
                os.remove(leftover)
    states = sorted(
        int(name[:-len('.state')])
        for name in (scandir(state_dir, suffix='.state', recursive=False) if os.path.isdir(state_dir) else ()))
    for iteration in reversed(states):  # the newest state that loads
        opt['path']['resume_state'] = os.path.join(state_dir, f'{iteration}.state')
        try:
            return _resumed(opt, read_checkpoint(opt['path']['resume_state'], 'training state', map_location=device))
        except ValueError as error:
            get_root_logger().warning(f'{error}; resuming from an older state')
    opt['path']['resume_state'] = None
    return None


def _resumed(opt, state):
    from basicsr.utils import check_resume

    check_resume(opt, state['iter'])
    return state


def init_dist(launcher, backend=None, **kwargs):
    """Fix 5: ``init_dist`` for ``--launcher pytorch`` on CUDA or CPUs (no upstream report found); ``slurm`` is
    left to BasicSR (CUDA only)."""
    from basicsr.utils import dist_util

    if launcher != 'pytorch':
        return dist_util.init_dist(launcher, backend or 'nccl', **kwargs)
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', os.environ['RANK'])) % torch.cuda.device_count())
    init_process_group(backend, **kwargs)  # None: gloo for CPU tensors, NCCL for CUDA ones


def init_process_group(backend=None, **kwargs):
    """Fix 9: join torchrun's process group (``env://``) with store keys of this restart's own. Torchrun keeps one
    store across ``--max-restarts``, so a restarted group read the addresses its killed predecessor had left there,
    then failed to connect or hung (pytorch/pytorch#135712)."""
    store, rank, world = next(dist.rendezvous('env://'))
    attempt = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')
    dist.init_process_group(
        backend, store=dist.PrefixStore(f'attempt{attempt}', store), rank=rank, world_size=world, **kwargs)


def build_fid_inception(output_block, state_dict):
    """Fix 4: BasicSR's ``InceptionV3([output_block])`` (FID variant, RGB in [0, 1]) with ``state_dict``.

    BasicSR's own takes no weights path (no upstream report found).
    """
    from basicsr.archs import inception

    saved = inception.LOCAL_FID_WEIGHTS, inception.load_url
    inception.LOCAL_FID_WEIGHTS, inception.load_url = '', lambda *args, **kwargs: state_dict
    try:
        return inception.InceptionV3([output_block], resize_input=True, normalize_input=True)
    finally:
        inception.LOCAL_FID_WEIGHTS, inception.load_url = saved


def load_network(self, net, load_path, strict=True, param_key='params'):
    """Fix 6: ``BaseModel.load_network`` raising a ``ValueError`` naming the file when it is not a checkpoint of
    ``net`` (no upstream report found)."""
    from metaf2n_plugin.checkpoints import mismatch, read_checkpoint, state_dict_of

    checkpoint = read_checkpoint(load_path, 'weights file')
    if param_key is not None:
        if not isinstance(checkpoint, dict) or not ({param_key, 'params'} & set(checkpoint)):
            found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise ValueError(f'weights file {load_path!r} has no {param_key!r} (nor \'params\') entry; it holds '
                             f'{found}. Set param_key_* to the key that holds the state dict, or ~ for the file '
                             'itself')
        checkpoint = checkpoint[param_key if param_key in checkpoint else 'params']
    state_dict_of(checkpoint, load_path, 'weights file')
    try:
        load_network.basicsr(self, net, load_path, strict, param_key)
    except RuntimeError as error:
        raise mismatch(error, load_path, type(self.get_bare_model(net)).__name__) from None


class SqrtmWithoutDisp:
    """Fix 7: ``scipy.linalg`` whose ``sqrtm`` accepts ``disp``, removed in SciPy 1.18 (no upstream report found)."""

    def __getattr__(self, name):
        from scipy import linalg
        return getattr(linalg, name)

    @staticmethod
    def sqrtm(matrix, disp=True, **kwargs):
        """``disp=False``: ``(root, ||root @ root - matrix||_F / ||matrix||_F)``, as SciPy < 1.18 returned."""
        import numpy as np
        from scipy import linalg

        root = linalg.sqrtm(matrix, **kwargs)
        if disp:
            return root
        return root, np.linalg.norm(root @ root - matrix, 'fro') / np.linalg.norm(matrix, 'fro')


class TorchWithAtomicSave:
    """Fix 8: ``basicsr.models.base_model``'s ``torch``, its ``save`` to a path atomic (no upstream report found)."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def save(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return torch.save(obj, f, *args, **kwargs)
        with atomic_file(f) as file:
            torch.save(obj, file, *args, **kwargs)
