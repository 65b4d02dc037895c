"""scripts/results_table.py: a per-dataset table from a BasicSR test run's log.

A real ``python -m basicsr.test`` run of BasicSR's SRModel (a tiny, untrained SRVGGNetCompact) with PSNR,
SSIM, LPIPS and NIQE gives the plain table, whose numbers must be BasicSR's metrics of the saved images.
The adapted/unadapted layout is checked on a log written in BasicSR's format (the MetaF2N model that
will log ``<metric>_unadapted`` does not exist yet).
"""
import os
import shutil

import cv2
import numpy as np
import pytest
import yaml
from basicsr.metrics import calculate_niqe, calculate_psnr, calculate_ssim

from conftest import REPO, TINY_SRVGG, load_script, run_python, write_image_pairs

TABLE = load_script('results_table')
FIXTURE_LOG = os.path.join(REPO, 'tests', 'fixtures', 'metrics', 'test_metaf2n_tiny_20260102_100000.log')
NAME = 'tiny_metrics_srmodel'
DATASETS = ('set_a', 'set_b')


@pytest.fixture(scope='module')
def srmodel_run(tmp_path_factory):
    """``python -m basicsr.test`` on two 2-image datasets, then the table's ``main``; returns results/<name>."""
    cwd = tmp_path_factory.mktemp('table_run')
    for seed, dataset in enumerate(DATASETS):
        write_image_pairs(cwd / 'datasets' / dataset, count=2, size=192, seed=seed)  # NIQE needs 2x2 blocks of 96
    y_channel = {'crop_border': 0, 'test_y_channel': True}
    opt = {
        'name': NAME,
        'model_type': 'SRModel',
        'scale': 1,
        'num_gpu': 0,
        'manual_seed': 0,
        'datasets': {
            f'test_{i}': {
                'name': dataset,
                'type': 'PairedImageDataset',
                'io_backend': {
                    'type': 'disk'
                },
                'dataroot_gt': f'datasets/{dataset}/gt',
                'dataroot_lq': f'datasets/{dataset}/lq'
            }
            for i, dataset in enumerate(DATASETS)
        },
        'network_g': TINY_SRVGG,
        'path': {
            'pretrain_network_g': None
        },
        'val': {
            'save_img': True,
            'suffix': None,
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr',
                    **y_channel
                },
                'ssim': {
                    'type': 'calculate_ssim',
                    **y_channel
                },
                'niqe': {
                    'type': 'calculate_niqe',
                    'crop_border': 0,
                    'better': 'lower'
                },
                'lpips': {
                    'type': 'calculate_lpips',
                    'better': 'lower',
                    'random_weights': True
                }
            }
        }
    }
    with open(cwd / f'{NAME}.yml', 'w') as f:
        yaml.safe_dump(opt, f)
    run_python('-m', 'basicsr.test', '-opt', f'{NAME}.yml', cwd=cwd)
    TABLE.main([str(cwd / 'results' / NAME)])  # in this process: the README's blocks run the script itself
    return cwd / 'results' / NAME


def read_csv(path):
    rows = [line.split(',') for line in path.read_text().splitlines()]
    return rows[0], {row[0]: dict(zip(rows[0][1:], row[1:])) for row in rows[1:]}


def test_plain_srmodel_run_gives_one_row_per_dataset_without_unadapted_columns(srmodel_run):
    header, rows = read_csv(srmodel_run / 'metrics.csv')
    assert header == ['dataset', 'psnr', 'ssim', 'lpips', 'niqe']
    assert list(rows) == list(DATASETS)
    lines = (srmodel_run / 'metrics.md').read_text().splitlines()
    assert lines[0] == '| dataset | PSNR ↑ | SSIM ↑ | LPIPS ↓ | NIQE ↓ |'
    assert [line.split(' | ')[0] for line in lines[2:4]] == ['| set_a', '| set_b']
    assert lines[-1].startswith('From `test_tiny_metrics_srmodel_') and 'Δ' not in lines[-1]


