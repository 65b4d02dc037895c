"""MetaF2NModel, Algorithm 1: the meta-gradient against finite differences, first order, tasks, architectures;
its adaptation settings, saved with MaskNet; its options checked."""

import pytest
import torch
import yaml
from basicsr.data import build_dataset
from basicsr.models import build_model
from torch.func import functional_call
from torch.utils.data import DataLoader

from metaf2n_plugin import adapt_to_faces
from metaf2n_plugin.models.adaptation import AdaptationSettings
from metaf2n_plugin.weight_delta import state_digest
from conftest import task_options, tiny_rrdbnet

TASKS, FACES, BACKGROUNDS = 2, 2, 2


def model_options(tmp_path, train=None, **top):
    opt = {
        'name': 'metaf2n_unit',
        'model_type': 'MetaF2NModel',
        'scale': 4,
        'num_gpu': 0,
        'is_train': True,
        'dist': False,
        'rank': 0,
        'world_size': 1,
        'manual_seed': 0,
        'network_g': {
            'type': 'SRVGGNetCompact',
            'num_feat': 4,
            'num_conv': 1,
            'upscale': 4
        },
        'network_mask': {
            'type': 'MaskNet',
            'num_feat': 4,
            'num_conv': 2
        },
        'adaptation': {
            'lr': 0.5
        },
        'path': {
            'models': str(tmp_path / 'models'),
            'training_states': str(tmp_path / 'training_states')
        },
        'train': {
            'optim_g': {
                'type': 'SGD',
                'lr': 0.0
            },
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': [9]
            },
            'pixel_opt': {
                'type': 'MSELoss',
                'loss_weight': 1.0
            },
            'mask_reg_weight': 0.1,
            **(train or {})
        },
        'logger': {
            'print_freq': 1
        },
    }
    opt.update(top)
    return opt


def degraded_tasks(seed=0, dtype=torch.float64):
    """Already degraded tasks (DegradedTasks' fields), as a paired task dataset would give them."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=dtype)

    face_gt = rand(TASKS, FACES, 3, 32, 32)
    background_gt = rand(TASKS, BACKGROUNDS, 3, 32, 32)
    return {
        'face_lq': rand(TASKS, FACES, 3, 16, 16),
        'face_lq_patches': rand(TASKS, FACES, 3, 8, 8),
        'face_gt_patches': face_gt,
        'face_crops': torch.zeros(TASKS, FACES, 3, dtype=torch.int64) + 8,
        'background_lq': rand(TASKS, BACKGROUNDS, 3, 8, 8),
        'background_gt': background_gt,
        'background_gt_usm': (background_gt * 1.1).clamp(0, 1)
    }


def adapted_to_task(model, tasks, t):
    """theta' of task ``t``: one inner step of ``model``'s network on the task's face patches."""
    lq, gt = tasks['face_lq_patches'][t], tasks['face_gt_patches'][t]
    return adapt_to_faces(model.net_g, model.net_mask, lq, gt, model.adaptation)


def meta_objective(model, tasks):
    """L(theta, theta_m): the mean over tasks of the outer loss after the inner step, from scratch."""
    total = 0
    for t in range(TASKS):
        adapted = adapted_to_task(model, tasks, t)
        sr = functional_call(model.net_g, adapted, (tasks['background_lq'][t], ))
        total = total + model.cri_pix(sr, tasks['background_gt_usm'][t])
        total = total + model.mask_reg_weight * (adapted.mask_weights - 1).square().mean()
    return (total / TASKS).item()


def central_differences(model, tasks, param, indices, eps=1e-6):
    values = []
    for index in indices:
        original = param.data[index].item()
        param.data[index] = original + eps
        plus = meta_objective(model, tasks)
        param.data[index] = original - eps
        minus = meta_objective(model, tasks)
        param.data[index] = original
        values.append((plus - minus) / (2 * eps))
    return torch.tensor(values)


def meta_gradients(tmp_path, tasks, **train):
    torch.manual_seed(0)
    model = build_model(model_options(tmp_path, train))
    model.feed_data(tasks)
    model.optimize_parameters(1)
    return model


