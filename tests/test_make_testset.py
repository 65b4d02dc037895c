"""The test-set builder: byte-identical for a seed, its meta.json remakes every LQ, presets, multi-face sets."""
import hashlib
import json
import os
import random
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from basicsr.utils import DiffJPEG

from metaf2n_plugin.data.degradation import DEGRADATION_DEFAULTS, apply_degradation, sample_degradation
from metaf2n_plugin.data.testset_builder import PRESETS, build_testset
from metaf2n_plugin.faces import face_template
from metaf2n_plugin.image_io import read_image
from conftest import REPO, load_script

SCRIPT = os.path.join(REPO, 'scripts', 'make_testset.py')


def write_rgb(path, rgb):
    cv2.imwrite(str(path), (np.clip(rgb, 0, 1)[:, :, ::-1] * 255).round().astype(np.uint8))


def dotted_face(size, seed):
    """A dark face-sized image with bright 5 x 5 dots at GPEN's template landmarks (an 'aligned face')."""
    image = np.random.default_rng(seed).uniform(0, 0.2, (size, size, 3))
    for x, y in np.round(face_template(size)).astype(int):
        image[y - 2:y + 3, x - 2:x + 3] = 1
    return image


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / 'inputs'
    folder.mkdir()
    write_rgb(folder / 'a.png', dotted_face(128, 0))
    write_rgb(folder / 'b.png', dotted_face(140, 1))  # resized to 128
    return folder


def files(folder):
    return {
        os.path.relpath(os.path.join(d, n), folder): open(os.path.join(d, n), 'rb').read()
        for d, _, names in os.walk(folder)
        for n in names
    }


