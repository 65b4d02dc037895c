"""MetaF2N (Yin et al., ICCV 2023) as a BasicSR model: meta-training (Algorithm 1, the SSG loss an optional outer
term) and test-time adaptation (Algorithm 2). The two-pass exact meta-gradient, the patch-by-patch outer backward
and the deviations from the original: docs/metaf2n.md.
"""
import inspect
import os
import re
from collections import OrderedDict

import torch
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from torch.func import functional_call

from metaf2n_plugin.checkpoints import read_checkpoint, save_checkpoint
from metaf2n_plugin.data.people import check_options_disjoint
from metaf2n_plugin.data.task_degradation import DegradedTasks, TaskDegrader, cut_patches
from metaf2n_plugin.errors import OptionError
from metaf2n_plugin.faces import FacePairExtractor
from metaf2n_plugin.faces.extractor import build_restorer
from metaf2n_plugin.faces.restoration import restore_lq_faces
from metaf2n_plugin.metrics.fid_metric import FIDValidationMixin
from metaf2n_plugin.models.adaptation import (AdaptationSettings, adapt_to_faces, adapt_to_photo, adapted_names,
                                              non_finite_output, stored_adaptation)
from metaf2n_plugin.models.distributed import average_gradients, broadcast_from_rank0, mean_log
from metaf2n_plugin.models.fast_forward import FastForward
from metaf2n_plugin.models.frozen_body import FrozenBodyCache, frozen_tail
from metaf2n_plugin.models.meta_gradient import task_meta_gradient
from metaf2n_plugin.models.precision import resolve_precision
from metaf2n_plugin.models.tiling import TILE_PAD
from metaf2n_plugin.names import UNADAPTED
from metaf2n_plugin.option_checks import checked_regex, checked_value, group_or_none, option_group
from metaf2n_plugin.sr_network import DIGEST_KEY, net_g_digest

# The keys of the model's option groups besides adaptation's (AdaptationSettings): BasicSR's, then MetaF2N's.
TRAIN_KEYS = ('total_iter', 'warmup_iter', 'scheduler', 'ema_decay', 'optim_g', 'pixel_opt', 'perceptual_opt',
              'optim_d', 'gan_opt', 'net_d_iters', 'net_d_init_iters', 'first_order', 'mask_reg_weight', 'outer_chunk',
              'meta_params', 'ssg_opt', 'cache_frozen_body', 'outer_target')
META_PARAMS_HINT = 'a regex of parameter names (e.g. ^conv_last\\.), ~ for all or false for none'
VAL_KEYS = ('val_freq', 'save_img', 'suffix', 'metrics', 'pbar', 'tile', 'tile_pad', 'precision', 'held_out',
            'exact_step')


