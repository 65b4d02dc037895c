"""Photos per minute of metaf2n-infer over an archive on the CPU: one process with torch's default threads (one per
core), one process with one thread, and torchrun with one process per core (one thread each, torchrun's default),
on the same photos; and whether each one-process run writes the files torchrun writes, byte for byte.

The photos: bench/adapt.py's group photo (the built-in people tiled 3 x 2: 384 x 256 LQ pixels, six faces), each copy's
brightness scaled a little so that no two are the same. Real-ESRGAN x4plus with the committed MaskNet
(weights/, from `make demo` or `make app`), the faces from their landmarks, their GT crops as the pseudo GT (the
oracle: no GPEN weights needed), every other setting the default. Each variant runs the whole command, start-up
included, into a fresh output folder; the variants alternate for --rounds rounds.

    python bench/archive.py [--photos 20] [--rounds 1] [--processes 2]
"""
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
from adapt import MASK, MODEL, group_photo

from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.models.precision import cpu_description


def make_archive(root, count):
    """``count`` group photos in ``root/photos``, their GT in ``root/gt``, their faces in ``root/faces.json``."""
    lq, gt, table = group_photo(3, 2)
    faces = table['group.png']['faces']
    os.makedirs(os.path.join(root, 'photos'))
    os.makedirs(os.path.join(root, 'gt'))
    landmarks = {}
    for k in range(count):
        name, gain = f'group{k:02d}.png', 0.8 + 0.2 * k / max(count - 1, 1)
        cv2.imwrite(os.path.join(root, 'photos', name), np.clip(lq * gain, 0, 255).round().astype(np.uint8)[:, :, ::-1])
        cv2.imwrite(
            os.path.join(root, 'gt', name), (np.clip(gt * gain, 0, 1) * 255).round().astype(np.uint8)[:, :, ::-1])
        landmarks[name] = {'faces': faces}
    with open(os.path.join(root, 'faces.json'), 'w') as f:
        json.dump(landmarks, f)


def command(root, out, processes, threads=None):
    infer = [
        os.path.join(root, 'photos'), '-o', out, '--model', MODEL, '--mask', MASK, '--landmarks',
        os.path.join(root, 'faces.json'), '--gt',
        os.path.join(root, 'gt')
    ]
    if processes == 1:
        return ['env', f'OMP_NUM_THREADS={threads}'] * (threads is not None) + [
            sys.executable, '-m', 'metaf2n_plugin.infer', *infer
        ]
    return [
        sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node',
        str(processes), '-m', 'metaf2n_plugin.infer', *infer
    ]


def files(folder):
    return {path.name: path.read_bytes() for path in pathlib.Path(folder).glob('*.png')}


def main():
    parser = parser_from_doc(__doc__)
    parser.add_argument('--photos', type=int, default=20)
    parser.add_argument('--rounds', type=int, default=1)
    parser.add_argument('--processes', type=int, default=2, help='torchrun processes (one thread each)')
    args = parser.parse_args()
    for path in (MODEL, MASK):
        if not os.path.isfile(path):
            sys.exit(f'{path} not found: `make demo` (or `make app`) writes it')
    variants = {
        '1 process, torch\'s threads': (1, None),
        '1 process, 1 thread': (1, 1),
        f'{args.processes} processes (torchrun), 1 thread each': (args.processes, None)
    }
    seconds = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as root:
        make_archive(root, args.photos)
        outputs = {}
        for r in range(args.rounds):
            for name, (processes, threads) in variants.items():
                out = os.path.join(root, f'out_{processes}_{threads}_{r}')
                start = time.perf_counter()
                done = subprocess.run(command(root, out, processes, threads), capture_output=True, text=True)
                seconds[name].append(time.perf_counter() - start)
                if done.returncode != 0:
                    sys.exit(f'{name} failed:\n{done.stderr[-3000:]}')
                outputs[name] = files(out)
                print(f'round {r + 1}/{args.rounds} {name}: {seconds[name][-1]:.1f} s', file=sys.stderr, flush=True)
        *alone, shared = outputs.values()
        assert all(files.keys() == shared.keys() for files in alone), 'the runs wrote different files'
        differ = [{
            name: largest_difference(files[name], shared[name])
            for name in shared if files[name] != shared[name]
        } for files in alone]
    print(f'metaf2n-infer over {args.photos} photos of 384 x 256 LQ pixels (six faces each), x4plus + MaskNet, on '
          f'{os.cpu_count()} cores ({cpu_description()}); {args.rounds} round(s), median:\n')
    print('| run | seconds | photos per minute |\n|---|---:|---:|')
    rates = {}
    for name in variants:
        median = statistics.median(seconds[name])
        rates[name] = 60 * args.photos / median
        print(f'| {name} | {median:.1f} | {rates[name]:.2f} |')
    one, _, many = rates.values()
    print(f'\n{args.processes} processes / 1 process with torch\'s threads: {many / one:.2f}x the photos per minute')
    for name, different in zip(variants, differ):
        if different:
            print(f'{name} against torchrun: {len(different)} of {len(shared)} files differ, by at most '
                  f'{max(different.values())} grey level(s): {", ".join(sorted(different))}')
        else:
            print(f'{name} against torchrun: all {len(shared)} files the same, byte for byte')


def largest_difference(first, second):
    """The largest difference of two PNGs' pixels, in grey levels."""
    images = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).astype(int) for data in (first, second)]
    return int(np.abs(images[0] - images[1]).max())


if __name__ == '__main__':
    main()
