"""The held-out split: the folds' training and test people are disjoint, each person is tested once, a photo's
files do not depend on who else is in, and options or folds that put one person on both sides are refused."""
import filecmp
import os

import pytest
import yaml
from basicsr.models import build_model

from metaf2n_plugin.data.people import FOLDS, PEOPLE, check_disjoint, fold_photos, people_of
from metaf2n_plugin.data.tiny_set import make_tiny_dataset
from conftest import REPO, load_script


@pytest.fixture(scope='module')
def folds(tmp_path_factory):
    root = tmp_path_factory.mktemp('heldout')
    load_script('make_heldout_folds').main(['--root', str(root)])
    return root


def test_each_fold_trains_and_tests_on_disjoint_people_and_each_person_is_tested_once(folds):
    tested = []
    for fold in FOLDS:
        train = people_of(folds / fold / 'train' / 'faces')
        test = people_of(folds / fold / 'test' / 'Real_iid_128' / 'LQ')
        faces = os.listdir(folds / fold / 'train' / 'faces')
        assert train and test and not set(train) & set(test)
        assert {name.split('_', 1)[1].rsplit('_', 1)[0] for name in faces} == set(train)  # face_<photo>_<j>.png
        assert os.listdir(folds / fold / 'test' / 'Real_ood_64' / 'LQ') == [f'{fold}.png']
        tested += test
    assert sorted(tested) == sorted(PEOPLE)


def test_a_held_out_photo_is_degraded_as_in_the_whole_set_and_its_faces_are_the_same(folds, tmp_path):
    whole = tmp_path / 'whole'
    load_script('make_real_testset').make_real_testset(str(whole))
    make_tiny_dataset(whole / 'tiny')
    for fold in FOLDS:
        for kind in ('LQ', 'GT'):
            assert filecmp.cmp(
                folds / fold / 'test' / 'Real_iid_96' / kind / f'{fold}.png',
                whole / 'Real_iid_96' / kind / f'{fold}.png',
                shallow=False)
        for face in os.listdir(folds / fold / 'train' / 'faces'):
            assert filecmp.cmp(folds / fold / 'train' / 'faces' / face, whole / 'tiny' / 'faces' / face, shallow=False)


def test_a_split_with_one_person_on_both_sides_is_refused_by_name():
    assert fold_photos('astronaut') == (('grace_hopper', ), ('astronaut', ))
    with pytest.raises(ValueError, match='the split puts Grace Hopper both in training and in testing'):
        check_disjoint(('astronaut', 'grace_hopper'), ('grace_hopper', ))
    with pytest.raises(ValueError, match=r"unknown built-in photo\(s\) \['einstein'\]"):
        fold_photos('einstein')


def test_training_options_that_validate_on_a_training_person_are_refused(folds):
    with open(os.path.join(REPO, 'options', 'train_x4plus_masknet.yml')) as f:
        opt = yaml.safe_load(f)
    opt = yaml.safe_load(yaml.safe_dump(opt).replace('datasets/heldout', str(folds)))
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1)
    opt['network_g'].update(num_feat=8, num_block=1, num_grow_ch=4)
    opt['path']['pretrain_network_g'] = None
    val = opt['datasets']['val_1']
    val['dataroot_lq'] = val['dataroot_lq'].replace('astronaut/test', 'grace_hopper/test')  # grace: a training face
    with pytest.raises(
            ValueError,
            match=r'datasets.val_1 \(Real_iid_128\) puts Grace Hopper both in training.*'
            r'or set val.held_out: false'):
        build_model(opt)
    opt['val']['held_out'] = False  # said out loud: validation on a training person, to watch, not to measure
    assert build_model(opt).net_mask is not None
