"""BasicSR's own runners drive a plugin architecture: train, auto-resume and test, all on the CPU.

``python -m basicsr.train|test`` are started as a user would, in a temporary working directory, with
no PYTHONPATH: the start-up hook must load the plugin, and the compat fixes must keep every output in
that directory and let ``--auto_resume`` continue from a CPU checkpoint.
"""
import math
import os
import re

import basicsr
import pytest

from conftest import newest_log, resume_training, run_doc_block

pytestmark = pytest.mark.e2e
NAME = 'tiny_gpen_sr'
OUTPUT_DIRS = ('experiments', 'results', 'tb_logger')
BASICSR_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(basicsr.__file__)))


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    """docs/basicsr.md's block (tiny data set, train 2 iterations, test), then auto-resume to 4; in a fresh working
    directory."""
    leftovers = [d for d in OUTPUT_DIRS if os.path.exists(os.path.join(BASICSR_ROOT, d))]
    assert not leftovers, f'remove {leftovers} from {BASICSR_ROOT} first (left by an unpatched BasicSR run)'
    cwd = tmp_path_factory.mktemp('runner')
    run_doc_block('options/train_gpen_srmodel_tiny.yml', cwd)
    resume_training(cwd, 'train_gpen_srmodel_tiny.yml', total_iter=4)
    return cwd


def test_train_writes_checkpoints_and_tensorboard_under_working_directory(workdir):
    cwd = workdir
    exp = cwd / 'experiments' / NAME
    assert (exp / 'models' / 'net_g_2.pth').is_file()
    assert (exp / 'models' / 'net_g_latest.pth').is_file()
    assert (exp / 'training_states' / '2.state').is_file()
    assert any((cwd / 'tb_logger' / NAME).iterdir())


def test_auto_resume_on_cpu_continues_from_iteration_2(workdir):
    cwd = workdir
    log = newest_log(cwd / 'experiments' / NAME, f'train_{NAME}')
    assert re.search(r'Resuming training from epoch: \d+, iter: 2\.', log)
    assert re.search(r'iter:\s+3,', log) and re.search(r'iter:\s+4,', log)
    assert not re.search(r'iter:\s+1,', log), 'the resumed run started again from iteration 1'
    assert (cwd / 'experiments' / NAME / 'training_states' / '4.state').is_file()
    assert not list((cwd / 'experiments').glob(f'{NAME}_archived_*')), 'auto_resume archived instead of resuming'


def test_test_runner_reports_psnr_and_saves_images_under_working_directory(workdir):
    cwd = workdir
    results = cwd / 'results' / f'{NAME}_test'
    psnr = re.search(r'psnr: ([0-9.]+)', newest_log(results, f'test_{NAME}_test'))
    assert psnr and 5 < float(psnr[1]) < 100
    assert len(list((results / 'visualization' / 'tiny_test').glob('*.png'))) == 3


def test_nothing_is_written_inside_site_packages(workdir):
    assert not [d for d in OUTPUT_DIRS if os.path.exists(os.path.join(BASICSR_ROOT, d))]


def test_srmodel_trains_srvgg_with_the_ssg_loss(workdir):
    """Mixing proof: BasicSR's SRModel + SRVGGNetCompact + the plugin's SSGLoss, docs/basicsr.md's block's last line."""
    (log, ) = (workdir / 'experiments' / 'tiny_srvgg_ssg').glob('train_*.log')
    losses = [float(v) for v in re.findall(r'l_pix: ([0-9.e+-]+)', log.read_text())]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses) and max(losses) > 0
    assert (workdir / 'experiments' / 'tiny_srvgg_ssg' / 'models' / 'net_g_latest.pth').is_file()