def test_second_order_meta_gradient_of_theta_and_masknet_matches_central_differences(tmp_path, float64):
    tasks = degraded_tasks()
    model = meta_gradients(tmp_path, tasks)
    for net in (model.net_g, model.net_mask):
        for name, param in net.named_parameters():
            flat = torch.randperm(param.numel(), generator=torch.Generator().manual_seed(1))[:3]
            indices = [tuple(int(i) for i in torch.unravel_index(k, param.shape)) for k in flat]
            expected = central_differences(model, tasks, param, indices)
            actual = torch.tensor([param.grad[index].item() for index in indices])
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-9, msg=name)
    assert any(p.grad.abs().sum() > 0 for p in model.net_mask.parameters())


def test_first_order_drops_exactly_the_hessian_term_and_freezes_masknet(tmp_path, float64):
    tasks = degraded_tasks()
    second = meta_gradients(tmp_path, tasks)
    first = meta_gradients(tmp_path, tasks, first_order=True)
    assert all(not p.requires_grad and p.grad is None for p in first.net_mask.parameters())
    assert len(first.optimizer_g.param_groups[0]['params']) == len(list(first.net_g.parameters()))
    net, lr = second.net_g, second.adaptation.lr
    theta = dict(net.named_parameters())
    hessian_term = {name: torch.zeros_like(p) for name, p in theta.items()}
    for t in range(TASKS):  # -lr * H_t g_t / T, written out: g_t = dL_out/dtheta' at theta'_t
        lq, hq = tasks['face_lq_patches'][t], tasks['face_gt_patches'][t]
        adapted = adapt_to_faces(net, second.net_mask, lq, hq, second.adaptation)
        leaves = {name: value.detach().requires_grad_() for name, value in adapted.items()}
        outer = second.cri_pix(
            functional_call(net, leaves, (tasks['background_lq'][t], )), tasks['background_gt_usm'][t])
        g = torch.autograd.grad(outer, list(leaves.values()))
        weights = adapted.mask_weights.detach()
        inner = (weights * (hq - functional_call(net, theta, (lq, ))).abs()).mean()
        grads = torch.autograd.grad(inner, list(theta.values()), create_graph=True)
        hvp = torch.autograd.grad(grads, list(theta.values()), grad_outputs=g)
        for name, value in zip(theta, hvp):
            hessian_term[name] -= lr * value / TASKS
    for name, p in theta.items():
        first_grad = dict(first.net_g.named_parameters())[name].grad
        torch.testing.assert_close(p.grad - first_grad, hessian_term[name], rtol=1e-7, atol=1e-12, msg=name)
    assert max(value.abs().max() for value in hessian_term.values()) > 1e-6


def test_masknet_gets_gradient_only_through_the_inner_step(tmp_path, float64):
    tasks = degraded_tasks()
    adapted = meta_gradients(tmp_path, tasks, mask_reg_weight=0)
    assert any(p.grad.abs().sum() > 0 for p in adapted.net_mask.parameters())
    torch.manual_seed(0)
    model = build_model(model_options(tmp_path, {'mask_reg_weight': 0}, adaptation={'lr': 0.0}))
    model.feed_data(tasks)
    model.optimize_parameters(1)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.net_mask.parameters())


def test_meta_gradient_is_the_mean_over_tasks(tmp_path, float64):
    tasks = degraded_tasks()
    both = meta_gradients(tmp_path, tasks)
    singles = [meta_gradients(tmp_path, {k: v[t:t + 1] for k, v in tasks.items()}) for t in range(TASKS)]
    for name, p in list(both.net_g.named_parameters()) + list(both.net_mask.named_parameters()):
        mean = sum(dict([*m.net_g.named_parameters(), *m.net_mask.named_parameters()])[name].grad for m in singles) / 2
        torch.testing.assert_close(p.grad, mean, rtol=1e-10, atol=1e-14, msg=name)


@pytest.mark.parametrize(
    'field, value', [('face_gt_patches', float('nan')), ('background_gt_usm', float('inf'))],
    ids=['inner loss', 'outer loss'])
def test_a_task_with_a_non_finite_loss_is_skipped_before_any_gradient_and_the_others_count(
        tmp_path, float64, field, value):
    tasks = degraded_tasks()
    broken = {k: v.clone() for k, v in tasks.items()}
    broken[field][0, 0, 0, 0, 0] = value
    model = meta_gradients(tmp_path, broken)
    alone = meta_gradients(tmp_path, {k: v[1:] for k, v in tasks.items()})
    for p, q in zip([*model.net_g.parameters(), *model.net_mask.parameters()],
                    [*alone.net_g.parameters(), *alone.net_mask.parameters()]):
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-14)


