"""The tiny data set, and the paired face test dataset on it: items, face sources, errors, BasicSR's test runner."""
import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from basicsr.data import build_dataset

from metaf2n_plugin.data.task_degradation import TaskDegrader
from metaf2n_plugin.faces import FacePair, builtin_photo, write_pairs
from metaf2n_plugin.image_io import read_image, write_image
from conftest import REPO, run_python, task_options


@pytest.fixture(scope='module')
def workdir(tiny_workdir):
    """A working directory holding ``datasets/tiny``."""
    return tiny_workdir


@pytest.fixture(scope='module')
def test_set(workdir):
    return workdir / 'datasets' / 'tiny' / 'test' / 'Tiny_iid'


def paired(folder, **changes):
    opt = {
        'name': 'paired',
        'type': 'MetaF2NPairedFaceDataset',
        'phase': 'val',
        'scale': 4,
        'dataroot_lq': str(folder / 'LQ'),
        'dataroot_gt': str(folder / 'GT')
    }
    opt.update(changes)
    return build_dataset(opt)


def test_tiny_set_holds_faces_backgrounds_and_four_test_sets(workdir):
    root = workdir / 'datasets' / 'tiny'
    faces, backgrounds = sorted((root / 'faces').iterdir()), sorted((root / 'backgrounds').iterdir())
    assert len(faces) == 8 and {read_image(p).shape for p in faces} == {(256, 256, 3)}
    assert len(backgrounds) == 7 and {read_image(p).shape for p in backgrounds} == {(400, 400, 3)}
    held_out = sorted(p.name for p in (root / 'sources' / 'test_backgrounds').iterdir())
    assert held_out == ['grass.png', 'gravel.png', 'motorcycle_right.png', 'retina.png']
    for name, count in (('Tiny_iid', 2), ('Tiny_Multi_iid', 4), ('Tiny_ood', 2), ('Tiny_Multi_ood', 4)):
        assert len(list((root / 'test' / name / 'GT').iterdir())) == count
        assert read_image(root / 'test' / name / 'LQ' / sorted(os.listdir(root / 'test' / name / 'LQ'))[0]).shape \
            == (128, 128, 3)
        meta = json.loads((root / 'test' / name / 'meta.json').read_text())
        assert meta['settings']['preset'] == name.rsplit('_', 1)[1]
        if 'Multi' in name:  # the multi-face sets' backgrounds are never training backgrounds
            assert {os.path.basename(entry['sources'][0]) for key, entry in meta.items() if key != 'settings'} \
                == set(held_out)
    seeds = {
        json.loads((root / 'test' / name / 'meta.json').read_text())['settings']['seed']
        for name in ('Tiny_iid', 'Tiny_Multi_iid', 'Tiny_ood', 'Tiny_Multi_ood')
    }
    assert len(seeds) == 4  # every set draws its own degradations


def test_item_has_lq_gt_paths_and_landmarks_in_lq_pixels(test_set):
    dataset = paired(test_set, face_source={'type': 'landmarks', 'json_path': str(test_set / 'landmarks.json')})
    item = dataset[0]
    assert os.path.basename(item['lq_path']) == 'astronaut.png' and item['gt_path'].endswith('GT/astronaut.png')
    assert item['lq'].shape == (3, 128, 128) and item['gt'].shape == (3, 512, 512)
    assert item['lq'].dtype == torch.float32 and 0 <= item['lq'].min() and item['lq'].max() <= 1
    assert item['face_source'] == 'landmarks' and item['landmarks'].shape == (1, 5, 2)
    _, (face, ) = builtin_photo('astronaut')  # the 512 x 512 photo is the GT: LQ centre = (HQ centre - 1.5) / 4
    np.testing.assert_allclose(item['landmarks'][0].numpy(), (face.landmarks - 1.5) / 4, atol=1e-3)
    assert torch.equal(item['gt'], torch.from_numpy(read_image(test_set / 'GT' / 'astronaut.png')).permute(2, 0, 1))


def test_real_world_mode_has_no_gt_and_leaves_faces_to_the_model(test_set):
    item = paired(test_set, dataroot_gt=None)[1]
    assert 'gt' not in item and 'gt_path' not in item and 'landmarks' not in item
    assert item['face_source'] == 'retinaface' and item['lq'].shape == (3, 128, 128)


