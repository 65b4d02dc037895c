"""Fréchet Inception Distance (Heusel et al., NeurIPS 2017) of a validation set, for BasicSR models.

FID compares two *sets* of images: Gaussians fitted to their Inception features, and the Fréchet
distance between them. The definition is pytorch-fid's, which MetaF2N reports: RGB images in [0, 1],
bilinearly resized to 299x299, pytorch-fid's Inception (BasicSR's ``InceptionV3``) and its 2048-d
average-pool features; BasicSR's ``calculate_fid`` gives the distance.

BasicSR's validation scores images one at a time and averages the scores, so FID cannot be an ordinary
``val.metrics`` function. Here are

- :class:`FrechetInceptionDistance`: feed images, then ``compute()``; usable by any code;
- :class:`FIDValidationMixin`: makes a model built on BasicSR's validation loop (``SRModel`` and its
  subclasses) report every ``val.metrics`` entry of ``type: calculate_fid`` per dataset;
- :func:`calculate_fid`, registered only to explain this in a model without the mixin.
"""
import functools
import os

import numpy as np
import torch
import torch.nn.functional as F
from basicsr.archs import inception
from basicsr.metrics.fid import calculate_fid as frechet_distance
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.registry import METRIC_REGISTRY
from torchvision import models

from metaf2n_plugin.compat import build_fid_inception
from metaf2n_plugin.metrics.backbones import bgr_to_rgb_tensor, find_weights, load_weights, metric_device


@METRIC_REGISTRY.register()
def calculate_fid(img, img2, **kwargs):
    """Not a per-image metric: raises, telling how to get FID from a BasicSR model."""
    raise RuntimeError(
        'FID compares whole sets of images, but this model scores val.metrics image by image. Use a model that '
        'reports it per dataset: one with metaf2n_plugin.metrics.fid_metric.FIDValidationMixin, e.g. '
        '`class MyModel(FIDValidationMixin, SRModel)`; or remove the `type: calculate_fid` entry from val.metrics.')


class FrechetInceptionDistance:
    """FID of a set of output images against their references or against saved statistics.

    Feed the set with :meth:`update`, one image at a time, then call :meth:`compute`.

    Args:
        reference_stats (str | None): ``.npz`` with the reference set's ``mu`` (D,) and ``sigma`` (D, D),
            as pytorch-fid's ``--save-stats`` and :meth:`save_statistics` write them. When given, the
            references passed to :meth:`update` are ignored.
        dims (int): feature size, 2048 (the standard) or 64 / 192 / 768 (earlier Inception blocks,
            average-pooled; as pytorch-fid's ``--dims``).
        weights_path, download, random_weights, device: where the Inception weights come from and where
            it runs, as in :func:`fid_inception`.
    """

    def __init__(self, reference_stats=None, dims=2048, weights_path=None, download=False, random_weights=False,
                 device=None):
        self.inception = fid_inception(dims, weights_path, download, random_weights, device)
        self.dims = dims
        self.reference_stats = reference_stats
        self.reference = None if reference_stats is None else load_fid_statistics(reference_stats)
        self.output_features, self.reference_features = [], []

    def update(self, img, img2=None):
        """Add one output image and, unless ``reference_stats`` was given, its reference.

        Args:
            img (ndarray): (H, W, 3) **BGR** image in [0, 255] (uint8 or float), as BasicSR's ``tensor2img``
                returns it.
            img2 (ndarray | None): the reference (GT) image, same conventions; any size.
        """
        self.output_features.append(inception_features(img, self.inception))
        if img2 is not None and self.reference is None:
            self.reference_features.append(inception_features(img2, self.inception))

    def statistics(self):
        """``(mu, sigma)``: mean (D,) and covariance (D, D) of the output images' features, float64."""
        return fid_statistics(self.output_features, 'output')

    def save_statistics(self, path):
        """Write :meth:`statistics` to ``path`` (``.npz``, keys ``mu`` and ``sigma``) for ``reference_stats``."""
        mu, sigma = self.statistics()
        np.savez(path, mu=mu, sigma=sigma)

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
        feature_map = network(bgr_to_rgb_tensor(img, next(network.parameters()).device))[0]
    return F.adaptive_avg_pool2d(feature_map, 1).flatten().double().cpu().numpy()