@pytest.fixture(scope='module')
def task_batch(tiny_workdir):
    """One collated batch of 2 HQ tasks from the tiny data set (the task dataset's own output)."""
    root = tiny_workdir / 'datasets' / 'tiny'
    dataset = build_dataset(
        task_options(
            root, patches_per_task=2, face_size=128, face_patch_size=64, background_size=128, background_patch_size=64))
    torch.manual_seed(0)
    return next(iter(DataLoader(dataset, batch_size=2)))


ARCHITECTURES = {
    'RRDBNet': tiny_rrdbnet(),
    'SRVGGNetCompact': {
        'type': 'SRVGGNetCompact',
        'num_feat': 8,
        'num_conv': 2,
        'upscale': 4
    },
    'SwinIR': {
        'type': 'SwinIR',
        'upscale': 4,
        'img_size': 16,
        'window_size': 4,
        'depths': [1],
        'embed_dim': 12,
        'num_heads': [2],
        'mlp_ratio': 2,
        'upsampler': 'pixelshuffle'
    },
    'EDSR': {
        'type': 'EDSR',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': 8,
        'num_block': 1,
        'upscale': 4
    },
}
FULL_TRAIN = {
    'optim_g': {
        'type': 'Adam',
        'lr': 1e-3
    },
    'optim_d': {
        'type': 'AdamW',
        'lr': 1e-3
    },
    'pixel_opt': {
        'type': 'L1Loss',
        'loss_weight': 1.0
    },
    'perceptual_opt': {
        'type': 'LPIPSLoss',
        'loss_weight': 0.5,
        'random_weights': True
    },
    'gan_opt': {
        'type': 'GANLoss',
        'gan_type': 'vanilla',
        'loss_weight': 0.1
    },
    'ssg_opt': {
        'type': 'SSGLoss',
        'loss_weight': 1.0,
        'mask_stride': 4
    },
    'ema_decay': 0.9
}
DISCRIMINATOR = {'type': 'UNetDiscriminatorSN', 'num_in_ch': 3, 'num_feat': 4}


@pytest.mark.parametrize('with_d', [True, False], ids=['gan', 'fidelity-only'])
@pytest.mark.parametrize('arch', list(ARCHITECTURES))
def test_a_training_iteration_runs_with_any_sr_architecture(tmp_path, task_batch, arch, with_d):
    extra = {'network_d': DISCRIMINATOR} if with_d else {}
    torch.manual_seed(0)
    model = build_model(
        model_options(tmp_path, FULL_TRAIN, network_g=ARCHITECTURES[arch], adaptation={'lr': 0.01}, **extra))
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    model.feed_data(task_batch)
    model.optimize_parameters(1)
    log = model.get_current_log()
    expected = {'l_inner_before', 'l_inner_after', 'mask_mean', 'l_g_pix', 'l_g_percep', 'l_g_ssg', 'l_g_mask'}
    if with_d:
        expected |= {'l_g_gan', 'l_d_real', 'l_d_fake', 'out_d_real', 'out_d_fake'}
    assert set(log) == expected and all(torch.isfinite(torch.tensor(v)) for v in log.values())
    assert any(not torch.equal(before[k], v) for k, v in model.net_g.state_dict().items())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.net_mask.parameters())


def test_save_and_resume_restore_g_its_ema_mask_d_and_the_optimizers(tmp_path, task_batch):
    """What ``--auto_resume`` does (basicsr.utils.misc.check_resume): every saved network and state comes back."""
    from basicsr.utils.misc import check_resume
    opt = model_options(tmp_path, FULL_TRAIN, network_d=DISCRIMINATOR, network_g=ARCHITECTURES['RRDBNet'])
    for folder in ('models', 'training_states'):
        (tmp_path / folder).mkdir()
    torch.manual_seed(0)
    trained = build_model(opt)
    for iteration in (1, 2):
        trained.feed_data(task_batch)
        trained.optimize_parameters(iteration)
    trained.save(epoch=0, current_iter=2)
    state = torch.load(tmp_path / 'training_states' / '2.state', weights_only=True)
    resumed_opt = {**opt, 'path': {**opt['path'], 'resume_state': str(tmp_path / 'training_states' / '2.state')}}
    check_resume(resumed_opt, state['iter'])
    torch.manual_seed(1)  # fresh networks would differ: everything must come from the files
    resumed = build_model(resumed_opt)
    resumed.resume_training(state)
    for name in ('net_g', 'net_g_ema', 'net_mask', 'net_d'):
        saved, loaded = getattr(trained, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(saved[k], loaded[k]) for k in saved), name
    assert len(trained.optimizers) == len(resumed.optimizers) == 2
    for before, after in zip(trained.optimizers, resumed.optimizers):
        assert len(before.state) == len(after.state) > 0
        for s, r in zip(before.state.values(), after.state.values()):
            assert all(torch.equal(s[k], r[k]) for k in s)
    assert [s.state_dict() for s in trained.schedulers] == [s.state_dict() for s in resumed.schedulers]
    assert sorted(p.name for p in (tmp_path / 'models').iterdir()) == ['net_d_2.pth', 'net_g_2.pth', 'net_mask_2.pth']


