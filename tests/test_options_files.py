"""The paper's options files: they hold the original's hyper-parameters and build a MetaF2N model as written."""
import os

import pytest
import torch
import yaml
from basicsr.models import build_model

from metaf2n_plugin.archs.masknet_arch import MaskNet
from conftest import REPO


def load(name):
    with open(os.path.join(REPO, 'options', name)) as f:
        return yaml.safe_load(f)


def test_train_metaf2n_holds_the_original_hyper_parameters():
    opt = load('train_metaf2n.yml')
    data, train = opt['datasets']['train'], opt['train']
    assert (data['faces_per_task'], data['patches_per_task'], data['batch_size_per_gpu']) == (4, 4, 4)
    assert (data['face_size'], data['face_patch_size'], data['background_size'], data['background_patch_size']) == \
        (256, 128, 400, 256)
    assert (data['face_patch_tries'], data['face_patch_min_log_gradient']) == (6, -6.0)
    assert opt['network_g'] == {
        'type': 'RRDBNet',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'scale': 4,
        'num_feat': 64,
        'num_block': 23,
        'num_grow_ch': 32
    }
    assert opt['network_mask']['num_conv'] == 8 and opt['network_d']['type'] == 'UNetDiscriminatorSN'
    assert opt['face_restorer'] == {
        'type': 'gpen',
        'size': 256,
        'channel_multiplier': 1,
        'narrow': 0.5,
        'weights': 'experiments/pretrained_models/GPEN-BFR-256.pth'
    }
    assert opt['adaptation'] == {
        'lr': 0.01,
        'steps': 1,
        'params': None,
        'legacy_bicubic': False,
        'num_patches': 16,
        'patch_size': 64
    }
    assert (train['optim_g']['lr'], train['optim_d']['lr'], train['total_iter']) == (3e-5, 1e-4, 400000)
    assert (train['pixel_opt']['loss_weight'], train['perceptual_opt']['loss_weight'], train['gan_opt']['loss_weight'],
            train['mask_reg_weight']) == (1.0, 0.5, 0.1, 0.001)
    assert train['perceptual_opt']['type'] == 'LPIPSLoss' and train['gan_opt']['gan_type'] == 'vanilla'
    assert train['first_order'] is False and train['ema_decay'] == 0
    assert opt['path']['param_key_g'] == 'params_ema' and opt['path']['pretrain_network_g'].endswith(
        'RealESRGAN_x4plus.pth')


def test_train_metaf2n_ssg_is_the_paper_plus_the_ssg_term():
    paper, ssg = load('train_metaf2n.yml'), load('train_metaf2n_ssg.yml')
    assert ssg['train'].pop('ssg_opt')['type'] == 'SSGLoss'
    assert ssg.pop('name') != paper.pop('name')
    assert ssg == paper


@pytest.mark.parametrize('name', ['train_metaf2n.yml', 'train_metaf2n_ssg.yml'])
def test_training_options_build_the_model_they_describe(name, tmp_path):
    opt = load(name)
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1, face_restorer='oracle')
    opt['path'] = {key: None for key in opt['path']}  # no weights offline: same networks, random
    opt['train']['perceptual_opt']['random_weights'] = True
    model = build_model(opt)
    assert sum(p.numel() for p in model.net_g.parameters()) == 16697987  # RRDBNet x4, 23 blocks
    assert type(model.net_d).__name__ == 'UNetDiscriminatorSN' and model.mask_reg_weight == 0.001
    assert (model.cri_ssg is not None) == (name == 'train_metaf2n_ssg.yml')
    assert [group['lr'] for o in model.optimizers for group in o.param_groups] == [3e-5, 1e-4]
    assert len(model.optimizer_g.param_groups[0]['params']) == len(list(model.net_g.parameters())) + 16


@pytest.mark.parametrize('name', ['test_ffhq.yml', 'test_celeba.yml', 'test_ffhq_multi.yml', 'test_realfaces.yml'])
def test_test_options_build_the_model_they_describe(name, tmp_path):
    opt = load(name)
    torch.save({'params': MaskNet().state_dict()}, tmp_path / 'net_mask.pth')
    opt.update(num_gpu=0, is_train=False, dist=False, rank=0, world_size=1)
    opt['path'] = {'pretrain_network_mask': str(tmp_path / 'net_mask.pth')}
    model = build_model(opt)
    metrics = opt['val']['metrics']
    assert set(metrics) == ({'niqe'} if name == 'test_realfaces.yml' else {'psnr', 'ssim', 'lpips', 'niqe', 'fid'})
    assert model.adaptation.lr == 0.01 and model.adaptation.num_patches == 16
    sets = [d['name'] for d in opt['datasets'].values()]
    assert len(sets) == (1 if name == 'test_realfaces.yml' else 2) and all('dataroot_lq' in d
                                                                           for d in opt['datasets'].values())
    assert sets[0].endswith('_iid') or sets == ['RealFaces']
