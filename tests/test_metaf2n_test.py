"""MetaF2NModel, Algorithm 2: adapt a copy of theta to each photo's faces, super-resolve, compare with theta."""
import json
import os
import re
import shutil

import pytest
import torch
from basicsr.data import build_dataset
from basicsr.models import build_model
from torch.func import functional_call
from torch.utils.data import DataLoader

from metaf2n_plugin import OptionError, memory
from metaf2n_plugin.archs.masknet_arch import MaskNet
from metaf2n_plugin.models import precision
from metaf2n_plugin.models.adaptation import AdaptationSettings, adapt_to_photo
from metaf2n_plugin.models.tiling import tiled_forward
from conftest import tiny_rrdbnet
from tolerances import chain_bound, network_steps

MASK = {'type': 'MaskNet', 'num_feat': 8, 'num_conv': 3}


@pytest.fixture(scope='module')
def mask_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('weights') / 'net_mask.pth'
    torch.save({'params': MaskNet(num_feat=8, num_conv=3).state_dict()}, path)
    return path


def test_options(tmp_path, mask_file, **changes):
    opt = {
        'name': 'metaf2n_test_unit',
        'model_type': 'MetaF2NModel',
        'scale': 4,
        'num_gpu': 0,
        'is_train': False,
        'dist': False,
        'rank': 0,
        'world_size': 1,
        'manual_seed': 0,
        'network_g': tiny_rrdbnet(),
        'network_mask': MASK,
        'face_pairs': {
            'restorer': {
                'type': 'oracle',
                'size': 128
            }
        },
        'adaptation': {
            'lr': 5.0,
            'num_patches': 4
        },
        'path': {
            'pretrain_network_mask': str(mask_file),
            'visualization': str(tmp_path / 'visualization')
        },
        'val': {
            'precision': 'fp32',  # compared exactly with net_g's fp32 output (auto: bf16 on AVX-512 BF16 CPUs)
            'suffix': 'run',
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr',
                    'crop_border': 0,
                    'test_y_channel': True
                }
            }
        }
    }
    opt.update(changes)
    return opt


test_options.__test__ = False  # a helper, not a test


def model(tmp_path, mask_file, **changes):
    torch.manual_seed(0)
    return build_model(test_options(tmp_path, mask_file, **changes))


def photos(folder, landmarks=None):
    """The paired face test set in ``folder`` as BasicSR's test loader gives it (batch 1)."""
    dataset = build_dataset({
        'name': os.path.basename(folder),
        'type': 'MetaF2NPairedFaceDataset',
        'phase': 'test',
        'scale': 4,
        'dataroot_lq': str(folder / 'LQ'),
        'dataroot_gt': str(folder / 'GT'),
        'face_source': {
            'type': 'landmarks',
            'json_path': str(landmarks or folder / 'landmarks.json')
        }
    })
    return DataLoader(dataset, batch_size=1)


@pytest.fixture(scope='module')
def test_set(tiny_workdir):
    return tiny_workdir / 'datasets' / 'tiny' / 'test' / 'Tiny_iid'


def run(net_model, item):
    net_model.feed_data(item)
    net_model.test()
    return net_model.get_current_visuals()


def test_adapted_output_differs_from_the_plain_one_and_the_network_is_untouched(tmp_path, mask_file, test_set):
    m = model(tmp_path, mask_file)
    before = {k: v.clone() for k, v in m.net_g.state_dict().items()}
    visuals = run(m, next(iter(photos(test_set))))
    assert set(visuals) == {'lq', 'result', 'result_unadapted', 'gt'}
    assert visuals['result'].shape == visuals['result_unadapted'].shape == (1, 3, 512, 512)
    assert (visuals['result'] - visuals['result_unadapted']).abs().max() > 1e-3
    assert all(torch.equal(before[k], v) for k, v in m.net_g.state_dict().items())
    with torch.no_grad():
        assert torch.equal(visuals['result_unadapted'], m.net_g(visuals['lq']))