def test_the_outer_backward_patch_by_patch_equals_the_whole_task_at_once(tmp_path, float64):
    tasks = degraded_tasks()
    by_patch = meta_gradients(tmp_path, tasks, outer_chunk=1)
    at_once = meta_gradients(tmp_path, tasks, outer_chunk=0)
    for p, q in zip([*by_patch.net_g.parameters(), *by_patch.net_mask.parameters()],
                    [*at_once.net_g.parameters(), *at_once.net_mask.parameters()]):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-14)


def seeded_objective(model, tasks, seed, chunk):
    """The meta objective with the random numbers the model draws: per task, the inner step, then the outer
    forward ``chunk`` background patches at a time."""
    torch.manual_seed(seed)
    total = 0
    for t in range(TASKS):
        adapted = adapted_to_task(model, tasks, t)
        background = tasks['background_lq'][t]
        sr = torch.cat([
            functional_call(model.net_g, adapted, (background[c], )) for c in torch.arange(len(background)).split(chunk)
        ])
        total = total + model.cri_pix(sr, tasks['background_gt_usm'][t])
    return (total / TASKS).item()


@pytest.mark.parametrize('chunk', [1, 2])
def test_a_network_that_draws_random_numbers_gets_the_gradient_of_the_draw_it_made(tmp_path, float64, chunk):
    """The recomputed forwards (inner step, outer patches) must replay the random numbers of the first ones."""
    tasks = degraded_tasks()
    torch.manual_seed(0)
    model = build_model(
        model_options(
            tmp_path, {
                'outer_chunk': chunk,
                'mask_reg_weight': 0
            },
            network_g={'type': 'DropoutSRForTests'},
            logger={'print_freq': 1000}))
    model.feed_data(tasks)
    torch.manual_seed(5)
    model.optimize_parameters(1)
    for net in (model.net_g, model.net_mask):
        for name, param in net.named_parameters():
            index = tuple(0 for _ in param.shape)
            original = param.data[index].item()
            values = []
            for sign in (1, -1):
                param.data[index] = original + sign * 1e-6
                values.append(seeded_objective(model, tasks, 5, chunk))
            param.data[index] = original
            expected = (values[0] - values[1]) / 2e-6
            assert param.grad[index].item() == pytest.approx(expected, rel=1e-5, abs=1e-9), name


@pytest.mark.parametrize('degraded', [False, True], ids=['HQ tasks', 'already degraded tasks'])
def test_the_face_restorer_makes_the_inner_steps_targets(tmp_path, task_batch, degraded):
    """A GPEN restorer (tiny, random) restores the LQ faces; the inner step's targets are its patches."""
    from metaf2n_plugin.archs.gpen_arch import GPEN
    from metaf2n_plugin.data.task_degradation import cut_patches
    from metaf2n_plugin.faces.restoration import GPENRestorer, restore_lq_faces
    gpen = {'size': 64, 'style_dim': 32, 'n_mlp': 2, 'channel_multiplier': 1, 'narrow': 0.125}
    torch.manual_seed(0)
    torch.save(GPEN(**gpen).state_dict(), tmp_path / 'GPEN-BFR-64.pth')
    restorer = {'type': 'gpen', 'weights': str(tmp_path / 'GPEN-BFR-64.pth'), **gpen}
    model = build_model(model_options(tmp_path, face_restorer=restorer))
    torch.manual_seed(1)
    model.feed_data(task_batch)
    tasks = model.tasks
    if degraded:
        fields = ('face_lq', 'face_lq_patches', 'face_gt_patches', 'face_crops', 'background_lq', 'background_gt',
                  'background_gt_usm')
        model.feed_data({name: getattr(tasks, name) for name in fields})
    reference = GPENRestorer(weights=str(tmp_path / 'GPEN-BFR-64.pth'), **gpen)
    for t in range(2):
        restored = restore_lq_faces(reference, tasks.face_lq[t], 4)
        assert restored.shape == (2, 3, 128, 128)
        expected = cut_patches(restored, tasks.face_crops[t], 4)
        # Exact by construction: the model restores each task's faces with the same calls, weights and batch.
        torch.testing.assert_close(model.tasks.face_hq_patches[t], expected, atol=0, rtol=0)
        assert (expected - tasks.face_gt_patches[t]).abs().mean() > 0.05  # not the GT