def test_same_seed_gives_byte_identical_sets_and_a_bad_input_is_skipped(inputs, tmp_path):
    (inputs / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
    args = ['--input', str(inputs), '--preset', 'ood', '--gt-size', '128', '--seed', '3']
    proc = subprocess.run(
        [sys.executable, SCRIPT, *args, '--out', str(tmp_path / 'first')], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"skipped .*broken\.png: cannot read image", proc.stderr)
    assert '2 images written, 1 skipped' in proc.stdout
    assert load_script('make_testset').main([*args, '--out', str(tmp_path / 'second')
                                             ]) == 1  # in this process this time
    first, second = files(tmp_path / 'first'), files(tmp_path / 'second')
    assert sorted(first) == ['GT/a.png', 'GT/b.png', 'LQ/a.png', 'LQ/b.png', 'landmarks.json', 'meta.json']
    assert first == second
    assert not [n for n in os.listdir(tmp_path / 'first' / 'GT') if n.endswith('.tmp')]


def test_empty_input_folder_exits_2_naming_it(tmp_path, capsys):
    (tmp_path / 'empty').mkdir()
    assert load_script('make_testset').main(['--input', str(tmp_path / 'empty'), '--out', str(tmp_path / 'out')]) == 2
    assert re.search(r"input folder '.*empty' holds no images", capsys.readouterr().err)


def test_meta_json_seed_and_settings_remake_every_lq_file(inputs, tmp_path):
    out = tmp_path / 'set'
    report = build_testset(sorted(inputs.iterdir()), out, seed=0, gt_size=128, progress=False)
    assert report.written == ['a.png', 'b.png'] and report.skipped == []
    meta = json.loads((out / 'meta.json').read_text())
    assert meta['settings']['degradation_options'] == {**DEGRADATION_DEFAULTS}
    jpeger = DiffJPEG(differentiable=False)
    for name in report.written:
        seed = meta[name]['seed']
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        draw = sample_degradation(meta['settings']['degradation_options'], 1)
        assert meta[name]['degradation']['jpeg_quality2'] == draw['jpeg_quality2']
        assert meta[name]['degradation']['noise_level1'] == draw['noise_level1'].tolist()
        assert meta[name]['sources'] == [str(inputs / name)]
        gt = torch.from_numpy(read_image(out / 'GT' / name)).permute(2, 0, 1)[None]
        lq = apply_degradation(gt, draw, 4, jpeger)[0].permute(1, 2, 0).numpy()
        assert np.array_equal(np.round(lq * 255), np.round(read_image(out / 'LQ' / name) * 255))
    other = build_testset(sorted(inputs.iterdir()), tmp_path / 'other', seed=1, gt_size=128, progress=False)
    assert other.written == report.written
    assert (tmp_path / 'other' / 'GT' / 'a.png').read_bytes() == (out / 'GT' / 'a.png').read_bytes()
    assert (tmp_path / 'other' / 'LQ' / 'a.png').read_bytes() != (out / 'LQ' / 'a.png').read_bytes()


def test_building_a_set_leaves_the_global_random_state_as_it_was(inputs, tmp_path):
    before = random.getstate(), np.random.get_state(), torch.get_rng_state()
    build_testset(sorted(inputs.iterdir()), tmp_path / 'set', gt_size=128, progress=False)
    after = random.getstate(), np.random.get_state(), torch.get_rng_state()
    assert after[0] == before[0]
    assert np.array_equal(after[1][1], before[1][1]) and after[1][2:] == before[1][2:]  # key; position, Gaussian
    assert torch.equal(after[2], before[2])


def test_single_face_landmarks_follow_the_crop_and_resize_into_lq_pixels(inputs, tmp_path):
    build_testset(sorted(inputs.iterdir()), tmp_path / 'set', gt_size=128, progress=False)
    table = json.loads((tmp_path / 'set' / 'landmarks.json').read_text())
    expected = (face_template(128) - 1.5) / 4  # aligned inputs: the template, in LQ pixel centres
    (face, ) = table['a.png']['faces']  # 128 -> 128: exact
    np.testing.assert_allclose(face['landmarks'], expected, atol=1e-3)
    (face, ) = table['b.png']['faces']  # 140 resized to 128: GPEN's template scales
    np.testing.assert_allclose(face['landmarks'], expected, atol=0.02)  # about pixel edges, resizing about centres


def test_a_non_square_face_without_landmarks_is_refused_by_name(inputs, tmp_path):
    write_rgb(inputs / 'c.png', np.pad(dotted_face(140, 2), ((10, 10), (0, 0), (0, 0))))
    report = build_testset(sorted(inputs.iterdir()), tmp_path / 'set', gt_size=128, progress=False)
    assert report.written == ['a.png', 'b.png']
    ((source, reason), ) = report.skipped
    assert source.endswith('c.png') and 'is 140x160: without a landmarks JSON an input must be a square' in reason


def test_ood_preset_lies_past_the_training_ranges():
    ood = PRESETS['ood']
    assert ood['blur_sigma'][0] >= DEGRADATION_DEFAULTS['blur_sigma'][1] and ood['sinc_prob'] == 0
    assert ood['noise_range'][0] >= DEGRADATION_DEFAULTS['noise_range'][1] and ood['gaussian_noise_prob'] == 1
    for key in ('jpeg_range', 'jpeg_range2'):
        assert ood[key][1] <= DEGRADATION_DEFAULTS[key][0]
    np.random.seed(0)
    random.seed(0)
    draws = [sample_degradation(ood, 1) for _ in range(50)]
    assert all(d['noise1'] == 'gaussian' and d['noise_level1'].item() >= 30 for d in draws)
    assert all(d['jpeg_quality1'] <= 30 and d['jpeg_quality2'] <= 30 for d in draws)


def test_multi_face_set_pastes_2_to_4_faces_whose_landmarks_hit_their_dots(inputs, tmp_path):
    (tmp_path / 'bg').mkdir()
    write_rgb(tmp_path / 'bg' / 'gray.png', np.full((150, 200, 3), 0.5))
    for seed in range(2, 5):
        write_rgb(inputs / f'c{seed}.png', dotted_face(128, seed))
    report = build_testset(
        sorted(inputs.iterdir()),
        tmp_path / 'multi',
        gt_size=256,
        backgrounds=[tmp_path / 'bg' / 'gray.png'],
        num_images=3,
        progress=False)
    assert report.written == ['0000.png', '0001.png', '0002.png']
    table = json.loads((tmp_path / 'multi' / 'landmarks.json').read_text())
    counts = []
    for name in report.written:
        gt = read_image(tmp_path / 'multi' / 'GT' / name)
        faces = [np.array(face['landmarks']) * 4 + 1.5 for face in table[name]['faces']]  # back to GT pixels
        counts.append(len(faces))
        quadrants = {(int(f[2, 1] // 128), int(f[2, 0] // 128)) for f in faces}  # by the nose tip
        assert len(quadrants) == len(faces), 'two faces share a quadrant'
        for face in faces:
            x, y = np.round(face).astype(int).T
            assert gt[y, x].min() > 0.6, f'{name}: a landmark misses its dot'
    assert all(2 <= c <= 4 for c in counts)


def test_the_real_photo_set_records_where_each_photo_came_from_and_shrinks_its_faces(tmp_path):
    script = load_script('make_real_testset')
    folders = script.make_real_testset(str(tmp_path))
    assert [os.path.basename(f) for f in folders] == [f'Real_{p}_{s}' for p in ('iid', 'ood') for s in (128, 96, 64)]
    provenance = json.loads((tmp_path / 'provenance.json').read_text())
    for name, entry in provenance.items():
        with open(script.photo_file(name), 'rb') as f:
            assert entry['sha256'] == hashlib.sha256(f.read()).hexdigest()
        assert entry['file'].endswith(('astronaut.png', 'grace_hopper.jpg')) and entry['version']
    eyes = {}
    for folder in folders:
        table = json.loads(open(os.path.join(folder, 'landmarks.json')).read())
        side = int(folder.rsplit('_', 1)[1])
        for image, entry in table.items():
            assert read_image(os.path.join(folder, 'LQ', image)).shape == (side, side, 3)
            (left, right, *_), = (face['landmarks'] for face in entry['faces'])
            eyes[image, side] = np.hypot(right[0] - left[0], right[1] - left[1])
    for image in ('astronaut.png', 'grace_hopper.png'):  # the eye distance shrinks with the LQ side
        assert eyes[image, 128] == pytest.approx(eyes[image, 64] * 2, rel=1e-3)
