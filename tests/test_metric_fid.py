"""FID: a dataset-level metric on BasicSR's Inception, fed image by image, reported per dataset by the mixin.

Scores use an untrained Inception (``random_weights``) and, to keep them cheap on a CPU (a first forward
pass through the whole Inception takes seconds, the square root of a 2048x2048 covariance a minute), the
64-d features of its first block (``dims: 64``).
"""
import argparse
import inspect
import logging
import os

import cv2
import numpy as np
import pytest
import torch
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.metrics import calculate_psnr
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import METRIC_REGISTRY
from torch.utils.data import DataLoader
from torchvision import models

from metaf2n_plugin.metrics.fid_metric import (FIDValidationMixin, FrechetInceptionDistance, fid_inception,
                                               inception_features)
from conftest import TINY_SRVGG, load_script, write_image_pairs
from tolerances import gamma

FID_FILE = 'pt_inception-2015-12-05-6726825d.pth'
FID_URL = 'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/' + FID_FILE
TEST_FID = dict(dims=64, random_weights=True, device='cpu')


def smooth_images(count, size=32, seed=0):
    """``count`` (size, size, 3) uint8 BGR images: coloured sine patterns of random frequency and phase."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    return [
        np.stack([127.5 + 100 * np.sin(rng.uniform(2, 8) * xx + 3 * yy + rng.uniform(0, 6.3)) for _ in range(3)],
                 axis=-1).round().astype(np.uint8) for _ in range(count)
    ]


def with_noise(images, sigma, seed=1):
    rng = np.random.default_rng(seed)
    return [np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8) for img in images]


def fid_of(outputs, references, **options):
    meter = FrechetInceptionDistance(**{**TEST_FID, **options})
    for output, reference in zip(outputs, references):
        meter.update(output, reference)
    return meter


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_noise():
    images = smooth_images(10)
    meters = [fid_of(with_noise(images, sigma), images) for sigma in (0, 5, 25)]
    itself, slight, strong = (meter.compute() for meter in meters)
    # Against itself, float64: |mu - mu|^2 = 0 and tr S + tr S - 2 tr sqrtm(S S) = 0 but for rounding. S S errs by
    # <= γ_n ‖S‖_F^2, sqrtm's Schur decomposition and triangular root by as many terms again (backward errors); S is
    # singular (10 images, 64 dims), so each of the n eigenvalues' roots moves by up to the root of that error.
    n, covariance = 64, np.cov(np.stack(meters[0].output_features), rowvar=False)
    bound = 2 * n * np.linalg.norm(covariance) * np.sqrt(gamma(np.float64, 3 * n))
    assert abs(itself) <= bound < slight < strong


def test_fid_is_pytorch_fids_frechet_distance_of_the_features():
    """pytorch-fid: |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), unbiased covariances of the feature vectors."""
    references = smooth_images(80, seed=3)  # more images than feature dimensions: full-rank covariances
    meter = fid_of(with_noise(smooth_images(80), 10), references)
    f1, f2 = np.stack(meter.output_features), np.stack(meter.reference_features)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    # S1 S2 is similar to the PSD S1^(1/2) S2 S1^(1/2): its eigenvalues are real, >= 0, and their roots sum to the trace
    root_trace = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
    expected = np.square(f1.mean(0) - f2.mean(0)).sum() + np.trace(s1) + np.trace(s2) - 2 * root_trace
    assert meter.compute() == pytest.approx(expected, rel=1e-6)


def test_saved_statistics_stand_in_for_the_gt_images(tmp_path):
    gt = smooth_images(8)
    outputs = with_noise(gt, 10)
    fid_of(gt, [None] * len(gt)).save_statistics(tmp_path / 'gt_stats.npz')

    from_stats = fid_of(outputs, [None] * len(gt), reference_stats=str(tmp_path / 'gt_stats.npz'))
    assert from_stats.reference_features == []
    assert from_stats.compute() == pytest.approx(fid_of(outputs, gt).compute(), rel=1e-9)


def test_bad_statistics_files_and_too_few_images_are_explained(tmp_path):
    np.savez(tmp_path / 'wrong_keys.npz', mean=np.zeros(64), cov=np.eye(64))
    with pytest.raises(ValueError, match=r"wrong_keys.npz holds \['cov', 'mean'\]; FID statistics need `mu`"):
        FrechetInceptionDistance(reference_stats=str(tmp_path / 'wrong_keys.npz'), **TEST_FID)
    np.savez(tmp_path / 'dims_192.npz', mu=np.zeros(192), sigma=np.eye(192))
    meter = fid_of(smooth_images(2), [None] * 2, reference_stats=str(tmp_path / 'dims_192.npz'))
    with pytest.raises(ValueError, match='dims_192.npz holds statistics of 192-d features, but this FID uses dims=64'):
        meter.compute()
    with pytest.raises(ValueError, match='at least 2 reference images, got 1'):
        fid_of(smooth_images(1), smooth_images(1)).compute()


def test_features_are_the_average_pooled_block_output_of_the_rgb_image():
    network = fid_inception(**TEST_FID)
    assert network.output_blocks == [0]
    assert inspect.signature(FrechetInceptionDistance).parameters['dims'].default == 2048  # block 3, the last pool
    img = smooth_images(1, size=40)[0]
    features = inception_features(img, network)
    assert features.shape == (64, ) and features.dtype == np.float64
    rgb = torch.from_numpy(img[..., ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]  # float32, as BasicSR's
    with torch.no_grad():
        feature_map = network(rgb)[0]
    expected = feature_map.double().mean(dim=(2, 3)).flatten().numpy()
    # The same feature map (the same float32 input); ours averages its h w >= 0 values in float32, this in float64.
    positions = feature_map[0, 0].numel()
    assert np.allclose(features, expected, rtol=gamma(torch.float32, positions + 2), atol=0)
    channels_not_swapped = inception_features(np.ascontiguousarray(img[..., ::-1]), network)
    assert not np.allclose(channels_not_swapped, expected, rtol=1e-2, atol=0)


def test_missing_inception_weights_raise_an_error_naming_file_url_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        FrechetInceptionDistance(device='cpu')
    message = str(error.value)
    assert FID_FILE in message and FID_URL in message and str(tmp_path / 'torch' / 'hub' / 'checkpoints') in message
    assert str(tmp_path / 'experiments' / 'pretrained_models') in message


def test_weights_are_loaded_from_basicsr_folder_without_unpickling_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs('experiments/pretrained_models')
    torch.manual_seed(0)
    state_dict = models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False).state_dict()
    torch.save(state_dict, f'experiments/pretrained_models/{FID_FILE}')
    network = fid_inception(dims=64, device='cpu')
    assert torch.equal(network.blocks[0][0].conv.weight, state_dict['Conv2d_1a_3x3.conv.weight'])

    torch.save({'not_a_tensor': argparse.Namespace(x=1)}, tmp_path / 'pickled_object.pth')
    refused = r'is not a PyTorch weights file that can be loaded safely \(Unsupported global: GLOBAL argparse'
    with pytest.raises(ValueError, match=refused):
        fid_inception(dims=64, weights=str(tmp_path / 'pickled_object.pth'), device='cpu')


def test_without_the_mixin_a_fid_entry_in_val_metrics_explains_what_to_do():
    img = smooth_images(1)[0]
    with pytest.raises(RuntimeError, match=r'scores val.metrics image by image.*FIDValidationMixin'):
        METRIC_REGISTRY.get('calculate_fid')(img=img, img2=img, dims=64)


class FIDSRModel(FIDValidationMixin, SRModel):
    """BasicSR's SRModel, opted into FID."""