@MODEL_REGISTRY.register()
class MetaF2NModel(FIDValidationMixin, SRModel):
    """MetaF2N: an SR network meta-learned to adapt to a photo's degradation from the faces in it.

    Options beyond SRModel's (``network_d`` is optional: without it no GAN terms)::

        network_mask: {type: MaskNet}           path.pretrain_network_mask, param_key_mask, strict_load_mask;
                                                testing only: ~ weighs every face pixel 1 (naive fine-tuning)
        face_restorer: oracle | {type: gpen, size: 256, channel_multiplier: 1, narrow: 0.5, weights: ...}
        face_pairs: FacePairExtractor.from_options (test photos whose dataset gives no faces; its restorer
                    restores the faces of items with landmarks)
        adaptation: AdaptationSettings' fields; those a key leaves out come from the MaskNet file
                    (path.pretrain_network_mask), else the defaults; the settings are saved with MaskNet's weights
        train: first_order (false), mask_reg_weight (0.001), ssg_opt, outer_chunk (1; 0: the whole task at once),
               meta_params (regex of the net_g parameters meta-trained; ~: all, the paper's; false: none),
               optim_g (theta and MaskNet), any torch.optim name; net_d_iters, net_d_init_iters, optim_d, gan_opt;
               cache_frozen_body (true: with MetaF2NTaskPoolDataset, an RRDBNet body that is neither adapted nor
               meta-trained runs once per pool task, frozen_body.py); outer_target (gt_usm: the USM-sharpened GT,
               Real-ESRGAN's and MetaF2N's; gt: the GT itself)
        val: tile (0: whole photo), tile_pad (10), precision of the SR pass (auto: bf16 on CUDA and on CPUs with
             AVX-512 BF16 or AMX, else fp32; fp32, bf16, fp16; the step's frozen parts run in it too); exact_step
             (false; true: the step of 0.2, the whole network and MaskNet in fp32 with their graph); held_out
             (true: training refuses validation sets that show a person of the training faces; false: allowed, to
             watch training rather than measure it)
    An unknown key in any of these groups is refused by name, and so are training options whose validation sets
    show a person of the training faces (``metaf2n_plugin.data.people``).
    """

    def __init__(self, opt):
        self.scale = opt['scale']
        for key in ('network_g', 'network_mask', 'network_d'):
            group_or_none(opt, key, 'a network\'s options ({type: ...})')
        val = option_group(opt, 'val', VAL_KEYS)
        if opt['is_train']:
            train = option_group(opt, 'train', TRAIN_KEYS)
            checked_value('train.meta_params', train.get('meta_params'), (str, bool, type(None)),
                          lambda v: v is not True, META_PARAMS_HINT)
            checked_regex('train.meta_params', train.get('meta_params') or None, META_PARAMS_HINT)
            if opt.get('val') is not None and val.get('held_out', True):  # val: ~ validates nothing
                check_options_disjoint(opt.get('datasets') or {})
        precision = val.get('precision', 'auto')
        self.adaptation = self.adaptation_settings(opt)
        masked = opt.get('network_mask') is not None
        if not opt['is_train'] and masked and opt['path'].get('pretrain_network_mask') is None:
            raise ValueError('testing MetaF2N needs path.pretrain_network_mask: the MaskNet weights saved next to '
                             'net_g (experiments/<name>/models/net_mask_<iter>.pth); or network_mask: ~ to adapt '
                             'with every face pixel weighted 1 (naive face fine-tuning)')
        super().__init__(opt)  # net_g; init_training_settings() when training
        self.exact_step = checked_value('val.exact_step', val.get('exact_step', False), (bool, ))
        if self.is_train:
            adapted_names(self.net_g, self.adaptation.params)
        else:  # and the test photos' patches: their size, and the memory one face's need
            self.adaptation.check_network(self.net_g, self.scale, self.exact_step)
        self.precision = resolve_precision(precision, self.device)
        if not self.is_train:
            self.net_mask = self.build_extra_network('mask').requires_grad_(False) if masked else None
            if not masked:
                get_root_logger().info('network_mask: ~: adapting with every face pixel weighted 1 (W = 1)')
        self._check_scale()
        face_pairs = option_group(opt, 'face_pairs', ('source', 'restorer'))
        self.face_pairs = FacePairExtractor.from_options({**face_pairs, 'scale': self.scale}, self.device)
        self.not_adapted = []  # (image, reason) of the current validation set

    @staticmethod
    def adaptation_settings(opt):
        """The MaskNet file's :class:`AdaptationSettings` (defaults without one), each value the ``adaptation`` group
        sets instead logged."""
        path = opt['path'].get('pretrain_network_mask') if opt.get('network_mask') is not None else None
        stored = None
        if path is not None and os.path.exists(path):  # a missing file is reported when MaskNet is built
            stored = stored_adaptation(read_checkpoint(path, 'path.pretrain_network_mask'))
        return (stored or AdaptationSettings()).overridden(
            opt.get('adaptation'), 'the adaptation options',
            repr(path) if stored else None,
            get_root_logger().info)

    def init_training_settings(self):
        train_opt = self.opt['train']
        self.first_order = train_opt.get('first_order', False)
        self.mask_reg_weight = train_opt.get('mask_reg_weight', 0.001)
        self.outer_chunk = train_opt.get('outer_chunk', 1)
        self.outer_target = train_opt.get('outer_target', 'gt_usm')
        if self.outer_target not in ('gt_usm', 'gt'):
            raise ValueError(f'train.outer_target must be gt_usm (the USM-sharpened GT, the default) or gt, got '
                             f'{self.outer_target!r}')
        self.net_d_iters = train_opt.get('net_d_iters', 1)
        self.net_d_init_iters = train_opt.get('net_d_init_iters', 0)
        self.net_mask = self.build_extra_network('mask')
        self.freeze_theta(train_opt.get('meta_params'))
        self.tail, self.body_cache, self.features = None, None, None
        if train_opt.get('cache_frozen_body', True):
            changed = {name for name, param in self.net_g.named_parameters() if param.requires_grad}
            self.tail, reason = frozen_tail(self.net_g, changed)
            if reason:
                get_root_logger().info(f'train.cache_frozen_body: the body runs at every visit ({reason})')
        if self.first_order:
            get_root_logger().warning('first_order: MaskNet gets no meta-gradient without the second-order term; '
                                      'it is frozen at its initial (or pretrained) weights.')
            self.net_mask.requires_grad_(False)
        self.net_d = self.build_extra_network('d') if self.opt.get('network_d') else None
        self.cri_gan = build_loss(train_opt['gan_opt']).to(self.device) if self.net_d is not None else None
        self.cri_ssg = build_loss(train_opt['ssg_opt']).to(self.device) if train_opt.get('ssg_opt') else None
        self.degrader = TaskDegrader(self.scale)
        restorer = self.opt.get('face_restorer', 'oracle')
        restorer = {'type': restorer} if isinstance(restorer, str) else restorer
        self.face_restorer = None if restorer['type'] == 'oracle' else build_restorer(restorer, self.device)
        super().init_training_settings()  # EMA, pixel and perceptual losses, optimizers, schedulers

    def build_extra_network(self, key):
        """``network_<key>`` on the device, loaded from ``path.pretrain_network_<key>`` when given."""
        net = self.model_to_device(build_network(self.opt[f'network_{key}']))
        self.print_network(net)
        path = self.opt['path'].get(f'pretrain_network_{key}')
        if path is not None and not os.path.exists(path):
            raise FileNotFoundError(f'path.pretrain_network_{key}: {path!r} does not exist (resuming expects '
                                    f'net_{key}_<iter>.pth next to net_g_<iter>.pth; set it to ~ to start from '
                                    'random weights)')
        if path is not None:
            self.load_network(net, path, self.opt['path'].get(f'strict_load_{key}', True),
                              self.opt['path'].get(f'param_key_{key}', 'params'))
        return net

    def freeze_theta(self, meta_params):
        """Meta-train only the tensors of ``net_g`` whose names match the regex ``meta_params`` (None: all, the
        paper's; false: none, MaskNet alone). The others keep their (pretrained) values; those that the inner step
        adapts (``adaptation.params``) still get gradients, for the step, and the rest need no backward at all.
        ValueError when a regex matches nothing."""
        self.frozen_params = []
        if meta_params is None:
            return
        inner = self.adaptation.params
        names = {name for name, _ in self.net_g.named_parameters() if meta_params and re.search(meta_params, name)}
        if meta_params is not False and not names:
            raise OptionError(
                f'train.meta_params {meta_params!r} matches no parameter of net_g; give {META_PARAMS_HINT}',
                option='train.meta_params',
                value=meta_params)
        for name, param in self.net_g.named_parameters():
            adapted = inner is None or re.search(inner, name) is not None
            param.requires_grad_(name in names or adapted)
            if name not in names:
                self.frozen_params.append(param)
        get_root_logger().info(f'train.meta_params: meta-training {len(names)} parameter tensors of net_g '
                               f'({sum(p.numel() for n, p in self.net_g.named_parameters() if n in names):,} values) '
                               'and MaskNet; the rest of net_g stays as loaded')

    def model_to_device(self, net):
        """On the device, not wrapped in DDP; under ``--launcher`` every rank starts from rank 0's weights."""
        if not self.opt['dist'] and self.opt['num_gpu'] > 1:
            get_root_logger().warning('MetaF2NModel runs on one GPU per process: use torchrun --nproc_per_node=N '
                                      '... --launcher pytorch for several')
        net = net.to(self.device)
        broadcast_from_rank0(net.state_dict().values())
        return net

    def _check_scale(self):
        was_training = self.net_g.training
        with torch.no_grad():
            out = self.net_g.eval()(torch.zeros(1, 3, 16, 16, device=self.device))
        self.net_g.train(was_training)
        if out.shape[-2:] != (16 * self.scale, 16 * self.scale):
            raise ValueError(f'network_g ({self.opt["network_g"]["type"]}) turns 16x16 into {out.shape[-1]}x'
                             f'{out.shape[-2]}, but scale is {self.scale}: set its upscale (or scale) option to '
                             f'{self.scale}')

    def setup_optimizers(self):
        """One optimiser for theta and MaskNet (``optim_g``), one for the discriminator (``optim_d``)."""
        train_opt = self.opt['train']
        frozen = set(map(id, self.frozen_params))
        params = [
            p for net in (self.net_g, self.net_mask) for p in net.parameters()
            if p.requires_grad and id(p) not in frozen
        ]
        options = dict(train_opt['optim_g'])
        self.optimizer_g = self.get_optimizer(options.pop('type'), params, **options)
        self.optimizers.append(self.optimizer_g)
        if self.net_d is not None:
            options = dict(train_opt['optim_d'])
            self.optimizer_d = self.get_optimizer(options.pop('type'), self.net_d.parameters(), **options)
            self.optimizers.append(self.optimizer_d)

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        """Any ``torch.optim`` optimiser by its class name (BasicSR 1.4.2 knows only Adam)."""
        optimizer = getattr(torch.optim, optim_type, None)
        if not (inspect.isclass(optimizer) and issubclass(optimizer, torch.optim.Optimizer)):
            raise ValueError(f'optimizer type {optim_type!r} is not a torch.optim optimizer (e.g. Adam, AdamW, SGD)')
        return optimizer(params, lr=lr, **kwargs)

    def feed_data(self, data):
        """A test photo (``lq``), or T tasks: HQ (degraded here) or already degraded (DegradedTasks' fields)."""
        if 'lq' in data:
            self.item = data
            return super().feed_data(data)
        self.features = None
        if 'face_gt' in data:
            restore = None if self.face_restorer is None else self.restore_faces
            self.tasks = self.degrader(data, self.device, restorer=restore)
            return
        tasks = DegradedTasks(
            **{name: data[name].to(self.device)
               for name in DegradedTasks.__dataclass_fields__ if name in data})
        if tasks.face_hq_patches is None:
            tasks.face_hq_patches = tasks.face_gt_patches if self.face_restorer is None else torch.stack([
                cut_patches(self.restore_faces(faces), crops, self.scale)
                for faces, crops in zip(tasks.face_lq, tasks.face_crops)
            ])
        self.tasks = tasks
        if 'pool_index' in data and self.tail is not None:
            if self.body_cache is None:
                self.body_cache = FrozenBodyCache(self.net_g, data['pool_path'][0], data['pool_digest'][0])
            self.features = self.body_cache(data['pool_index'], self.device)

    def restore_faces(self, faces):
        """``(F, 3, h, w)`` LQ faces -> ``(F, 3, s*h, s*w)`` pseudo ground truth, with the face restorer."""
        return restore_lq_faces(self.face_restorer, faces, self.scale)

    def optimize_parameters(self, current_iter):
        """Algorithm 1: each task's meta-gradient, their mean, one step on theta and MaskNet; then the discriminator."""
        update_g = current_iter % self.net_d_iters == 0 and current_iter > self.net_d_init_iters
        log_now = current_iter % self.opt.get('logger', {}).get('print_freq', 1) == 0
        self.optimizer_g.zero_grad()
        if self.net_d is not None:
            self.net_d.requires_grad_(False)
        logs, fakes, reals = [], [], []
        for t in range(len(self.tasks.face_lq)):
            try:
                sr, log = self.meta_backward(t, update_g, log_now)
            except FloatingPointError as error:  # a non-finite loss, found before any backward
                get_root_logger().warning(f'iter {current_iter}, task {t}: {error}; task skipped')
                continue
            logs.append(log)
            fakes.append(sr)
            reals.append(self.tasks.background_gt[t])
        if average_gradients(self.optimizer_g.param_groups[0]['params'], len(fakes)) and update_g:
            self.optimizer_g.step()
        for param in self.frozen_params:  # adapted in the inner step, not meta-trained: drop their gradient
            param.grad = None
        if self.net_d is not None:
            logs.append(self.optimize_discriminator(reals, fakes))
        nets = [net for net in (self.net_g, self.net_mask, self.net_d) if net is not None]
        broadcast_from_rank0(buffer for net in nets for buffer in net.buffers())  # e.g. spectral norm's vectors
        self.log_dict = mean_log(logs)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def meta_backward(self, t, update_g=True, log_now=False):
        """Task t's meta-gradient into ``.grad`` (:func:`task_meta_gradient`); without ``update_g`` only theta''s
        output. Returns ``(sr, losses)``: the adapted network's ``(P, 3, s*pb, s*pb)`` output, the logged terms."""
        tasks = self.tasks
        faces = tasks.face_lq_patches[t], tasks.face_hq_patches[t]
        target = tasks.background_gt_usm[t] if self.outer_target == 'gt_usm' else tasks.background_gt[t]
        net, face_input, background_input = self.net_g, None, tasks.background_lq[t]
        if self.features is not None:  # the frozen body's cached output: the tail alone runs
            net, face_input, background_input = self.tail, self.features[0][t], self.features[1][t]
        if update_g:
            return task_meta_gradient(net, self.net_mask, faces, (background_input, target), self.outer_losses,
                                      self.adaptation, self.first_order, self.outer_chunk, log_now, face_input)
        adapted = adapt_to_faces(net, self.net_mask, *faces, self.adaptation, net_input=face_input)
        with torch.no_grad():
            sr = functional_call(net, adapted, (background_input, ))
        return sr, OrderedDict(l_inner_before=adapted.inner_losses[0], mask_mean=adapted.mask_weights.detach().mean())

    def outer_losses(self, sr, target, mask_weights):
        """MetaF2N's outer loss terms of the adapted output (+ SSG): a dict of scalars, to be summed."""
        losses = OrderedDict()
        if self.cri_pix:
            losses['l_g_pix'] = self.cri_pix(sr, target)
        if self.cri_perceptual:
            perceptual = self.cri_perceptual(sr, target)
            if isinstance(perceptual, tuple):  # BasicSR's PerceptualLoss: (perceptual, style), either may be None
                perceptual, style = perceptual
                if style is not None:
                    losses['l_g_style'] = style
            if perceptual is not None:
                losses['l_g_percep'] = perceptual
        if self.cri_ssg:
            losses['l_g_ssg'] = self.cri_ssg(sr, target)
        if self.net_d is not None:
            losses['l_g_gan'] = self.cri_gan(self.net_d(sr), True, is_disc=False)
        if self.mask_reg_weight and mask_weights.requires_grad:
            losses['l_g_mask'] = self.mask_reg_weight * (mask_weights - 1).square().mean()
        return losses

    def optimize_discriminator(self, reals, fakes):
        """Vanilla GAN step, mean over tasks: real = non-sharpened background GT, fake = SR(theta') (detached)."""
        self.net_d.requires_grad_(True)
        self.optimizer_d.zero_grad()
        log = OrderedDict(l_d_real=0, l_d_fake=0, out_d_real=0, out_d_fake=0)
        for real, fake in zip(reals, fakes):
            for image, is_real, name in ((real, True, 'real'), (fake, False, 'fake')):
                prediction = self.net_d(image)
                loss = self.cri_gan(prediction, is_real, is_disc=True)
                loss.backward()
                log[f'l_d_{name}'] += loss.detach() / len(reals)
                log[f'out_d_{name}'] += prediction.detach().mean() / len(reals)
        if average_gradients(self.net_d.parameters(), len(reals)):
            self.optimizer_d.step()
        return log if reals else {}

    def test(self):
        """Algorithm 2: adapt theta to this photo's faces (never touching the network), super-resolve with theta'."""
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        adapted = self.adapt_to_photo(net)
        forward = FastForward(net, self.scale, **self.tiling(), channels_last=False, precision=self.precision)
        if adapted is None:
            self.output = self.output_unadapted = forward(None, self.lq)
        else:  # one pass gives both when the step adapted an RRDBNet's tail alone
            self.output, self.output_unadapted = forward.pair(adapted, None, self.lq)
        if adapted is not None and not self.output.isfinite().all():  # theta' finite, its output not
            self.not_adapted_because(os.path.basename(self.item['lq_path'][0]), non_finite_output(self.adaptation))
            self.output = self.output_unadapted
        net.train(was_training)

    def adapt_to_photo(self, net):
        """theta' for the current photo, or None (logged, counted) when it has no usable face."""
        name = os.path.basename(self.item['lq_path'][0])
        adapted, _, reason = adapt_to_photo(net, self.net_mask, self.face_pairs.pairs_of_item(self.item), self.scale,
                                            name, self.opt.get('manual_seed',
                                                               0), self.adaptation, self.precision, self.exact_step)
        if adapted is None:
            self.not_adapted_because(name, reason)
        return adapted

    def not_adapted_because(self, name, reason):
        get_root_logger().warning(f'{name}: {reason}; it gets the unadapted output')
        self.not_adapted.append((name, reason))

    def tiling(self):
        val = self.opt.get('val') or {}
        return {'tile': val.get('tile', 0), 'tile_pad': val.get('tile_pad', TILE_PAD)}

    def get_current_visuals(self):
        visuals = OrderedDict(lq=self.lq.detach().cpu(), result=self.output.detach().cpu())
        visuals['result' + UNADAPTED] = self.output_unadapted.detach().cpu()
        if hasattr(self, 'gt'):
            visuals['gt'] = self.gt.detach().cpu()
        return visuals

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Algorithm 2 on every photo of one set, scored as adapted (``<m>``) and unadapted (``<m>_unadapted``)
        by :class:`FIDValidationMixin`; photos without a usable face are listed in the log."""
        self.not_adapted = []
        super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        get_root_logger().info(f'{dataloader.dataset.opt["name"]}: {len(dataloader) - len(self.not_adapted)} of '
                               f'{len(dataloader)} images adapted; {len(self.not_adapted)} got the unadapted output' +
                               ''.join(f'\n\t{name}: {reason}' for name, reason in self.not_adapted))

    def release_test_data(self):
        super().release_test_data()
        del self.output_unadapted, self.item

    def save(self, epoch, current_iter):
        """MaskNet's weights with the adaptation settings and the digests of the net_g weights saved beside it
        (``net_mask_<iter>.pth``: ``params``, ``adaptation``, ``net_g_sha256``: net_g's, then its EMA's, which a photo
        run checks), the discriminator's, then SRModel's: net_g with its EMA and the training state."""
        label = 'latest' if current_iter == -1 else current_iter
        state = {key: value.cpu() for key, value in self.net_mask.state_dict().items()}
        nets = [self.get_bare_model(self.net_g)] + ([self.net_g_ema] if hasattr(self, 'net_g_ema') else [])
        save_checkpoint(
            state,
            os.path.join(self.opt['path']['models'], f'net_mask_{label}.pth'),
            adaptation=self.adaptation.to_dict(),
            **{DIGEST_KEY: [net_g_digest(net) for net in nets]})
        if self.net_d is not None:
            self.save_network(self.net_d, 'net_d', current_iter)
        super().save(epoch, current_iter)
