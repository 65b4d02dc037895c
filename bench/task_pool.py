"""Seconds per meta-iteration of options/train_x4plus_masknet.yml (x4plus frozen, MaskNet meta-trained, the tail
adapted; 2 tasks of 4 faces and 4 backgrounds) as the tasks reach the model, each variant in a fresh process:

- ``fresh``: MetaF2NTaskDataset, every task degraded at its iteration, the whole network at every visit (before);
- ``pool``: MetaF2NTaskPoolDataset, the tasks degraded once, the whole network at every visit;
- ``cached``: the pool and the frozen body's features, computed once per task: the tail alone runs (after).

The pool (8 tasks of the astronaut fold's training data; python scripts/make_heldout_folds.py first) and its body
features are made before the timing starts, as a run makes them once. Real x4plus weights when
weights/RealESRGAN_x4plus.pth exists, else random ones (same cost).

    python bench/task_pool.py [--rounds 2] [--repeats 4]
"""
import os
import sys

from harness import alternate, arguments, flags, fmt_seconds, measure, median_of, paired_ratio, report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ('fresh', 'pool', 'cached')
POOL = os.path.join('datasets', 'pools', 'bench_task_pool.pth')


def child(variant, repeats):
    import torch
    import yaml
    from basicsr.data import build_dataset
    from basicsr.models import build_model
    from torch.utils.data import DataLoader

    with open(os.path.join(REPO, 'options', 'train_x4plus_masknet.yml'), encoding='utf-8') as f:
        opt = yaml.safe_load(f)
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1, val=None)
    if not os.path.isfile(opt['path']['pretrain_network_g']):
        opt['path']['pretrain_network_g'] = None
    data = opt['datasets']['train']
    data.update(phase='train', scale=opt['scale'], pool_path=POOL, pool_size=8)
    if variant == 'fresh':
        data['type'] = 'MetaF2NTaskDataset'
    opt['datasets'] = {'train': data}
    opt['train']['cache_frozen_body'] = variant == 'cached'
    torch.manual_seed(0)
    model = build_model(opt)
    loader = DataLoader(build_dataset(data), batch_size=data['batch_size_per_gpu'], shuffle=True)
    batches = iter(())

    def step():
        nonlocal batches
        batch = next(batches, None)
        if batch is None:
            batches = iter(loader)
            batch = next(batches)
        model.feed_data(batch)
        model.optimize_parameters(1)

    report(measure(step, repeats))


def main():
    parser = arguments(__doc__, blocks=False)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.repeats)
    results = alternate(os.path.abspath(__file__), list(VARIANTS), args.rounds, flags(args, 'repeats'))
    from metaf2n_plugin.models.precision import cpu_description
    print(f'options/train_x4plus_masknet.yml, 2 tasks per iteration, fp32 on {cpu_description()}; {args.rounds} rounds '
          f'x {args.repeats} iterations (medians)')
    print('| variant | s per iteration | / fresh |\n|---|---:|---:|')
    for variant in VARIANTS:
        ratio = paired_ratio(results, variant, 'fresh')[0]
        print(f'| {variant} | {fmt_seconds(median_of(results[variant], "seconds"))} | {ratio:.2f} |')


if __name__ == '__main__':
    sys.exit(main())