def test_table_holds_basicsrs_psnr_ssim_niqe_of_the_saved_images(srmodel_run):
    _, rows = read_csv(srmodel_run / 'metrics.csv')
    cwd = srmodel_run.parent.parent
    for dataset in DATASETS:
        outputs = [cv2.imread(str(srmodel_run / 'visualization' / dataset / f'{i:03d}_{NAME}.png')) for i in range(2)]
        gts = [cv2.imread(str(cwd / 'datasets' / dataset / 'gt' / f'{i:03d}.png')) for i in range(2)]
        expected = {
            'psnr': np.mean([calculate_psnr(o, g, crop_border=0, test_y_channel=True) for o, g in zip(outputs, gts)]),
            'ssim': np.mean([calculate_ssim(o, g, crop_border=0, test_y_channel=True) for o, g in zip(outputs, gts)]),
            'niqe': np.mean([calculate_niqe(o, crop_border=0) for o in outputs])
        }
        for metric, value in expected.items():
            assert float(rows[dataset][metric]) == pytest.approx(value, abs=5.1e-5), (dataset, metric)
        assert 0 < float(rows[dataset]['lpips']) < 1
    md_row = (srmodel_run / 'metrics.md').read_text().splitlines()[2]
    assert md_row.startswith(f'| set_a | {float(rows["set_a"]["psnr"]):.2f} | {float(rows["set_a"]["ssim"]):.4f} |')


def test_unadapted_metrics_get_their_own_and_a_delta_column_from_the_newest_log(tmp_path):
    shutil.copy(FIXTURE_LOG, tmp_path)
    older = tmp_path / 'test_metaf2n_tiny_20251231_235959.log'
    older.write_text('2025-12-31 23:59:59,000 INFO: Validation older_run\n\t # psnr: 1.0000\n')
    (tmp_path / 'metrics.md').write_text('stale')
    TABLE.main([str(tmp_path)])  # in this process: the fixture above runs it as a command

    assert (tmp_path / 'metrics.csv').read_text() == (
        'dataset,psnr,psnr_unadapted,psnr_delta,ssim,ssim_unadapted,ssim_delta,lpips,lpips_unadapted,lpips_delta,'
        'fid,fid_unadapted,fid_delta,niqe,niqe_unadapted,niqe_delta\n'
        'CelebA_iid,25.7000,25.1000,0.6000,0.7123,0.7001,0.0122,0.2900,0.3125,-0.0225,'
        '45.2000,49.0100,-3.8100,4.1000,4.6000,-0.5000\n'
        'FFHQ_ood,25.3000,25.4500,-0.1500,,,,0.3000,0.3000,0.0000,,,,4.2000,,\n')
    assert (tmp_path / 'metrics.md').read_text() == (
        '| dataset | PSNR ↑ | PSNR unadapted | Δ PSNR | SSIM ↑ | SSIM unadapted | Δ SSIM | LPIPS ↓ | LPIPS unadapted '
        '| Δ LPIPS | FID ↓ | FID unadapted | Δ FID | NIQE ↓ | NIQE unadapted | Δ NIQE |\n'
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
        '| CelebA_iid | 25.70 | 25.10 | +0.60 | 0.7123 | 0.7001 | +0.0122 | 0.2900 | 0.3125 | -0.0225 '
        '| 45.20 | 49.01 | -3.81 | 4.10 | 4.60 | -0.50 |\n'
        '| FFHQ_ood | 25.30 | 25.45 | -0.15 | – | – | – | 0.3000 | 0.3000 | +0.0000 | – | – | – | 4.20 | – | – |\n'
        '\n'
        'Δ = adapted − unadapted. From `test_metaf2n_tiny_20260102_100000.log`.\n')
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith('.log')) == ['metrics.csv', 'metrics.md']

    TABLE.main([str(tmp_path), '--log', str(older)])
    assert (tmp_path / 'metrics.csv').read_text() == 'dataset,psnr\nolder_run,1.0000\n'


@pytest.mark.parametrize(
    'log_text, message', [
        (None, 'no test_*.log in'),
        ('2026-01-02 10:00:00,000 INFO: Testing set_a...\n', 'has no validation metrics: list them under val.metrics'),
    ],
    ids=['no log', 'log without metrics'])
def test_a_run_without_metrics_is_refused_with_what_to_do(tmp_path, capsys, log_text, message):
    if log_text is not None:
        (tmp_path / 'test_x_20260101_000000.log').write_text(log_text)
    with pytest.raises(SystemExit) as exit_:
        TABLE.main([str(tmp_path)])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / 'metrics.md').exists()
