"""Training survives kill -9 and is deterministic: BasicSR's runner, MetaF2N on the tiny data set, on the CPU.

The kills land at events the test observes (an iteration logged, a checkpoint half written, a checkpoint renamed
into place), never after a wall-clock delay, so they mean the same on a machine of any speed.
"""
import os
import random
import signal
import subprocess
import sys

import pytest
import torch
import yaml

from metaf2n_plugin.atomic_write import leftovers
from conftest import REPO, run_python

pytestmark = pytest.mark.e2e

EVENTS = ('iteration logged', 'save begun', 'save renamed')
SAVES_PER_ITERATION = 4  # net_g, net_mask, net_d and the training state


def options(cwd, name, total_iter):
    """``options/train_metaf2n_tiny.yml`` under ``name``: a checkpoint every iteration, no validation, no TB."""
    with open(os.path.join(REPO, 'options', 'train_metaf2n_tiny.yml')) as f:
        opt = yaml.safe_load(f)
    opt['name'] = name
    opt['train']['total_iter'] = total_iter
    opt['val']['val_freq'] = 10**6
    opt['logger'].update(print_freq=1, save_checkpoint_freq=1, use_tb_logger=False)
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


# `basicsr.train --auto_resume` that, on the n-th event of one kind, says so on stdout and waits to be killed.
# A checkpoint is written in two halves with the 'save begun' event between them.
STOP_AT_EVENT = '''
import io, os, runpy, sys, time
import torch
from basicsr.utils.logger import MessageLogger
opt, kind, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = 0
def event(name):
    global seen
    seen += name == kind
    if name == kind and seen == wanted:
        print('stopped at', name, seen, flush=True)
        time.sleep(600)
real_save, real_replace, real_log = torch.save, os.replace, MessageLogger.__call__
def save(obj, f, *args, **kwargs):
    if isinstance(f, (str, os.PathLike)):
        return real_save(obj, f, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    f.write(data[:len(data) // 2])
    f.flush()
    event('save begun')
    f.write(data[len(data) // 2:])
def replace(src, dst):
    real_replace(src, dst)
    event('save renamed')
def log(self, log_vars):
    real_log(self, log_vars)
    event('iteration logged')
torch.save, os.replace, MessageLogger.__call__ = save, replace, log
sys.argv = ['basicsr.train', '-opt', opt, '--auto_resume']
runpy.run_module('basicsr.train', run_name='__main__')
'''


def train_until(opt, cwd, kind, wanted, log):
    """Train with ``--auto_resume`` until the ``wanted``-th event ``kind``, then kill -9; True if it got there."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    with open(log, 'w') as err:
        child = subprocess.Popen([sys.executable, '-c', STOP_AT_EVENT, opt, kind,
                                  str(wanted)],
                                 cwd=cwd,
                                 env=env,
                                 stdout=subprocess.PIPE,
                                 stderr=err,
                                 text=True)
        stopped = any(line.startswith('stopped at') for line in child.stdout)  # reads until the event or the end
        child.send_signal(signal.SIGKILL)
        child.wait()
    return stopped


def test_ten_kills_at_observed_events_then_resuming_ends_with_every_iteration_and_loadable_checkpoints(
        tiny_workdir, tmp_path):
    """Each kill stops a run at most one saved iteration past its start, so 10 kills land inside 12 iterations."""
    total = 12
    opt = options(tiny_workdir, 'killed_at_events', total_iter=total)
    experiment = tiny_workdir / 'experiments' / 'killed_at_events'
    rng = random.Random(0)
    kinds = list(EVENTS) * 3 + [rng.choice(EVENTS)]
    rng.shuffle(kinds)
    resumed = 0
    for run, kind in enumerate(kinds):
        wanted = rng.randint(1, 2 if kind == 'iteration logged' else SAVES_PER_ITERATION)
        log = tmp_path / f'run{run}.log'
        assert train_until(opt, tiny_workdir, kind, wanted, log), f'run {run} ended before {kind} {wanted}'
        resumed += 'Resuming training from epoch' in log.read_text()
        saved = checkpoints(experiment)  # whatever has a final name loads
        assert f'{total}.state' not in saved
        if kind == 'save begun':  # the half-written file is a temporary one
            assert leftovers(experiment / 'models') or leftovers(experiment / 'training_states'), run
    run_python('-m', 'basicsr.train', '-opt', opt, '--auto_resume', cwd=tiny_workdir)
    saved = checkpoints(experiment)
    assert {f'{i}.state' for i in range(1, total + 1)} <= set(saved) and saved[f'{total}.state']['iter'] == total
    assert not leftovers(experiment / 'models') and not leftovers(experiment / 'training_states')
    assert resumed, 'the kills should leave states to resume from'
    logs = sorted(experiment.glob('train_killed_at_events_*.log'))
    assert 'Resuming training from epoch: ' in logs[-1].read_text() and 'End of training' in logs[-1].read_text()
