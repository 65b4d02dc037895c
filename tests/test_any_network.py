"""Any x4 SR network on photos: a BasicSR options file (--opt) or a bare weights file of another architecture
(spandrel), adapted and super-resolved; other scales, unknown files, contradicting shapes and a MaskNet trained with
another network refused by name."""
import json
import os
import re

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.archs.rrdbnet_arch import RRDBNet
from basicsr.archs.srvgg_arch import SRVGGNetCompact
from basicsr.archs.swinir_arch import SwinIR

from metaf2n_plugin import PhotoSuperResolver, WeightsFileError, infer
from metaf2n_plugin.faces import builtin_photo
from metaf2n_plugin.image_io import write_image
from conftest import REPO, TINY_RRDB, run_python

SIDE = 96
SWINIR = dict(
    upscale=4,
    img_size=16,
    window_size=4,
    depths=[2],
    embed_dim=12,
    num_heads=[2],
    mlp_ratio=2,
    upsampler='pixelshuffle',
    img_range=1.0)
ARCHITECTURES = {  # name: (the network, what the run calls it)
    'RRDBNet': (lambda: RRDBNet(**TINY_RRDB), 'RRDBNet (num_feat 8, num_block 1, num_grow_ch 4)'),
    'SRVGGNetCompact': (lambda: SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4), 'RealESRGAN Compact (x4'),
    'SwinIR': (lambda: SwinIR(**SWINIR), 'SwinIR (x4'),
}
# BasicSR's save_network ({'params': ...}), Real-ESRGAN's releases (x4plus: {'params_ema': ...}), a bare state dict
# (ESRGAN's and most community releases)
LAYOUTS = {'basicsr': lambda state: {'params': state}, 'ema': lambda state: {'params_ema': state}, 'bare': dict}


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
    """The astronaut at 96 px, its face as landmarks."""
    root = tmp_path_factory.mktemp('photo')
    image, faces = builtin_photo('astronaut')
    write_image(root / 'astronaut.png', cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA))
    (root / 'gt').mkdir()
    write_image(root / 'gt' / 'astronaut.png', cv2.resize(image, (4 * SIDE, 4 * SIDE), interpolation=cv2.INTER_AREA))
    landmarks = {'astronaut.png': {'faces': [{'landmarks': (face.landmarks * SIDE / 512).tolist()} for face in faces]}}
    (root / 'faces.json').write_text(json.dumps(landmarks))
    return root, cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def saved(tmp_path, name, layout, seed=0):
    torch.manual_seed(seed)
    net = ARCHITECTURES[name][0]().eval()
    path = tmp_path / f'{name}_{layout}.pth'
    torch.save(LAYOUTS[layout](net.state_dict()), path)
    return net, str(path)


def resolver(model, photo, lines=None, **kwargs):
    faces = {'type': 'landmarks', 'json_path': str(photo[0] / 'faces.json')}
    return PhotoSuperResolver(
        model,
        None,
        faces=faces,
        restorer={
            'type': 'identity',
            'size': 128
        },
        precision='fp32',
        tile=0,
        adaptation={
            'lr': 0.5,
            'num_patches': 4
        },
        log=(lines if lines is not None else []).append,
        **kwargs)


