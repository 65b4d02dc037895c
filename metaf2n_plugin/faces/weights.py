"""Finding a checkpoint on disk, downloading it only when the user allows."""
import os

DEFAULT_WEIGHTS_DIR = 'weights'


def locate_weights(weights, file_name, url, download=False):
    """Path of a checkpoint file, downloading it into place when allowed.

    Args:
        weights: the checkpoint file itself (a path ending in ``.pth``), or a folder that holds, or is to
            hold, it under ``file_name``.
        file_name: the official file name, e.g. ``'GPEN-BFR-512.pth'``.
        url: where the official file is published.
        download: fetch a missing file from ``url`` (BasicSR's ``load_file_from_url``) into the folder.

    Raises:
        FileNotFoundError: the file is missing and may not (or could not) be downloaded; the message names
            the file, the URL and where to put it.
    """
    weights = os.fspath(weights)
    is_file = os.path.isfile(weights) or (not os.path.isdir(weights) and weights.endswith(('.pth', '.pt')))
    path = weights if is_file else os.path.join(weights, file_name)
    if os.path.isfile(path):
        return path
    advice = (f'{file_name} not found at {path!r}. Download it from {url} and put it at {path!r} '
              '(or point the weights option at the file)')
    if not download:
        raise FileNotFoundError(f'{advice}, or allow downloading (download: true / --download) when online.')
    from basicsr.utils.download_util import load_file_from_url
    try:
        return load_file_from_url(url, model_dir=os.path.dirname(os.path.abspath(path)),
                                  file_name=os.path.basename(path))
    except OSError as err:  # urllib's URLError is an OSError: offline, proxy, HTTP error
        raise FileNotFoundError(f'{advice}. Downloading it failed: {err}') from err