def test_two_photos_in_a_row_equal_each_tested_alone(tmp_path, mask_file, test_set):
    first, second = list(photos(test_set))
    in_a_row = model(tmp_path, mask_file)
    run(in_a_row, first)
    after_first = run(in_a_row, second)['result']
    alone = run(model(tmp_path, mask_file), second)['result']
    assert torch.equal(after_first, alone)


def test_a_photo_without_faces_gets_the_plain_output_and_is_named_in_the_log(tmp_path, mask_file, test_set):
    table = json.loads((test_set / 'landmarks.json').read_text())
    table['grace_hopper.png']['faces'] = []
    (tmp_path / 'landmarks.json').write_text(json.dumps(table))
    m = model(tmp_path, mask_file)
    m.nondist_validation(photos(test_set, tmp_path / 'landmarks.json'), 0, None, save_img=True)
    assert m.not_adapted == [('grace_hopper.png', 'no usable face')]
    saved = sorted(os.listdir(tmp_path / 'visualization' / 'Tiny_iid'))
    assert saved == [
        'astronaut_run.png', 'astronaut_run_unadapted.png', 'grace_hopper_run.png', 'grace_hopper_run_unadapted.png'
    ]
    assert (tmp_path / 'visualization' / 'Tiny_iid' / 'grace_hopper_run.png').read_bytes() == \
        (tmp_path / 'visualization' / 'Tiny_iid' / 'grace_hopper_run_unadapted.png').read_bytes()
    assert set(m.metric_results) == {'psnr', 'psnr_unadapted'}
    assert m.best_metric_results['Tiny_iid']['psnr_unadapted']['val'] == m.metric_results['psnr_unadapted']


def test_a_non_finite_inner_loss_falls_back_to_the_plain_output(tmp_path, mask_file, test_set):
    m = model(tmp_path, mask_file)
    with torch.no_grad():
        m.net_mask.convs[0].bias.fill_(float('nan'))
    visuals = run(m, next(iter(photos(test_set))))
    assert torch.equal(visuals['result'], visuals['result_unadapted'])
    assert m.not_adapted[0][0] == 'astronaut.png' and 'not finite' in m.not_adapted[0][1]
    assert all(torch.isfinite(p).all() for p in m.net_g.parameters())


def test_a_rate_whose_output_is_not_finite_falls_back_to_the_plain_output(tmp_path, mask_file, test_set):
    m = model(tmp_path, mask_file, adaptation={'lr': 1e30, 'num_patches': 4})
    visuals = run(m, next(iter(photos(test_set))))
    assert torch.equal(visuals['result'], visuals['result_unadapted'])
    assert torch.isfinite(visuals['result']).all()
    name, reason = m.not_adapted[0]
    assert name == 'astronaut.png'
    assert reason == "the adapted network's output is not finite (adaptation.lr 1e+30 too large?)"


def test_a_photo_whose_faces_need_more_memory_than_there_is_falls_back_by_name(tmp_path, mask_file, test_set,
                                                                               monkeypatch):
    m = model(tmp_path, mask_file)
    monkeypatch.setattr(memory, 'available_memory', lambda device=None: 2**20)
    visuals = run(m, next(iter(photos(test_set))))
    assert torch.equal(visuals['result'], visuals['result_unadapted'])
    assert 'needs about' in m.not_adapted[0][1] and '0.0 GiB are available' in m.not_adapted[0][1]


def test_a_face_smaller_than_a_patch_is_used_whole(tmp_path, mask_file, test_set):
    m = model(tmp_path, mask_file, adaptation={'lr': 5.0, 'num_patches': 4, 'patch_size': 512})  # 128 LQ px
    visuals = run(m, next(iter(photos(test_set))))
    assert m.not_adapted == [] and torch.isfinite(visuals['result']).all()
    assert (visuals['result'] - visuals['result_unadapted']).abs().max() > 1e-4


