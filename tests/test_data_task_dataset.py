"""Meta-training tasks: what the dataset hands over, and what the device-side degrader makes of it."""
import os
import random
import re
import shutil

import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from torch.utils.data import DataLoader

from metaf2n_plugin.data.degradation import apply_degradation, sample_degradation, select_images, task_draw
from metaf2n_plugin.data.task_degradation import (TaskDegrader, choose_detailed_crops, cut_patches,
                                                  log_mean_squared_gradient, random_crops)
from conftest import task_options

FACE, BACKGROUND = 128, 160


def write_rgb(path, rgb):
    cv2.imwrite(str(path), (np.clip(rgb, 0, 1)[:, :, ::-1] * 255).round().astype(np.uint8))


def smooth(rng, size):
    coarse = rng.uniform(0, 1, (size // 16, size // 16, 3)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / 'faces').mkdir()
    (tmp_path / 'backgrounds').mkdir()
    for i in range(4):
        write_rgb(tmp_path / 'faces' / f'f{i}.png', smooth(rng, FACE))
    write_rgb(tmp_path / 'faces' / 'f4_large.png', smooth(rng, 2 * FACE))  # resized to face_size
    for i in range(3):
        write_rgb(tmp_path / 'backgrounds' / f'b{i}.png', smooth(rng, BACKGROUND))
    (tmp_path / 'faces' / 'notes.json').write_text('{}')  # not an image: ignored
    return tmp_path


def options(root, **changes):
    defaults = dict(
        patches_per_task=2, face_size=FACE, face_patch_size=64, background_size=BACKGROUND, background_patch_size=96)
    return task_options(root, **{**defaults, **changes})


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def test_item_is_one_task_of_hq_images_crops_and_one_draw(folders):
    seed_all(0)
    dataset = build_dataset(options(folders))
    assert len(dataset) == 5
    item = dataset[3]
    assert item['face_gt'].shape == (2, 3, FACE, FACE) and item['background_gt'].shape == (2, 3, BACKGROUND, BACKGROUND)
    assert item['face_gt'].dtype == torch.float32 and 0 <= item['face_gt'].min() and item['face_gt'].max() <= 1
    assert item['face_paths'].split('\n')[0].endswith('f3.png')
    candidates = item['face_crop_candidates']
    assert candidates.shape == (2, 6, 3) and item['face_patch_min_log_gradient'] == -6.0
    assert (candidates[..., 2] == 16).all() and item['background_crops'][:, 2].tolist() == [24, 24]
    assert (candidates[..., :2] <= FACE // 4 - 16).all() and (item['background_crops'][:, :2] <= 40 - 24).all()
    assert item['degradation']['noise_level1'].shape == (4, )  # faces and backgrounds: one magnitude each
    assert item['degradation']['kernel1'].shape == (21, 21)


def test_a_larger_face_is_resized_to_face_size(folders):
    seed_all(1)
    dataset = build_dataset(options(folders))
    assert dataset[4]['face_gt'].shape == (2, 3, FACE, FACE)


def test_one_flip_is_drawn_per_task_for_all_its_images(folders):
    (folders / 'faces' / 'f4_large.png').unlink()
    dataset = build_dataset(options(folders, faces_per_task=4, patches_per_task=3))
    originals = {
        path: cv2.imread(path)[:, :, ::-1].astype(np.float32) / 255
        for path in dataset.face_paths + dataset.background_paths
    }
    seen = set()
    for seed in range(8):
        seed_all(seed)
        item = dataset[0]
        images = [*item['face_gt'], *item['background_gt']]
        paths = item['face_paths'].split('\n') + item['background_paths'].split('\n')
        flipped = {
            np.allclose(image.permute(1, 2, 0).numpy(), originals[path][:, ::-1])
            for image, path in zip(images, paths)
        }
        assert len(flipped) == 1, 'some images of a task were flipped, others not'
        seen |= flipped
    assert seen == {True, False}


def detailed_right_quarter(size=128):
    face = torch.zeros(3, size, size)
    face[:, :, 3 * size // 4:] = torch.rand(3, size, size // 4, generator=torch.Generator().manual_seed(0))
    return face


def test_face_patch_retry_keeps_the_first_candidate_with_detail_else_the_last():
    face = detailed_right_quarter()
    assert log_mean_squared_gradient(face[:, :, :96]) == -np.inf and log_mean_squared_gradient(face[:, :, 96:]) > -6
    candidates = torch.tensor([[[0, 0, 8], [0, 20, 8], [4, 24, 8]], [[0, 0, 8], [8, 1, 8], [9, 2, 8]]])
    chosen = choose_detailed_crops(face.expand(2, -1, -1, -1), candidates, 4, -6.0)
    assert chosen.tolist() == [[0, 20, 8], [9, 2, 8]]


def test_face_patch_retry_prefers_patches_with_detail():
    face = detailed_right_quarter()
    np.random.seed(0)
    # 25 LQ positions x = 0..24 for an 8-pixel LQ patch (32 HQ); it reaches the detail for x >= 17: 8 of 25
    once = random_crops(face, 8, 4, 300)[:, 1] >= 17
    candidates = torch.stack([random_crops(face, 8, 4, 6) for _ in range(300)])
    with_retry = choose_detailed_crops(face.expand(300, -1, -1, -1), candidates, 4, -6.0)[:, 1] >= 17
    assert 0.22 < once.float().mean() < 0.42
    assert with_retry.float().mean() > 0.83  # 1 - (17/25)^6 = 0.90


def collated_batch(folders, tasks=2, **changes):
    seed_all(2)
    dataset = build_dataset(options(folders, **changes))
    return next(iter(DataLoader(dataset, batch_size=tasks, shuffle=False)))


def test_degrader_returns_the_documented_shapes_and_cuts_gt_at_the_crops(folders):
    batch = collated_batch(folders)
    tasks = TaskDegrader(scale=4)(batch)
    assert tasks.face_lq.shape == (2, 2, 3, 32, 32)
    assert tasks.face_lq_patches.shape == (2, 2, 3, 16, 16) and tasks.face_gt_patches.shape == (2, 2, 3, 64, 64)
    assert tasks.background_lq.shape == (2, 2, 3, 24, 24)
    assert tasks.background_gt.shape == tasks.background_gt_usm.shape == (2, 2, 3, 96, 96)
    assert tasks.face_crops.shape == (2, 2, 3)
    assert all(crop in candidates.tolist() for crop, candidates in zip(
        tasks.face_crops.flatten(0, 1).tolist(), batch['face_crop_candidates'].flatten(0, 1)))
    y, x, p = tasks.face_crops[1, 0].tolist()
    assert torch.equal(tasks.face_gt_patches[1, 0], batch['face_gt'][1, 0, :, 4 * y:4 * (y + p), 4 * x:4 * (x + p)])
    assert torch.equal(tasks.face_hq_patches, tasks.face_gt_patches)  # no restorer: the GT is the pseudo-GT
    assert torch.equal(tasks.face_lq_patches[1, 0], tasks.face_lq[1, 0, :, y:y + p, x:x + p])
    assert torch.equal(cut_patches(batch['face_gt'][1], tasks.face_crops[1], 4), tasks.face_gt_patches[1])
    y, x, p = batch['background_crops'][0, 1].tolist()
    assert torch.equal(tasks.background_gt[0, 1], batch['background_gt'][0, 1, :, 4 * y:4 * (y + p), 4 * x:4 * (x + p)])
    sharpened = tasks.background_gt_usm - tasks.background_gt
    assert sharpened.abs().max() > 0.01 and 0 <= tasks.background_gt_usm.min() and tasks.background_gt_usm.max() <= 1


def without_noise(batch):
    for stage in (1, 2):
        batch['degradation'][f'noise_level{stage}'].zero_()
    return batch


def test_faces_and_backgrounds_of_a_task_share_its_degradation(folders):
    """Same picture as a face and as a background, no noise, no sharpening: identical LQ; other draws differ."""
    batch = without_noise(collated_batch(folders, background_size=FACE, background_patch_size=64, face_patch_tries=1))
    batch['background_gt'][:, 0] = batch['face_gt'][:, 0]
    batch['background_crops'][:, 0] = batch['face_crop_candidates'][:, 0, 0]
    degrader = TaskDegrader(scale=4)
    degrader.usm_sharpener = torch.nn.Identity()
    tasks = degrader(batch)
    for t in range(2):
        assert torch.equal(tasks.background_lq[t, 0], tasks.face_lq_patches[t, 0])
    batch['degradation'] = {k: v[::-1] if isinstance(v, list) else v.flip(0) for k, v in batch['degradation'].items()}
    swapped = degrader(batch)
    assert not torch.equal(swapped.face_lq[0], tasks.face_lq[0])


def test_backgrounds_are_degraded_from_the_sharpened_gt_and_faces_from_the_plain_gt(folders):
    batch = without_noise(
        collated_batch(folders, background_size=FACE, background_patch_size=FACE, face_patch_size=FACE))
    degrader = TaskDegrader(scale=4)
    tasks = degrader(batch)
    draw = task_draw(batch['degradation'], 0)
    faces = apply_degradation(batch['face_gt'][0], select_images(draw, slice(0, 2)), 4, degrader.jpeger)
    sharpened = degrader.usm_sharpener(batch['background_gt'][0])
    backgrounds = apply_degradation(sharpened, select_images(draw, slice(2, None)), 4, degrader.jpeger)
    assert torch.equal(tasks.face_lq[0], faces)
    assert torch.equal(tasks.background_lq[0], backgrounds)
    plain = apply_degradation(batch['background_gt'][0], select_images(draw, slice(2, None)), 4, degrader.jpeger)
    assert (plain - backgrounds).abs().max() > 0.02
    assert torch.equal(tasks.background_gt_usm[0], sharpened) and torch.equal(tasks.background_gt[0],
                                                                              batch['background_gt'][0])


def test_face_patch_retry_scores_the_restored_face_and_cuts_the_pseudo_gt_there(folders):
    """A restorer whose output has detail only in the right quarter: the chosen patches lie there."""
    batch = collated_batch(folders, face_patch_tries=12)
    detail = detailed_right_quarter(FACE)
    tasks = TaskDegrader(scale=4)(batch, restorer=lambda lq: detail.expand(len(lq), -1, -1, -1))
    assert (tasks.face_crops[..., 1] >= 9).all()  # a 16-pixel LQ patch at x >= 9 reaches the right quarter (x >= 24)
    for t in range(2):
        assert torch.equal(tasks.face_hq_patches[t], cut_patches(detail.expand(2, -1, -1, -1), tasks.face_crops[t], 4))
        assert torch.equal(tasks.face_gt_patches[t], cut_patches(batch['face_gt'][t], tasks.face_crops[t], 4))


class RecordingJPEG(torch.nn.Module):
    """Wraps DiffJPEG and records the qualities of every call (before DiffJPEG overwrites them)."""

    def __init__(self, jpeger):
        super().__init__()
        self.jpeger, self.qualities = jpeger, []

    def forward(self, x, quality):
        self.qualities.append((x.shape[0], quality.tolist()))
        return self.jpeger(x, quality)


def test_every_image_of_a_task_gets_the_drawn_jpeg_qualities(folders):
    batch = collated_batch(folders)
    drawn = [(batch['degradation']['jpeg_quality1'][t].item(), batch['degradation']['jpeg_quality2'][t].item())
             for t in range(2)]
    degrader = TaskDegrader(scale=4)
    degrader.jpeger = RecordingJPEG(degrader.jpeger)
    degrader(batch)
    calls = degrader.jpeger.qualities
    # per task: faces (2 images) stage 1 and 2, backgrounds (2 images) stage 1 and 2; one quality per call,
    # given per image as float32, as Real-ESRGAN gives it
    expected = [(2, [torch.tensor(q).float().item()] * 2) for q1, q2 in drawn for q in (q1, q2, q1, q2)]
    assert calls == expected
    assert [batch['degradation']['jpeg_quality1'][t].item() for t in range(2)] == [q for q, _ in drawn]


def test_the_draw_is_reproducible_from_the_seeds():
    seed_all(9)
    first = sample_degradation({}, 3)
    seed_all(9)
    second = sample_degradation({}, 3)
    assert all(
        torch.equal(first[k], second[k]) if isinstance(first[k], torch.Tensor) else first[k] == second[k]
        for k in first)


def test_lmdb_and_meta_info_sources_read_the_same_images(folders):
    names = sorted(n for n in os.listdir(folders / 'faces') if n.endswith('.png'))
    make_lmdb_from_imgs(str(folders / 'faces'), str(folders / 'faces.lmdb'), names, [n[:-4] for n in names])
    shutil.copytree(folders / 'faces.lmdb', folders / 'backgrounds.lmdb')  # any images will do as backgrounds
    lmdb = build_dataset(
        options(
            folders,
            dataroot_face=str(folders / 'faces.lmdb'),
            background_size=FACE,
            background_patch_size=64,
            dataroot_background=str(folders / 'backgrounds.lmdb'),
            io_backend={'type': 'lmdb'},
            use_hflip=False))
    (folders / 'list.txt').write_text('f2.png (128,128,3)\nf0.png (128,128,3)\n')
    listed = build_dataset(options(folders, meta_info_face=str(folders / 'list.txt'), use_hflip=False))
    assert lmdb.face_paths[:2] == ['f0', 'f1']
    assert [os.path.basename(p) for p in listed.face_paths] == ['f0.png', 'f2.png']
    np.random.seed(0)
    from_lmdb = lmdb[2]['face_gt'][0]
    np.random.seed(0)
    from_list = listed[1]['face_gt'][0]
    assert torch.equal(from_lmdb, from_list)  # f2 both times


def test_empty_face_folder_is_named(folders, tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match=r"face folder '.*empty' holds no images"):
        build_dataset(options(folders, dataroot_face=str(tmp_path / 'empty')))


def test_missing_background_folder_is_named(folders):
    with pytest.raises(FileNotFoundError, match=r"background folder '.*nowhere' does not exist"):
        build_dataset(options(folders, dataroot_background=str(folders / 'nowhere')))


def test_files_that_are_not_images_are_all_named_when_the_dataset_is_built(folders):
    (folders / 'faces' / 'f0.png').write_bytes(b'')
    (folders / 'backgrounds' / 'b1.png').write_text('a text file')
    with pytest.raises(ValueError, match=r"(?s)1 of 5 face files are unusable.*f0\.png: empty \(0 bytes\)"):
        build_dataset(options(folders))
    (folders / 'faces' / 'f0.png').unlink()
    with pytest.raises(
            ValueError, match=r"(?s)1 of 3 background files.*b1\.png: not a PNG, JPEG, BMP, TIFF, WebP file"):
        build_dataset(options(folders))


@pytest.mark.parametrize(
    'broken, message',
    [('faces/f0.png', r"cannot read image '.*f0\.png': OpenCV cannot decode it"),
     ('faces/f1.png', r"face image '.*f1\.png' is 136x128; faces must be square"),
     ('backgrounds/b0.png', r"background image '.*b0\.png' is 300x100, smaller than background_size")])
def test_an_image_that_fails_later_is_logged_by_name_and_replaced(folders, caplog, broken, message):
    if broken == 'faces/f0.png':
        (folders / broken).write_bytes(b'\x89PNG\r\n\x1a\n broken')  # passes the header check
    else:
        write_rgb(folders / broken, np.zeros((FACE, FACE + 8, 3)) if 'faces' in broken else np.zeros((100, 300, 3)))
    dataset = build_dataset(options(folders, patches_per_task=30))
    item = dataset[0 if broken == 'faces/f0.png' else 1]
    assert broken.split('/')[1] not in item['face_paths'] + item['background_paths']
    assert re.search(message + r'.*; drawing another image instead \(replacement 1 of this data loader worker\)',
                     caplog.text)
    assert dataset.replacements >= 1 and item['face_gt'].shape[0] == 2 and item['background_gt'].shape[0] == 30


def test_a_data_set_of_broken_images_stops_with_a_clear_error(folders):
    for path in (folders / 'faces').iterdir():
        path.write_bytes(b'\x89PNG\r\n\x1a\n broken')
    with pytest.raises(RuntimeError, match='10 images in a row failed to load'):
        build_dataset(options(folders))[0]


def test_grayscale_rgba_and_16_bit_faces_are_read_as_rgb(folders):
    cv2.imwrite(str(folders / 'faces' / 'f0.png'), np.full((FACE, FACE), 51, np.uint8))
    cv2.imwrite(str(folders / 'faces' / 'f1.png'), np.full((FACE, FACE, 4), (0, 102, 0, 0), np.uint8))
    cv2.imwrite(str(folders / 'faces' / 'f2.png'), np.full((FACE, FACE, 3), 51 * 257, np.uint16))
    dataset = build_dataset(options(folders, use_hflip=False))
    for index, rgb in ((0, [0.2, 0.2, 0.2]), (1, [0, 0.4, 0]), (2, [0.2, 0.2, 0.2])):
        assert dataset[index]['face_gt'][0, :, 5, 5].tolist() == pytest.approx(rgb)


def test_a_missing_dataroot_names_the_option_and_the_dataset():
    from metaf2n_plugin.data.metaf2n_paired_face_dataset import MetaF2NPairedFaceDataset
    from metaf2n_plugin.data.metaf2n_task_dataset import MetaF2NTaskDataset

    with pytest.raises(
            KeyError, match="dataset 'train' \\(MetaF2NTaskDataset\\) needs option dataroot_face: the folder"):
        MetaF2NTaskDataset({'name': 'train', 'type': 'MetaF2NTaskDataset', 'dataroot_background': 'x'})
    with pytest.raises(KeyError, match="dataset 'val' \\(MetaF2NPairedFaceDataset\\) needs option dataroot_lq"):
        MetaF2NPairedFaceDataset({'name': 'val', 'type': 'MetaF2NPairedFaceDataset'})
