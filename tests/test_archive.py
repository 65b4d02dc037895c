"""metaf2n-infer on an archive: re-runs skip complete photos, SIGKILL at any moment loses nothing and writes nothing
twice, report.jsonl has a line per photo, one run per output folder, torchrun's processes write what one process
writes, and a rank killed half-way is restarted with its group (--max-restarts) to the same files."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs.rrdbnet_arch import RRDBNet

from metaf2n_plugin import infer
from metaf2n_plugin.archive import LOCK, REPORT, folder_lock
from metaf2n_plugin.archs.masknet_arch import MaskNet
from metaf2n_plugin.faces import builtin_photo
from conftest import REPO, TINY_RRDB

SIDE = 64
PHOTOS = 30


@pytest.fixture(scope='module')
def archive(tmp_path_factory):
    """30 variations of the astronaut (64 px, shifted in brightness), their faces as landmarks, tiny weights."""
    root = tmp_path_factory.mktemp('archive')
    torch.manual_seed(0)
    net_g = RRDBNet(**TINY_RRDB)
    torch.nn.init.constant_(net_g.conv_last.bias, 0.5)
    torch.save({'params': net_g.state_dict()}, root / 'net_g.pth')
    torch.save({'params': MaskNet(6, 8, 3).state_dict()}, root / 'net_mask.pth')
    image, faces = builtin_photo('astronaut')
    image = cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    (root / 'photos').mkdir()
    (root / 'gt').mkdir()
    landmarks = {}
    for k in range(PHOTOS):
        name = f'photo{k:02d}.png'
        shifted = np.clip(image * (0.7 + 0.01 * k), 0, 1)
        cv2.imwrite(str(root / 'photos' / name), (shifted[:, :, ::-1] * 255).round().astype(np.uint8))
        gt = cv2.resize(shifted, (4 * SIDE, 4 * SIDE), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(root / 'gt' / name), (np.clip(gt, 0, 1)[:, :, ::-1] * 255).round().astype(np.uint8))
        landmarks[name] = {'faces': [{'landmarks': (face.landmarks * SIDE / 512).tolist()} for face in faces]}
    (root / 'faces.json').write_text(json.dumps(landmarks))
    return root


def flags(root, out, *extra):
    return [
        str(root / 'photos'), '-o',
        str(out), '--model',
        str(root / 'net_g.pth'), '--mask',
        str(root / 'net_mask.pth'), '--landmarks',
        str(root / 'faces.json'), '--gt',
        str(root / 'gt'), '--restorer-size', '256', '--lr', '0.3', '--tile', '0', *extra
    ]


def report_of(folder):
    return [json.loads(line) for line in (folder / REPORT).read_text().splitlines()]


def files_of(folder):
    """``name -> bytes`` of the folder's images (the report and nothing else besides them: no lock, no part, no
    temporary file)."""
    names = set(os.listdir(folder))
    assert names - {REPORT} == {name for name in names if name.endswith('.png')}, sorted(names)
    return {name: (folder / name).read_bytes() for name in sorted(names - {REPORT})}


@pytest.fixture(scope='module')
def reference(archive, tmp_path_factory):
    """An uninterrupted one-process run over the archive, on one thread as each of torchrun's CPU processes (the
    step's gradients sum in an order that depends on the threads): its folder."""
    out = tmp_path_factory.mktemp('reference') / 'out'
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert infer.main(flags(archive, out)) == 0
    finally:
        torch.set_num_threads(threads)
    return out


ONE_THREAD = {**os.environ, 'OMP_NUM_THREADS': '1'}


def test_the_report_has_a_line_per_photo_and_a_rerun_skips_complete_photos(archive, reference, tmp_path, capsys):
    report = report_of(reference)
    assert [line['photo']
            for line in report] == sorted(str(archive / 'photos' / f'photo{k:02d}.png') for k in range(PHOTOS))
    first = report[0]
    assert first['status'] == 'done' and first['adapted'] and first['reason'] is None
    assert first['faces_found'] == first['faces_used'] == 1 and first['patches'] == 9  # the face's 3 x 3 patches
    assert first['settings']['lr'] == 0.3 and first['precision'] in ('fp32', 'bf16')
    assert set(first['seconds']) == {'faces', 'adaptation', 'super_resolution'} and first['psnr_y'] > 10
    out = tmp_path / 'out'
    assert infer.main(flags(archive, out, '--fp32')) == 0
    written = {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out) if name != REPORT}
    report = report_of(out)
    capsys.readouterr()
    assert infer.main(flags(archive, out, '--fp32')) == 0
    assert f'0 of {PHOTOS} photos super-resolved into {out}, {PHOTOS} skipped (outputs complete), 0 failed' in \
        capsys.readouterr().out
    assert {name: os.stat(out / name).st_mtime_ns for name in written} == written  # not one image touched
    assert report_of(out) == report
    os.unlink(out / 'photo03_metaf2n.png')
    assert infer.main(flags(archive, out, '--fp32')) == 0
    assert f'1 of {PHOTOS} photos super-resolved into {out}, {PHOTOS - 1} skipped' in capsys.readouterr().out
    assert len(report_of(out)) == PHOTOS
    assert infer.main(flags(archive, out, '--fp32', '--overwrite')) == 0
    assert f'{PHOTOS} of {PHOTOS} photos super-resolved into {out}, 0 skipped' in capsys.readouterr().out
    assert all(os.stat(out / name).st_mtime_ns > written[name] for name in written)


