"""Fréchet Inception Distance (Heusel et al., NeurIPS 2017) of a validation set, as pytorch-fid defines it (which
MetaF2N reports): RGB in [0, 1] resized bilinearly to 299x299, its Inception (BasicSR's ``InceptionV3``), 2048-d
pool features, BasicSR's ``calculate_fid`` distance. BasicSR scores ``val.metrics`` image by image, so FID comes from
:class:`FrechetInceptionDistance` or :class:`FIDValidationMixin`; the registered :func:`calculate_fid` only says so.
Usage: docs/metrics.md.
"""
import functools
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from basicsr.archs import inception
from basicsr.metrics import calculate_metric
from basicsr.metrics.fid import calculate_fid as frechet_distance
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.registry import METRIC_REGISTRY
from torchvision import models
from tqdm import tqdm

from metaf2n_plugin.atomic_write import atomic_file
from metaf2n_plugin.checkpoints import load_state_dict
from metaf2n_plugin.compat import build_fid_inception
from metaf2n_plugin.metrics.backbones import check_options, metric_device, metric_input
from metaf2n_plugin.weights import locate_weights


@METRIC_REGISTRY.register()
def calculate_fid(img, img2, **kwargs):
    """Not a per-image metric: raises, telling how to get FID from a BasicSR model."""
    raise RuntimeError(
        'FID compares whole sets of images, but this model scores val.metrics image by image. Use a model that '
        'reports it per dataset: one with metaf2n_plugin.metrics.fid_metric.FIDValidationMixin, e.g. '
        '`class MyModel(FIDValidationMixin, SRModel)`; or remove the `type: calculate_fid` entry from val.metrics.')


class FrechetInceptionDistance:
    """FID of a set of output images against their references or saved statistics: :meth:`update` per image, then
    :meth:`compute`.

    Args:
        reference_stats (str | None): ``.npz`` with the references' ``mu`` (D,) and ``sigma`` (D, D) (pytorch-fid's
            ``--save-stats``, :meth:`save_statistics`); when given, the references passed to :meth:`update` are ignored.
        dims (int): 2048 (the standard) or 64 / 192 / 768 (earlier blocks, average-pooled; pytorch-fid's ``--dims``).
        weights, download, random_weights, device: as in :func:`fid_inception`.
    """

    def __init__(self,
                 reference_stats=None,
                 dims=2048,
                 weights=None,
                 download=False,
                 random_weights=False,
                 device=None):
        self.inception = fid_inception(dims, weights, download, random_weights, device)
        self.dims = dims
        self.reference_stats = reference_stats
        self.reference = None if reference_stats is None else load_fid_statistics(reference_stats)
        self.output_features, self.reference_features = [], []

    def update(self, img, img2=None):
        """Add one output ``img`` and, unless ``reference_stats`` was given, its reference ``img2`` (None: none):
        (H, W, 3) **BGR** in [0, 255], uint8 or float, as ``tensor2img`` returns it; the two may differ in size."""
        self.output_features.append(inception_features(img, self.inception))
        if img2 is not None and self.reference is None:
            self.reference_features.append(inception_features(img2, self.inception))

    def statistics(self):
        """``(mu, sigma)``: mean (D,) and covariance (D, D) of the output images' features, float64."""
        return fid_statistics(self.output_features, 'output')

    def save_statistics(self, path):
        """Write :meth:`statistics` atomically to ``path`` (an ``.npz``: ``mu``, ``sigma``) for ``reference_stats``."""
        mu, sigma = self.statistics()
        with atomic_file(path) as f:
            np.savez(f, mu=mu, sigma=sigma)

    def compute(self):
        """The FID (float, >= 0 up to rounding) between the outputs and the references fed so far."""
        reference = self.reference or fid_statistics(self.reference_features, 'reference')
        if reference[0].shape != (self.dims, ):
            raise ValueError(f'{self.reference_stats} holds statistics of {reference[0].shape[0]}-d features, '
                             f'but this FID uses dims={self.dims}')
        return float(frechet_distance(*self.statistics(), *reference))