def test_tiled_equals_untiled_when_the_pad_covers_the_receptive_field(tmp_path, mask_file, test_set):
    item = next(iter(photos(test_set)))
    whole_model = model(tmp_path, mask_file)
    whole = run(whole_model, item)
    tiled = run(model(tmp_path, mask_file, val={'tile': 48, 'tile_pad': 24}), item)
    # Both adapt alike (tiling is the forward's only); the network runs on windows or on the whole photo, each in
    # its own summation orders: twice its float32 chain bound.
    net, adapted = whole_model.net_g, whole_model.adapt_to_photo(whole_model.net_g)
    for key, forward in (('result', lambda x: functional_call(net, adapted, (x, ))), ('result_unadapted', net)):
        bound = 2 * chain_bound(torch.float32, *network_steps(forward, whole['lq']))
        torch.testing.assert_close(tiled[key], whole[key], atol=bound, rtol=0)
    lq = torch.rand(1, 3, 20, 28)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 5, padding=2), torch.nn.Upsample(scale_factor=2))
    bound = 2 * chain_bound(torch.float32, *network_steps(conv, lq))  # one 3 x 5 x 5 convolution, run twice
    with torch.no_grad():
        assert not torch.allclose(tiled_forward(conv, lq, 2, tile=8, tile_pad=0), conv(lq), atol=1e-3)
        torch.testing.assert_close(tiled_forward(conv, lq, 2, tile=8, tile_pad=2), conv(lq), atol=bound, rtol=0)


def test_testing_without_masknet_weights_is_refused_by_name(tmp_path, mask_file):
    opt = test_options(tmp_path, mask_file)
    opt['path']['pretrain_network_mask'] = None
    with pytest.raises(ValueError, match='testing MetaF2N needs path.pretrain_network_mask'):
        build_model(opt)


def test_a_network_of_another_scale_is_refused(tmp_path, mask_file):
    with pytest.raises(ValueError, match=r'network_g \(RRDBNet\) turns 16x16 into 32x32, but scale is 4'):
        model(tmp_path, mask_file, network_g=tiny_rrdbnet(scale=2))


def test_in_fp32_the_default_step_gives_what_the_exact_step_of_0_2_gives_bit_for_bit(tmp_path, mask_file, test_set):
    item = next(iter(photos(test_set)))
    default = run(model(tmp_path, mask_file), item)
    exact_options = test_options(tmp_path, mask_file)
    exact_options['val']['exact_step'] = True
    torch.manual_seed(0)
    exact = run(build_model(exact_options), item)
    assert torch.equal(default['result'], exact['result']) and torch.equal(default['result_unadapted'],
                                                                           exact['result_unadapted'])
    assert not torch.equal(default['result'], default['result_unadapted'])


def test_test_time_settings_that_cannot_work_stop_the_run_before_the_first_photo(tmp_path, mask_file, monkeypatch):
    for adaptation, message in (({
            'patch_size': 30
    }, 'adaptation.patch_size 30 must be a multiple of the scale 4'), ({
            'params': 'nothing'
    }, "adaptation.params 'nothing' matches no parameter of RRDBNet"), ({
            'num_patches': 10**6
    }, 'the adaptation step on 1 face(s) x 1000000 patches')):
        with pytest.raises(OptionError, match=re.escape(message)):
            model(tmp_path, mask_file, adaptation=adaptation)


def test_unknown_adaptation_options_are_refused(tmp_path, mask_file):
    with pytest.raises(ValueError, match=r"unknown adaptation options \['step'\]"):
        model(tmp_path, mask_file, adaptation={'step': 2})


def test_pairs_from_the_dataset_are_used_as_given(tmp_path, mask_file, test_set):
    from metaf2n_plugin.faces import FacePairExtractor, write_pairs
    item = next(iter(photos(test_set)))
    extractor = FacePairExtractor.from_options({'scale': 4, 'restorer': {'type': 'oracle', 'size': 128}})
    pairs = extractor.pairs_of_item(item)
    write_pairs(tmp_path / 'pairs', 'astronaut', pairs)
    shutil.copytree(test_set, tmp_path / 'set')
    dataset = build_dataset({
        'name': 'set',
        'type': 'MetaF2NPairedFaceDataset',
        'phase': 'test',
        'scale': 4,
        'dataroot_lq': str(tmp_path / 'set' / 'LQ'),
        'dataroot_gt': str(tmp_path / 'set' / 'GT'),
        'face_source': {
            'type': 'pairs',
            'root': str(tmp_path / 'pairs')
        }
    })
    from_pairs = run(model(tmp_path, mask_file), next(iter(DataLoader(dataset, batch_size=1))))['result']
    from_landmarks = run(model(tmp_path, mask_file), item)['result']
    torch.testing.assert_close(from_pairs, from_landmarks, atol=2e-3, rtol=0)  # pairs are stored as 8-bit PNGs