@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('name', ARCHITECTURES)
def test_each_architecture_is_found_adapted_and_equals_its_own_pass_unadapted(photo, tmp_path, name, layout):
    net, path = saved(tmp_path, name, layout)
    lines = []
    adapted, report = resolver(path, photo, lines).enhance(photo[1], 'astronaut.png', plain=True)
    assert any(line.startswith(f'the SR network: {ARCHITECTURES[name][1]}') for line in lines), lines
    assert report.adapted and report.patches == 4 and np.isfinite(adapted).all()
    assert np.abs(adapted - report.plain).max() > 1e-3  # the step changed the network
    plain, _ = resolver(path, photo, adapt=False).enhance(photo[1])
    with torch.no_grad():
        own = net(torch.from_numpy(photo[1]).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(plain - own).max() < 1e-5  # NHWC against NCHW convolutions
    np.testing.assert_allclose(report.plain, plain, atol=1e-5)


def test_metaf2n_infer_runs_a_bare_swinir_file_and_says_what_it_found(photo, tmp_path, capsys):
    _, path = saved(tmp_path, 'SwinIR', 'bare')
    args = [
        str(photo[0] / 'astronaut.png'), '--model', path, '--no-mask', '--landmarks',
        str(photo[0] / 'faces.json'), '--lr', '0.5', '--adaptation', 'num_patches=4', '--tile', '32', '-o',
        str(tmp_path / 'out')
    ]
    assert infer.main(args + ['--gt', str(photo[0] / 'gt'), '--restorer-size', '256']) == 0  # the GT's faces
    assert 'the SR network: SwinIR (x4, detected by spandrel' in capsys.readouterr().err
    assert cv2.imread(str(tmp_path / 'out' / 'astronaut_metaf2n.png')).shape == (4 * SIDE, 4 * SIDE, 3)


def test_other_scales_unknown_files_and_contradicting_options_are_refused_by_name(photo, tmp_path):
    torch.save({'params': SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2).state_dict()}, tmp_path / 'x2.pth')
    with pytest.raises(WeightsFileError, match=r"model '.*x2.pth': a x2 network .* MetaF2N adapts x4 networks only"):
        PhotoSuperResolver(str(tmp_path / 'x2.pth'), None, adapt=False)
    torch.save({'params': {'head.weight': torch.zeros(3, 3)}}, tmp_path / 'unknown.pth')
    with pytest.raises(WeightsFileError) as error:
        PhotoSuperResolver(str(tmp_path / 'unknown.pth'), None, adapt=False)
    assert 'no loader recognises these weights (first keys: head.weight). Tried: BasicSR\'s RRDBNet x4' in str(
        error.value)
    assert re.search(r'spandrel [0-9.]+: none of its [0-9]+ architectures matches', str(error.value))
    _, rrdbnet = saved(tmp_path, 'RRDBNet', 'basicsr')
    options = tmp_path / 'other.yml'
    options.write_text(yaml.safe_dump({'scale': 4, 'network_g': {'type': 'RRDBNet', **TINY_RRDB, 'num_feat': 16}}))
    with pytest.raises(
            WeightsFileError,
            match=r"with the network_g of the options file '.*other.yml': its RRDBNet "
            r"variables do not fit .*size mismatch for conv_first.weight"):
        PhotoSuperResolver(rrdbnet, None, opt=str(options), adapt=False)
    options.write_text(yaml.safe_dump({'scale': 2, 'network_g': {'type': 'RRDBNet', **TINY_RRDB}}))
    with pytest.raises(ValueError, match=r"opt '.*other.yml': scale 2; MetaF2N adapts x4 networks only"):
        PhotoSuperResolver(rrdbnet, None, opt=str(options), adapt=False)
    options.write_text('name: x\n')
    with pytest.raises(ValueError, match=r"opt '.*other.yml' has no network_g: \{type: ...\}"):
        PhotoSuperResolver(rrdbnet, None, opt=str(options), adapt=False)


@pytest.fixture(scope='module')
def swinir_run(tiny_workdir):
    """A SwinIR meta-trained by ``python -m basicsr.train`` (2 iterations of options/train_metaf2n_tiny.yml, its
    network_g a tiny SwinIR): the working directory and the options file the run keeps."""
    with open(os.path.join(REPO, 'options', 'train_metaf2n_tiny.yml')) as f:
        opt = yaml.safe_load(f)
    opt.update(name='tiny_swinir_meta', network_g={'type': 'SwinIR', **SWINIR}, val=None)
    del opt['datasets']['val']
    opt['train']['total_iter'] = 2
    path = tiny_workdir / 'train_swinir.yml'
    path.write_text(yaml.safe_dump(opt))
    run_python('-m', 'basicsr.train', '-opt', str(path), cwd=tiny_workdir)
    return tiny_workdir, tiny_workdir / 'experiments' / 'tiny_swinir_meta' / 'train_swinir.yml'


def test_a_swinir_meta_trained_by_basicsr_train_runs_with_its_options_file(swinir_run, tmp_path, capsys, monkeypatch):
    cwd, options = swinir_run
    photos = cwd / 'datasets' / 'tiny' / 'test' / 'Tiny_iid'
    args = [
        str(photos / 'LQ' / 'astronaut.png'), '--opt',
        str(options), '--landmarks',
        str(photos / 'landmarks.json'), '--gt',
        str(photos / 'GT'), '--restorer-size', '256', '-o',
        str(tmp_path / 'out'), '--side-by-side'
    ]
    monkeypatch.chdir(cwd)  # the run's weights: experiments/<name>/models/net_*_latest.pth, from the working directory
    assert infer.main(args) == 0
    err = capsys.readouterr().err
    assert 'the SR network: SwinIR (' in err and f"from the options file '{options}')" in err
    assert "adaptation: {'lr': 0.01, 'steps': 1, 'params': None, 'legacy_bicubic': False, 'num_patches': 4, " \
        "'patch_size': 64}" in err  # the options file's group, as training stored it with MaskNet
    report = [json.loads(line) for line in (tmp_path / 'out' / 'report.jsonl').read_text().splitlines()]
    assert report[0]['adapted'] and report[0]['faces_used'] == 1 and report[0]['psnr_y'] > 10


def test_a_masknet_with_another_network_than_its_own_is_refused(swinir_run, tmp_path):
    cwd, options = swinir_run
    models = cwd / 'experiments' / 'tiny_swinir_meta' / 'models'
    state = torch.load(models / 'net_g_latest.pth', weights_only=True)
    other = {name: tensor + 0.01 if tensor.is_floating_point() else tensor for name, tensor in state['params'].items()}
    torch.save({'params': other}, tmp_path / 'other_net_g.pth')
    kwargs = dict(opt=str(options), faces={'type': 'landmarks', 'json_path': str(tmp_path / 'none.json')})
    with pytest.raises(WeightsFileError, match=r"mask '.*net_mask_latest.pth' was trained with another SR network"):
        PhotoSuperResolver(str(tmp_path / 'other_net_g.pth'), str(models / 'net_mask_latest.pth'), **kwargs)
