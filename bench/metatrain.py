"""Cost of one MetaF2N meta-training iteration against a plain SRGAN step of the same networks, on the CPU.

The networks, losses and optimisers are those of options/train_metaf2n.yml (RRDBNet-23, UNetDiscriminatorSN,
MaskNet; L1 + 0.5 LPIPS + 0.1 GAN + mask regulariser; Adam), built by MetaF2NModel from that file without its
weights (random weights cost the same; LPIPS's trunk is random offline). Each task: 4 face patches of 32 x 32 LQ
and 4 background patches of 64 x 64 LQ (random pixels). Variants, each in a fresh process (bench/harness.py):

- ``plain``: SRGANModel's step on the 4 background patches: SR, L1 + LPIPS + GAN, backward, step; D step;
- ``meta``: ``MetaF2NModel.optimize_parameters`` on one task (exact second-order meta-gradient);
- ``meta4``: the paper's iteration, 4 tasks (memory only: one run, no warm-up).

The original TensorFlow code's figures, the anchors: docs/benchmarks.md. Targets: meta <= 2.5 x plain in time and
<= 5 GB peak RSS; meta4 <= 12 GB peak RSS.

    python bench/metatrain.py [--rounds 2] [--repeats 2] [--blocks 23] [--check]
"""
import os
import sys

from harness import alternate, arguments, flags, fmt_seconds, measure, median_of, paired_ratio, report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = {'time_ratio': 2.5, 'meta_gb': 5, 'meta4_gb': 12}


def build(blocks):
    """MetaF2NModel from options/train_metaf2n.yml on the CPU, without weights."""
    import yaml
    from basicsr.models import build_model

    with open(os.path.join(REPO, 'options', 'train_metaf2n.yml')) as f:
        opt = yaml.safe_load(f)
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1, face_restorer='oracle')
    opt['network_g']['num_block'] = blocks
    opt['path'] = {key: None for key in opt['path']}
    opt['train']['perceptual_opt']['random_weights'] = True
    return build_model(opt)


def tasks(count):
    import torch
    g = torch.Generator().manual_seed(0)
    faces, backgrounds = torch.rand(count, 4, 3, 32, 32, generator=g), torch.rand(count, 4, 3, 256, 256, generator=g)
    return {
        'face_lq': torch.rand(count, 4, 3, 64, 64, generator=g),
        'face_lq_patches': faces,
        'face_gt_patches': torch.rand(count, 4, 3, 128, 128, generator=g),
        'face_crops': torch.zeros(count, 4, 3, dtype=torch.int64),
        'background_gt': backgrounds,
        'background_lq': torch.rand(count, 4, 3, 64, 64, generator=g),
        'background_gt_usm': backgrounds
    }


def plain_step(model, data):
    """SRGANModel.optimize_parameters with these networks and losses (LPIPSLoss returns one value)."""
    lq, target, real = data['background_lq'][0], data['background_gt_usm'][0], data['background_gt'][0]
    model.net_d.requires_grad_(False)
    model.optimizer_g.zero_grad()
    sr = model.net_g(lq)
    loss = model.cri_pix(sr, target) + model.cri_perceptual(sr, target) + model.cri_gan(model.net_d(sr), True)
    loss.backward()
    model.optimizer_g.step()
    model.net_d.requires_grad_(True)
    model.optimizer_d.zero_grad()
    model.cri_gan(model.net_d(real), True, is_disc=True).backward()
    model.cri_gan(model.net_d(sr.detach()), False, is_disc=True).backward()
    model.optimizer_d.step()


def child(variant, args):
    import torch
    torch.manual_seed(0)
    model = build(args.blocks)
    data = tasks(4 if variant == 'meta4' else 1)
    model.feed_data(data)
    if variant == 'plain':
        result = measure(lambda: plain_step(model, data), args.repeats)
    elif variant == 'meta':
        result = measure(lambda: model.optimize_parameters(1), args.repeats)
    else:
        result = measure(lambda: model.optimize_parameters(1), 1, warmup=False)
    report(result)


def main():
    parser = arguments(__doc__)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args)
    forwarded = flags(args, 'repeats', 'blocks')
    results = alternate(os.path.abspath(__file__), ['plain', 'meta'], args.rounds, forwarded)
    results.update(alternate(os.path.abspath(__file__), ['meta4'], 1, forwarded))
    seconds = {v: median_of(results[v], 'seconds') for v in results}
    peak_gb = {v: median_of(results[v], 'peak_rss_mb') / 1024 for v in results}  # GiB
    print(f'RRDBNet-{args.blocks} + UNetDiscriminatorSN + MaskNet, CPU fp32, 4 faces 32x32 + 4 backgrounds 64x64 '
          f'per task; {args.rounds} rounds x {args.repeats} runs (medians)')
    print('| variant | time per iteration | peak RSS |\n|---|---:|---:|')
    for key, name in (('plain', 'plain SRGAN step (backgrounds only)'), ('meta', 'MetaF2N, 1 task'),
                      ('meta4', 'MetaF2N, 4 tasks (the paper)')):
        print(f'| {name} | {fmt_seconds(seconds[key])} | {peak_gb[key]:.2f} GiB |')
    ratio, ratios = paired_ratio(results, 'meta', 'plain')
    print(f'1-task meta iteration / plain step = {ratio:.2f}, median of the rounds\' '
          f'{", ".join(f"{r:.2f}" for r in ratios)} (target <= {TARGETS["time_ratio"]}); peak '
          f'{peak_gb["meta"]:.2f} GiB (target <= {TARGETS["meta_gb"]}); 4 tasks {peak_gb["meta4"]:.2f} GiB '
          f'(target <= {TARGETS["meta4_gb"]}). The original TensorFlow code: 17.5 s and 10.7 GB for one task.')
    missed = ratio > TARGETS['time_ratio'] or peak_gb['meta'] > TARGETS['meta_gb'] or \
        peak_gb['meta4'] > TARGETS['meta4_gb']
    if args.check and missed:
        sys.exit(1)


if __name__ == '__main__':
    main()
