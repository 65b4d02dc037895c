"""The held-out study behind the results (docs/heldout.md): what each part of MetaF2N + SSG does to Real-ESRGAN x4plus.

Every configuration is meta-trained from options/train_x4plus_masknet.yml on each fold (trained on one built-in
person, tested on the other: scripts/make_heldout_folds.py) and each seed (the pool of tasks, MaskNet's initial
weights and the task order), at the same budget (--iters iterations of 2 tasks); then options/test_x4plus_meta.yml
tests the run's weights on the fold's six held-out sets. Rows (Δ PSNR-Y against plain x4plus, same photos):

- naive_tail: no training; the tail step with every face pixel weighted 1 (W = 1), lr 0.01;
- masknet_ssg: MaskNet meta-trained, theta x4plus, outer loss L1 + SSG (the committed recipe);
- masknet: the same without the SSG term;
- tail_meta_3e-5, tail_meta_3e-6: the tail of theta meta-trained too, with MaskNet, at the paper's Adam rate
  and at a tenth of it;
- tail_plain_3e-5: the control: the tail trained on the same data, losses and rate without meta-learning (inner
  rate 0, so theta' = theta and the outer loss trains theta directly; tested unadapted);
- tail_plain_3e-5_gt: the same control with the GT itself as the outer target instead of the USM-sharpened GT.

Runs already done are reused (their weights and test logs); each writes experiments/heldout_<row>_<fold>_s<seed>/
and results/heldout_<row>_<fold>_s<seed>/. The table goes to <out>/heldout.md and heldout.json: per row the mean
over seeds of the mean Δ over the 12 held-out photos, and the spread (max - min) over seeds; and, for the three
kinds of step, the seconds per photo of PhotoSuperResolver on the two 128 x 128 held-out photos (fp32, as tested;
the median of 3 calls after a warm-up).

    python scripts/make_heldout_folds.py
    python scripts/heldout_study.py [--rows masknet_ssg masknet ...] [--seeds 0 1] [--iters 100] [--out results]
"""
import os
import subprocess
import sys
import time

import numpy as np
import yaml

from metaf2n_plugin.atomic_write import write_atomically, write_json
from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.data.people import FOLDS
from metaf2n_plugin.names import UNADAPTED

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_table import read_metrics  # noqa: E402 (a sibling script)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAIL = r'^(conv_up1|conv_up2|conv_hr|conv_last)\.'
# row -> changes to options/train_x4plus_masknet.yml ('a:b' is options['a']['b']); None: not trained
ROWS = {
    'naive_tail': None,
    'masknet_ssg': {},
    'masknet': {
        'train:ssg_opt': None
    },
    'tail_meta_3e-5': {
        'train:meta_params': TAIL,
        'train:optim_g:lr': 3e-5
    },
    'tail_meta_3e-6': {
        'train:meta_params': TAIL,
        'train:optim_g:lr': 3e-6
    },
    'tail_plain_3e-5': {
        'train:meta_params': TAIL,
        'train:optim_g:lr': 3e-5,
        'adaptation:lr': 0.0
    },
    'tail_plain_3e-5_gt': {
        'train:meta_params': TAIL,
        'train:optim_g:lr': 3e-5,
        'adaptation:lr': 0.0,
        'train:outer_target': 'gt'
    },
}


def options(name):
    with open(os.path.join(REPO, 'options', f'{name}.yml'), encoding='utf-8') as f:
        return yaml.safe_load(f)


def set_key(opt, dotted, value):
    *parents, last = dotted.split(':')
    for key in parents:
        opt = opt[key]
    opt[last] = value


def in_fold(opt, fold):
    """``opt`` with every data path moved to ``fold``'s folders (the options name the astronaut fold)."""
    text = yaml.safe_dump(opt).replace('datasets/heldout/astronaut/', f'datasets/heldout/{fold}/')
    return yaml.safe_load(text.replace('datasets/real/', f'datasets/heldout/{fold}/test/'))


