"""Pretrained weights files: the lookup rule of every weights option (GPEN, RetinaFace, LPIPS, FID's Inception).

- Given a file, or a folder holding (or to hold) the file under its official name: only that place.
- Not given: ``weights/``, then ``experiments/pretrained_models/``, then ``<torch.hub.get_dir()>/checkpoints/``.
- ``download: true`` (``--download``) fetches a missing file from its URL into the given place, else torch's
  cache. Nothing is fetched otherwise, and nothing falls back to random weights.
"""
import os

import torch

from metaf2n_plugin.errors import WeightsNotFoundError
from metaf2n_plugin.names import WEIGHTS_DIR

SEARCH_FOLDERS = (WEIGHTS_DIR, os.path.join('experiments', 'pretrained_models'))
# the --help of the weights flags, the same in every CLI
WEIGHTS_HELP = 'default: looked up in weights/, experiments/pretrained_models/, the torch cache'
DOWNLOAD_HELP = 'download missing weights into the folder given, or else the torch cache (needs internet)'


def torch_cache():
    """``$TORCH_HOME/hub/checkpoints``, where torch (and downloads here) cache weights files."""
    return os.path.join(torch.hub.get_dir(), 'checkpoints')


def locate_weights(file_name, url, what, where=None, download=False, option='`weights`'):
    """Path of the weights file ``file_name`` by the module's rule, fetched from ``url`` first when ``download``.

    ``where`` is a file (``.pth``/``.pt``), a folder or None; ``what`` (e.g. ``'GPEN (face restorer)'``) and
    ``option`` (what sets ``where``) are named in the :class:`~metaf2n_plugin.errors.WeightsNotFoundError` raised
    when the file is missing and not downloaded (or the download failed), with the URL and the places looked in; it
    carries them as ``file_name``, ``url`` and ``places``.
    """
    if where is not None:
        where = os.fspath(where)
        is_file = os.path.isfile(where) or (not os.path.isdir(where) and where.endswith(('.pth', '.pt')))
        candidates = [where if is_file else os.path.join(where, file_name)]
        advice = (f'{file_name} not found at {candidates[0]!r} ({what}). Download it from {url} and put it at '
                  f'{candidates[0]!r}, or point {option} at the file')
    else:
        candidates = [os.path.join(folder, file_name) for folder in SEARCH_FOLDERS + (torch_cache(), )]
        folders = ', '.join(os.path.abspath(os.path.dirname(path)) for path in candidates)
        advice = (f'{file_name} not found in {folders} ({what}). Download it from {url} into one of them, or give '
                  f'its path as {option}')
    found = next((path for path in candidates if os.path.isfile(path)), None)
    if found is not None:
        return found
    target = os.path.abspath(candidates[-1])
    data = dict(missing={what: candidates[0]}, file_name=file_name, url=url, places=candidates)
    if not download:
        raise WeightsNotFoundError(
            f'{advice}, or allow downloading it into {os.path.dirname(target)} (`download: true` / --download) when '
            'online.', **data)
    from basicsr.utils.download_util import load_file_from_url
    try:
        return load_file_from_url(url, model_dir=os.path.dirname(target), file_name=os.path.basename(target))
    except OSError as err:  # urllib's URLError is an OSError: offline, proxy, HTTP error
        raise WeightsNotFoundError(f'{advice}. Downloading it failed: {err}', **data) from err
