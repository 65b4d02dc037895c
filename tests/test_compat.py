"""Each BasicSR 1.4.2 fix: needed on today's stack, and doing exactly its job."""
import importlib.util
import sys
import types

import pytest
import torch
import torchvision

import basicsr.train
from basicsr.models import build_model
from metaf2n_plugin import compat

from conftest import run_python


def test_functional_tensor_alias_is_needed_and_serves_basicsr(tmp_path):
    # Without the hook, a bare `import basicsr` is what BasicSR #663 reports.
    code = 'import importlib.util as u; print(u.find_spec("torchvision.transforms.functional_tensor"))'
    assert run_python('-c', code, cwd=tmp_path, env={'METAF2N_NO_AUTOLOAD': '1'}).stdout.strip() == 'None'
    from torchvision.transforms.functional_tensor import rgb_to_grayscale
    assert rgb_to_grayscale is torchvision.transforms._functional_tensor.rgb_to_grayscale
    gray = basicsr.data.degradations.rgb_to_grayscale(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
    assert gray.shape == (1, 1, 1, 1) and gray.item() == pytest.approx(0.2989, abs=1e-4)  # ITU-R 601 red weight


def test_functional_tensor_alias_leaves_a_real_module_alone(monkeypatch):
    real = types.ModuleType('torchvision.transforms.functional_tensor')
    monkeypatch.setitem(sys.modules, real.__name__, real)
    compat._alias_functional_tensor()
    assert sys.modules[real.__name__] is real


def test_runner_code_calls_the_pipeline_with_the_working_directory():
    loader = basicsr.train.__spec__.loader
    assert isinstance(loader, compat.RunInWorkingDirectory)
    code = loader.get_code('basicsr.train')
    assert {'train_pipeline', 'getcwd'} <= set(code.co_names)
    # Imported as a module, basicsr.train is BasicSR's own file.
    assert importlib.util.find_spec('basicsr.train').origin.endswith('basicsr/train.py')
    assert basicsr.train.load_resume_state is compat.load_resume_state


def save_training_state(path, iteration):
    """Save ``<iteration>.state`` and ``net_g_<iteration>.pth`` in ``path`` through BasicSR's own SRModel."""
    opt = {'name': 'x', 'model_type': 'SRModel', 'scale': 1, 'num_gpu': 0, 'is_train': True, 'dist': False,
           'network_g': {'type': 'MaskNet', 'num_in_ch': 3, 'num_feat': 4, 'num_conv': 2},
           'path': {'pretrain_network_g': None, 'models': str(path), 'training_states': str(path)},
           'train': {'optim_g': {'type': 'Adam', 'lr': 1e-4}, 'pixel_opt': {'type': 'L1Loss'},
                     'scheduler': {'type': 'MultiStepLR', 'milestones': [10, 20], 'gamma': 0.5}}}
    model = build_model(opt)
    model.feed_data({'lq': torch.rand(1, 3, 8, 8), 'gt': torch.rand(1, 1, 8, 8)})
    model.optimize_parameters(1)
    model.save(epoch=0, current_iter=iteration)


def resume_options(tmp_path, auto_resume, resume_state=None):
    states = tmp_path / 'training_states'
    states.mkdir(exist_ok=True)
    return {'name': 'x', 'auto_resume': auto_resume, 'num_gpu': 0, 'is_train': True,
            'path': {'training_states': str(states), 'models': str(tmp_path / 'models'),
                     'resume_state': resume_state}, 'network_g': {}}


def test_basicsr_checkpoints_load_with_weights_only(tmp_path):
    save_training_state(tmp_path, 3)
    state = torch.load(tmp_path / '3.state', weights_only=True)
    assert state['iter'] == 3 and state['schedulers'][0]['milestones'] == {10: 1, 20: 1}
    net = torch.load(tmp_path / 'net_g_3.pth', weights_only=True)
    assert set(net) == {'params'} and net['params']['convs.0.weight'].shape == (4, 3, 3, 3)


def test_auto_resume_loads_the_latest_state_onto_the_cpu(tmp_path):
    opt = resume_options(tmp_path, auto_resume=True)
    for iteration in (2, 10):  # 10 sorts before 2 as text
        save_training_state(tmp_path / 'training_states', iteration)
    state = compat.load_resume_state(opt)
    assert state['iter'] == 10 and opt['path']['resume_state'].endswith('10.state')
    assert state['schedulers'][0]['milestones'] == {10: 1, 20: 1}
    exp_avg = state['optimizers'][0]['state'][0]['exp_avg']
    assert exp_avg.device == torch.device('cpu')
    # check_resume points the networks at the experiment's latest weights, as BasicSR does
    assert opt['path']['pretrain_network_g'].endswith('net_g_10.pth')


def test_auto_resume_without_states_starts_fresh(tmp_path):
    opt = resume_options(tmp_path, auto_resume=True)
    assert compat.load_resume_state(opt) is None and opt['path']['resume_state'] is None


def test_explicit_resume_state_is_loaded(tmp_path):
    save_training_state(tmp_path, 7)
    assert compat.load_resume_state(resume_options(tmp_path, False, str(tmp_path / '7.state')))['iter'] == 7


def test_fid_inception_takes_the_given_state_dict_and_leaves_basicsr_unchanged(monkeypatch, tmp_path):
    from basicsr.archs import inception
    from torchvision import models

    monkeypatch.chdir(tmp_path)  # BasicSR would read ./experiments/pretrained_models here, or download
    before = inception.LOCAL_FID_WEIGHTS, inception.load_url
    state = models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False).state_dict()
    network = compat.build_fid_inception(3, state)
    assert (inception.LOCAL_FID_WEIGHTS, inception.load_url) == before
    torch.testing.assert_close(network.blocks[0][0].conv.weight, state['Conv2d_1a_3x3.conv.weight'])


def test_launcher_pytorch_lets_torch_pick_gloo_or_nccl_and_sets_a_cuda_device_only_with_cuda(monkeypatch):
    import basicsr.utils.options
    assert basicsr.utils.options.init_dist is compat.init_dist
    calls = []
    monkeypatch.setattr(compat.dist, 'init_process_group', lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda device: calls.append(('set_device', device)))
    monkeypatch.setattr(compat.mp, 'get_start_method', lambda allow_none: 'spawn')
    monkeypatch.setenv('RANK', '1')
    compat.init_dist('pytorch')
    assert calls == [{'backend': None}]  # torch: gloo for CPU tensors (and NCCL for CUDA ones where CUDA exists)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setenv('LOCAL_RANK', '3')
    compat.init_dist('pytorch')
    assert calls[1:] == [('set_device', 1), {'backend': None}]
    with pytest.raises(ValueError, match='Invalid launcher type'):  # other launchers: BasicSR's own code
        compat.init_dist('mpi')
