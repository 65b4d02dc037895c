"""Each BasicSR 1.4.2 fix: needed on today's stack, and doing exactly its job."""
import importlib.util
import os
import subprocess
import sys
import time
import types

import basicsr.train
import pytest
import torch
import torchvision
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
    opt = {
        'name': 'x',
        'model_type': 'SRModel',
        'scale': 1,
        'num_gpu': 0,
        'is_train': True,
        'dist': False,
        'network_g': {
            'type': 'MaskNet',
            'num_in_ch': 3,
            'num_feat': 4,
            'num_conv': 2
        },
        'path': {
            'pretrain_network_g': None,
            'models': str(path),
            'training_states': str(path)
        },
        'train': {
            'optim_g': {
                'type': 'Adam',
                'lr': 1e-4
            },
            'pixel_opt': {
                'type': 'L1Loss'
            },
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': [10, 20],
                'gamma': 0.5
            }
        }
    }
    model = build_model(opt)
    model.feed_data({'lq': torch.rand(1, 3, 8, 8), 'gt': torch.rand(1, 1, 8, 8)})
    model.optimize_parameters(1)
    model.save(epoch=0, current_iter=iteration)


def resume_options(tmp_path, auto_resume, resume_state=None):
    states = tmp_path / 'training_states'
    states.mkdir(exist_ok=True)
    return {
        'name': 'x',
        'auto_resume': auto_resume,
        'num_gpu': 0,
        'is_train': True,
        'path': {
            'training_states': str(states),
            'models': str(tmp_path / 'models'),
            'resume_state': resume_state
        },
        'network_g': {}
    }


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
    monkeypatch.setattr(compat, 'init_process_group', lambda backend: calls.append({'backend': backend}))
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


# a rank of torchrun's group: joins it, adds 1 over the group, prints the sum and leaves (a process that exits in
# the group can abort in gloo's threads)
RANK_PROCESS = ('import datetime, torch, torch.distributed as dist; from metaf2n_plugin import compat; '
                "compat.init_process_group('gloo', timeout=datetime.timedelta(seconds=20)); "
                'one = torch.ones(1); dist.all_reduce(one); print(int(one)); dist.barrier(); '
                'dist.destroy_process_group()')


def test_a_group_restarted_by_torchrun_joins_with_keys_of_its_own_not_its_predecessors(tmp_path):
    """Fix 9: the store outlives a restart (torchrun's agent holds it); a rank of the new group that reads it before
    its peer has joined finds the dead group's addresses unless each attempt has keys of its own."""
    from datetime import timedelta

    agent = torch.distributed.TCPStore(
        '127.0.0.1', 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=30))
    env = {
        **os.environ, 'MASTER_ADDR': '127.0.0.1',
        'MASTER_PORT': str(agent.port),
        'WORLD_SIZE': '2',
        'TORCHELASTIC_USE_AGENT_STORE': 'True'
    }
    for attempt, delay in ((0, 0), (1, 3)):  # the second time, rank 1 joins 3 s after rank 0
        ranks = []
        for rank in range(2):
            time.sleep(delay * rank)
            env.update(RANK=str(rank), TORCHELASTIC_RESTART_COUNT=str(attempt))
            output = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            ranks.append(subprocess.Popen([sys.executable, '-c', RANK_PROCESS], cwd=tmp_path, env=env, **output))
        outputs = [process.communicate(timeout=120)[0] for process in ranks]
        assert [process.returncode for process in ranks] == [0, 0], outputs
        assert [output.split()[-1] for output in outputs] == ['2', '2']


class Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib
        return pathlib.Path.touch, (pathlib.Path(self.marker), )


def test_weights_files_that_are_not_checkpoints_of_the_network_are_named(tmp_path):
    from basicsr.models.base_model import BaseModel

    from metaf2n_plugin.archs.masknet_arch import MaskNet

    model, net = BaseModel.__new__(BaseModel), MaskNet(6, 4, 2)
    (tmp_path / 'text.pth').write_text('not weights')
    (tmp_path / 'empty.pth').write_bytes(b'')
    torch.save({'state': net.state_dict()}, tmp_path / 'other_key.pth')
    torch.save({'params': MaskNet(6, 8, 2).state_dict()}, tmp_path / 'other_net.pth')
    torch.save({'params': Payload(tmp_path / 'ran')}, tmp_path / 'payload.pth')
    nan = net.state_dict()
    nan['convs.1.bias'][0] = float('nan')
    torch.save({'params': nan}, tmp_path / 'nan.pth')
    cases = {
        'nan.pth': r'has NaN or infinite values in 1 tensor\(s\) \(convs.1.bias\); a network with them writes a broken',
        'text.pth': 'is not a PyTorch weights file that can be loaded safely',
        'empty.pth': 'is not a PyTorch weights file that can be loaded safely',
        'other_key.pth': r"has no 'params' \(nor 'params'\) entry; it holds \['state'\]",
        'other_net.pth': 'does not fit MaskNet: Error.*size mismatch for convs.0.weight',
        'payload.pth': 'is not a PyTorch weights file that can be loaded safely'
    }
    for name, message in cases.items():
        with pytest.raises(ValueError, match=f"'{tmp_path / name}'.*{message}"):
            model.load_network(net, str(tmp_path / name))
    assert not (tmp_path / 'ran').exists()  # the payload never ran
    torch.save({'params': net.state_dict()}, tmp_path / 'good.pth')
    model.load_network(MaskNet(6, 4, 2), str(tmp_path / 'good.pth'))  # still BasicSR's loading


