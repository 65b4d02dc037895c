"""scripts/side_by_side.py: LQ | unadapted | adapted | GT panels with face boxes, bad images skipped."""
import json
import os

import cv2
import numpy as np

from conftest import REPO, run_python

SCRIPT = os.path.join(REPO, 'scripts', 'side_by_side.py')
LABEL = 24  # LABEL_HEIGHT of the script


def flat(value, size):
    return np.full((size, size, 3), value, np.uint8)


def test_panels_in_order_with_boxes_and_bad_images_skipped(tmp_path):
    lq, gt, vis = tmp_path / 'LQ', tmp_path / 'GT', tmp_path / 'results' / 'run' / 'visualization' / 'set'
    for folder in (lq, gt, vis):
        folder.mkdir(parents=True)
    cv2.imwrite(str(lq / 'a.png'), flat(10, 16))
    cv2.imwrite(str(gt / 'a.png'), flat(200, 64))
    cv2.imwrite(str(vis / 'a_run.png'), flat(150, 64))
    cv2.imwrite(str(vis / 'a_run_unadapted.png'), flat(90, 64))
    cv2.imwrite(str(vis / 'a_b_run.png'), flat(30, 64))  # another image whose stem starts with 'a_'
    (lq / 'broken.png').write_bytes(b'')  # a zero-byte LQ image whose output exists
    cv2.imwrite(str(vis / 'broken_run.png'), flat(150, 64))
    (tmp_path / 'faces.json').write_text(
        json.dumps({
            'a.png': {
                'faces': [{
                    'landmarks': [[5, 6], [10, 6], [8, 8], [6, 11], [10, 11]],
                    'box': [2, 3, 13, 14]
                }]
            },
            'broken.png': {
                'faces': []
            }
        }))
    proc = run_python(
        SCRIPT,
        str(vis),
        '--lq',
        str(lq),
        '--gt',
        str(gt),
        '--landmarks',
        str(tmp_path / 'faces.json'),
        cwd=tmp_path,
        check=False)
    assert proc.returncode == 1 and '1 side-by-side images' in proc.stdout and '1 failed: broken.png' in proc.stdout
    assert 'broken.png' in proc.stderr and 'empty' in proc.stderr

    out = cv2.imread(str(tmp_path / 'results' / 'run' / 'side_by_side' / 'set' / 'a.png'))
    assert out.shape == (64 + LABEL, 4 * 64, 3)
    inside = [out[LABEL + 40, 64 * i + 40, 0] for i in range(4)]  # below the box, away from the labels
    assert inside == [10, 90, 150, 200]  # LQ | unadapted | adapted | GT
    # The LQ box (2, 3)-(13, 14) at x4 is drawn green on every panel.
    for i in range(4):
        assert tuple(out[LABEL + 12 + 20, 64 * i + 8]) == (0, 255, 0)