def test_a_missing_masknet_file_is_named(tmp_path, mask_file):
    opt = test_options(tmp_path, mask_file)
    opt['path']['pretrain_network_mask'] = str(tmp_path / 'models' / 'net_mask_2.pth')
    with pytest.raises(FileNotFoundError, match=r"path.pretrain_network_mask: '.*net_mask_2.pth' does not exist"):
        build_model(opt)


def test_fid_is_reported_per_set_for_the_adapted_and_the_plain_outputs(tmp_path, mask_file, test_set):
    from basicsr.utils import tensor2img

    from metaf2n_plugin.metrics.fid_metric import FrechetInceptionDistance
    fid = {'type': 'calculate_fid', 'dims': 64, 'random_weights': True, 'device': 'cpu'}
    m = model(tmp_path, mask_file, val={'metrics': {'fid': fid}})
    m.nondist_validation(photos(test_set), 0, None, save_img=False)
    meters = {suffix: FrechetInceptionDistance(dims=64, random_weights=True, device='cpu') for suffix in ('', '_u')}
    for item in photos(test_set):
        visuals = run(model(tmp_path, mask_file), item)
        meters[''].update(tensor2img([visuals['result']]), tensor2img([visuals['gt']]))
        meters['_u'].update(tensor2img([visuals['result_unadapted']]), tensor2img([visuals['gt']]))
    # Exact by construction: the same 8-bit images through the same features and statistics.
    assert m.metric_results['fid'] == pytest.approx(meters[''].compute(), rel=1e-6)
    assert m.metric_results['fid_unadapted'] == pytest.approx(meters['_u'].compute(), rel=1e-6)
    assert m.best_metric_results['Tiny_iid']['fid']['better'] == 'lower'


def test_without_masknet_every_face_pixel_weighs_one(tmp_path, mask_file, test_set):
    opt = test_options(tmp_path, mask_file, network_mask=None)
    opt['path']['pretrain_network_mask'] = None
    torch.manual_seed(0)
    m = build_model(opt)
    assert m.net_mask is None
    item = next(iter(photos(test_set)))
    visuals = run(m, item)
    pairs = m.face_pairs.pairs_of_item(item)
    adapted, _, reason = adapt_to_photo(
        m.net_g,
        None,
        pairs,
        4,
        os.path.basename(item['lq_path'][0]),
        settings=AdaptationSettings(lr=5.0, num_patches=4))
    assert reason is None and adapted.mask_weights is None
    with torch.no_grad():
        expected = functional_call(m.net_g, adapted, (item['lq'], ))
    assert torch.equal(visuals['result'], expected)
    assert (visuals['result'] - visuals['result_unadapted']).abs().max() > 1e-3


@pytest.mark.parametrize('instructions, expected', [((), 'fp32'), (('avx512_bf16', ), 'bf16')])
def test_the_default_precision_is_bf16_only_on_a_cpu_that_runs_it_fast(tmp_path, mask_file, test_set, monkeypatch,
                                                                       instructions, expected):
    monkeypatch.setattr(precision, 'fast_bf16_instructions', lambda: instructions)
    options = test_options(tmp_path, mask_file)
    del options['val']['precision']
    torch.manual_seed(0)
    m = build_model(options)
    assert m.precision == expected
    item = next(iter(photos(test_set)))
    output = run(m, item)['result_unadapted']
    with torch.no_grad():
        fp32 = m.net_g(item['lq'])
    difference = (output - fp32).abs().max().item()
    assert difference == 0 if expected == 'fp32' else 0 < difference < 0.05  # bf16's rounding, FastForward's limit
