"""What every command line of the project shares: its ``--help`` is its module docstring; metaf2n-infer and
metaf2n-app share the flags of the face pipeline's weights."""
import argparse
import os
from typing import Optional

from metaf2n_plugin.faces.restoration import GPEN_RELEASES
from metaf2n_plugin.weights import DOWNLOAD_HELP, WEIGHTS_HELP


def parser_from_doc(doc: str, prog: Optional[str] = None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` whose description is the first paragraph of ``doc`` and whose epilog is the rest,
    kept as written (examples stay on their lines)."""
    description, _, epilog = doc.strip().partition('\n\n')
    return argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog or None, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_face_weights_arguments(group: argparse._ArgumentGroup) -> None:
    """``--restorer-weights``, ``--restorer-size``, ``--detector-weights`` and ``--download``, into ``group``."""
    group.add_argument('--restorer-weights', help=f'GPEN-BFR-<size>.pth, or its folder ({WEIGHTS_HELP})')
    group.add_argument(
        '--restorer-size',
        type=int,
        default=512,
        choices=sorted(GPEN_RELEASES),
        help='GPEN-BFR-512 (MetaF2N at test time) or the lighter GPEN-BFR-256; with a ground truth, the size faces '
        'are aligned at')
    group.add_argument(
        '--detector-weights',
        help=f'RetinaFace: detection_Resnet50_Final.pth, or its folder ({WEIGHTS_HELP}); MTCNN: the '
        'facenet-pytorch 2.6.0 wheel or its folder (default: weights/, weights/wheels/)')
    group.add_argument('--download', action='store_true', help=DOWNLOAD_HELP)


def check_output_folder(folder: str, flag: str) -> None:
    """OSError naming ``flag`` and the fix when ``folder`` is a file, or when it does not exist and cannot be created
    (its nearest existing parent is not a writable folder). Nothing is created: a run whose other arguments are wrong
    leaves no empty folder behind."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = 'is a file' if existing == os.path.abspath(folder) else f'lies under the file {existing!r}'
        raise NotADirectoryError(f'output folder {folder!r} {what}; choose a folder with {flag}')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f'output folder {folder!r} cannot be written ({existing!r} is not writable); choose '
                              f'another with {flag}')
