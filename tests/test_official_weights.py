"""metaf2n-convert: the official TensorFlow variables as BasicSR checkpoints, checked against TensorFlow's forward.

The fixture (scripts/make_official_fixture.py) holds a tiny network's variables under the official names, as a
TF1 checkpoint and as an .npz, and the outputs TensorFlow's ops computed from them (forward.npz), so that this
test needs no TensorFlow.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from basicsr.archs import build_network

from metaf2n_plugin.models.adaptation import AdaptationSettings, stored_adaptation
from metaf2n_plugin.official_weights import OUTPUTS, convert, main, read_variables
from tolerances import chain_bound, network_steps

FIXTURE = os.path.join(os.path.dirname(__file__), 'fixtures', 'official_tiny')
VARIABLES = os.path.join(FIXTURE, 'variables.npz')


@pytest.fixture(scope='module')
def forward():
    with np.load(os.path.join(FIXTURE, 'forward.npz')) as npz:
        return {name: torch.from_numpy(npz[name]).permute(0, 3, 1, 2) for name in npz.files}  # NHWC -> NCHW


def network(state, options):
    net = build_network(dict(options))
    net.load_state_dict(state, strict=True)
    return net.eval()


def reproduces_tensorflow(net, tf_input, tf_output):
    """Check ``net`` in float64 (the float32 weights and input, exactly) against TensorFlow's float32 output: they
    differ by TensorFlow's rounding (the network's float32 chain bound) and ours (float64's); returns our output."""
    with torch.no_grad():
        ours = net.double()(tf_input.double())
    terms, magnitude = network_steps(net, tf_input.double())
    bound = chain_bound(torch.float32, terms, magnitude) + chain_bound(torch.float64, terms, magnitude)
    torch.testing.assert_close(ours, tf_output.double(), rtol=0, atol=bound)
    return ours


def test_converted_networks_reproduce_tensorflows_forward(forward):
    converted = convert(read_variables(VARIABLES))
    g_opt, mask_opt = converted['g'][1], converted['mask'][1]
    assert g_opt == {
        'type': 'RRDBNet',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'scale': 4,
        'num_feat': 8,
        'num_block': 2,
        'num_grow_ch': 4
    }
    assert mask_opt == {'type': 'MaskNet', 'num_in_ch': 6, 'num_feat': 8, 'num_conv': 8}
    sr = reproduces_tensorflow(network(*converted['g']), forward['sr_input'], forward['sr_output'])
    assert sr.shape == (1, 3, 32, 32)
    assert forward['mask_output'].max() > 0.02  # the comparison is not between two all-zero maps
    reproduces_tensorflow(network(*converted['mask']), forward['mask_input'], forward['mask_output'])


def test_a_training_checkpoints_other_variables_are_ignored():
    variables = read_variables(VARIABLES)
    extra = {f'{name}/Adam': value for name, value in variables.items()}
    extra.update({'beta1_power': np.ones((), np.float32), 'Discriminator/conv0/weight': np.ones((3, 3, 3, 4))})
    plain, training = convert(variables), convert({**variables, **extra})
    for key in ('g', 'mask'):
        assert plain[key][1] == training[key][1]
        assert all(torch.equal(plain[key][0][name], training[key][0][name]) for name in plain[key][0])


def test_cli_writes_basicsr_checkpoints_that_load_with_weights_only(tmp_path, forward):
    assert main([VARIABLES, '--out', str(tmp_path)]) == 0
    assert sorted(os.listdir(tmp_path)) == sorted(OUTPUTS.values())  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / OUTPUTS['g']).stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it
    g = torch.load(tmp_path / OUTPUTS['g'], weights_only=True)
    assert list(g) == ['params']
    mask = torch.load(tmp_path / OUTPUTS['mask'], weights_only=True)
    assert stored_adaptation(mask) == AdaptationSettings(
        legacy_bicubic=True)  # basicsr.test and metaf2n-infer follow it
    converted = convert(read_variables(VARIABLES))
    reproduces_tensorflow(network(g['params'], converted['g'][1]), forward['sr_input'], forward['sr_output'])


def test_the_console_script_is_installed(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), 'metaf2n-convert')
    proc = subprocess.run([script, VARIABLES, '--out', str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "network_g: {'type': 'RRDBNet'" in proc.stdout and "'legacy_bicubic': True" in proc.stdout


def test_bad_inputs_are_named(tmp_path, capsys):
    assert main([str(tmp_path / 'missing.npz'), '--out', str(tmp_path)]) == 2
    assert 'missing.npz' in capsys.readouterr().err
    assert main([str(tmp_path / 'model-400000'), '--out', str(tmp_path)]) == 2
    assert 'model-400000.index does not exist' in capsys.readouterr().err
    np.savez(tmp_path / 'other.npz', weight=np.zeros(3, np.float32))
    assert main([str(tmp_path / 'other.npz'), '--out', str(tmp_path / 'out')]) == 2
    assert 'has no MODEL/... variables' in capsys.readouterr().err and not (tmp_path / 'out').exists()
    variables = read_variables(VARIABLES)
    variables['MODEL/conv_hr/weight'] = np.zeros((3, 3, 8, 5), np.float32)
    with pytest.raises(ValueError, match=r"(?s)'broken': its RRDBNet variables do not fit .*size mismatch for conv_hr"):
        convert(variables, "'broken'")
    del variables['MODEL/conv_first/weight']
    with pytest.raises(ValueError, match="'broken': no variable 'conv_first.weight'; not an RRDBNet's weights"):
        convert(variables, "'broken'")


def test_a_tensorflow_checkpoint_converts_like_its_npz():
    prefix = os.path.join(FIXTURE, 'model')
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r'pip install "\.\[convert\]"'):
            read_variables(prefix)
        return
    from_checkpoint, from_npz = read_variables(prefix), read_variables(VARIABLES)
    assert sorted(from_checkpoint) == sorted(from_npz)
    assert all(np.array_equal(from_checkpoint[name], from_npz[name]) for name in from_npz)


def test_an_npz_that_is_not_the_official_variables_is_named(tmp_path, capsys):
    variables = read_variables(VARIABLES)
    variables['MODEL/conv_last/weight'] = variables['MODEL/conv_last/weight'][:, :, 0, 0]  # a 2-D kernel
    np.savez(tmp_path / 'flat.npz', **variables)
    assert main([str(tmp_path / 'flat.npz'), '--out', str(tmp_path / 'out')]) == 2
    assert "'" + str(tmp_path / 'flat.npz') + "': MODEL/conv_last/weight has shape [3, 3]; a weight of MetaF2N has 4 " \
        'dimension(s) (height, width, in, out)' in capsys.readouterr().err
    np.savez(tmp_path / 'pickled.npz', **{'MODEL/conv_last/weight': np.array([{'code': 1}], dtype=object)})
    assert main([str(tmp_path / 'pickled.npz'), '--out', str(tmp_path / 'out')]) == 2
    assert f"{str(tmp_path / 'pickled.npz')!r} is not an .npz of plain arrays that loads safely (Object arrays " \
        'cannot be loaded when allow_pickle=False); it was not loaded' in capsys.readouterr().err
    variables = read_variables(VARIABLES)
    variables['Mask/conv1/bias'][0] = np.inf
    np.savez(tmp_path / 'inf.npz', **variables)
    assert main([str(tmp_path / 'inf.npz'), '--out', str(tmp_path / 'out')]) == 2
    assert 'has NaN or infinite values in 1 tensor(s) (convs.0.bias)' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()