def test_pairs_face_source_returns_every_pair(test_set, tmp_path):
    rng = np.random.default_rng(0)
    pairs = [
        FacePair(rng.uniform(0, 1, (h, w, 3)), rng.uniform(0, 1, (4 * h, 4 * w, 3)), np.ones((4 * h, 4 * w), bool))
        for h, w in ((20, 18), (24, 24))
    ]
    write_pairs(tmp_path, 'grace_hopper', pairs)
    dataset = paired(test_set, face_source={'type': 'pairs', 'root': str(tmp_path)})
    item = dataset[1]
    assert item['face_source'] == 'pairs'
    assert [tuple(t.shape) for t in item['face_lq']] == [(3, 20, 18), (3, 24, 24)]
    assert [tuple(t.shape) for t in item['face_hq']] == [(3, 80, 72), (3, 96, 96)]
    assert [tuple(t.shape) for t in item['face_mask']] == [(1, 80, 72), (1, 96, 96)]
    assert item['face_mask'][0].min() == 1
    assert dataset[0]['face_lq'] == []  # astronaut has no pairs in that folder


def test_lq_gt_size_mismatch_names_both_files(test_set, tmp_path):
    shutil.copytree(test_set, tmp_path / 'set')
    write_image(tmp_path / 'set' / 'GT' / 'grace_hopper.png', np.zeros((500, 512, 3)))
    (tmp_path / 'set' / 'LQ' / 'astronaut.png').write_bytes(b'')
    with pytest.raises(
            ValueError,
            match=r"(?s)test set 'paired': 2 of 2 photos are unusable.*"
            r"astronaut\.png': the file is empty.*GT '.*GT/grace_hopper\.png' is 512x500, but LQ "
            r"'.*LQ/grace_hopper\.png' is 128x128: at scale 4 the GT must be 512x512"):
        paired(tmp_path / 'set')  # every bad photo, named when the set is built


def test_missing_gt_file_and_empty_lq_folder_are_named(test_set, tmp_path):
    shutil.copytree(test_set, tmp_path / 'set')
    os.remove(tmp_path / 'set' / 'GT' / 'astronaut.png')
    with pytest.raises(FileNotFoundError, match=r"LQ photo '.*astronaut\.png' has no GT '.*GT/astronaut\.png'"):
        paired(tmp_path / 'set')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match=r"LQ folder '.*empty' holds no images"):
        paired(tmp_path / 'set', dataroot_lq=str(tmp_path / 'empty'))


def test_unknown_face_source_and_pairs_without_root_are_refused(test_set):
    with pytest.raises(ValueError, match="unknown face_source type 'retina'"):
        paired(test_set, face_source='retina')
    with pytest.raises(ValueError, match='needs `root`'):
        paired(test_set, face_source={'type': 'pairs'})
    with pytest.raises(
            ValueError, match=r"face_source retinaface takes no options, got \['weights'\].*face_pairs.source"):
        paired(test_set, face_source={'type': 'retinaface', 'weights': 'weights'})
    assert paired(test_set, face_source='retinaface')[0]['face_source'] == 'retinaface'  # what omitting it means


def test_task_dataset_and_degrader_work_on_the_tiny_set_with_the_original_sizes(workdir):
    root = workdir / 'datasets' / 'tiny'
    dataset = build_dataset(task_options(root, name='tiny', patches_per_task=1))
    batch = torch.utils.data.default_collate([dataset[0]])
    tasks = TaskDegrader(scale=4)(batch)
    assert tasks.face_lq.shape == (1, 2, 3, 64, 64) and tasks.face_lq_patches.shape == (1, 2, 3, 32, 32)
    assert tasks.face_gt_patches.shape == (1, 2, 3, 128, 128)
    assert tasks.background_lq.shape == (1, 1, 3, 64, 64) and tasks.background_gt_usm.shape == (1, 1, 3, 256, 256)


@pytest.mark.e2e
def test_basicsr_test_runner_scores_paired_and_real_world_sets(workdir):
    run_python(
        '-m', 'basicsr.test', '-opt', os.path.join(REPO, 'options', 'test_paired_face_tiny_data.yml'), cwd=workdir)
    results = workdir / 'results' / 'tiny_paired_face_data'
    log = next(results.glob('test_tiny_paired_face_data_*.log')).read_text()
    scores = re.findall(r'Validation (\S+)\n\s+# niqe: ([0-9.]+)', log)
    assert [name for name, _ in scores] == ['Tiny_iid', 'Tiny_Multi_real_world']
    assert all(0 < float(value) < 100 for _, value in scores)
    saved = sorted(p.name for p in (results / 'visualization' / 'Tiny_iid').iterdir())
    assert saved == ['astronaut_tiny_paired_face_data.png', 'grace_hopper_tiny_paired_face_data.png']
    assert read_image(results / 'visualization' / 'Tiny_iid' / saved[0]).shape == (512, 512, 3)
