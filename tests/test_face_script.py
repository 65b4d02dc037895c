"""scripts/extract_face_pairs.py on a folder with good, faceless and broken images."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from metaf2n_plugin.faces import builtin_photo
from metaf2n_plugin.faces.alignment import apply_affine, invert_affine, upscale_map
from metaf2n_plugin.image_io import read_image, write_image
from conftest import REPO, load_script

SCRIPT = os.path.join(REPO, 'scripts', 'extract_face_pairs.py')


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """LQ/ and GT/ (x4) with two real faces, one faceless image and one zero-byte file; their landmarks."""
    root = tmp_path_factory.mktemp('photos')
    os.makedirs(root / 'LQ')
    os.makedirs(root / 'GT')
    table = {'plain.png': {'faces': []}}
    for name in ('astronaut', 'grace_hopper'):
        gt, faces = builtin_photo(name)
        lq = cv2.resize(gt, (gt.shape[1] // 4, gt.shape[0] // 4), interpolation=cv2.INTER_AREA)
        write_image(root / 'GT' / f'{name}.png', gt)
        write_image(root / 'LQ' / f'{name}.png', lq)
        lq_landmarks = apply_affine(invert_affine(upscale_map(4)), faces[0].landmarks)
        table[f'{name}.png'] = {'faces': [{'landmarks': lq_landmarks.tolist()}]}
    write_image(root / 'GT' / 'plain.png', np.full((64, 64, 3), 0.5, np.float32))
    write_image(root / 'LQ' / 'plain.png', np.full((16, 16, 3), 0.5, np.float32))
    (root / 'LQ' / 'broken.png').write_bytes(b'')
    (root / 'landmarks.json').write_text(json.dumps(table))
    return root


def test_script_pairs_a_folder_and_reports_the_broken_image(photos, tmp_path):
    out = tmp_path / 'pairs'
    folders = ['--lq', photos / 'LQ', '--gt', photos / 'GT', '--out', out, '--landmarks', photos / 'landmarks.json']
    args = [str(arg) for arg in folders] + ['--source', 'landmarks', '--restorer', 'oracle', '--device', 'cpu']
    proc = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert '4 images, 2 faces, 1 images without faces, 1 failed: broken.png' in proc.stdout
    assert "skipped broken.png: cannot read image '" in proc.stderr and 'the file is empty' in proc.stderr
    assert 'face pairs: 100%' in proc.stderr  # the progress bar
    for folder in ('Face_LQ', 'Face_HQ', 'Face_Mask'):
        assert sorted(os.listdir(out / folder)) == ['astronaut_0.png', 'grace_hopper_0.png']
    record = json.loads((out / 'faces.json').read_text())
    assert sorted(record) == ['astronaut.png', 'grace_hopper.png', 'plain.png']
    (face, ) = record['astronaut.png']['faces']
    x0, y0, x1, y1 = face['crop']
    assert record['astronaut.png']['size'] == [128, 128] and record['astronaut.png']['scale'] == 4
    assert read_image(out / 'Face_LQ' / 'astronaut_0.png').shape == (y1 - y0, x1 - x0, 3)
    assert read_image(out / 'Face_HQ' / 'astronaut_0.png').shape == (4 * (y1 - y0), 4 * (x1 - x0), 3)

    # faces.json serves as landmarks for a second run, which reproduces the pairs.
    again = tmp_path / 'again'
    args[args.index(str(out))] = str(again)
    args[args.index(str(photos / 'landmarks.json'))] = str(out / 'faces.json')
    assert load_script('extract_face_pairs').main(args) == 1
    for name in ('astronaut_0.png', 'grace_hopper_0.png'):
        np.testing.assert_allclose(
            read_image(again / 'Face_HQ' / name), read_image(out / 'Face_HQ' / name), atol=1.01 / 255)
    assert not [
        n for folder in os.listdir(again) if os.path.isdir(again / folder)
        for n in os.listdir(again / folder) if n.startswith('.')
    ]  # no temporary files left


def test_script_refuses_missing_weights_and_an_oracle_without_gt(photos, tmp_path, capsys):
    script = load_script('extract_face_pairs')
    assert script.main(['--lq', str(photos / 'LQ'), '--out', str(tmp_path), '--detector-weights', str(tmp_path)]) == 2
    assert 'detection_Resnet50_Final.pth not found' in capsys.readouterr().err
    assert script.main([
        '--lq',
        str(photos / 'LQ'), '--out',
        str(tmp_path), '--landmarks',
        str(photos / 'landmarks.json'), '--restorer-weights',
        str(tmp_path)
    ]) == 2
    assert 'GPEN-BFR-512.pth not found' in capsys.readouterr().err
    assert script.main(['--lq', str(photos / 'LQ'), '--out', str(tmp_path), '--restorer', 'oracle']) == 2
    assert '--restorer oracle needs --gt' in capsys.readouterr().err
    assert script.main(['--lq', str(tmp_path), '--out', str(tmp_path)]) == 2
    assert 'no images' in capsys.readouterr().err


def test_mtcnn_finds_the_faces_from_facenet_pytorchs_wheel(photos, tmp_path, capsys):
    from metaf2n_plugin.package_weights import locate_wheel
    wheel = locate_wheel('facenet-pytorch', os.path.join(REPO, 'weights', 'wheels'), download=True)
    args = ['--lq', photos / 'LQ', '--gt', photos / 'GT', '--out', tmp_path, '--source', 'mtcnn']
    assert load_script('extract_face_pairs').main([str(a) for a in args] + ['--detector-weights', wheel]) == 1
    assert '4 images, 2 faces, 1 images without faces, 1 failed: broken.png' in capsys.readouterr().out
    found = json.loads((tmp_path / 'faces.json').read_text())
    given = json.loads((photos / 'landmarks.json').read_text())
    for name in ('astronaut.png', 'grace_hopper.png'):
        (face, ), (hand, ) = found[name]['faces'], given[name]['faces']
        error = np.linalg.norm(np.subtract(face['landmarks'], hand['landmarks']), axis=1).mean()
        assert error < 1.5, (name, error)  # LQ pixels: the full-size bounds of tests/test_mtcnn.py (1.5, 6 px) / 4
