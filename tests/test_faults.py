"""Training survives kill -9 and is deterministic: BasicSR's runner, MetaF2N on the tiny data set, on the CPU."""
import os
import random
import signal
import subprocess
import sys
import time

import torch
import yaml

from conftest import REPO, run_python

TOTAL = 8


def options(cwd, name, total_iter=TOTAL):
    """``options/train_metaf2n_tiny.yml`` under ``name``: a checkpoint every iteration, no validation, no TB."""
    with open(os.path.join(REPO, 'options', 'train_metaf2n_tiny.yml')) as f:
        opt = yaml.safe_load(f)
    opt['name'] = name
    opt['train']['total_iter'] = total_iter
    opt['val']['val_freq'] = 10**6
    opt['logger'].update(save_checkpoint_freq=1, use_tb_logger=False)
    path = cwd / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt))
    return str(path)


def checkpoints(experiment):
    """Every checkpoint and state file of a run, loaded (weights_only), by name."""
    files = sorted((experiment / 'models').glob('*.pth')) + sorted((experiment / 'training_states').glob('*.state'))
    return {path.name: torch.load(path, weights_only=True) for path in files}


def test_same_options_and_seed_give_bit_identical_weights(tiny_workdir):
    for name in ('same_seed_a', 'same_seed_b'):
        run_python('-m', 'basicsr.train', '-opt', options(tiny_workdir, name, total_iter=3), cwd=tiny_workdir)
    a, b = (checkpoints(tiny_workdir / 'experiments' / name) for name in ('same_seed_a', 'same_seed_b'))
    for net in ('g', 'mask', 'd'):
        first, second = a[f'net_{net}_3.pth'], b[f'net_{net}_3.pth']
        assert all(torch.equal(first['params'][k], second['params'][k]) for k in first['params']), net
    assert not torch.equal(a['net_g_3.pth']['params']['conv_first.weight'],
                           a['net_g_1.pth']['params']['conv_first.weight'])  # and training did change them


KILL_DURING_THIRD_SAVE = '''
import os, runpy, signal, sys, torch
real, calls = torch.save, []
def save(obj, f, *args, **kwargs):
    calls.append(f)
    if len(calls) == 3:  # half of the third checkpoint file written, then kill -9
        f.write(b'half a checkpoint')
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real(obj, f, *args, **kwargs)
torch.save = save
sys.argv = ['basicsr.train', '-opt', sys.argv[1], '--auto_resume']
runpy.run_module('basicsr.train', run_name='__main__')
'''


def test_a_kill_during_a_save_leaves_no_broken_checkpoint_and_resuming_finishes(tiny_workdir):
    opt = options(tiny_workdir, 'killed_saving')
    proc = run_python('-c', KILL_DURING_THIRD_SAVE, opt, cwd=tiny_workdir, check=False)
    assert proc.returncode == -signal.SIGKILL
    experiment = tiny_workdir / 'experiments' / 'killed_saving'
    assert list((experiment / 'models').glob('.*.tmp'))  # the half-written file is the temporary one
    checkpoints(experiment)  # every file under a final name loads
    run_python('-m', 'basicsr.train', '-opt', opt, '--auto_resume', cwd=tiny_workdir)
    assert f'{TOTAL}.state' in checkpoints(experiment) and not list((experiment / 'models').glob('.*.tmp'))


def test_ten_kills_at_random_moments_then_resuming_ends_with_every_iteration_and_loadable_checkpoints(
        tiny_workdir, tmp_path):
    total = 15
    opt = options(tiny_workdir, 'killed_randomly', total_iter=total)
    experiment = tiny_workdir / 'experiments' / 'killed_randomly'
    rng = random.Random(0)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    interrupted = 0
    for kill in range(10):
        log = tmp_path / f'run{kill}.log'
        with open(log, 'w') as out:
            child = subprocess.Popen([sys.executable, '-m', 'basicsr.train', '-opt', opt, '--auto_resume'],
                                     cwd=tiny_workdir,
                                     env=env,
                                     stdout=out,
                                     stderr=subprocess.STDOUT)
            while 'training from epoch' not in log.read_text() and child.poll() is None:  # start-up done
                time.sleep(0.05)
            time.sleep(rng.uniform(0, 1.5))  # a random moment of training: an iteration or a checkpoint save
            child.send_signal(signal.SIGKILL)
            child.wait()
        checkpoints(experiment)  # after every kill: whatever has a final name loads
        interrupted += not (experiment / 'training_states' / f'{total}.state').exists()
    run_python('-m', 'basicsr.train', '-opt', opt, '--auto_resume', cwd=tiny_workdir)
    saved = checkpoints(experiment)
    assert interrupted >= 5, 'the kills should interrupt training, not land after it'
    assert {f'{i}.state' for i in range(1, total + 1)} <= set(saved) and saved[f'{total}.state']['iter'] == total
    logs = sorted(experiment.glob('train_killed_randomly_*.log'))
    assert 'Resuming training from epoch: ' in logs[-1].read_text() and 'End of training' in logs[-1].read_text()
