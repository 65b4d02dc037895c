"""Pretrained weights files: where they are looked up, and downloaded only when the user allows.

One rule for every weights option (GPEN, RetinaFace, LPIPS's trunk, FID's Inception):

- given a file, or a folder that holds (or is to hold) the file under its official name: only that place;
- not given: ``weights/``, then ``experiments/pretrained_models/`` (BasicSR's habit), then
  ``<torch.hub.get_dir()>/checkpoints/`` (torch's download cache);
- ``download: true`` (``--download``) fetches a missing file from its URL into the given place, or else into
  torch's cache. Nothing is fetched otherwise, and nothing falls back to random weights.
"""
import os
import torch

SEARCH_FOLDERS = ('weights', os.path.join('experiments', 'pretrained_models'))
# the --help of the weights flags, the same in every CLI
WEIGHTS_HELP = 'default: looked up in weights/, experiments/pretrained_models/, the torch cache'
DOWNLOAD_HELP = 'download missing weights into the folder given, or else the torch cache (needs internet)'


def torch_cache():
    """``$TORCH_HOME/hub/checkpoints``, where torch (and downloads here) cache weights files."""
    return os.path.join(torch.hub.get_dir(), 'checkpoints')


def locate_weights(file_name, url, what, where=None, download=False, option='weights'):
    """Path of an existing weights file, downloaded into place first when allowed.

    Args:
        file_name: the official file name, e.g. ``'GPEN-BFR-512.pth'``.
        url: where the official file is published.
        what: what needs it, for errors, e.g. ``'GPEN (face restorer)'``.
        where: a file (``.pth``/``.pt``) or a folder; None searches the standard places (module docstring).
        download: fetch a missing file from ``url`` (BasicSR's ``load_file_from_url``).
        option: the option or flag that sets ``where``, named in errors.

    Raises:
        FileNotFoundError: missing and not (or not successfully) downloaded; names the file, URL and places.
    """
    if where is not None:
        where = os.fspath(where)
        is_file = os.path.isfile(where) or (not os.path.isdir(where) and where.endswith(('.pth', '.pt')))
        candidates = [where if is_file else os.path.join(where, file_name)]
        advice = (f'{file_name} not found at {candidates[0]!r} ({what}). Download it from {url} and put it at '
                  f'{candidates[0]!r}, or point `{option}` at the file')
    else:
        candidates = [os.path.join(folder, file_name) for folder in SEARCH_FOLDERS + (torch_cache(), )]
        folders = ', '.join(os.path.abspath(os.path.dirname(path)) for path in candidates)
        advice = (f'{file_name} not found in {folders} ({what}). Download it from {url} into one of them, or give '
                  f'its path as `{option}`')
    found = next((path for path in candidates if os.path.isfile(path)), None)
    if found is not None:
        return found
    if not download:
        raise FileNotFoundError(f'{advice}, or allow downloading it into {os.path.dirname(candidates[-1])} '
                                '(`download: true` / --download) when online.')
    from basicsr.utils.download_util import load_file_from_url
    target = os.path.abspath(candidates[-1])
    try:
        return load_file_from_url(url, model_dir=os.path.dirname(target), file_name=os.path.basename(target))
    except OSError as err:  # urllib's URLError is an OSError: offline, proxy, HTTP error
        raise FileNotFoundError(f'{advice}. Downloading it failed: {err}') from err
