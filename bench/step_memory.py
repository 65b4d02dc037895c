"""Peak memory of MetaF2N's inner step, measured, against the estimate that the memory checks use
(``metaf2n_plugin.memory.step_memory``: a setting or photo whose step would not fit is refused or falls back).

RRDBNet x4 as Real-ESRGAN x4plus (64 features, 23 blocks, growth 32; random weights: memory does not depend on
them), MaskNet, P patch pairs of 16 x 16 LQ / 64 x 64 HQ, one SGD step (eager fp32, torch's default threads).
Every variant runs in a fresh process; its step's memory is its peak RSS less that of the same process without the
step (``none``: networks and patches built, no step). ``all``: every parameter adapted (the graph of the whole
network is kept); ``tail``: ``conv_up1|conv_up2|conv_hr|conv_last`` by ``adapt_to_faces`` (the whole graph still);
``fast``: the tail by ``photo_step`` in fp32, the body and MaskNet without a graph (what a photo's step runs).

The whole graph's estimate serves ``all`` and ``tail``, the tail's ``fast``. Target: measured / estimated <= 1 for
every variant (the estimate is an upper bound, so that no step that passes
the check runs out of memory), and >= 0.5 (it refuses nothing that needs less than half).

    python bench/step_memory.py [--rounds 2] [--blocks 23] [--check]
"""
import os
import sys

from harness import alternate, arguments, flags, measure, median_of, report

VARIANTS = {
    'none': (16, None),
    'all16': (16, 'all'),
    'all64': (64, 'all'),
    'tail64': (64, 'tail'),
    'fast64': (64, 'fast'),
    'fast256': (256, 'fast')
}
TAIL = 'conv_up1|conv_up2|conv_hr|conv_last'


def child(variant, args):
    import torch
    from basicsr.archs.rrdbnet_arch import RRDBNet

    from metaf2n_plugin import AdaptationSettings, adapt_to_faces
    from metaf2n_plugin.archs.masknet_arch import MaskNet
    from metaf2n_plugin.models.adaptation import photo_step

    torch.manual_seed(0)
    patches, params = VARIANTS[variant]
    net = RRDBNet(3, 3, scale=4, num_feat=64, num_block=args.blocks, num_grow_ch=32).eval()
    mask = MaskNet().requires_grad_(False)
    lq, hq = torch.rand(patches, 3, 16, 16), torch.rand(patches, 3, 64, 64)
    settings = AdaptationSettings(params=TAIL if params in ('tail', 'fast') else None)

    valid = torch.ones(patches, 1, 64, 64)

    def step():
        if params == 'fast':
            photo_step(net, mask, lq, hq, valid, settings)
        elif params is not None:
            adapt_to_faces(net, mask, lq, hq, settings)

    report(measure(step, 0))


def main():
    args = arguments(__doc__).parse_args()
    if args.child:
        return child(args.child, args)
    import torch
    from basicsr.archs.rrdbnet_arch import RRDBNet

    from metaf2n_plugin.memory import step_memory

    net = RRDBNet(3, 3, scale=4, num_feat=64, num_block=args.blocks, num_grow_ch=32)
    results = alternate(os.path.abspath(__file__), list(VARIANTS), args.rounds, flags(args, 'blocks'))
    base = median_of(results['none'], 'peak_rss_mb')
    print(f'inner step memory, RRDBNet {args.blocks} blocks, {torch.get_num_threads()} threads: measured '
          '(peak RSS less the run without the step) against metaf2n_plugin.memory.step_memory')
    missed = []
    for variant, (patches, params) in VARIANTS.items():
        if params is None:
            continue
        measured = (median_of(results[variant], 'peak_rss_mb') - base) * 2**20
        estimate = step_memory(net, patches, 64, 4, whole=params != 'fast')
        ratio = measured / estimate
        per_pixel = measured / (patches * 16 * 16) / 1024
        print(f'  {variant:7s} {patches:3d} patches: {measured / 2**30:5.2f} GiB measured, {per_pixel:4.0f} KiB per LR '
              f'pixel; estimate {estimate / 2**30:5.2f} GiB; measured / estimate {ratio:.2f}')
        if not 0.5 <= ratio <= 1:
            missed.append(variant)
    if args.check and missed:
        sys.exit(f'measured / estimate outside [0.5, 1] for {", ".join(missed)}')


if __name__ == '__main__':
    main()
