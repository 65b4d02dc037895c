"""The frozen-body cache and the task pool: the cached path's meta-gradient is the whole network's, a model trained
from the cache ends where the uncached model ends, and a pool or cache drawn with other settings is refused."""
import copy
import random
import re

import numpy as np
import pytest
import torch
import yaml
from basicsr.archs.rrdbnet_arch import RRDBNet
from basicsr.data import build_dataset
from basicsr.models import build_model
from torch.nn import functional as F
from torch.utils.data import DataLoader

from metaf2n_plugin.archs.masknet_arch import MaskNet
from metaf2n_plugin.models import frozen_body
from metaf2n_plugin.models.adaptation import AdaptationSettings
from metaf2n_plugin.models.frozen_body import FrozenBodyCache, body_features, frozen_tail
from metaf2n_plugin.models.meta_gradient import task_meta_gradient
from conftest import REPO, task_options

TAIL = r'^(conv_up1|conv_up2|conv_hr|conv_last)\.'


def tiny_rrdbnet():
    torch.manual_seed(0)
    return RRDBNet(3, 3, scale=4, num_feat=8, num_block=2, num_grow_ch=4)


def outer_loss(sr, target, mask_weights):
    return {'l_pix': F.l1_loss(sr, target), 'l_mask': 0.1 * (mask_weights - 1).square().mean()}


def test_the_tail_on_cached_body_features_gives_the_whole_networks_meta_gradient(float64):
    net, mask = tiny_rrdbnet(), MaskNet(6, 4, 3)
    g = torch.Generator().manual_seed(1)
    faces = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    backgrounds = torch.rand(3, 3, 10, 10, generator=g), torch.rand(3, 3, 40, 40, generator=g)
    settings = AdaptationSettings(lr=0.5, steps=2, params=TAIL)
    for name, param in net.named_parameters():
        param.requires_grad_(re.search(TAIL, name) is not None)
    tail, reason = frozen_tail(net, {n for n, p in net.named_parameters() if p.requires_grad})
    assert reason is None and sorted(dict(tail.named_parameters())) == sorted(
        n for n, p in net.named_parameters() if p.requires_grad)
    whole_sr, whole_log = task_meta_gradient(net, mask, faces, backgrounds, outer_loss, settings, outer_chunk=0)
    whole = {n: p.grad.clone() for m in (net, mask) for n, p in m.named_parameters() if p.grad is not None}
    for module in (net, mask):
        module.zero_grad(set_to_none=True)
    cached_sr, cached_log = task_meta_gradient(
        tail,
        mask,
        faces, (body_features(net, backgrounds[0]), backgrounds[1]),
        outer_loss,
        settings,
        outer_chunk=0,
        face_input=body_features(net, faces[0]))
    cached = {n: p.grad.clone() for m in (net, mask) for n, p in m.named_parameters() if p.grad is not None}
    assert sorted(cached) == sorted(whole) and len(whole) == 8 + 6  # 4 tail convs and MaskNet's 3, weight and bias
    for name in whole:
        torch.testing.assert_close(cached[name], whole[name], rtol=1e-10, atol=1e-13, msg=name)
    torch.testing.assert_close(cached_sr, whole_sr, rtol=1e-12, atol=1e-14)
    assert cached_log['l_pix'].item() == pytest.approx(whole_log['l_pix'].item(), rel=1e-12)


def test_no_tail_when_the_body_is_adapted_or_the_network_is_no_rrdbnet():
    net = tiny_rrdbnet()
    assert frozen_tail(net, {'conv_last.weight', 'body.0.rdb1.conv1.weight'
                             })[1] == '1 tensor(s) of its body change (e.g. body.0.rdb1.conv1.weight)'
    assert 'not an RRDBNet' in frozen_tail(MaskNet(6, 4, 2), set())[1]


def pool_options(root, path, **changes):
    sizes = dict(pool_size=3, face_size=64, face_patch_size=32, background_size=64, background_patch_size=32)
    return task_options(root, type='MetaF2NTaskPoolDataset', pool_path=str(path), **{**sizes, **changes})


def test_a_pool_is_drawn_once_reused_and_leaves_the_global_random_state(tiny_workdir, tmp_path):
    root, path = tiny_workdir / 'datasets' / 'tiny', tmp_path / 'pool.pth'
    states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    first = build_dataset(pool_options(root, path))
    assert random.getstate() == states[0] and (np.random.get_state()[1] == states[1]).all()
    assert torch.equal(torch.get_rng_state(), states[2])
    again = build_dataset(pool_options(root, path))
    assert len(first) == 3 and path.is_file()
    for index in range(3):
        for key, value in first[index].items():
            assert torch.equal(value, again[index][key]) if torch.is_tensor(value) else value == again[index][key]
    assert first[1]['background_lq'].shape == (4, 3, 8, 8) and first[1]['pool_index'] == 1