def test_meta_params_freeze_the_rest_of_theta_without_changing_the_meta_gradient(tmp_path, float64):
    tasks = degraded_tasks()
    tail = {'adaptation': {'lr': 0.5, 'params': r'^body\.4\.'}}
    torch.manual_seed(0)
    full = build_model(model_options(tmp_path, **tail))
    full.feed_data(tasks)
    full.optimize_parameters(1)
    torch.manual_seed(0)
    frozen = build_model(model_options(tmp_path, {'meta_params': r'^body\.4\.'}, **tail))
    frozen.feed_data(tasks)
    frozen.optimize_parameters(1)
    for (name, ours), (_, reference) in zip(frozen.net_g.named_parameters(), full.net_g.named_parameters()):
        if name.startswith('body.4.'):
            assert torch.equal(ours.grad, reference.grad), name  # the same operations on the same values
        else:
            assert ours.grad is None and not ours.requires_grad, name
    for ours, reference in zip(frozen.net_mask.parameters(), full.net_mask.parameters()):
        assert torch.equal(ours.grad, reference.grad)


def test_meta_params_false_meta_trains_masknet_alone(tmp_path, task_batch):
    opt = model_options(
        tmp_path, {
            'meta_params': False,
            'optim_g': {
                'type': 'Adam',
                'lr': 1e-2
            }
        },
        adaptation={
            'lr': 0.5,
            'params': r'^body\.4\.'
        })
    torch.manual_seed(0)
    model = build_model(opt)
    theta = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    mask = {k: v.clone() for k, v in model.net_mask.state_dict().items()}
    model.feed_data(task_batch)
    model.optimize_parameters(1)
    assert all(torch.equal(theta[k], v) for k, v in model.net_g.state_dict().items())
    assert all(p.grad is None for p in model.net_g.parameters())
    assert any(not torch.equal(mask[k], v) for k, v in model.net_mask.state_dict().items())
    assert [p.requires_grad
            for p in model.net_g.parameters()] == [n.startswith('body.4.') for n, _ in model.net_g.named_parameters()]


def test_a_meta_params_regex_matching_nothing_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"train.meta_params '\^nothing' matches no parameter of net_g"):
        build_model(model_options(tmp_path, {'meta_params': '^nothing'}))


def test_logging_never_changes_training_of_a_drop_path_network(tmp_path):
    """SwinIR draws its drop path in training mode: logging l_inner_after (print_freq 1) must not move the draws."""
    tasks = degraded_tasks(dtype=torch.float32)
    weights = []
    for print_freq in (1, 1000):
        torch.manual_seed(0)
        swinir = dict(ARCHITECTURES['SwinIR'], depths=[2], drop_path_rate=0.5)  # the 2nd block drops half the time
        train = {'optim_g': dict(type='SGD', lr=0.1)}
        model = build_model(model_options(tmp_path, train, network_g=swinir, logger={'print_freq': print_freq}))
        for iteration in (1, 2, 3):
            model.feed_data(tasks)
            model.optimize_parameters(iteration)
        assert ('l_inner_after' in model.get_current_log()) == (print_freq == 1)
        weights.append([p.detach().clone() for net in (model.net_g, model.net_mask) for p in net.parameters()])
    assert all(torch.equal(logged, quiet) for logged, quiet in zip(*weights))


