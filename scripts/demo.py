"""`make demo`: MetaF2N + SSG end to end on the built-in tiny data set, offline, on a CPU, in minutes.

Runs, from the working directory (the repository root under `make demo`):
    1. python scripts/make_tiny_dataset.py (datasets/tiny)
    2. python -m basicsr.train -opt options/demo_train.yml --auto_resume (experiments/demo_metaf2n, tb_logger/)
    3. python -m basicsr.test -opt options/demo_test.yml (results/demo_metaf2n_test)
    4. python scripts/results_table.py results/demo_metaf2n_test (adapted vs unadapted, per test set)
    5. python scripts/side_by_side.py ... for each test set (LQ | unadapted | adapted | GT)
A step whose output is already there is skipped, so a second run reuses the data and the trained weights; an
interrupted training resumes from its last checkpoint. --total-iter shortens the training (the tests use it).
"""
import csv
import glob
import os
import subprocess
import sys
import time

import yaml

from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.data.tiny_set import TEST_SETS
from metaf2n_plugin.names import DELTA, LANDMARKS_JSON, META_JSON, METRICS_CSV, METRICS_MD

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_OPTIONS = os.path.join(REPO, 'options', 'demo_train.yml')
TEST_OPTIONS = os.path.join(REPO, 'options', 'demo_test.yml')
DATA_ROOT = os.path.join('datasets', 'tiny')
OFFLINE_NOTE = ("Offline demo: the faces' pseudo ground truth is their GT (the 'oracle' face restorer), because "
                "GPEN-BFR's weights cannot be downloaded here; LPIPS and FID are not reported, because their AlexNet "
                "and Inception weights cannot either. README.md, 'The demo', gives the one-line changes for real "
                "weights.")


def run(step, *args):
    """Run ``python <args>`` in the working directory, its output streaming through; exit on failure."""
    print(f'\n== {step}: python {" ".join(args)}', flush=True)
    code = subprocess.call([sys.executable, *args])
    if code:
        sys.exit(f'{step} failed (exit status {code}); fix the error above and run `make demo` again: the steps '
                 'already done are reused.')


def read_options(path):
    with open(path, encoding='utf-8') as f:
        return yaml.safe_load(f)


def skip(step, reason):
    print(f'\n== {step}: skipped, {reason}', flush=True)


def verdict(metrics_csv):
    """One line: on how many sets adaptation raised PSNR-Y, and the mean change (from results_table's CSV)."""
    with open(metrics_csv, newline='', encoding='utf-8') as f:
        deltas = [float(row['psnr' + DELTA]) for row in csv.DictReader(f)]
    better = sum(delta > 0 for delta in deltas)
    return (f'Adaptation raised PSNR-Y on {better} of {len(deltas)} test sets; mean change '
            f'{sum(deltas) / len(deltas):+.2f} dB.')


def main(argv=None):
    parser = parser_from_doc(__doc__)
    parser.add_argument(
        '--total-iter', type=int, help='training iterations (default: train.total_iter of the '
        'options, 200)')
    args = parser.parse_args(argv)
    start = time.time()
    print(OFFLINE_NOTE, flush=True)
    train_opt, test_opt = map(read_options, (TRAIN_OPTIONS, TEST_OPTIONS))

    if all(os.path.isfile(os.path.join(DATA_ROOT, 'test', name, META_JSON)) for name, _, _ in TEST_SETS):
        skip('1/5 data', f'{DATA_ROOT} is there')
    else:
        run('1/5 data', os.path.join(REPO, 'scripts', 'make_tiny_dataset.py'), '--root', DATA_ROOT)

    experiment = os.path.join('experiments', train_opt['name'])
    weights = test_opt['path']['pretrain_network_g']  # net_g_latest.pth: written when a training run ends
    if os.path.isfile(weights):
        skip('2/5 meta-training', f'{weights} is there (delete {experiment} to train again)')
    else:
        force = ['--force_yml', f'train:total_iter={args.total_iter}'] if args.total_iter else []
        run('2/5 meta-training', '-m', 'basicsr.train', '-opt', TRAIN_OPTIONS, '--auto_resume', *force)

    results = os.path.join('results', test_opt['name'])
    table = os.path.join(results, METRICS_MD)
    if os.path.isfile(table) and os.path.getmtime(table) > os.path.getmtime(weights):
        skip('3/5 test', f'{table} is newer than {weights}')
    else:
        run('3/5 test', '-m', 'basicsr.test', '-opt', TEST_OPTIONS)
        run('4/5 results table', os.path.join(REPO, 'scripts', 'results_table.py'), results)

    sets = [dataset['name'] for dataset in test_opt['datasets'].values()]
    for name in sets:
        folder = os.path.join(DATA_ROOT, 'test', name)
        run(f'5/5 side by side, {name}', os.path.join(REPO, 'scripts', 'side_by_side.py'),
            os.path.join(results, 'visualization', name), '--lq', os.path.join(folder, 'LQ'), '--gt',
            os.path.join(folder, 'GT'), '--landmarks', os.path.join(folder, LANDMARKS_JSON), '--suffix',
            test_opt['val']['suffix'])

    with open(table, encoding='utf-8') as f:
        print(f'\n== MetaF2N demo: one adaptation step on each photo\'s faces, against the same network unadapted '
              f'(PSNR-Y and SSIM-Y)\n\n{f.read()}')
    print(verdict(os.path.join(results, METRICS_CSV)))
    print(OFFLINE_NOTE)
    print(f'Side-by-side images (LQ | unadapted | adapted | GT, face boxes in green): '
          f'{os.path.join(results, "side_by_side")}/<set>/<image>.png, sets {", ".join(sets)}')
    print(f'Outputs: {os.path.join(results, "visualization")}; training log: '
          f'{(sorted(glob.glob(os.path.join(experiment, "train_*.log"))) or [experiment])[-1]}')
    print(f'TensorBoard: tensorboard --logdir {os.path.join("tb_logger", train_opt["name"])}')
    print(f'Done in {time.time() - start:.0f} s.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