def test_a_pool_drawn_with_other_settings_is_refused_naming_each_difference(tiny_workdir, tmp_path):
    root, path = tiny_workdir / 'datasets' / 'tiny', tmp_path / 'pool.pth'
    build_dataset(pool_options(root, path))
    with pytest.raises(ValueError, match=r'never reused.*pool_seed: 0 in the file, 1 in the options'):
        build_dataset(pool_options(root, path, pool_seed=1))
    with pytest.raises(ValueError, match=r'degradation.noise_range: \[1.0, 30.0\] in the file, \[1, 5\] in the opt'):
        build_dataset(pool_options(root, path, noise_range=[1, 5]))
    with pytest.raises(ValueError, match=r'task.face_patch_size: 32 in the file, 16'):
        build_dataset(pool_options(root, path, face_patch_size=16))


def test_the_body_runs_once_per_pool_task_and_its_cache_serves_only_its_pool_and_network(
        tiny_workdir, tmp_path, monkeypatch):
    pool = build_dataset(pool_options(tiny_workdir / 'datasets' / 'tiny', tmp_path / 'pool.pth'))
    net = tiny_rrdbnet()
    cache = FrozenBodyCache(net, pool.path, pool.digest)
    faces, backgrounds = cache(torch.tensor([2, 0]), 'cpu')
    torch.testing.assert_close(faces[0], body_features(net, pool[2]['face_lq_patches']), rtol=0, atol=0)
    torch.testing.assert_close(backgrounds[1], body_features(net, pool[0]['background_lq']), rtol=0, atol=0)
    monkeypatch.setattr(frozen_body, 'body_features', None)  # a second run reads the file: the body never runs
    torch.testing.assert_close(FrozenBodyCache(net, pool.path, pool.digest)(torch.tensor([2]), 'cpu')[0], faces[:1])
    with pytest.raises(ValueError, match=f"has pool_digest '{pool.digest}', but this run needs 'another'"):
        FrozenBodyCache(net, pool.path, 'another')
    other = tiny_rrdbnet()
    other.conv_first.bias.data += 1
    monkeypatch.undo()
    assert FrozenBodyCache(other, pool.path, pool.digest).path != cache.path  # another body: its own file


def model_options(root, pool, cache):
    with open(f'{REPO}/options/train_x4plus_masknet.yml') as f:
        opt = yaml.safe_load(f)
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1, val=None)
    opt['network_g'].update(num_feat=8, num_block=2, num_grow_ch=4)
    opt['network_mask'].update(num_feat=4, num_conv=3)
    opt['path'] = {key: None for key in opt['path']}
    opt['path'].update(models=str(pool.parent), training_states=str(pool.parent))
    opt['datasets'] = {'train': pool_options(root, pool)}
    opt['train'].update(meta_params=TAIL, cache_frozen_body=cache, optim_g={'type': 'Adam', 'lr': 1e-3})
    opt['train']['ssg_opt']['mask_stride'] = 4
    return opt


@pytest.mark.parametrize('meta_params', [False, TAIL])
def test_training_from_the_cache_ends_where_the_uncached_model_ends(tiny_workdir, tmp_path, meta_params):
    root, pool = tiny_workdir / 'datasets' / 'tiny', tmp_path / 'pool.pth'
    weights = []
    for cache in (True, False):
        opt = model_options(root, pool, cache)
        opt['train']['meta_params'] = meta_params
        torch.manual_seed(0)
        model = build_model(copy.deepcopy(opt))
        loader = DataLoader(build_dataset(opt['datasets']['train']), batch_size=2)
        for step, data in enumerate(list(loader) * 2):  # the second epoch reads the cache
            model.feed_data(data)
            assert (model.features is not None) == cache
            model.optimize_parameters(step + 1)
        weights.append({**model.net_g.state_dict(), **{f'mask.{k}': v for k, v in model.net_mask.state_dict().items()}})
    initial = tiny_rrdbnet().state_dict()
    for name, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][name], rtol=1e-4, atol=1e-6, msg=name)
    changed = [name for name, value in initial.items() if not torch.equal(value, weights[0][name])]
    assert len(changed) == (8 if meta_params else 0)  # the tail's 4 convolutions move only when meta-trained
    assert list(tmp_path.glob('pool.pth.body-*.pth'))  # every task seen: the features were written for later runs


def test_the_outer_target_is_the_sharpened_gt_unless_the_gt_is_asked_for(tiny_workdir, tmp_path):
    root, pool = tiny_workdir / 'datasets' / 'tiny', tmp_path / 'pool.pth'
    data = next(iter(DataLoader(build_dataset(pool_options(root, pool)), batch_size=1)))
    for target, field in (('gt_usm', 'background_gt_usm'), ('gt', 'background_gt')):
        opt = model_options(root, pool, cache=True)
        opt['train']['outer_target'] = target
        model = build_model(opt)
        model.feed_data(data)
        sr, log = model.meta_backward(0)
        assert log['l_g_pix'].item() == pytest.approx(F.l1_loss(sr, getattr(model.tasks, field)[0]).item(), rel=1e-6)
    opt['train']['outer_target'] = 'sharp'
    with pytest.raises(ValueError, match="train.outer_target must be gt_usm .* or gt, got 'sharp'"):
        build_model(opt)
