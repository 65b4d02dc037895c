"""bench/gpu_check.sh, the paper's route on a GPU: run where CUDA is, skipped (naming the script) where it is not;
its Python part also runs on the CPU at toy sizes, so that a GPU user's first run does not find a broken script."""
import os

import pytest
import torch

from conftest import REPO, run_python

SCRIPT = os.path.join(REPO, 'bench', 'gpu_check.sh')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='bench/gpu_check.sh needs a CUDA device')
def test_gpu_check_runs_on_cuda_within_ten_minutes(tmp_path):
    proc = run_python(
        '-c', f'import subprocess, sys; sys.exit(subprocess.call(["bash", {SCRIPT!r}]))', cwd=REPO, timeout=660)
    assert '| meta4: 4-task meta-iteration' in proc.stdout and 'exit status 0 |' in proc.stdout


@pytest.mark.e2e
def test_gpu_checks_python_part_runs_on_a_cpu_at_toy_sizes(tmp_path):
    proc = run_python(
        os.path.join(REPO, 'bench', 'gpu_check.py'),
        '--device',
        'cpu',
        '--blocks',
        '1',
        '--repeats',
        '1',
        '--photo-side',
        '64',
        cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert [line.split('|')[1].split(':')[0].strip() for line in lines if line.startswith('| ') and ':' in line
            ] == ['meta4', 'infer', 'infer', 'infer', 'torchrun, 1 process, gloo, 2 iterations'.split(':')[0]]
    assert lines[-1].endswith('exit status 0 |')