def test_training_saves_the_adaptation_settings_with_masknet_and_testing_follows_them(tmp_path, basicsr_log):
    trained = AdaptationSettings(lr=0.3, steps=2, params=r'^body\.', num_patches=4, patch_size=32)
    (tmp_path / 'models').mkdir()
    torch.manual_seed(0)
    build_model(model_options(tmp_path, adaptation=trained.to_dict())).save(epoch=0, current_iter=1)
    saved = torch.load(tmp_path / 'models' / 'net_mask_1.pth', weights_only=True)
    assert saved['adaptation'] == trained.to_dict() and set(saved) == {'params', 'adaptation', 'net_g_sha256'}
    net_g_file = torch.load(tmp_path / 'models' / 'net_g_1.pth', weights_only=True)  # the photo run's check
    assert saved['net_g_sha256'] == [
        state_digest(net_g_file[key]) for key in ('params', 'params_ema') if key in net_g_file
    ]
    path = {'pretrain_network_g': str(tmp_path / 'models' / 'net_g_1.pth')}
    path['pretrain_network_mask'] = str(tmp_path / 'models' / 'net_mask_1.pth')
    test = model_options(tmp_path, is_train=False, path=path)
    del test['adaptation']
    assert build_model(test).adaptation == trained
    overridden = build_model({**test, 'adaptation': {'lr': 0.1, 'steps': 2}}).adaptation
    assert overridden == AdaptationSettings(lr=0.1, steps=2, params=r'^body\.', num_patches=4, patch_size=32)
    lines = [record.getMessage() for record in basicsr_log if record.getMessage().startswith('adaptation.')]
    assert lines == [
        f'adaptation.lr: 0.1 from the adaptation options, not the 0.3 stored in {path["pretrain_network_mask"]!r}'
    ]


WRONG_OPTIONS = {  # a YAML line of options: the start of the error it must give
    'adaptation: {lr: 0.1, stpes: 2}': "unknown adaptation options ['stpes']; known: ['legacy_bicubic', 'lr', ",
    'adaptation: /root': "adaptation must be a group of options (legacy_bicubic, lr, num_patches, params, patch_size, "
    "steps) or ~, got str '/root' (with --force_yml, quote a ~ from the shell: 'adaptation=~', or the shell gives a "
    "home folder)",
    'network_mask: /root': "network_mask must be a network's options ({type: ...}) or ~, got str '/root' (with "
    "--force_yml, quote a ~ from the shell: 'network_mask=~'",
    'network_g: /root': "network_g must be a network's options ({type: ...}) or ~, got str '/root'",
    "adaptation: {lr: '0.1'}": "adaptation.lr must be a finite number >= 0, got str '0.1'",
    'adaptation: {lr: .inf}': 'adaptation.lr must be a finite number >= 0, got float inf',
    "adaptation: {params: '(a'}": "adaptation.params '(a' is not a regular expression (missing ), unterminated "
    'subpattern at position 0); give ~ for every parameter',
    "adaptation: {params: 'nothing'}": "adaptation.params 'nothing' matches no parameter of SRVGGNetCompact",
    "train: {optim_g: {type: SGD, lr: 0.0}, meta_params: '(a'}": "train.meta_params '(a' is not a regular expression",
    'train: {optim_g: {type: SGD, lr: 0.0}, meta_params: true}': 'train.meta_params must be a regex of parameter '
    'names (e.g. ^conv_last\\.), ~ for all or false for none, got bool True',
    'adaptation: {steps: 1.5}': 'adaptation.steps must be an integer >= 1, got float 1.5',
    'adaptation: {legacy_bicubic: 1}': 'adaptation.legacy_bicubic must be true or false, got int 1',
    'val: {tile: 0, tiles: 64}': "unknown val options ['tiles']; known: ",
    'val: {precision: fp8}': "precision 'fp8' is not one of auto, fp32, bf16, fp16",
    "val: {exact_step: 'yes'}": "val.exact_step must be bool, got str 'yes'",
    'face_pairs: {sourse: mtcnn}': "unknown face_pairs options ['sourse']; known: ['restorer', 'source']",
    'face_pairs: {source: {type: mtcnn, threshold: 0.5}}': "unknown face source options ['threshold'] for type mtcnn",
    'face_restorer: {type: gpen, sise: 256}': "unknown restorer options ['sise'] for type gpen; known: ",
    'train: {optim_g: {type: SGD, lr: 0.0}, outer_chunks: 2}': "unknown train options ['outer_chunks']; known: [",
}


@pytest.mark.parametrize('line', list(WRONG_OPTIONS))
def test_unknown_option_keys_and_values_of_the_wrong_kind_are_refused_by_name(tmp_path, line):
    opt = model_options(tmp_path)
    opt.update(yaml.safe_load(line))
    with pytest.raises(ValueError) as error:
        build_model(opt)
    assert WRONG_OPTIONS[line] in str(error.value)