def train_options(row, fold, seed, iters):
    opt = in_fold(options('train_x4plus_masknet'), fold)
    opt.update(name=f'heldout_{row}_{fold}_s{seed}', manual_seed=seed, val=None)
    data = opt['datasets']['train']
    data.update(pool_path=f'datasets/pools/heldout_{fold}_seed{seed}.pth', pool_seed=seed)
    opt['datasets'] = {'train': data}
    opt['train'].update(total_iter=iters)
    opt['logger'].update(save_checkpoint_freq=iters, print_freq=10)
    for key, value in ROWS[row].items():
        set_key(opt, key, value)
    return opt


def test_options(row, fold, seed):
    opt = in_fold(options('test_x4plus_meta'), fold)
    opt.update(name=f'heldout_{row}_{fold}' + ('' if ROWS[row] is None else f'_s{seed}'))
    opt['val'].update(pbar=False)
    opt['val']['metrics'].pop('niqe', None)  # PSNR-Y and SSIM-Y only: NIQE would double the test's time
    if ROWS[row] is None:  # the naive step: W = 1, the tail at lr 0.01
        opt['network_mask'] = None
        opt['path']['pretrain_network_mask'] = None
        opt['adaptation'] = {'lr': 0.01, 'params': TAIL}
    else:
        models = os.path.join('experiments', f'heldout_{row}_{fold}_s{seed}', 'models')
        opt['path'].update(
            pretrain_network_g=os.path.join(models, 'net_g_latest.pth'),
            param_key_g='params',
            pretrain_network_mask=os.path.join(models, 'net_mask_latest.pth'))
    return opt


def run_basicsr(runner, opt, label):
    """``python -m basicsr.<runner> -opt <opt>`` with ``opt`` written under experiments/heldout_options/."""
    path = os.path.join('experiments', 'heldout_options', f'{runner}_{opt["name"]}.yml')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomically(path, yaml.safe_dump(opt, sort_keys=False))
    print(f'== {label}: python -m basicsr.{runner} -opt {path}', flush=True)
    code = subprocess.call([sys.executable, '-m', 'basicsr.' + runner, '-opt', path],
                           stdout=subprocess.DEVNULL if runner == 'test' else None)
    if code:
        sys.exit(f'{label} failed (exit status {code}); its log is under experiments/ or results/{opt["name"]}')


def newest_log(name):
    folder = os.path.join('results', name)
    logs = sorted(f for f in os.listdir(folder) if f.startswith('test_') and f.endswith('.log')) \
        if os.path.isdir(folder) else []
    return os.path.join(folder, logs[-1]) if logs else None


def deltas(row, fold, seed):
    """``{set: (Δ PSNR-Y, Δ PSNR-Y unadapted)}`` of one run's test, both against plain x4plus on the same photo."""
    test = test_options(row, fold, seed)
    log = newest_log(test['name'])
    if log is None:
        run_basicsr('test', test, f'test {test["name"]}')
        log = newest_log(test['name'])
    plain = read_metrics(newest_log(test_options('naive_tail', fold, 0)['name']) or log)
    return {
        name: (metrics['psnr'] - plain[name]['psnr' + UNADAPTED],
               metrics['psnr' + UNADAPTED] - plain[name]['psnr' + UNADAPTED])
        for name, metrics in read_metrics(log).items()
    }


def seconds_per_photo(repeats=3):
    """``{step: seconds}`` of PhotoSuperResolver (fp32, faces from landmarks, oracle) per 128² held-out photo:
    plain x4plus, the tail step with W = 1, the tail step with a MaskNet (seed 0's masknet_ssg, astronaut fold)."""
    import statistics

    from metaf2n_plugin.image_io import read_image
    from metaf2n_plugin.photo_super_resolver import PhotoSuperResolver

    x4plus = options('test_x4plus_meta')['path']['pretrain_network_g']
    mask = os.path.join('experiments', 'heldout_masknet_ssg_astronaut_s0', 'models', 'net_mask_latest.pth')
    steps = {
        'plain': dict(adapt=False),
        'naive tail step': dict(mask=None, adaptation={
            'lr': 0.01,
            'params': TAIL
        }),
        'MaskNet tail step': dict(mask=mask)
    }
    took = {}
    for step, arguments in steps.items():
        times = []
        for fold in FOLDS:
            folder = os.path.join('datasets', 'heldout', fold, 'test', 'Real_iid_128')
            faces = {'type': 'landmarks', 'json_path': os.path.join(folder, 'landmarks.json')}
            resolver = PhotoSuperResolver(
                x4plus,
                **{
                    'mask': None,
                    **arguments
                },
                faces=faces,
                restorer={
                    'type': 'oracle',
                    'size': 512
                },
                precision='fp32',
                tile=0,
                log=lambda line: None)
            lq, gt = (read_image(os.path.join(folder, kind, f'{fold}.png')) for kind in ('LQ', 'GT'))
            for i in range(repeats + 1):
                start = time.perf_counter()
                resolver.enhance(lq, f'{fold}.png', gt)
                if i:
                    times.append(time.perf_counter() - start)
        took[step] = statistics.median(times)
    return took