def fid_statistics(features, which='image'):
    """Mean (D,) and covariance (D, D) of a list of (D,) feature vectors; ``which`` names them in errors."""
    if len(features) < 2:
        raise ValueError(f'FID needs the features of at least 2 {which} images, got {len(features)}; without GT '
                         'images give `reference_stats`')
    features = np.stack(features)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def load_fid_statistics(path):
    """``(mu, sigma)`` from a ``.npz`` file with keys ``mu`` (D,) and ``sigma`` (D, D)."""
    with np.load(path) as stats:
        if not {'mu', 'sigma'} <= set(stats.files):
            raise ValueError(f'{path} holds {sorted(stats.files)}; FID statistics need `mu` (D,) and `sigma` (D, D), '
                             'as pytorch-fid --save-stats and FrechetInceptionDistance.save_statistics write them')
        return stats['mu'], stats['sigma']


def inception_features(img, network):
    """(D,) float64 features of one (H, W, 3) BGR image in [0, 255], from :func:`fid_inception`'s ``network``."""
    with torch.no_grad():
        feature_map = network(metric_input(img, next(network.parameters()).device))[0]
    return F.adaptive_avg_pool2d(feature_map, 1).flatten().double().cpu().numpy()


def fid_inception(dims=2048, weights=None, download=False, random_weights=False, device=None):
    """BasicSR's ``InceptionV3`` with pytorch-fid's weights, in eval mode, built once per (dims, weights file, device).

    ``dims``: 64, 192, 768 or 2048, which block's output it returns (ValueError otherwise); ``weights``:
    ``pt_inception-2015-12-05-6726825d.pth`` (None: the usual places, :mod:`metaf2n_plugin.weights`); ``download``:
    fetch it when it is nowhere (else FileNotFoundError); ``random_weights``: untrained, meaningless scores (plumbing
    tests only); ``device``: None is CUDA when available. Takes (N, 3, H, W) RGB in [0, 1], returns
    ``[(N, dims, h, w)]``.
    """
    if dims not in inception.InceptionV3.BLOCK_INDEX_BY_DIM:
        raise ValueError(f'FID dims must be one of {sorted(inception.InceptionV3.BLOCK_INDEX_BY_DIM)}, got {dims}')
    url = inception.FID_WEIGHTS_URL
    weights_file = None
    if not random_weights:
        weights_file = locate_weights(os.path.basename(url), url, 'FID', weights, download)
    return _build_inception(dims, weights_file, str(metric_device(device)))


@functools.lru_cache(maxsize=None)
def _build_inception(dims, weights_file, device):
    if weights_file is None:
        get_root_logger().warning('FID runs with a randomly initialised Inception: its scores are meaningless '
                                  '(random_weights is for plumbing tests only).')
        # fid_inception_v3 swaps some torchvision blocks for subclasses with the same parameters, so an untrained
        # torchvision Inception with 1008 classes and no aux head has exactly its state_dict layout.
        untrained = models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
        state_dict = untrained.state_dict()
    else:
        state_dict = load_state_dict(weights_file, 'metric weights')
    network = build_fid_inception(inception.InceptionV3.BLOCK_INDEX_BY_DIM[dims], state_dict)
    return network.to(device).eval()