def fid_inception(dims=2048, weights_path=None, download=False, random_weights=False, device=None):
    """BasicSR's ``InceptionV3`` with pytorch-fid's weights, built once per (dims, weights file, device).

    Args:
        dims (int): 64, 192, 768 or 2048: which block's output it returns.
        weights_path (str | None): ``pt_inception-2015-12-05-6726825d.pth``; None looks in the usual places
            (:mod:`metaf2n_plugin.metrics.backbones`).
        download (bool): fetch the weights when they are nowhere.
        random_weights (bool): untrained network instead; scores are meaningless (plumbing tests only).
        device (str | None): CUDA if available when None.

    Returns:
        InceptionV3: in eval mode; takes (N, 3, H, W) RGB in [0, 1], returns ``[(N, dims, h, w)]``.

    Raises:
        FileNotFoundError: the weights are nowhere and ``download`` is off.
    """
    if dims not in inception.InceptionV3.BLOCK_INDEX_BY_DIM:
        raise ValueError(f'FID dims must be one of {sorted(inception.InceptionV3.BLOCK_INDEX_BY_DIM)}, got {dims}')
    url = inception.FID_WEIGHTS_URL
    weights_file = None if random_weights else find_weights(os.path.basename(url), url, 'FID', weights_path, download)
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
        state_dict = load_weights(weights_file)
    network = build_fid_inception(inception.InceptionV3.BLOCK_INDEX_BY_DIM[dims], state_dict)
    return network.to(device).eval()


class FIDValidationMixin:
    """Reports FID per validation set from a model that runs BasicSR's per-image validation loop.

    Apply it to a complete model class, mixin first: ``class FIDSRModel(FIDValidationMixin, SRModel)``. Every
    ``val.metrics`` entry with ``type: calculate_fid`` (its other keys are :class:`FrechetInceptionDistance`'s
    arguments) is then reported per dataset next to the image-level metrics: logged in BasicSR's format, sent
    to TensorBoard, tracked as best (lower is better).

    Each visual ``result<suffix>`` that the model's ``get_current_visuals()`` returns is scored against the
    visual ``gt`` (or the entry's ``reference_stats``) as metric ``<name><suffix>``: ``result`` gives ``fid``,
    and a model that also returns ``result_unadapted`` gets ``fid_unadapted``. The mixin sees the visuals of
    the classes after it in the MRO, hence "complete model". A model with a validation loop of its own can
    use :class:`FrechetInceptionDistance` directly instead.

    It relies on what BasicSR 1.4.2's ``SRModel.nondist_validation`` does: one dataset per call; per image,
    one ``get_current_visuals()`` (tensors (1, 3, H, W), RGB in [0, 1]); at the end, the per-image metrics
    averaged in ``metric_results``, then ``_log_validation_metric_values``. The FID entries are hidden from
    that loop (it would call them per image) and added to ``metric_results`` just before the log.
    """
    _fid_options = None  # {metric name: FrechetInceptionDistance kwargs} while nondist_validation runs
    _fid_meters = {}  # {metric name + suffix: FrechetInceptionDistance} of the current (or last) dataset
    _fid_references = {}  # {metric name: GT features}, shared by that entry's meters of every output

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        metrics = self.opt['val'].get('metrics') or {}
        fid_names = [name for name, options in metrics.items() if options.get('type') == 'calculate_fid']
        if not fid_names:
            return super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        for name in self._fid_meters:  # the last dataset's FID: the loop would average it again as a zero sum
            self.metric_results.pop(name, None)
        self._fid_options = {name: {key: value for key, value in metrics[name].items() if key not in ('type', 'better')}
                             for name in fid_names}
        self._fid_meters, self._fid_references = {}, {}
        self.opt['val']['metrics'] = {name: options for name, options in metrics.items() if name not in fid_names}
        try:
            return super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            self.opt['val']['metrics'] = metrics
            self._fid_options = None

    def get_current_visuals(self):
        visuals = super().get_current_visuals()
        if self._fid_options is None:
            return visuals
        outputs = {key[len('result'):]: tensor2img(visuals[key]) for key in visuals if key.startswith('result')}
        gt = tensor2img(visuals['gt']) if 'gt' in visuals else None
        for name, options in self._fid_options.items():
            meters = [self._fid_meter(name, suffix, options) for suffix in outputs]
            if gt is not None and meters and meters[0].reference is None:  # once per image, for all outputs
                meters[0].reference_features.append(inception_features(gt, meters[0].inception))
            for meter, output in zip(meters, outputs.values()):
                meter.update(output)
        return visuals

    def _fid_meter(self, name, suffix, options):
        """The meter of metric ``name + suffix``; all meters of one entry share its GT features."""
        if name + suffix not in self._fid_meters:
            meter = FrechetInceptionDistance(**options)
            meter.reference_features = self._fid_references.setdefault(name, [])
            self._fid_meters[name + suffix] = meter
        return self._fid_meters[name + suffix]

    def _log_validation_metric_values(self, current_iter, dataset_name, tb_logger):
        if self._fid_options is not None:
            for metric, meter in self._fid_meters.items():
                self.metric_results[metric] = meter.compute()
                self.best_metric_results[dataset_name].setdefault(
                    metric, dict(better='lower', val=float('inf'), iter=-1))
                self._update_best_metric_result(dataset_name, metric, self.metric_results[metric], current_iter)
        super()._log_validation_metric_values(current_iter, dataset_name, tb_logger)
