"""Atomic writes: a file appears under its final name complete, or not at all.

Data goes to a temporary file beside it, is fsynced and renamed into place; a crash leaves the old file (or
none) plus at most a ``.<name>.*.tmp``.
"""
import contextlib
import glob
import json
import os
import tempfile

_UMASK = os.umask(0)  # the only way to read the process umask is to set it; restore it at once
os.umask(_UMASK)
_SUFFIX = '.tmp'


@contextlib.contextmanager
def atomic_file(path):
    """A binary file object that becomes ``path`` when the block ends, and is removed when it raises."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(
        dir=os.path.dirname(os.path.abspath(path)), prefix=f'.{os.path.basename(path)}.', suffix=_SUFFIX)
    try:
        with os.fdopen(fd, 'wb') as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def leftovers(folder):
    """The temporary files that writes into ``folder`` killed before their rename left behind."""
    return glob.glob(os.path.join(glob.escape(os.fspath(folder)), '.*' + _SUFFIX))


def write_atomically(path, data):
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically."""
    with atomic_file(path) as f:
        f.write(data.encode('utf-8') if isinstance(data, str) else data)


def write_json(path, obj):
    """Write a dict atomically as UTF-8 JSON, one top-level entry per line."""
    lines = [f'{json.dumps(key)}: {json.dumps(value)}' for key, value in obj.items()]
    write_atomically(path, '{\n' + ',\n'.join(lines) + '\n}\n')