class FIDValidationMixin:
    """BasicSR's per-image validation loop, with FID per set and a score for every output the model returns.

    Put it first: ``class FIDSRModel(FIDValidationMixin, SRModel)``; the options are read, never changed. Every visual
    ``result<suffix>`` ((1, 3, H, W), RGB in [0, 1]) is saved where ``SRModel`` saves ``result``, ``<suffix>`` added to
    the name, and scored by every ``val.metrics`` entry as ``<name><suffix>`` (``psnr``, ``psnr_unadapted``). Entries of
    ``type: calculate_fid`` (other keys: :class:`FrechetInceptionDistance`'s) compare the set with its GT images (lower
    is better); the others are averaged over the images.
    """

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        metrics = self.opt['val'].get('metrics') or {}
        for name, options in metrics.items():
            if _is_fid(options):
                check_options(f'val.metrics.{name} (calculate_fid)', options, FrechetInceptionDistance)
        suffixes, sums, meters = None, {}, {}
        for data in tqdm(dataloader, unit='image', desc=dataset_name, disable=not self.opt['val'].get('pbar', False)):
            stem = os.path.splitext(os.path.basename(data['lq_path'][0]))[0]
            self.feed_data(data)
            self.test()
            visuals = self.get_current_visuals()
            if suffixes is None:  # the outputs of the first image name the metrics, in the log's order
                suffixes = [key[len('result'):] for key in visuals if key.startswith('result')]
                sums = {name + suffix: 0.0 for name in metrics if not _is_fid(metrics[name]) for suffix in suffixes}
                meters = _fid_meters({name: options for name, options in metrics.items() if _is_fid(options)}, suffixes)
            gt = tensor2img([visuals['gt']]) if 'gt' in visuals else None
            for suffix in suffixes:
                image = tensor2img([visuals['result' + suffix]])
                if save_img:
                    imwrite(image, self.visualization_path(dataset_name, stem, current_iter, suffix))
                pair = {'img': image} if gt is None else {'img': image, 'img2': gt}
                for name, options in metrics.items():
                    if _is_fid(options):  # the GT's features are shared by all outputs: computed once
                        meters[name + suffix].update(image, gt if suffix == suffixes[0] else None)
                    else:
                        sums[name + suffix] += calculate_metric(pair, options)
            self.release_test_data()
        self.metric_results = {key: value / len(dataloader) for key, value in sums.items()}
        self.metric_results.update({key: meter.compute() for key, meter in meters.items()})
        if self.metric_results:
            self._update_best_metrics(dataset_name, metrics, suffixes, current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    def release_test_data(self):
        """Drop one image's tensors before the next (as ``SRModel`` does)."""
        for name in ('lq', 'gt', 'output'):
            self.__dict__.pop(name, None)
        torch.cuda.empty_cache()  # as SRModel does; nothing without CUDA

    def visualization_path(self, dataset_name, stem, current_iter, suffix=''):
        """Where BasicSR's ``SRModel`` saves a validation image, ``suffix`` added to the name."""
        if self.opt['is_train']:
            return os.path.join(self.opt['path']['visualization'], stem, f'{stem}_{current_iter}{suffix}.png')
        tag = self.opt['val'].get('suffix') or self.opt['name']
        return os.path.join(self.opt['path']['visualization'], dataset_name, f'{stem}_{tag}{suffix}.png')

    def _update_best_metrics(self, dataset_name, metrics, suffixes, current_iter):
        if not hasattr(self, 'best_metric_results'):
            self.best_metric_results = {}
        best = self.best_metric_results.setdefault(dataset_name, {})
        for name, options in metrics.items():
            better = 'lower' if _is_fid(options) else options.get('better', 'higher')
            for suffix in suffixes:
                best.setdefault(name + suffix,
                                dict(better=better, val=math.inf * (1 if better == 'lower' else -1), iter=-1))
                self._update_best_metric_result(dataset_name, name + suffix, self.metric_results[name + suffix],
                                                current_iter)


def _is_fid(options):
    return options['type'] == 'calculate_fid'


def _fid_meters(fid_metrics, suffixes):
    """``{<name><suffix>: FrechetInceptionDistance}``; the meters of one entry share its GT features."""
    meters = {}
    for name, options in fid_metrics.items():
        options = {key: value for key, value in options.items() if key not in ('type', 'better')}
        for suffix in suffixes:
            meters[name + suffix] = FrechetInceptionDistance(**options)
            meters[name + suffix].reference_features = meters[name + suffixes[0]].reference_features
    return meters
