"""What every command line of the project shares: its ``--help`` is its module docstring; metaf2n-infer and
metaf2n-app share the flags of the face pipeline's weights."""
import argparse
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
