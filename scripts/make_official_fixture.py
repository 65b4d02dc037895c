"""Write the tiny official-format fixture of tests/test_official_weights.py; needs tensorflow (not torch).

A TensorFlow 1 checkpoint whose variables have the official MetaF2N names (``MODEL/...``, ``Mask/...``) and
shapes of a tiny network (RRDBNet: 8 features, 4 growth channels, 2 blocks; MaskNet: 8 convs of 8 features),
plus what the tests compare with, computed with TensorFlow ops as the original computes them (NHWC, HWIO
kernels, SAME padding, LeakyReLU 0.2, nearest x2 upsampling by repetition, residual scale 0.2)::

    tests/fixtures/official_tiny/model.index, model.data-00000-of-00001: the checkpoint (prefix: model)
    tests/fixtures/official_tiny/variables.npz: the same variables, for a converter run without tensorflow
    tests/fixtures/official_tiny/forward.npz: sr_input (1, 8, 8, 3) -> sr_output (1, 32, 32, 3) and
        mask_input (1, 16, 16, 6) -> mask_output (1, 16, 16, 1)

    python scripts/make_official_fixture.py (the same --seed gives the same values)
"""
import os

import numpy as np
import tensorflow as tf

from metaf2n_plugin.cli import parser_from_doc

NUM_FEAT, GROW, BLOCKS, MASK_FEAT, MASK_CONVS = 8, 4, 2, 8, 8


def official_variables(rng):
    """``{name: HWIO kernel or bias}`` with the official names and the tiny shapes."""

    def conv(name, c_in, c_out, kernel='weight'):
        scale = 1.0 / np.sqrt(9 * c_in)
        return {
            f'{name}/{kernel}': rng.normal(0, scale, (3, 3, c_in, c_out)).astype(np.float32),
            f'{name}/bias': rng.normal(0, 0.05, c_out).astype(np.float32)
        }

    variables = conv('MODEL/conv_first', 3, NUM_FEAT)
    for i in range(BLOCKS):
        for j in range(1, 4):
            for k in range(1, 6):
                variables.update(
                    conv(f'MODEL/body/{i}/rdb{j}/conv{k}', NUM_FEAT + GROW * (k - 1), NUM_FEAT if k == 5 else GROW))
    for name in ('conv_body', 'conv_up1', 'conv_up2', 'conv_hr'):
        variables.update(conv(f'MODEL/{name}', NUM_FEAT, NUM_FEAT))
    variables.update(conv('MODEL/conv_last', NUM_FEAT, 3))
    channels = [6] + [MASK_FEAT] * (MASK_CONVS - 1) + [1]
    for k in range(1, MASK_CONVS + 1):
        variables.update(conv(f'Mask/conv{k}', channels[k - 1], channels[k], kernel='kernel'))
    return variables


def conv2d(x, v, name, kernel='weight', activation=None):
    out = tf.nn.bias_add(tf.nn.conv2d(x, v[f'{name}/{kernel}'], 1, padding='SAME'), v[f'{name}/bias'])
    return {None: out, 'lrelu': tf.nn.leaky_relu(out, 0.2), 'relu': tf.nn.relu(out)}[activation]


def sr_forward(x, v):
    """The original's RRDBNet forward (yinzhicun/MetaF2N, model/model.py: MODEL.forward)."""
    res = head = conv2d(x, v, 'MODEL/conv_first')
    for i in range(BLOCKS):
        block_in = res
        for j in range(1, 4):
            rdb_in, features = res, [res]
            for k in range(1, 5):
                features.append(conv2d(tf.concat(features, 3), v, f'MODEL/body/{i}/rdb{j}/conv{k}', activation='lrelu'))
            res = conv2d(tf.concat(features, 3), v, f'MODEL/body/{i}/rdb{j}/conv5') * 0.2 + rdb_in
        res = res * 0.2 + block_in
    res = conv2d(res, v, 'MODEL/conv_body') + head
    for name in ('conv_up1', 'conv_up2'):
        res = conv2d(tf.repeat(tf.repeat(res, 2, axis=1), 2, axis=2), v, f'MODEL/{name}', activation='lrelu')
    return conv2d(conv2d(res, v, 'MODEL/conv_hr', activation='lrelu'), v, 'MODEL/conv_last')


def mask_forward(x, v):
    """The original's MaskNet forward: 8 convs, each followed by a ReLU."""
    for k in range(1, MASK_CONVS + 1):
        x = conv2d(x, v, f'Mask/conv{k}', kernel='kernel', activation='relu')
    return x


def save_checkpoint(variables, prefix):
    """A TF1 ``Saver`` checkpoint, as the original writes one."""
    graph = tf.Graph()
    with graph.as_default():
        created = [tf.compat.v1.Variable(value, name=name) for name, value in variables.items()]
        saver = tf.compat.v1.train.Saver(created)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, prefix, write_meta_graph=False, write_state=False)


def main(argv=None):
    parser = parser_from_doc(__doc__)
    parser.add_argument(
        '--out', default=os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures', 'official_tiny'))
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    variables = official_variables(rng)
    os.makedirs(args.out, exist_ok=True)
    save_checkpoint(variables, os.path.join(args.out, 'model'))
    reader = tf.train.load_checkpoint(os.path.join(args.out, 'model'))
    assert all(np.array_equal(reader.get_tensor(name), value) for name, value in variables.items())
    np.savez(os.path.join(args.out, 'variables.npz'), **variables)
    sr_input = rng.uniform(0, 1, (1, 8, 8, 3)).astype(np.float32)
    mask_input = rng.uniform(0, 1, (1, 16, 16, 6)).astype(np.float32)
    np.savez(
        os.path.join(args.out, 'forward.npz'),
        sr_input=sr_input,
        sr_output=sr_forward(sr_input, variables).numpy(),
        mask_input=mask_input,
        mask_output=mask_forward(mask_input, variables).numpy())
    print(f'{len(variables)} variables -> {args.out}')


if __name__ == '__main__':
    main()
