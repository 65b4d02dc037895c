"""Every workaround for BasicSR 1.4.2 on today's PyTorch and torchvision, in one place.

Each fix names the upstream report it answers and acts only where it is needed, so that it can be
deleted the day BasicSR releases a fix. :func:`apply` runs them; ``metaf2n_plugin/__init__.py`` calls
it before anything else touches ``basicsr``.

1. ``import basicsr`` fails on torchvision >= 0.17, which removed
   ``torchvision.transforms.functional_tensor`` (BasicSR #663; fixed on master, never released).
   Fix: alias the module to its new private name, only when the old name is missing.
2. ``python -m basicsr.train|test`` root every output (experiments/, results/, tb_logger/,
   visualization) at the parent folder of the ``basicsr`` package, i.e. inside site-packages for a
   pip-installed BasicSR, while ``--auto_resume`` looks in ``./experiments`` (upstream PR #595 made the
   roots configurable on master, never released). Fix: ``python -m basicsr.train|test`` call
   BasicSR's own pipeline with the working directory as root, as Real-ESRGAN's ``train.py`` does with
   its project folder. Started from a BasicSR source tree, the result is the same as before.
3. ``--auto_resume`` (and ``path.resume_state``) map the training state onto CUDA unconditionally
   (``basicsr/train.py: load_resume_state``), so resuming fails on a machine without CUDA even with
   ``num_gpu: 0`` (no upstream report found). Fix: :func:`load_resume_state` loads onto the model's
   device. It passes ``weights_only=True`` explicitly, which torch >= 2.6 also defaults to: BasicSR's
   training states (optimizer and scheduler state dicts, the milestones in a ``collections.Counter``)
   and network checkpoints (tensors only) load that way since torch allow-listed ``Counter``
   (pytorch #98921), so BasicSR's ``load_network`` needs no fix (``tests/test_compat.py`` checks both).
4. BasicSR's FID Inception (``basicsr/archs/inception.py: fid_inception_v3``) takes no weights path: it
   reads ``./experiments/pretrained_models/pt_inception-2015-12-05-6726825d.pth`` with ``torch.load``'s
   default unpickling, or else downloads the file (no upstream report found). Fix:
   :func:`build_fid_inception` builds BasicSR's ``InceptionV3`` around a state dict that the caller
   found and loaded with ``weights_only=True``; applied per call, nothing else changes.
5. ``--launcher pytorch`` (``basicsr/utils/dist_util.py: init_dist``) always sets a CUDA device and uses NCCL, so
   distributed training cannot run on CPUs (no upstream report found). Fix: :func:`init_dist` leaves the backend
   to torch (gloo for CPU tensors, and NCCL for CUDA tensors where CUDA exists), so that ``num_gpu: 0`` works on
   any machine, and sets the CUDA device from ``LOCAL_RANK`` (torchrun's) only when there is one.
6. ``BaseModel.load_network`` (every ``path.pretrain_network_*``) fails on a file that is not a checkpoint of
   the network with errors that do not name the file: ``UnpicklingError`` / ``EOFError`` for text or empty
   files, ``KeyError`` for a missing ``param_key``, a page of missing keys for another network's weights (no
   upstream report found). Fix: :func:`load_network` checks the file first (``weights_only=True``) and raises a
   ``ValueError`` naming the file, what it holds and the network, then lets BasicSR load it.
7. BasicSR's ``calculate_fid`` calls ``scipy.linalg.sqrtm(..., disp=False)``; SciPy deprecated ``disp`` in 1.16
   and removes it in 1.18, so FID breaks on a fresh install (no upstream report found). Fix: from SciPy 1.16
   on, ``basicsr.metrics.fid`` sees a ``linalg`` whose ``sqrtm`` takes ``disp=False`` and returns
   ``(root, error estimate)`` as before, computing the root without ``disp``.
8. ``BaseModel.save_network`` and ``save_training_state`` write checkpoints in place with ``torch.save``: a run
   killed while saving leaves a truncated ``net_g_<iter>.pth`` or ``<iter>.state`` under its final name, and
   ``--auto_resume`` then fails on it (no upstream report found). Fix: ``basicsr.models.base_model`` sees a
   ``torch`` whose ``save`` writes to a temporary file and renames it into place
   (:func:`~metaf2n_plugin.atomic_write.atomic_file`); :func:`load_resume_state` falls back, with a warning, to
   the newest training state that loads, and removes the temporary files a killed save left.
"""
import contextlib
import glob
import importlib
import importlib.util
import os
import sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

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
    """Fix 1 (BasicSR #663)."""
    old_name = 'torchvision.transforms.functional_tensor'
    if old_name not in sys.modules and importlib.util.find_spec(old_name) is None:
        sys.modules[old_name] = importlib.import_module('torchvision.transforms._functional_tensor')


class RunInWorkingDirectory:
    """Fix 2 (BasicSR PR #595): the loader ``python -m basicsr.train|test`` gets its code from.

    Everything but :meth:`get_code` is BasicSR's own loader, so importing ``basicsr.train`` as a
    module is unchanged; only the script that ``runpy`` executes as ``__main__`` becomes
    ``<pipeline>(os.getcwd())``.
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
    """Fixes 3 and 8: ``basicsr.train.load_resume_state`` that works without CUDA and, with ``--auto_resume``,
    takes the newest training state that loads (an unreadable one is named in a warning).

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
        for leftover in glob.glob(os.path.join(glob.escape(folder), '.*.tmp')):
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
    """Fix 5: ``basicsr.utils.dist_util.init_dist`` for ``--launcher pytorch`` on CUDA or on CPUs (gloo).

    ``slurm`` is left to BasicSR (CUDA only).
    """
    from basicsr.utils import dist_util

    if launcher != 'pytorch':
        return dist_util.init_dist(launcher, backend or 'nccl', **kwargs)
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', os.environ['RANK'])) % torch.cuda.device_count())
    dist.init_process_group(backend=backend, **kwargs)  # None: gloo for CPU tensors, NCCL for CUDA ones


def build_fid_inception(output_block, state_dict):
    """Fix 4: BasicSR's ``InceptionV3([output_block])`` (FID variant, RGB in [0, 1]) with ``state_dict``."""
    from basicsr.archs import inception

    saved = inception.LOCAL_FID_WEIGHTS, inception.load_url
    inception.LOCAL_FID_WEIGHTS, inception.load_url = '', lambda *args, **kwargs: state_dict
    try:
        return inception.InceptionV3([output_block], resize_input=True, normalize_input=True)
    finally:
        inception.LOCAL_FID_WEIGHTS, inception.load_url = saved


def load_network(self, net, load_path, strict=True, param_key='params'):
    """Fix 6: ``BaseModel.load_network`` that names the file when it is not a checkpoint of ``net``."""
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
    """Fix 7: ``scipy.linalg`` for ``basicsr.metrics.fid``, whose ``sqrtm`` accepts the removed ``disp``."""

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
    """Fix 8: ``torch`` as ``basicsr.models.base_model`` sees it, with ``save`` to a path made atomic."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def save(obj, f, *args, **kwargs):
        from metaf2n_plugin.atomic_write import atomic_file

        if not isinstance(f, (str, os.PathLike)):
            return torch.save(obj, f, *args, **kwargs)
        with atomic_file(f) as file:
            torch.save(obj, file, *args, **kwargs)
