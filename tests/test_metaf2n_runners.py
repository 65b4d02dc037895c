"""BasicSR's own runners drive MetaF2N on the tiny data set: meta-train, test, results table, auto-resume."""
import re

import pytest
import torch

from conftest import load_script, newest_log, resume_training, run_doc_block

NAME = 'tiny_metaf2n'
TERMS = ('l_inner_before', 'l_inner_after', 'mask_mean', 'l_g_pix', 'l_g_percep', 'l_g_ssg', 'l_g_gan', 'l_g_mask',
         'l_d_real', 'l_d_fake')


@pytest.fixture(scope='module')
def workdir(tiny_workdir):
    """The README's block: tiny data set, train 2 iterations, test, table."""
    run_doc_block('options/train_metaf2n_tiny.yml', tiny_workdir)
    return tiny_workdir


def saved_at(workdir, iteration):
    """The names of the network files saved at ``iteration``; asserts the training state is there too."""
    assert (workdir / 'experiments' / NAME / 'training_states' / f'{iteration}.state').is_file()
    return {p.name for p in (workdir / 'experiments' / NAME / 'models').glob(f'*_{iteration}.pth')}


def test_training_saves_g_with_its_ema_mask_d_and_the_state(workdir):
    assert saved_at(workdir, 2) == {'net_g_2.pth', 'net_mask_2.pth', 'net_d_2.pth'}
    g = torch.load(workdir / 'experiments' / NAME / 'models' / 'net_g_2.pth', weights_only=True)
    assert set(g) == {'params', 'params_ema'}
    assert any(not torch.equal(g['params'][k], g['params_ema'][k]) for k in g['params'])


def test_training_logs_every_term_and_validates(workdir):
    log = newest_log(workdir / 'experiments' / NAME, f'train_{NAME}')
    for term in TERMS:
        assert re.search(rf'iter:\s+2,.*{term}: [0-9.e+-]+', log), term
    assert re.search(r'# psnr_unadapted: [0-9.]+', log) and 'Tiny_iid: 2 of 2 images adapted' in log


def test_test_runner_reports_adapted_and_unadapted_metrics_and_saves_both_images(workdir):
    results = workdir / 'results' / f'{NAME}_test'
    log = newest_log(results, f'test_{NAME}_test')
    for dataset, count in (('Tiny_iid', 2), ('Tiny_Multi_iid', 4)):
        section = log.split(f'Validation {dataset}')[1]
        assert re.search(r'# psnr: [0-9.]+', section) and re.search(r'# ssim_unadapted: [0-9.]+', section)
        saved = sorted(p.name for p in (results / 'visualization' / dataset).iterdir())
        assert len(saved) == 2 * count and sum(name.endswith('_tiny_unadapted.png') for name in saved) == count
    load_script('results_table').main([str(results)])
    table = (results / 'metrics.md').read_text()
    assert '| Tiny_iid |' in table and 'PSNR unadapted' in table and 'Δ SSIM' in table


@pytest.mark.e2e
def test_auto_resume_continues_from_iteration_2_and_logs_every_term(workdir):
    resume_training(workdir, 'train_metaf2n_tiny.yml', total_iter=4)
    log = newest_log(workdir / 'experiments' / NAME, f'train_{NAME}')
    assert re.search(r'Resuming training from epoch: \d+, iter: 2\.', log) and not re.search(r'iter:\s+2,', log)
    for term in TERMS:
        assert re.search(rf'iter:\s+4,.*{term}: [0-9.e+-]+', log), term
    assert saved_at(workdir, 4) == {'net_g_4.pth', 'net_mask_4.pth', 'net_d_4.pth'}
