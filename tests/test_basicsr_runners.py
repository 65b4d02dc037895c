"""BasicSR's own runners drive a plugin architecture: train, auto-resume and test, all on the CPU.

``python -m basicsr.train|test`` are started as a user would, in a temporary working directory, with
no PYTHONPATH: the start-up hook must load the plugin, and the compat fixes must keep every output in
that directory and let ``--auto_resume`` continue from a CPU checkpoint.
"""
import os
import re

import basicsr
import pytest
import yaml

from conftest import run_python, write_image_pairs

NAME = 'tiny_gpen_sr'
OUTPUT_DIRS = ('experiments', 'results', 'tb_logger')
BASICSR_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(basicsr.__file__)))
GPEN_TINY = {'type': 'GPEN', 'size': 64, 'style_dim': 32, 'n_mlp': 2, 'channel_multiplier': 1, 'narrow': 0.125}


def paired_set(name, root, phase):
    opt = {'name': name, 'type': 'PairedImageDataset', 'dataroot_gt': f'{root}/gt', 'dataroot_lq': f'{root}/lq',
           'io_backend': {'type': 'disk'}}
    if phase == 'train':
        opt.update(gt_size=64, use_hflip=True, use_rot=False, num_worker_per_gpu=0, batch_size_per_gpu=2,
                   dataset_enlarge_ratio=1, prefetch_mode=None)
    return opt


def train_options(data, total_iter):
    return {
        'name': NAME, 'model_type': 'SRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'train': paired_set('tiny_train', data, 'train')},
        'network_g': GPEN_TINY,
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-4},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5},
                  'total_iter': total_iter, 'warmup_iter': -1,
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': True},
    }


def eval_options(data):
    return {
        'name': f'{NAME}_test', 'model_type': 'SRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'test_1': paired_set('tiny_test', data, 'test')},
        'network_g': GPEN_TINY,
        'path': {'pretrain_network_g': f'experiments/{NAME}/models/net_g_latest.pth', 'strict_load_g': True},
        'val': {'save_img': True, 'suffix': None, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}}},
    }


def write_yaml(path, opt):
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f)
    return str(path)


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    """Train 2 iterations, auto-resume to 4, then test; every run in one fresh working directory."""
    leftovers = [d for d in OUTPUT_DIRS if os.path.exists(os.path.join(BASICSR_ROOT, d))]
    assert not leftovers, f'remove {leftovers} from {BASICSR_ROOT} first (left by an unpatched BasicSR run)'
    cwd = tmp_path_factory.mktemp('runner')
    write_image_pairs(cwd / 'data', count=3, size=64)
    run_python('-m', 'basicsr.train', '-opt', write_yaml(cwd / 'train2.yml', train_options('data', 2)), cwd=cwd)
    run_python('-m', 'basicsr.train', '-opt', write_yaml(cwd / 'train4.yml', train_options('data', 4)),
               '--auto_resume', cwd=cwd)
    run_python('-m', 'basicsr.test', '-opt', write_yaml(cwd / 'test.yml', eval_options('data')), cwd=cwd)
    return cwd


def read_log(folder, prefix):
    logs = sorted(folder.glob(f'{prefix}_*.log'))
    assert logs, f'no {prefix} log in {folder}'
    return logs[-1].read_text()


def test_train_writes_checkpoints_and_tensorboard_under_working_directory(workdir):
    cwd = workdir
    exp = cwd / 'experiments' / NAME
    assert (exp / 'models' / 'net_g_2.pth').is_file()
    assert (exp / 'models' / 'net_g_latest.pth').is_file()
    assert (exp / 'training_states' / '2.state').is_file()
    assert any((cwd / 'tb_logger' / NAME).iterdir())


def test_auto_resume_on_cpu_continues_from_iteration_2(workdir):
    cwd = workdir
    log = read_log(cwd / 'experiments' / NAME, f'train_{NAME}')
    assert re.search(r'Resuming training from epoch: \d+, iter: 2\.', log)
    assert re.search(r'iter:\s+3,', log) and re.search(r'iter:\s+4,', log)
    assert not re.search(r'iter:\s+1,', log), 'the resumed run started again from iteration 1'
    assert (cwd / 'experiments' / NAME / 'training_states' / '4.state').is_file()
    assert not list((cwd / 'experiments').glob(f'{NAME}_archived_*')), 'auto_resume archived instead of resuming'


def test_test_runner_reports_psnr_and_saves_images_under_working_directory(workdir):
    cwd = workdir
    results = cwd / 'results' / f'{NAME}_test'
    psnr = re.search(r'psnr: ([0-9.]+)', read_log(results, f'test_{NAME}_test'))
    assert psnr and 5 < float(psnr[1]) < 100
    assert len(list((results / 'visualization' / 'tiny_test').glob('*.png'))) == 3


def test_nothing_is_written_inside_site_packages(workdir):
    assert not [d for d in OUTPUT_DIRS if os.path.exists(os.path.join(BASICSR_ROOT, d))]