class TwoOutputSRModel(SRModel):
    """Stands in for a model with an adapted and an unadapted output: the latter is the LQ input."""

    def get_current_visuals(self):
        visuals = super().get_current_visuals()
        visuals['result_unadapted'] = visuals['lq']
        return visuals


class FIDTwoOutputSRModel(FIDValidationMixin, TwoOutputSRModel):
    """The mixin applied to a complete model: it sees every visual the model returns."""


def validate(model_class, folder, metrics, iterations=(1, ), log_file=None):
    """Build ``model_class`` (an untrained tiny SRVGGNetCompact, CPU) and validate it on ``folder``'s pairs.

    Outputs are saved as ``folder/visualization/pairs/<name>_sr.png``; with ``log_file``, BasicSR's log
    lines go there in BasicSR's format.
    """
    opt = {
        'name': 'fid_mixin',
        'scale': 1,
        'num_gpu': 0,
        'is_train': False,
        'dist': False,
        'rank': 0,
        'network_g': TINY_SRVGG,
        'path': {
            'pretrain_network_g': None,
            'visualization': str(folder / 'visualization')
        },
        'val': {
            'save_img': True,
            'suffix': 'sr',
            'metrics': metrics
        }
    }
    torch.manual_seed(0)
    model = model_class(opt)
    dataset = PairedImageDataset({
        'name': 'pairs',
        'phase': 'val',
        'scale': 1,
        'io_backend': {
            'type': 'disk'
        },
        'dataroot_gt': str(folder / 'pairs' / 'gt'),
        'dataroot_lq': str(folder / 'pairs' / 'lq')
    })
    logger, level = logging.getLogger('basicsr'), logging.getLogger('basicsr').level
    handler = logging.FileHandler(log_file) if log_file else logging.NullHandler()
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s: %(message)s'))  # BasicSR's log format
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # what basicsr.test's get_root_logger(log_file=...) does
    try:
        for current_iter in iterations:
            model.validation(DataLoader(dataset, batch_size=1), current_iter, tb_logger=None, save_img=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
    return model


def read_pngs(folder, pattern, count):
    return [cv2.imread(str(folder / pattern.format(f'{i:03d}'))) for i in range(count)]


def test_mixin_reports_fid_per_dataset_next_to_image_metrics_and_as_best(tmp_path):
    write_image_pairs(tmp_path / 'pairs', count=4, size=32)
    metrics = {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}, 'fid': {'type': 'calculate_fid', **TEST_FID}}
    # the second validation must not average the first one's FID in again
    model = validate(FIDSRModel, tmp_path, metrics, iterations=(1, 2))

    outputs = read_pngs(tmp_path, 'visualization/pairs/{}_sr.png', 4)
    gts = read_pngs(tmp_path, 'pairs/gt/{}.png', 4)
    expected_fid = fid_of(outputs, gts).compute()
    expected_psnr = np.mean([calculate_psnr(output, gt, crop_border=0) for output, gt in zip(outputs, gts)])
    # The same 8-bit images: FID exact by construction, PSNR a float64 mean of 4 (γ_4 ≪ 1e-6).
    assert model.metric_results == pytest.approx({'psnr': expected_psnr, 'fid': expected_fid}, rel=1e-6)
    assert expected_fid > 0
    best = model.best_metric_results['pairs']['fid']
    assert best == {'better': 'lower', 'val': pytest.approx(expected_fid), 'iter': 2}
    assert metrics['fid'] == {'type': 'calculate_fid', **TEST_FID}, 'the options must come back unchanged'