def test_sigkill_at_random_moments_then_a_rerun_writes_every_photo_once_as_an_uninterrupted_run(
        archive, reference, tmp_path):
    out = tmp_path / 'out'
    command = [sys.executable, '-m', 'metaf2n_plugin.infer', *flags(archive, out)]
    rng, kept = random.Random(0), {}
    for kill in range(2):
        target = len(kept) + rng.randint(2, 10)
        process = subprocess.Popen(
            command, cwd=REPO, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while process.poll() is None and len(outputs(out)) < target:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.2))  # into the next photo: reading, faces, the step, the pass or a write
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, 'the run ended before it was killed: make the archive larger'
        done = outputs(out)
        assert set(kept) <= set(done) and len(done) < PHOTOS
        kept.update({name: os.stat(out / name) for name in done if name not in kept})
    assert subprocess.run(command, cwd=REPO, env=ONE_THREAD, capture_output=True).returncode == 0
    assert files_of(out) == files_of(reference)
    for name, stat in kept.items():  # written once: the photos complete at a kill were not written again
        assert (os.stat(out / name).st_ino, os.stat(out / name).st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    report = report_of(out)
    assert sorted(line['photo'] for line in report) == [line['photo'] for line in report_of(reference)]
    runs = {line['run'] for line in report if 'run' in line}
    assert len(runs) == 3, 'each of the three runs wrote some photos'


def outputs(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith('_metaf2n.png')) if folder.exists() else []


def test_a_folder_another_run_is_writing_is_refused(archive, tmp_path, capsys):
    out = tmp_path / 'out'
    out.mkdir()
    with folder_lock(str(out)):
        assert infer.main(flags(archive, out)) == 2
    assert f"output folder '{out}' is being written by another metaf2n-infer run (pid {os.getpid()} on " in \
        capsys.readouterr().err
    assert os.listdir(out) == []  # nothing written, and the lock's file gone with the lock
    assert not (out / LOCK).exists()


def test_two_torchrun_processes_write_the_files_of_one_process_and_one_report(archive, reference, tmp_path):
    out = tmp_path / 'out'
    command = [
        sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m',
        'metaf2n_plugin.infer', *flags(archive, out)
    ]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count('photos super-resolved into') == 1  # rank 0's summary alone
    assert f'{PHOTOS} of {PHOTOS} photos super-resolved' in finished.stdout
    assert files_of(out) == files_of(reference)
    report, alone = report_of(out), report_of(reference)
    assert sorted(line['photo'] for line in report) == [line['photo'] for line in alone]
    assert {line['rank'] for line in report} == {0, 1}
    assert sorted(line['psnr_y'] for line in report) == sorted(line['psnr_y'] for line in alone)


def test_a_torchrun_rank_killed_half_way_is_restarted_with_its_group_and_every_share_finished(
        archive, reference, tmp_path):
    out = tmp_path / 'out'
    command = [
        sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '--max-restarts', '1',
        '-m', 'metaf2n_plugin.infer', *flags(archive, out)
    ]
    agent = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while agent.poll() is None and not (out / 'photo03_metaf2n.png').exists():  # rank 1's second photo
            time.sleep(0.005)
        kept = {name: os.stat(out / name) for name in outputs(out)}
        os.kill(worker(agent.pid, rank=1), signal.SIGKILL)  # torchrun stops rank 0, then starts both again
        stdout, stderr = agent.communicate(timeout=600)
    finally:
        agent.kill()
    assert agent.returncode == 0, stderr[-3000:]
    assert files_of(out) == files_of(reference)
    for name, stat in kept.items():
        assert (os.stat(out / name).st_ino, os.stat(out / name).st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    report = report_of(out)
    assert sorted(line['photo'] for line in report) == [line['photo'] for line in report_of(reference)]
    # a photo whose output was renamed into place just before the kill, its line not yet written, is 'skipped'
    runs = {line['run'] for line in report if 'run' in line}
    assert len(runs) >= 3, 'rank 1, then both ranks of the restarted group wrote photos'
    counts = re.search(rf'(\d+) of {PHOTOS} photos super-resolved into .*, (\d+) skipped', stdout)  # the restart's
    done, skipped = map(int, counts.groups())
    assert done + skipped == PHOTOS and skipped >= len(kept) >= 2


def worker(agent, rank):
    """The pid of torchrun ``agent``'s worker process of ``rank`` (of its first attempt)."""
    for entry in os.listdir('/proc'):
        try:
            with open(f'/proc/{entry}/stat') as stat, open(f'/proc/{entry}/environ', 'rb') as environ:
                parent = int(stat.read().rsplit(')', 1)[1].split()[1])
                variables = environ.read().split(b'\0')
        except (OSError, ValueError):
            continue
        if parent == agent and f'RANK={rank}'.encode() in variables:
            return int(entry)
    raise AssertionError(f'torchrun (pid {agent}) has no worker of rank {rank}')
