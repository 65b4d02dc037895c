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