def test_each_result_visual_gets_its_fid_and_the_table_shows_the_delta(tmp_path):
    write_image_pairs(tmp_path / 'pairs', count=4, size=32)
    (tmp_path / 'run').mkdir()
    model = validate(
        FIDTwoOutputSRModel,
        tmp_path, {'fid': {
            'type': 'calculate_fid',
            **TEST_FID
        }},
        log_file=tmp_path / 'run' / 'test_fid_mixin_20260101_000000.log')

    gts = read_pngs(tmp_path, 'pairs/gt/{}.png', 4)
    expected = {
        'fid': fid_of(read_pngs(tmp_path, 'visualization/pairs/{}_sr.png', 4), gts).compute(),
        'fid_unadapted': fid_of(read_pngs(tmp_path, 'pairs/lq/{}.png', 4), gts).compute()
    }
    assert model.metric_results == pytest.approx(expected, rel=1e-6)  # the same 8-bit images: exact by construction

    load_script('results_table').main([str(tmp_path / 'run')])
    fid, unadapted = (float(f'{value:.4f}') for value in expected.values())
    assert (tmp_path / 'run' / 'metrics.csv').read_text().splitlines() == [
        'dataset,fid,fid_unadapted,fid_delta', f'pairs,{fid:.4f},{unadapted:.4f},{fid - unadapted:.4f}'
    ]


def test_an_unknown_fid_option_is_named_before_any_image_is_scored(tmp_path):
    write_image_pairs(tmp_path / 'pairs', count=2, size=32)
    with pytest.raises(ValueError, match=r"val.metrics.fid \(calculate_fid\): unknown options \['weights_path'\]"):
        validate(FIDSRModel, tmp_path, {'fid': {'type': 'calculate_fid', 'weights_path': 'x.pth', **TEST_FID}})
    assert not (tmp_path / 'visualization').exists()