def main(argv=None):
    parser = parser_from_doc(__doc__)
    parser.add_argument('--rows', nargs='+', default=list(ROWS), choices=list(ROWS))
    parser.add_argument('--folds', nargs='+', default=list(FOLDS), choices=list(FOLDS))
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1])
    parser.add_argument('--iters', type=int, default=100, help='meta-iterations of 2 tasks per run (100)')
    parser.add_argument('--out', default='results', help='folder of heldout.md and heldout.json (results)')
    parser.add_argument('--no-seconds', action='store_true', help='skip timing the three kinds of step')
    args = parser.parse_args(argv)
    for fold in args.folds:  # the plain and naive outputs first: every row's Δ is against them
        if newest_log(test_options('naive_tail', fold, 0)['name']) is None:
            run_basicsr('test', test_options('naive_tail', fold, 0), f'test naive_tail {fold}')
    table = {}
    for seed in args.seeds:  # seed by seed, so that a stopped study has every row once
        for row in args.rows:
            for fold in args.folds:
                if ROWS[row] is not None:
                    name = f'heldout_{row}_{fold}_s{seed}'
                    if not os.path.isfile(os.path.join('experiments', name, 'models', 'net_mask_latest.pth')):
                        run_basicsr('train', train_options(row, fold, seed, args.iters), f'train {name}')
                per_set = deltas(row, fold, 0 if ROWS[row] is None else seed)
                for kind, index in (('adapted', 0), ('unadapted', 1)):
                    table.setdefault(kind, {}).setdefault(row, {}).setdefault(seed, {}).update({
                        f'{fold}/{name}':
                        values[index]
                        for name, values in per_set.items()
                    })
    summary = {}
    for row, by_seed in table['adapted'].items():
        means = [float(np.mean(list(photos.values()))) for photos in by_seed.values()]
        theta = [float(np.mean(list(photos.values()))) for photos in table['unadapted'][row].values()]
        summary[row] = {
            'mean': float(np.mean(means)),
            'spread': float(np.ptp(means)),
            'seeds': list(by_seed),
            'per_seed': means,
            'theta_mean': float(np.mean(theta)),
            'theta_spread': float(np.ptp(theta)),
            'photos': by_seed,
            'photos_unadapted': table['unadapted'][row]
        }
    per_photo = {} if args.no_seconds else seconds_per_photo()
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, 'heldout.json'), {'iters': args.iters, 'rows': summary, 's_per_photo': per_photo})
    lines = ['| row | Δ PSNR-Y, adapted (mean ± spread) | Δ PSNR-Y of theta unadapted | seeds |', '|---|---:|---:|---|']
    lines += [
        f'| {row} | {s["mean"]:+.3f} ± {s["spread"]:.3f} | {s["theta_mean"]:+.3f} ± {s["theta_spread"]:.3f} | '
        f'{", ".join(map(str, s["seeds"]))} |' for row, s in summary.items()
    ]
    lines += ['', '| step | s per 128² photo, fp32 |', '|---|---:|']
    lines += [f'| {step} | {took:.2f} |' for step, took in per_photo.items()]
    write_atomically(os.path.join(args.out, 'heldout.md'), '\n'.join(lines) + '\n')
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
