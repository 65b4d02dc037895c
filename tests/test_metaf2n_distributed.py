"""``--launcher pytorch`` on CPUs (gloo): every rank ends an iteration with the weights and the meta-gradient of
one process over all the tasks."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from basicsr.models import build_model
from test_metaf2n_model import degraded_tasks, model_options

from conftest import copy_options, run_python

TRAIN = {'optim_g': {'type': 'Adam', 'lr': 1e-2}}
GAN = {'network_d': {'type': 'UNetDiscriminatorSN', 'num_in_ch': 3, 'num_feat': 4}}
GAN_TRAIN = {
    **TRAIN, 'optim_d': {
        'type': 'Adam',
        'lr': 1e-2
    },
    'gan_opt': {
        'type': 'GANLoss',
        'gan_type': 'vanilla',
        'loss_weight': 0.1
    }
}


def one_iteration(model, tasks):
    model.feed_data(tasks)
    model.optimize_parameters(1)
    nets = [net for net in (model.net_g, model.net_mask, model.net_d) if net is not None]
    return {
        'weights': [t.detach().clone() for net in nets for t in net.state_dict().values()],
        'grads': [p.grad.clone() for net in nets for p in net.parameters()],
        'log': model.get_current_log()
    }


def four_tasks():
    """Tasks 0 and 1 valid; 2 and 3 with a non-finite pseudo ground truth (skipped)."""
    tasks = {k: torch.cat([v, v.flip(0)]) for k, v in degraded_tasks().items()}
    tasks['face_gt_patches'][2:, 0, 0, 0, 0] = float('nan')
    return tasks


def rank_main(rank, world_size, init_file, tmp_path, gan):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size)
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(100 + rank)  # each rank builds other weights: rank 0's must win
    extra = GAN if gan else {}
    model = build_model(
        model_options(tmp_path, GAN_TRAIN if gan else TRAIN, dist=True, rank=rank, world_size=world_size, **extra))
    tasks = four_tasks() if gan else degraded_tasks()
    per_rank = len(tasks['face_lq']) // world_size
    tasks = {k: v[rank * per_rank:(rank + 1) * per_rank] for k, v in tasks.items()}
    torch.save(one_iteration(model, tasks), tmp_path / f'rank{rank}.pt')
    dist.destroy_process_group()


@pytest.mark.parametrize('gan', [
    pytest.param(False, id='one task per rank', marks=pytest.mark.e2e),
    pytest.param(True, id='gan, rank 1 skips all its tasks')
])
def test_two_ranks_match_one_process_over_all_tasks(tmp_path, gan):
    mp.spawn(rank_main, args=(2, str(tmp_path / 'init'), tmp_path, gan), nprocs=2)
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in range(2)]
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(100)
        extra = GAN if gan else {}
        single = one_iteration(
            build_model(model_options(tmp_path, GAN_TRAIN if gan else TRAIN, **extra)),
            four_tasks() if gan else degraded_tasks())
    finally:
        torch.set_default_dtype(torch.float32)
    for key in ('weights', 'grads'):
        assert len(ranks[0][key]) == len(ranks[1][key]) == len(single[key])
        for a, b, c in zip(ranks[0][key], ranks[1][key], single[key]):
            assert torch.equal(a, b), f'ranks differ in {key}'
            torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-12)
    assert ranks[0]['log'] == ranks[1]['log']
    assert ranks[0]['log'].keys() == single['log'].keys()
    for key, value in single['log'].items():
        assert ranks[0]['log'][key] == pytest.approx(value, rel=1e-9), key


@pytest.mark.e2e
def test_torchrun_meta_trains_on_cpus_with_the_gloo_backend(tiny_workdir):
    options = copy_options(tiny_workdir, 'train_metaf2n_tiny.yml')
    text = open(options).read().replace('name: tiny_metaf2n', 'name: tiny_metaf2n_ddp')
    open(options, 'w').write(text)
    proc = run_python(
        '-m',
        'torch.distributed.run',
        '--standalone',
        '--nproc_per_node',
        '2',
        '-m',
        'basicsr.train',
        '-opt',
        options,
        '--launcher',
        'pytorch',
        cwd=tiny_workdir)
    log = sorted((tiny_workdir / 'experiments' / 'tiny_metaf2n_ddp').glob('train_*.log'))[-1].read_text()
    assert 'World size (gpu number): 2' in log and 'iter:       2' in log, proc.stdout[-2000:]
    assert (tiny_workdir / 'experiments' / 'tiny_metaf2n_ddp' / 'models' / 'net_mask_2.pth').is_file()
