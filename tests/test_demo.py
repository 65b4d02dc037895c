"""`make demo`, shortened: the same script and options files, 2 training iterations instead of 200."""
import csv
import re

import cv2
import numpy as np
import pytest
import yaml

from conftest import REPO, run_python, run_readme_block

SETS = ('Tiny_iid', 'Tiny_Multi_iid', 'Tiny_ood', 'Tiny_Multi_ood')


@pytest.fixture(scope='module')
def first_and_second_run(tiny_workdir):
    script = f'{REPO}/scripts/demo.py'
    first = run_python(script, '--total-iter', '2', cwd=tiny_workdir, timeout=900)
    second = run_python(script, '--total-iter', '2', cwd=tiny_workdir, timeout=900)
    return tiny_workdir, first, second


@pytest.mark.e2e
def test_demo_trains_tests_and_prints_the_table_and_where_everything_is(first_and_second_run):
    cwd, first, _ = first_and_second_run
    out = first.stdout
    assert "the 'oracle' face restorer" in out and 'LPIPS and FID are not reported' in out
    assert 'Start training from epoch: 0, iter: 0' in first.stderr and 'End of training' in first.stderr  # BasicSR logs
    models = cwd / 'experiments' / 'demo_metaf2n' / 'models'
    assert (models / 'net_g_latest.pth').is_file() and (models / 'net_mask_latest.pth').is_file()
    table = out.split('== MetaF2N demo')[1]
    for name in SETS:
        row = re.search(rf'^\| {name} \| ([0-9.]+) \| ([0-9.]+) \| ([+-][0-9.]+) \|', table, re.M)
        assert row, name
        adapted, unadapted, delta = map(float, row.groups())
        assert delta == pytest.approx(adapted - unadapted, abs=0.011)
        assert len(list((cwd / 'results' / 'demo_metaf2n_test' / 'side_by_side' / name).glob('*.png'))) \
            == len(list((cwd / 'datasets' / 'tiny' / 'test' / name / 'LQ').iterdir()))
    with open(cwd / 'results' / 'demo_metaf2n_test' / 'metrics.csv', newline='') as f:
        deltas = [float(row['psnr_delta']) for row in csv.DictReader(f)]
    assert f'Adaptation raised PSNR-Y on {sum(d > 0 for d in deltas)} of 4 test sets; mean change ' \
        f'{sum(deltas) / 4:+.2f} dB.' in out
    assert 'tensorboard --logdir tb_logger/demo_metaf2n' in out
    assert list((cwd / 'tb_logger' / 'demo_metaf2n').glob('events.out.tfevents.*'))


@pytest.mark.e2e
def test_a_second_demo_reuses_the_data_the_weights_and_the_results(first_and_second_run):
    _, first, second = first_and_second_run
    for step in ('1/5 data', '2/5 meta-training', '3/5 test'):
        assert f'== {step}: skipped' in second.stdout, step
    assert 'Start training' not in second.stderr and 'Validation' not in second.stderr

    def summary(proc):
        return proc.stdout.split('== MetaF2N demo')[1].split('Done in')[0]

    assert summary(first) == summary(second)


@pytest.mark.e2e
def test_the_readmes_metaf2n_infer_example_writes_the_demo_tests_images(first_and_second_run):
    cwd = first_and_second_run[0]
    proc = run_readme_block('metaf2n-infer datasets/tiny/', cwd)
    test_set = cwd / 'datasets' / 'tiny' / 'test' / 'Tiny_Multi_ood'
    with open(test_set / 'landmarks.json') as f:
        faces = sum(len(entry['faces']) for entry in yaml.safe_load(f).values())
    assert f'4 of 4 photos super-resolved into results/infer_demo: {faces} faces used, 0 photos without' in proc.stdout
    tested = cwd / 'results' / 'demo_metaf2n_test' / 'visualization' / 'Tiny_Multi_ood'
    for lq in sorted((test_set / 'LQ').iterdir()):
        ours = cv2.imread(str(cwd / 'results' / 'infer_demo' / f'{lq.stem}_metaf2n.png')).astype(int)
        assert np.abs(ours - cv2.imread(str(tested / f'{lq.stem}_demo.png'))).max() <= 1  # NHWC vs NCHW rounding
        assert (cwd / 'results' / 'infer_demo' / f'{lq.stem}_side_by_side.png').is_file()


def test_demo_options_test_the_network_that_they_train():
    with open(f'{REPO}/options/demo_train.yml') as f:
        train = yaml.safe_load(f)
    with open(f'{REPO}/options/demo_test.yml') as f:
        test = yaml.safe_load(f)
    assert test['network_g'] == train['network_g'] and test['network_mask'] == train['network_mask']
    assert test['adaptation']['lr'] == train['adaptation']['lr']
    assert test['path']['pretrain_network_g'] == f'experiments/{train["name"]}/models/net_g_latest.pth'
    assert train['face_restorer'] == 'oracle' and test['face_pairs']['restorer']['type'] == 'oracle'
    assert train['train']['ssg_opt']['type'] == 'SSGLoss' and train['network_d']
    assert [d['name'] for d in test['datasets'].values()] == list(SETS)
