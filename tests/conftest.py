"""Shared helpers: run Python the way a user would, make tiny image folders, build the tiny data set once."""
import glob
import importlib.util
import logging
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.utils.registry import ARCH_REGISTRY

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def basicsr_log():
    """Records of BasicSR's logger (which the plugin logs to, and which may not propagate)."""
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = logging.getLogger('basicsr')
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def load_script(name):
    """``scripts/<name>.py`` imported as a module (so that a test can call its ``main``)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'scripts', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_options(cwd, name, **train_changes):
    """Copy ``options/<name>`` into ``cwd``, changing keys of its ``train`` section; returns the copy's path."""
    with open(os.path.join(REPO, 'options', name)) as f:
        opt = yaml.safe_load(f)
    opt.get('train', {}).update(train_changes)
    path = os.path.join(cwd, name.replace('.yml', ''.join(f'_{k}{v}' for k, v in train_changes.items()) + '.yml'))
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f)
    return path


def resume_training(cwd, name, total_iter):
    """``python -m basicsr.train --auto_resume`` in ``cwd`` with ``options/<name>`` continued to ``total_iter``."""
    run_python('-m', 'basicsr.train', '-opt', copy_options(cwd, name, total_iter=total_iter), '--auto_resume', cwd=cwd)


def newest_log(folder, prefix):
    """The text of the newest ``<prefix>_*.log`` in ``folder`` (BasicSR's logs carry a timestamp)."""
    logs = sorted(folder.glob(f'{prefix}_*.log'))
    assert logs, f'no {prefix} log in {folder}'
    return logs[-1].read_text()


def run_python(*args, cwd, env=None, timeout=600, python=sys.executable, check=True):
    """Run ``python *args`` in a fresh process (this interpreter by default); with ``check``, fail the test on error.

    The child gets no PYTHONPATH: whatever it sees of the plugin comes from the installation.
    """
    child_env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'METAF2N_NO_AUTOLOAD')}
    child_env.update(env or {})
    proc = subprocess.run([str(python), *args], cwd=cwd, env=child_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f'python {" ".join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}'
                    f'\n--- stderr\n{proc.stderr[-6000:]}')
    return proc


def doc_blocks():
    """The shell examples of README.md, then of docs/*.md in name order: ``[(file relative to the repository, the
    contents of one ```bash block)]``, each file's blocks in order."""
    pages = sorted(glob.glob(os.path.join(REPO, 'docs', '*.md')))
    blocks = []
    for name in ['README.md', *(os.path.relpath(page, REPO) for page in pages)]:
        with open(os.path.join(REPO, name), encoding='utf-8') as f:
            blocks += [(name, block) for block in re.findall(r'```bash\n(.*?)```', f.read(), re.S)]
    return blocks


def run_doc_block(containing, cwd, timeout=600):
    """Run the one bash block of README.md and docs/*.md that contains ``containing``, as written, with bash in
    ``cwd``.

    ``cwd`` stands for a fresh clone's root: it gets links to ``options/`` and ``scripts/``; this environment's
    ``bin`` comes first on PATH, as after ``source .venv/bin/activate``. Fails the test if the block fails.
    """
    ((name, block), ) = [(name, block) for name, block in doc_blocks() if containing in block]
    for folder in ('options', 'scripts'):
        if not os.path.exists(os.path.join(cwd, folder)):
            os.symlink(os.path.join(REPO, folder), os.path.join(cwd, folder))
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'METAF2N_NO_AUTOLOAD')}
    env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env['PATH']
    proc = subprocess.run(['bash', '-e', '-c', block],
                          cwd=cwd,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f'{name} block exited {proc.returncode}:\n{block}\n--- stdout\n{proc.stdout[-4000:]}'
                    f'\n--- stderr\n{proc.stderr[-4000:]}')
    return proc


TINY_SRVGG = dict(type='SRVGGNetCompact', num_feat=4, num_conv=1, upscale=1)  # network_g of the scale-1 pair tests
TINY_RRDB = dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=1, num_grow_ch=4)  # RRDBNet(**TINY_RRDB)


def tiny_rrdbnet(**changes):
    """network_g options of the tiny RRDBNet (:data:`TINY_RRDB`), with ``changes``."""
    return {'type': 'RRDBNet', **TINY_RRDB, **changes}


def task_options(root, **changes):
    """MetaF2NTaskDataset options reading ``root``/faces and ``root``/backgrounds (2 faces per task), changed."""
    options = dict(name='tasks', type='MetaF2NTaskDataset', phase='train', scale=4, io_backend={'type': 'disk'})
    options.update(dataroot_face=str(root / 'faces'), dataroot_background=str(root / 'backgrounds'), faces_per_task=2)
    return {**options, **changes}


def write_image_pairs(folder, count, size, seed=0):
    """``folder/gt`` and ``folder/lq`` with ``count`` PNGs of ``size``x``size``: smooth GT, noisy LQ (scale 1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for sub in ('gt', 'lq'):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    for i in range(count):
        phase = rng.uniform(0, 2 * np.pi, 3)
        gt = np.stack([0.5 + 0.4 * np.sin(6 * xx + 4 * yy + p) for p in phase], axis=-1)
        lq = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
        cv2.imwrite(os.path.join(folder, 'gt', f'{i:03d}.png'), (gt * 255).round().astype(np.uint8))
        cv2.imwrite(os.path.join(folder, 'lq', f'{i:03d}.png'), (lq * 255).round().astype(np.uint8))


@pytest.fixture(scope='session')
def tiny_workdir(tmp_path_factory):
    """A working directory holding the built-in tiny data set at ``datasets/tiny`` (made once per session).

    Tests may add their own outputs (results/, experiments/ under their own run names) but change no file in it.
    """
    from metaf2n_plugin.data.tiny_set import make_tiny_dataset

    cwd = tmp_path_factory.mktemp('tiny')
    make_tiny_dataset(cwd / 'datasets' / 'tiny')
    return cwd


class DropoutSRForTests(torch.nn.Module):
    """A x4 SR network that draws random numbers in training mode (like SwinIR's drop path)."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Dropout(0.3), torch.nn.Conv2d(8, 48, 3, padding=1),
            torch.nn.PixelShuffle(4))

    def forward(self, x):
        return self.body(x)


if 'DropoutSRForTests' not in ARCH_REGISTRY:
    ARCH_REGISTRY.register(DropoutSRForTests)  # network_g: {type: DropoutSRForTests}


@pytest.fixture
def float64():
    """float64 as torch's default dtype during the test."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
