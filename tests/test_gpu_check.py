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
        '--tasks',
        '1',
        '--photo-side',
        '64',
        cwd=tmp_path)
    rows = [line for line in proc.stdout.splitlines() if line.startswith('| ') and not line.startswith('| check')]
    checks = [row.split('|')[1].split(':')[0].strip() for row in rows]
    # the half-precision row is there where the CPU has one (auto: bf16 with AVX-512 BF16 or AMX, else fp32 only)
    assert checks[0] == 'meta1' and checks[-1] == 'torchrun, 1 process, gloo, 2 iterations'
    assert 2 <= checks.count('infer') <= 3 and len(checks) == checks.count('infer') + 2
    assert rows[-1].endswith('exit status 0 |') and 'PSNR-Y' in rows[1]
