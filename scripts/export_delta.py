"""Export a partly meta-trained run (train.meta_params) as a small delta file: its trained tensors minus its base's.

Reads the run folder BasicSR wrote (experiments/<name>: the options file it copied there, models/net_g_<iter>.pth and
net_mask_<iter>.pth with the adaptation settings saved in it), the base named by the options'
path.pretrain_network_g, and writes the file of
metaf2n_plugin/weight_delta.py, which metaf2n-convert turns back into the run's net_g and net_mask.

Examples:
    python scripts/export_delta.py experiments/x4plus_masknet_meta --out pretrained/x4plus_masknet_meta.pth
    python scripts/export_delta.py experiments/x4plus_masknet_meta --iter 200 --out /tmp/at_200.pth
"""
import glob
import os
import sys

import torch
import yaml

from metaf2n_plugin.atomic_write import atomic_file
from metaf2n_plugin.checkpoints import load_state_dict, read_checkpoint, state_dict_of
from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.models.adaptation import AdaptationSettings, stored_adaptation
from metaf2n_plugin.weight_delta import make_delta


def main(argv=None):
    parser = parser_from_doc(__doc__)
    parser.add_argument('run', help='the run folder, experiments/<name>')
    parser.add_argument('--iter', default='latest', help='which checkpoint: latest (default) or an iteration')
    parser.add_argument('--out', required=True, help='the delta file to write (.pth)')
    args = parser.parse_args(argv)
    try:
        options = sorted(glob.glob(os.path.join(args.run, '*.yml')))
        if not options:
            raise FileNotFoundError(f'{args.run!r} holds no options file (*.yml): is it a BasicSR run folder?')
        with open(options[-1], encoding='utf-8') as f:
            opt = yaml.safe_load(f)
        models = os.path.join(args.run, 'models')
        net_g = load_state_dict(os.path.join(models, f'net_g_{args.iter}.pth'), 'the run\'s net_g')
        mask_file = os.path.join(models, f'net_mask_{args.iter}.pth')
        mask = read_checkpoint(mask_file, 'the run\'s net_mask')
        adaptation = stored_adaptation(mask) or AdaptationSettings.from_options(opt, options[-1])  # an older run's
        base_file = opt['path']['pretrain_network_g']
        delta = make_delta(net_g, load_state_dict(base_file, 'the base (path.pretrain_network_g)'),
                           state_dict_of(mask, mask_file, 'the run\'s net_mask'), base_file, adaptation.to_dict())
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f'export_delta: {error}', file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with atomic_file(args.out) as f:
        torch.save(delta, f)
    changed = sum(v.numel() for v in delta['net_g_delta'].values())
    print(f'{args.out}: {len(delta["net_g_delta"])} tensors of net_g ({changed:,} values) as differences from '
          f'{base_file}, and MaskNet; {os.path.getsize(args.out) / 2**20:.2f} MiB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
