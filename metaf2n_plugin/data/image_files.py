"""Listing and vetting the images of a dataset folder (plain, meta_info list or lmdb), before decoding."""
import os

from basicsr.data.data_util import paths_from_lmdb

from metaf2n_plugin.image_io import IMAGE_EXTENSIONS, images_in


def dataroot(opt, key, what):
    """``opt[key]``, a dataset's folder option; ``what`` says what it holds. KeyError naming the dataset if absent."""
    if opt.get(key) is None:
        raise KeyError(f'dataset {opt.get("name", "?")!r} ({opt.get("type", "?")}) needs option {key}: the folder of '
                       f'{what}')
    return opt[key]


def list_images(folder, meta_info=None, backend='disk', what='image'):
    """Sorted image paths (or lmdb keys) of ``folder`` (``*.lmdb`` for ``backend='lmdb'``); ``what`` names it in errors.

    ``meta_info``: BasicSR-style list of paths relative to ``folder`` (first space-separated field per line).
    FileNotFoundError: no folder or meta_info file. ValueError: no images, or an lmdb name without ``.lmdb``.
    """
    folder = os.fspath(folder)
    if backend == 'lmdb':
        if not folder.endswith('.lmdb'):
            raise ValueError(f'{what} lmdb {folder!r} must end with .lmdb')
        paths = paths_from_lmdb(folder)
    elif not os.path.isdir(folder):
        raise FileNotFoundError(f'{what} folder {folder!r} does not exist; check the path')
    elif meta_info is not None:
        with open(meta_info) as f:
            paths = [os.path.join(folder, line.split(' ')[0]) for line in map(str.strip, f) if line]
    else:
        paths = images_in(folder)
    if not paths:
        raise ValueError(f'{what} folder {folder!r} holds no images ({", ".join(IMAGE_EXTENSIONS)}); fill it or '
                         'fix the path')
    return sorted(paths)


SIGNATURES = {
    'PNG': (b'\x89PNG\r\n\x1a\n', ),
    'JPEG': (b'\xff\xd8\xff', ),
    'BMP': (b'BM', ),
    'TIFF': (b'II*\x00', b'MM\x00*'),
    'WebP': (b'RIFF', )
}


def check_headers(paths, what='image'):
    """ValueError naming every file that is unreadable, empty, or not headed like PNG, JPEG, BMP, TIFF or WebP.

    Reads 12 bytes a file; decoding errors are found later.
    """
    bad = []
    for path in paths:
        try:
            with open(path, 'rb') as f:
                head = f.read(12)
        except OSError as error:
            bad.append(f'{path}: {error.strerror or error}')
            continue
        if not head:
            bad.append(f'{path}: empty (0 bytes)')
        elif not any(head.startswith(sig) for sigs in SIGNATURES.values() for sig in sigs) or \
                (head.startswith(b'RIFF') and head[8:12] != b'WEBP'):
            bad.append(f'{path}: not a {", ".join(SIGNATURES)} file (starts with {head[:8]!r})')
    if bad:
        raise ValueError(f'{len(bad)} of {len(paths)} {what} files are unusable; replace or remove them:\n  ' +
                         '\n  '.join(bad))