def test_a_code_payload_is_refused_everywhere_a_user_hands_in_weights(tmp_path):
    from metaf2n_plugin.checkpoints import load_state_dict
    from metaf2n_plugin.faces import GPENRestorer, RetinaFaceDetector

    torch.save(Payload(tmp_path / 'ran'), tmp_path / 'payload.pth')
    state_dir = tmp_path / 'training_states'
    state_dir.mkdir()
    torch.save({'iter': 3, 'x': Payload(tmp_path / 'ran')}, state_dir / '3.state')
    loaders = {
        'GPEN weights': lambda: GPENRestorer(32, 1, 1 / 16, weights=tmp_path / 'payload.pth', style_dim=32, n_mlp=1),
        'RetinaFace weights': lambda: RetinaFaceDetector('retinaface_mobile0.25', weights=tmp_path / 'payload.pth'),
        'metric weights': lambda: load_state_dict(tmp_path / 'payload.pth', 'metric weights'),  # LPIPS, FID
        'training state': lambda: compat.load_resume_state(resume_options(tmp_path, False, str(state_dir / '3.state'))),
    }
    for what, load in loaders.items():
        with pytest.raises(ValueError, match=f"{what}: '.*' is not a PyTorch weights file that can be loaded safely"):
            load()
    assert not (tmp_path / 'ran').exists()


def test_weights_with_a_non_finite_tensor_are_refused_by_every_loader(tmp_path):
    from metaf2n_plugin.checkpoints import load_state_dict
    from metaf2n_plugin.faces import GPENRestorer, RetinaFaceDetector

    torch.save({'a': torch.zeros(2), 'b': torch.tensor([0.0, float('-inf')])}, tmp_path / 'inf.pth')
    loaders = {
        'GPEN weights': lambda: GPENRestorer(32, 1, 1 / 16, weights=tmp_path / 'inf.pth', style_dim=32, n_mlp=1),
        'RetinaFace weights': lambda: RetinaFaceDetector('retinaface_mobile0.25', weights=tmp_path / 'inf.pth'),
        'metric weights': lambda: load_state_dict(tmp_path / 'inf.pth', 'metric weights'),  # LPIPS, FID
    }
    for what, load in loaders.items():
        with pytest.raises(ValueError, match=rf"{what}: '.*inf.pth' has NaN or infinite values in 1 tensor\(s\) \(b\)"):
            load()


def test_fid_works_without_scipys_disp(monkeypatch):
    import warnings

    import numpy as np
    import scipy.linalg
    from basicsr.metrics.fid import calculate_fid

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(64, 6)), rng.normal(1, 1, size=(64, 6))
    stats = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # SciPy 1.16-1.17 warn about disp
        today = calculate_fid(*stats)
    sqrtm = scipy.linalg.sqrtm
    monkeypatch.setattr(scipy.linalg, 'sqrtm', lambda matrix: sqrtm(matrix))  # SciPy 1.18: no disp argument
    assert calculate_fid(*stats) == pytest.approx(today, rel=1e-9)
    root_trace = np.sqrt(np.linalg.eigvals(stats[1] @ stats[3]).real).sum()  # tr sqrt(S1 S2), without sqrtm
    expected = np.sum((stats[0] - stats[2])**2) + np.trace(stats[1]) + np.trace(stats[3]) - 2 * root_trace
    assert today == pytest.approx(expected, rel=1e-6)


def test_auto_resume_falls_back_to_the_newest_state_that_loads(tmp_path, caplog):
    opt = resume_options(tmp_path, auto_resume=True)
    for iteration in (2, 4):
        save_training_state(tmp_path / 'training_states', iteration)
    latest = tmp_path / 'training_states' / '4.state'
    latest.write_bytes(latest.read_bytes()[:100])  # a state truncated by a crash (BasicSR wrote in place)
    state = compat.load_resume_state(opt)
    assert state['iter'] == 2 and opt['path']['resume_state'].endswith('2.state')
    assert "training state: '" in caplog.text and "4.state' is not a PyTorch weights file" in caplog.text


def test_basicsr_saves_checkpoints_atomically(tmp_path, monkeypatch):
    from basicsr.models import base_model

    from metaf2n_plugin.archs.masknet_arch import MaskNet

    model = base_model.BaseModel.__new__(base_model.BaseModel)
    model.opt = {'path': {'models': str(tmp_path)}}
    net = MaskNet(6, 4, 2)
    model.save_network(net, 'net_mask', 5)
    first = (tmp_path / 'net_mask_5.pth').read_bytes()

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b'half a checkpoint')
        raise KeyboardInterrupt  # what a kill during torch.save looks like to the file: the write stops

    monkeypatch.setattr(torch, 'save', dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        model.save_network(MaskNet(6, 4, 2), 'net_mask', 5)
    assert (tmp_path / 'net_mask_5.pth').read_bytes() == first and os.listdir(tmp_path) == ['net_mask_5.pth']
