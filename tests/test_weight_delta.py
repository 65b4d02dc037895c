"""A partly meta-trained run as a delta file (scripts/export_delta.py) and back (metaf2n-convert <delta>.pth)."""
import pytest
import torch
import yaml
from basicsr.archs.rrdbnet_arch import RRDBNet

from metaf2n_plugin.archs.masknet_arch import MaskNet
from metaf2n_plugin.checkpoints import load_state_dict
from metaf2n_plugin.models.adaptation import AdaptationSettings, stored_adaptation
from metaf2n_plugin.official_weights import main as convert
from conftest import load_script
from tolerances import unit_roundoff

export = load_script('export_delta').main


@pytest.fixture
def run(tmp_path):
    """A run folder whose net_g is a tiny RRDBNet base with its tail changed, and the base file."""
    torch.manual_seed(0)
    base = RRDBNet(3, 3, scale=4, num_feat=8, num_block=1, num_grow_ch=4).state_dict()
    torch.save({'params_ema': base}, tmp_path / 'base.pth')
    trained = {
        name: value + (0.01 * torch.randn_like(value) if name.startswith('conv_last') else 0)
        for name, value in base.items()
    }
    (tmp_path / 'run' / 'models').mkdir(parents=True)
    torch.save({'params': trained}, tmp_path / 'run' / 'models' / 'net_g_latest.pth')
    torch.save({
        'params': MaskNet(6, 4, 2).state_dict(),
        'adaptation': AdaptationSettings(lr=0.02, steps=2).to_dict()
    }, tmp_path / 'run' / 'models' / 'net_mask_latest.pth')
    options = {'path': {'pretrain_network_g': str(tmp_path / 'base.pth')}, 'adaptation': {'lr': 0.01}}
    (tmp_path / 'run' / 'run.yml').write_text(yaml.safe_dump(options))
    return tmp_path, trained


def test_export_then_convert_gives_back_the_run_within_two_roundings(run, capsys):
    root, trained = run
    assert export([str(root / 'run'), '--out', str(root / 'delta.pth')]) == 0
    delta = torch.load(root / 'delta.pth', weights_only=True)
    assert sorted(delta['net_g_delta']) == ['conv_last.bias', 'conv_last.weight']
    assert delta['adaptation'] == AdaptationSettings(lr=0.02, steps=2).to_dict()  # the MaskNet file's, not the yml's
    assert convert([str(root / 'delta.pth'), '--base', str(root / 'base.pth'), '--out', str(root / 'w')]) == 0
    net_g = load_state_dict(root / 'w' / 'delta_net_g.pth')
    u = unit_roundoff(torch.float32)
    for name, value in trained.items():  # fl(base + fl(theta - base)): two roundings of at most |theta| + |delta|
        bound = 2 * u * (value.abs() + delta['net_g_delta'].get(name, torch.zeros(())).abs())
        assert ((net_g[name] - value).abs() <= bound).all(), name
    mask, expected = (
        load_state_dict(root / path) for path in ('w/delta_net_mask.pth', 'run/models/net_mask_latest.pth'))
    assert mask.keys() == expected.keys() and all(torch.equal(mask[k], v) for k, v in expected.items())
    assert stored_adaptation(torch.load(root / 'w' / 'delta_net_mask.pth', weights_only=True)) == AdaptationSettings(
        lr=0.02, steps=2)
    assert "Its adaptation options: {'lr': 0.02, 'steps': 2," in capsys.readouterr().out


def test_a_delta_on_another_base_is_refused_by_name(run, capsys):
    root, _ = run
    assert export([str(root / 'run'), '--out', str(root / 'delta.pth')]) == 0
    other = {k: v + 1 for k, v in load_state_dict(root / 'base.pth').items()}
    torch.save({'params_ema': other}, root / 'other.pth')
    assert convert([str(root / 'delta.pth'), '--base', str(root / 'other.pth'), '--out', str(root / 'w')]) == 2
    assert 'holds other weights' in capsys.readouterr().err
    assert not (root / 'w').exists()


def delta_variants(root, delta):
    """Delta files a user could hand in by mistake: ``{file name: (checkpoint, the error it must give)}``."""
    mask_wrong = {**delta, 'params_mask': {**delta['params_mask'], 'convs.0.weight': torch.zeros(4, 6, 5, 5)}}
    no_mask = {key: value for key, value in delta.items() if key != 'params_mask'}
    nan = {**delta, 'net_g_delta': {**delta['net_g_delta'], 'conv_last.bias': torch.full((3, ), float('nan'))}}
    net_g = {'params': load_state_dict(root / 'base.pth')}
    state = dict(iter=3, optimizers=[], schedulers=[])
    bad_settings = {**delta, 'adaptation': dict(params='([')}
    return {
        'net_g.pth': (net_g, "is not a delta file: it holds an SR network's weights (a net_g file). A delta file "
                      '(scripts/export_delta.py) holds net_g_delta, params_mask, base, adaptation'),
        'state.pth': (state, 'is not a delta file: it holds a BasicSR training state'),
        'no_mask.pth': (no_mask, "is an incomplete delta file: it has no params_mask (MaskNet's weights)"),
        'mask_wrong.pth': (mask_wrong, '(params_mask): its MaskNet variables do not fit'),
        'nan.pth': (nan, 'has NaN or infinite values in 1 tensor(s) (conv_last.bias)'),
        'bad_settings.pth': (bad_settings, "(adaptation): adaptation.params '([' is not a regular expression"),
    }


def test_a_file_that_is_no_whole_delta_is_named_with_what_it_holds_and_nothing_is_written(run, capsys):
    root, _ = run
    assert export([str(root / 'run'), '--out', str(root / 'delta.pth')]) == 0
    delta = torch.load(root / 'delta.pth', weights_only=True)
    for name, (checkpoint, message) in delta_variants(root, delta).items():
        torch.save(checkpoint, root / name)
        assert convert([str(root / name), '--base', str(root / 'base.pth'), '--out', str(root / 'w')]) == 2, name
        error = capsys.readouterr().err
        assert message in error and 'KeyError' not in error, (name, error)
        assert not (root / 'w').exists(), name  # no file of it, not even net_g's, under its final name


def test_an_output_folder_that_is_a_file_is_refused_before_anything_is_read(run, capsys):
    root, _ = run
    (root / 'taken').write_text('')
    assert convert([str(root / 'missing.pth'), '--out', str(root / 'taken')]) == 2
    assert "output folder '" in (error := capsys.readouterr().err) and "taken' is a file; choose a folder with --out" \
        in error
