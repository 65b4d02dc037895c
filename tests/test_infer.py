"""metaf2n-infer: Algorithm 2 on a user's photos, what a photo keeps, and every bad input named."""
import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.archs.rrdbnet_arch import RRDBNet
from PIL import Image
from torch.func import functional_call

from metaf2n_plugin import infer, photo_super_resolver
from metaf2n_plugin.archs.gpen_arch import GPEN
from metaf2n_plugin.archs.masknet_arch import MaskNet
from metaf2n_plugin.faces import FacePairExtractor, GPENRestorer, LandmarkSource, builtin_photo
from metaf2n_plugin.image_io import read_photo, write_image
from metaf2n_plugin.models import precision
from metaf2n_plugin.models.adaptation import AdaptationSettings, adapt_to_photo
from metaf2n_plugin.package_weights import locate_wheel
from conftest import REPO, TINY_RRDB, run_python, tiny_rrdbnet

SIDE = 96  # the astronaut, shrunk from 512: its faces keep 16-px patches
TINY_MASK = {'type': 'MaskNet', 'num_feat': 8, 'num_conv': 3}


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Tiny random MetaF2N weights, a random GPEN-BFR-256, and the astronaut with its landmarks."""
    root = tmp_path_factory.mktemp('infer')
    torch.manual_seed(0)
    (root / 'weights').mkdir()
    net_g = RRDBNet(**TINY_RRDB)
    torch.nn.init.constant_(net_g.conv_last.bias, 0.5)  # outputs mid-gray, not clipped at 0
    torch.save({'params': net_g.state_dict()}, root / 'weights' / 'net_g.pth')
    torch.save({'params': MaskNet(6, 8, 3).state_dict()}, root / 'weights' / 'net_mask.pth')
    torch.save(GPEN(256, channel_multiplier=1, narrow=0.5).state_dict(), root / 'weights' / 'GPEN-BFR-256.pth')
    image, faces = builtin_photo('astronaut')
    (root / 'photos').mkdir()
    write_image(root / 'photos' / 'astronaut.png', cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA))
    landmarks = {'astronaut.png': {'faces': [{'landmarks': (face.landmarks * SIDE / 512).tolist()} for face in faces]}}
    (root / 'faces.json').write_text(json.dumps(landmarks))
    return root


def weights_args(root, *extra):
    return [
        '--model',
        str(root / 'weights' / 'net_g.pth'), '--mask',
        str(root / 'weights' / 'net_mask.pth'), '--restorer-weights',
        str(root / 'weights'), '--restorer-size', '256', *extra
    ]


def test_output_is_algorithm_2_done_by_hand(setup, tmp_path, capsys):
    out = tmp_path / 'out'
    args = [
        str(setup / 'photos'), '-o',
        str(out), '--landmarks',
        str(setup / 'faces.json'), '--tile', '0', '--lr', '0.5', '--save-faces', '--side-by-side', '--fp32'
    ]
    assert infer.main(weights_args(setup, *args)) == 0
    summary = capsys.readouterr().out
    assert '1 of 1 photos super-resolved into' in summary
    assert '1 face used (16 patch pairs in the step), 0 photos not adapted (plain network)' in summary

    photo = str(setup / 'photos' / 'astronaut.png')
    state = torch.load(setup / 'weights' / 'net_g.pth', weights_only=True)['params']
    net_g = RRDBNet(**TINY_RRDB)
    net_g.load_state_dict(state)
    net_mask = MaskNet(6, 8, 3)
    net_mask.load_state_dict(torch.load(setup / 'weights' / 'net_mask.pth', weights_only=True)['params'])
    extractor = FacePairExtractor(
        LandmarkSource(setup / 'faces.json'), GPENRestorer(256, weights=setup / 'weights'), scale=4)
    rgb = read_photo(photo).rgb
    pairs = extractor(rgb, image_path=photo)
    adapted, patches, _ = adapt_to_photo(
        net_g, net_mask, pairs, 4, 'astronaut.png', settings=AdaptationSettings(lr=0.5))
    assert len(pairs) == 1 and len(patches) == 16
    with torch.no_grad():
        expected = functional_call(net_g, adapted, (torch.from_numpy(rgb).permute(2, 0, 1)[None], ))
        plain = net_g(torch.from_numpy(rgb).permute(2, 0, 1)[None])
    written = read_photo(out / 'astronaut_metaf2n.png').rgb
    assert (expected - plain).abs().max() > 5 / 255  # the step changed the output
    expected = expected[0].permute(1, 2, 0).clamp(0, 1).numpy()
    assert np.abs(written - expected).max() <= 0.5 / 255 + 1e-5  # 8-bit rounding only
    assert cv2.imread(str(out / 'astronaut_side_by_side.png')).shape == (4 * SIDE + 24, 3 * 4 * SIDE, 3)
    box = pairs[0].box
    face = cv2.imread(str(out / 'astronaut_face0.png'))
    assert face.shape == (4 * (box[3] - box[1]) + 24, 3 * 4 * (box[2] - box[0]), 3)


def test_tiles_give_the_untiled_output_when_they_see_the_receptive_field(setup, tmp_path):
    common = ['--no-adapt', '-o']
    assert infer.main(weights_args(setup, str(setup / 'photos'), *common, str(tmp_path / 'a'), '--tile', '0')) == 0
    assert infer.main(
        weights_args(setup, str(setup / 'photos'), *common, str(tmp_path / 'b'), '--tile', '40', '--tile-pad',
                     '24')) == 0
    whole, tiled = (cv2.imread(str(tmp_path / sub / 'astronaut_metaf2n.png')) for sub in 'ab')
    assert np.abs(whole.astype(int) - tiled).max() <= 1


def test_alpha_gray_16_bits_and_orientation_are_kept(setup, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / 'photos'
    folder.mkdir()
    bgra16 = np.concatenate(
        [rng.integers(0, 65536, (20, 24, 3)),
         np.tile(np.linspace(0, 65535, 24), (20, 1))[..., None]], axis=2).astype(np.uint16)
    cv2.imwrite(str(folder / 'deep.png'), bgra16)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(rng.integers(0, 256, (20, 32), dtype=np.uint8)).save(folder / 'gray.jpg', exif=exif.tobytes())
    assert infer.main(weights_args(setup, str(folder), '--no-adapt', '-o', str(tmp_path / 'out'))) == 0
    deep = cv2.imread(str(tmp_path / 'out' / 'deep_metaf2n.png'), cv2.IMREAD_UNCHANGED)
    assert deep.shape == (80, 96, 4) and deep.dtype == np.uint16
    alpha = cv2.resize(bgra16[..., 3].astype(np.float32) / 65535, (96, 80), interpolation=cv2.INTER_CUBIC)
    assert np.abs(deep[..., 3] / 65535 - np.clip(alpha, 0, 1)).max() < 1e-4
    gray = cv2.imread(str(tmp_path / 'out' / 'gray_metaf2n.png'), cv2.IMREAD_UNCHANGED)
    assert gray.shape == (128, 80) and gray.dtype == np.uint8  # one channel, upright (32 x 20 turned)


def test_bad_photos_are_named_and_the_others_processed(setup, tmp_path, capsys, monkeypatch):
    folder = tmp_path / 'photos'
    folder.mkdir()
    good = cv2.imread(str(setup / 'photos' / 'astronaut.png'))
    cv2.imwrite(str(folder / 'good.png'), good)
    Image.fromarray(good[:, :, ::-1]).convert('CMYK').save(folder / 'cmyk.jpg')
    (folder / 'empty.png').write_bytes(b'')
    cv2.imwrite(str(folder / 'whole.jpg'), good)
    (folder / 'truncated.jpg').write_bytes((folder / 'whole.jpg').read_bytes()[:1500])
    os.remove(folder / 'whole.jpg')
    cv2.imwrite(str(folder / 'dot.png'), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(folder / 'huge.png'), np.zeros((20000, 20000), np.uint8))
    (folder / 'notes.txt').write_text('not a photo')
    monkeypatch.setattr(photo_super_resolver, 'available_memory', lambda device=None: 16 * 2**30)
    assert infer.main(weights_args(setup, str(folder), '--no-adapt', '-o', str(tmp_path / 'out'))) == 1
    captured = capsys.readouterr()
    assert 'skipped ' in captured.err and 'notes.txt: not an image' in captured.err
    summary = captured.out
    assert '2 of 6 photos super-resolved' in summary and '4 failed:' in summary
    assert "empty.png: cannot read image" in summary and 'the file is empty (0 bytes)' in summary
    assert "truncated.jpg: cannot read image" in summary and 'OpenCV cannot decode it' in summary
    assert 'dot.png: 1x1 pixels; MetaF2N needs at least 16x16' in summary
    assert 'huge.png: 20000x20000 pixels: its 80000x80000 output needs about 1' in summary
    assert '16.0 GiB are available' in summary
    # nothing half-written
    assert sorted(os.listdir(tmp_path / 'out')) == ['cmyk_metaf2n.png', 'good_metaf2n.png', 'report.jsonl']


def test_inputs_are_never_overwritten(setup, tmp_path, capsys):
    folder = tmp_path / 'photos'
    folder.mkdir()
    image = cv2.imread(str(setup / 'photos' / 'astronaut.png'))
    for name in ('a.png', 'a_metaf2n.png', 'b.png', 'b.jpg'):
        cv2.imwrite(str(folder / name), image)
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    assert infer.main(weights_args(setup, str(folder), '--no-adapt', '-o', str(folder))) == 1
    summary = capsys.readouterr().out
    assert "a.png: its output" in summary and "would overwrite the input" in summary
    assert "b.png: its output" in summary and "would overwrite the output of 'b.jpg'" in summary
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert sorted(os.listdir(folder)) == sorted([*before, 'a_metaf2n_metaf2n.png', 'b_metaf2n.png', 'report.jsonl'])


def test_no_side_by_side_or_face_image_replaces_an_input_and_such_a_photo_writes_nothing(setup, tmp_path, capsys):
    folder = tmp_path / 'photos'
    folder.mkdir()
    for name in ('x.png', 'x_side_by_side.png', 'y.png', 'y_face0.png'):
        shutil.copy(setup / 'photos' / 'astronaut.png', folder / name)
    faces = json.loads((setup / 'faces.json').read_text())['astronaut.png']
    (tmp_path / 'faces.json').write_text(json.dumps({name: faces for name in os.listdir(folder)}))
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    args = [str(folder), '-o', str(folder), '--landmarks', str(tmp_path / 'faces.json'), '--tile', '0']
    assert infer.main(weights_args(setup, *args, '--side-by-side', '--save-faces')) == 1
    summary = capsys.readouterr().out
    for photo, output in (('x.png', 'x_side_by_side.png'), ('y.png', 'y_face0.png')):
        assert f"{photo}: its output {str(folder / output)!r} would overwrite the input {str(folder / output)!r}" \
            in summary
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert set(os.listdir(folder)) - set(before) == {
        f'{stem}{end}'
        for stem in ('x_side_by_side', 'y_face0')
        for end in ('_metaf2n.png', '_side_by_side.png', '_face0.png')
    } | {'report.jsonl'}


def test_bad_adaptation_flags_stop_the_run_by_name(setup, tmp_path, capsys):
    args = weights_args(setup, str(setup / 'photos'), '-o', str(tmp_path), '--landmarks', str(setup / 'faces.json'))
    for flags, message in ((['--adaptation', 'step=2'], "the flags: unknown adaptation options ['step']"),
                           (['--adaptation', 'steps=two'], "adaptation.steps must be an integer >= 1, got str 'two'"),
                           (['--adaptation', 'params=(a'], "adaptation.params '(a' is not a regular expression"),
                           (['--lr', '0.1', '--adaptation', 'lr=0.2'], 'adaptation settings given twice: lr')):
        assert infer.main(args + flags) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        infer.main(args + ['--adaptation', 'steps'])
    assert exit_.value.code == 2 and "expected KEY=VALUE (e.g. steps=2), got 'steps'" in capsys.readouterr().err


def test_the_pass_runs_in_the_precision_said_once_bf16_where_fast_fp32_or_bf16_when_asked(
        setup, tmp_path, capsys, monkeypatch):
    args = weights_args(setup, str(setup / 'photos'), '--no-adapt', '--tile', '0')
    for instructions in (('amx_bf16', ), ()):
        monkeypatch.setattr(precision, 'fast_bf16_instructions', lambda: instructions)
        said = {}
        for flag in ('auto', 'fp32', 'bf16'):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                out = tmp_path / f'{flag}{len(instructions)}'
                assert infer.main(args + ['-o', str(out)] + ([] if flag == 'auto' else [f'--{flag}'])) == 0
            err = capsys.readouterr().err
            assert err.count('super-resolution in ') == 1
            said[flag] = re.search(r'super-resolution in (\w+) on cpu', err)[1]
            slow = [str(warning.message) for warning in caught if 'is emulated' in str(warning.message)]
            assert len(slow) == (flag == 'bf16' and not instructions)
        assert said == {'auto': 'bf16' if instructions else 'fp32', 'fp32': 'fp32', 'bf16': 'bf16'}
    written = {name.name: cv2.imread(str(name / 'astronaut_metaf2n.png')) for name in tmp_path.iterdir()}
    assert np.array_equal(written['auto1'], written['bf161']) and np.array_equal(written['auto0'], written['fp320'])
    assert not np.array_equal(written['fp320'], written['bf160'])
    with pytest.raises(SystemExit):
        infer.main(args + ['--fp32', '--bf16'])


def test_what_stops_a_run_before_any_photo(setup, tmp_path, capsys):
    photos = str(setup / 'photos')
    (tmp_path / 'file').write_text('')
    assert infer.main(weights_args(setup, photos, '-o', str(tmp_path / 'file'))) == 2
    assert "output folder '" in (error :=
                                 capsys.readouterr().err) and "file' is a file; choose a folder with -o" in error

    assert infer.main([photos, '--model', str(tmp_path / 'none.pth'), '-o', str(tmp_path / 'o')]) == 2
    error = capsys.readouterr().err
    assert 'none.pth' in error and 'drive.google.com' in error and 'metaf2n-convert' in error

    assert infer.main(
        weights_args(setup, photos, '--detector', 'retinaface', '--detector-weights', str(tmp_path), '-o',
                     str(tmp_path / 'o'))) == 2
    error = capsys.readouterr().err
    assert 'detection_Resnet50_Final.pth not found' in error and 'github.com/xinntao/facexlib' in error

    (tmp_path / 'text.pth').write_text('not weights')
    assert infer.main(weights_args(setup, photos, '-o', str(tmp_path / 'o')) +
                      ['--model', str(tmp_path / 'text.pth')]) == 2
    assert "--model: '" in (error := capsys.readouterr().err) and 'text.pth' in error and 'loaded safely' in error

    assert infer.main(weights_args(setup, str(tmp_path / 'nothing*.png'), '-o', str(tmp_path / 'o'))) == 2
    assert 'no file matches it as a glob' in capsys.readouterr().err


def test_console_script_runs(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), 'metaf2n-infer')
    proc = subprocess.run([script, str(tmp_path / 'none.png')],
                          capture_output=True,
                          text=True,
                          cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 2 and 'no file matches it as a glob' in proc.stderr


@pytest.mark.e2e
def test_module_runs(tmp_path):
    proc = run_python('-m', 'metaf2n_plugin.infer', '--help', cwd=tmp_path)
    assert '--restorer-weights' in proc.stdout


def test_no_mask_adapts_with_every_face_pixel_weighted_one(setup, tmp_path, capsys):
    out = tmp_path / 'out'
    args = ['--model', str(setup / 'weights' / 'net_g.pth'), '--mask', str(tmp_path / 'absent.pth'), '--no-mask']
    args += ['--restorer-weights', str(setup / 'weights'), '--restorer-size', '256', '--lr', '0.5', '--tile', '0']
    args += ['--fp32']
    assert infer.main([str(setup / 'photos'), '-o', str(out), '--landmarks', str(setup / 'faces.json'), *args]) == 0
    assert '1 face used' in capsys.readouterr().out
    photo = str(setup / 'photos' / 'astronaut.png')
    net_g = RRDBNet(**TINY_RRDB)
    net_g.load_state_dict(torch.load(setup / 'weights' / 'net_g.pth', weights_only=True)['params'])
    extractor = FacePairExtractor(
        LandmarkSource(setup / 'faces.json'), GPENRestorer(256, weights=setup / 'weights'), scale=4)
    rgb = read_photo(photo).rgb
    pairs = extractor(rgb, image_path=photo)
    adapted, _, _ = adapt_to_photo(net_g, None, pairs, 4, 'astronaut.png', settings=AdaptationSettings(lr=0.5))
    with torch.no_grad():
        expected = functional_call(net_g, adapted, (torch.from_numpy(rgb).permute(2, 0, 1)[None], ))
    expected = expected[0].permute(1, 2, 0).clamp(0, 1).numpy()
    written = read_photo(out / 'astronaut_metaf2n.png').rgb
    assert np.abs(written - expected).max() <= 0.5 / 255 + 1e-5  # 8-bit rounding only


def test_without_retinaface_weights_mtcnn_finds_the_faces_and_the_run_says_so(setup, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no weights/ here
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    wheel = locate_wheel('facenet-pytorch', os.path.join(REPO, 'weights', 'wheels'), download=True)
    shutil.copy(wheel, tmp_path)
    photo = tmp_path / 'grace.png'
    write_image(photo, cv2.resize(builtin_photo('grace_hopper')[0][:512], (160, 160), interpolation=cv2.INTER_AREA))
    args = ['--model', str(setup / 'weights' / 'net_g.pth'), '--no-mask', '--restorer-weights', str(setup / 'weights')]
    assert infer.main([str(photo), '-o', 'out', '--restorer-size', '256', '--detector-weights',
                       str(tmp_path), *args]) == 0
    captured = capsys.readouterr()
    assert 'RetinaFace\'s weights (detection_Resnet50_Final.pth) not found; faces are found by MTCNN' in captured.err
    assert '1 face used' in captured.out


def test_the_adaptation_stored_with_masknet_is_followed_unless_flags_say_otherwise(setup, tmp_path):
    mask = torch.load(setup / 'weights' / 'net_mask.pth', weights_only=True)
    torch.save({**mask, 'adaptation': {'lr': 0.5, 'params': r'^conv_last\.'}}, tmp_path / 'mask.pth')
    common = [str(setup / 'photos'), '--landmarks', str(setup / 'faces.json'), '--tile', '0']
    runs = {
        'stored': ['--mask', str(tmp_path / 'mask.pth')],
        'flags': ['--lr', '0.5', '--adapt-params', r'^conv_last\.'],
        'all': ['--lr', '0.5']
    }
    for name, extra in runs.items():
        assert infer.main(weights_args(setup, *common, '-o', str(tmp_path / name)) + extra) == 0
    stored, flags, every = (read_photo(tmp_path / name / 'astronaut_metaf2n.png').rgb for name in runs)
    assert np.array_equal(stored, flags) and not np.array_equal(stored, every)


TRAINED = {'lr': 0.3, 'steps': 2, 'params': r'^conv_last\.', 'num_patches': 4, 'patch_size': 32}  # none default


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """net_g and net_mask saved by one meta-training iteration (MetaF2NModel.save) with :data:`TRAINED`."""
    from basicsr.models import build_model
    from test_metaf2n_model import degraded_tasks, model_options

    root = tmp_path_factory.mktemp('trained')
    train = {'ema_decay': 0.9, 'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'pixel_opt': {'type': 'L1Loss'}}
    torch.manual_seed(0)
    model = build_model(
        model_options(
            root,
            train,
            network_g=tiny_rrdbnet(),
            network_mask=TINY_MASK,
            adaptation=TRAINED,
            path={
                'models': str(root),
                'training_states': str(root)
            }))
    model.feed_data(degraded_tasks(dtype=torch.float32))
    model.optimize_parameters(1)
    model.save(0, -1)
    return root / 'net_g_latest.pth', root / 'net_mask_latest.pth'


def test_metaf2n_infer_writes_what_basicsr_test_saves_with_the_settings_training_stored(
        trained, tiny_workdir, tmp_path, capsys):
    net_g, net_mask = map(str, trained)
    photos = tiny_workdir / 'datasets' / 'tiny' / 'test' / 'Tiny_iid'
    landmarks = str(photos / 'landmarks.json')
    dataset = dict(
        name='Tiny_iid',
        type='MetaF2NPairedFaceDataset',
        dataroot_lq=str(photos / 'LQ'),
        dataroot_gt=str(photos / 'GT'),
        face_source={
            'type': 'landmarks',
            'json_path': landmarks
        })
    options = dict(
        name='tested',
        model_type='MetaF2NModel',
        scale=4,
        num_gpu=0,
        manual_seed=0,
        datasets={'test_1': dataset},
        network_g=tiny_rrdbnet(),
        network_mask=TINY_MASK,
        face_pairs={'restorer': {
            'type': 'oracle',
            'size': 256
        }},
        val={
            'save_img': True,
            'suffix': 'x'
        },
        path={
            'pretrain_network_g': net_g,
            'param_key_g': 'params_ema',
            'pretrain_network_mask': net_mask
        })
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(options))  # no adaptation group: the MaskNet file's settings
    run_python('-m', 'basicsr.test', '-opt', str(tmp_path / 'test.yml'), cwd=tmp_path)
    common = [
        str(photos / 'LQ'), '--model', net_g, '--mask', net_mask, '--landmarks', landmarks, '--gt',
        str(photos / 'GT'), '--restorer-size', '256', '--tile', '0'
    ]  # basicsr.test: val.tile 0, seed 0
    assert infer.main([*common, '-o', str(tmp_path / 'infer')]) == 0
    assert f"adaptation: {AdaptationSettings(**TRAINED).to_dict()} (stored in '{net_mask}')" in \
        capsys.readouterr().err
    assert infer.main([*common, '-o', str(tmp_path / 'one_step'), '--adaptation', 'steps=1']) == 0
    changed = f"adaptation.steps: 1 from the adaptation argument, not the 2 stored in '{net_mask}'"
    assert changed in capsys.readouterr().err
    saved = tmp_path / 'results' / 'tested' / 'visualization' / 'Tiny_iid'
    for stem in ('astronaut', 'grace_hopper'):
        tested, unadapted = (cv2.imread(str(saved / f'{stem}_x{end}.png')).astype(int) for end in ('', '_unadapted'))
        inferred, one_step = (cv2.imread(str(tmp_path / sub / f'{stem}_metaf2n.png')) for sub in ('infer', 'one_step'))
        assert np.abs(tested - inferred).max() <= 1  # 8-bit rounding of two memory layouts (equal here)
        assert np.abs(tested - unadapted).max() > 5 and np.abs(tested - one_step).max() > 5


@pytest.mark.parametrize('flags, message', [
    (['--lr', 'inf'], 'the flags: adaptation.lr must be a finite number >= 0, got float inf'),
    (['--adapt-params', '['], "the flags: adaptation.params '[' is not a regular expression"),
    (['--adaptation', 'params=*'], "the flags: adaptation.params '*' is not a regular expression (nothing to repeat"),
    (['--adaptation', 'params=nomatch'], "the flags: adaptation.params 'nomatch' matches no parameter of RRDBNet"),
    (['--adaptation', 'patch_size=100000'], 'the flags: the adaptation step on 1 face(s) x 16 patches of 100000x'),
    (['--seed', '-5000000000'], '--seed must be an integer from 0 to 2**63 - 1, got -5000000000'),
    (['--tile', '1'], '--tile 1: each 1x1 tile runs with 10 pixels of context on each side, about 441x the work'),
    (['--device', 'banana'], "--device 'banana' is not a torch device"),
    (['--landmarks', '{tmp}'], "' is a folder; give the JSON file of the faces"),
    (['--landmarks', '{tmp}/list.json'], "list.json' holds a JSON list; expected an object keyed by image file name"),
    (['--gt', '{tmp}/list.json'], "--gt '"),
    (['--model', '{tmp}'], "--model: '"),
    (['--model', '{tmp}/nan.pth', '--no-adapt'], "nan.pth' has NaN or infinite values in 1 tensor(s) (conv_last.bias)"),
    (['--model', '{tmp}/random.pth'], 'loaded safely (Unsupported operand'),
])
def test_a_flag_that_cannot_work_stops_the_run_before_any_photo_and_any_folder(setup, tmp_path, capsys, flags, message):
    (tmp_path / 'list.json').write_text('[]')
    nan = RRDBNet(**TINY_RRDB).state_dict()
    nan['conv_last.bias'][0] = float('nan')
    torch.save({'params': nan}, tmp_path / 'nan.pth')
    (tmp_path / 'random.pth').write_bytes(np.random.default_rng(0).bytes(1000))
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    out = tmp_path / 'out'
    args = weights_args(setup, str(setup / 'photos'), '-o', str(out), '--landmarks', str(setup / 'faces.json'))
    assert infer.main(args + flags) == 2
    error = capsys.readouterr().err
    assert message in error and not out.exists()
    assert 'weights_only` set to `False`' not in error and 'Traceback' not in error


def test_what_a_flag_names_when_it_is_refused(setup, tmp_path, capsys):
    """The whole message for the refusals whose words matter most: what it is, and the fix."""
    (tmp_path / 'random.pth').write_bytes(np.random.default_rng(0).bytes(1000))
    args = weights_args(setup, str(setup / 'photos'), '-o', str(tmp_path / 'out'), '--no-adapt')
    assert infer.main(args + ['--model', str(tmp_path / 'random.pth')]) == 2
    said = capsys.readouterr().err.strip()
    assert "random.pth' is not a PyTorch weights file that can be loaded safely (Unsupported operand " in said
    assert said.endswith('); it was not loaded. Do not load a file of unknown origin with weights_only=False: that can '
                         'run code in it')
    torch.save({'params': RRDBNet(**TINY_RRDB).state_dict()}, tmp_path / 'net_g.pth')
    assert infer.main(args + ['--model', str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"--model: '{tmp_path}' is a folder; give the weights file in it (it holds net_g.pth, random.pth)")
    assert infer.main(args + ['--gt', str(tmp_path / 'net_g.pth')]) == 2
    assert capsys.readouterr().err.strip().endswith('is not a folder; give the folder of the photos\' ground truth, '
                                                    'one image per photo with the same stem')


@pytest.mark.parametrize('item, expected', [
    ('lr=1e-3', ('lr', 0.001)),
    ('lr=0.5', ('lr', 0.5)),
    ('steps=2', ('steps', 2)),
    ('legacy_bicubic=false', ('legacy_bicubic', False)),
    ('params=conv_last|conv_hr', ('params', 'conv_last|conv_hr')),
    ('params=*', ('params', '*')),
    ('params=~', ('params', None)),
    ('params=1', ('params', '1')),
])
def test_adaptation_values_are_read_as_a_user_writes_them(item, expected):
    assert infer.adaptation_item(item) == expected


def test_a_rate_that_breaks_the_output_writes_the_plain_network_and_says_why(setup, tmp_path, capsys):
    common = ['--landmarks', str(setup / 'faces.json'), '--tile', '0', '--fp32']
    assert infer.main(weights_args(setup, str(setup / 'photos'), '-o', str(tmp_path / 'a'), '--lr', '1e30',
                                   *common)) == 0
    error, summary = capsys.readouterr()[::-1]
    assert "astronaut.png: the adapted network's output is not finite (adaptation.lr 1e+30 too large?); written " \
        'with the plain network' in error
    assert '0 faces used (0 patch pairs in the step), 1 photo not adapted (plain network)' in summary
    assert infer.main(weights_args(setup, str(setup / 'photos'), '-o', str(tmp_path / 'b'), '--no-adapt', *common)) == 0
    adapted, plain = (cv2.imread(str(tmp_path / name / 'astronaut_metaf2n.png')) for name in 'ab')
    assert np.array_equal(adapted, plain)


def test_an_animation_is_named_and_its_first_frame_super_resolved(setup, tmp_path, capsys):
    frames = [Image.fromarray(np.full((24, 24, 3), value, np.uint8)) for value in (40, 200, 120)]
    frames[0].save(tmp_path / 'moving.gif', save_all=True, append_images=frames[1:])
    assert infer.main(
        weights_args(setup, str(tmp_path / 'moving.gif'), '-o', str(tmp_path / 'out'), '--no-adapt', '--tile',
                     '0')) == 0
    assert 'moving.gif: 3 frames (an animation or a multi-page file); its first is super-resolved' in \
        capsys.readouterr().err
    first = read_photo(tmp_path / 'moving.gif').rgb
    assert np.abs(first - 40 / 255).max() < 1e-6 and (tmp_path / 'out' / 'moving_metaf2n.png').is_file()


def test_unicode_names_and_a_link_loop_in_a_folder_are_taken_in_their_stride(setup, tmp_path, capsys):
    folder = tmp_path / 'фото été'
    folder.mkdir()
    shutil.copy(setup / 'photos' / 'astronaut.png', folder / 'пляж 海.png')
    (folder / 'loop').symlink_to(folder / 'loop')  # a link to itself: neither file nor folder
    (folder / 'up').symlink_to(folder)  # a link to its own folder: not walked into
    assert infer.main(weights_args(setup, str(folder), '--no-adapt', '--tile', '0', '-o', str(folder / 'выход'))) == 0
    assert '1 of 1 photos super-resolved' in capsys.readouterr().out
    assert sorted(os.listdir(folder / 'выход')) == ['report.jsonl', 'пляж 海_metaf2n.png']


def test_exact_step_runs_the_step_of_0_2_and_the_run_says_which_step_it_takes(setup, tmp_path, capsys):
    common = weights_args(setup, str(setup / 'photos'), '--landmarks', str(setup / 'faces.json'), '--tile', '0',
                          '--fp32', '--adapt-params', r'^(conv_up1|conv_up2|conv_hr|conv_last)\.')
    said = {}
    for flags in ([], ['--exact-step']):
        assert infer.main(common + ['-o', str(tmp_path / str(len(flags)))] + flags) == 0
        said[bool(flags)] = re.search(r'the adaptation step: (.*)', capsys.readouterr().err)[1]
    assert said == {
        False: 'the frozen body and MaskNet in fp32 without a graph, the adapted tail in fp32',
        True: 'exact (the whole network and MaskNet in fp32, with their graph)'
    }
    fast, exact = (cv2.imread(str(tmp_path / name / 'astronaut_metaf2n.png')).astype(int) for name in '01')
    assert np.abs(fast - exact).max() <= 1  # channels_last reorders the step's sums (fp32), nothing else


def test_paste_faces_writes_metaf2n_with_the_restored_face_and_a_fourth_panel(setup, tmp_path):
    common = [str(setup / 'photos'), '--landmarks', str(setup / 'faces.json'), '--tile', '0', '--side-by-side']
    assert infer.main(weights_args(setup, *common, '-o', str(tmp_path / 'pasted'), '--paste-faces')) == 0
    assert infer.main(weights_args(setup, *common, '-o', str(tmp_path / 'plain'))) == 0
    pasted, metaf2n = (
        cv2.imread(str(tmp_path / sub / 'astronaut_metaf2n.png')).astype(int) for sub in ('pasted', 'plain'))
    face = json.loads((setup / 'faces.json').read_text())['astronaut.png']['faces'][0]['landmarks']
    x, y = (4 * round(value) for value in np.mean(face, axis=0))
    assert np.abs(pasted[y - 8:y + 8, x - 8:x + 8] - metaf2n[y - 8:y + 8, x - 8:x + 8]).mean() > 2  # the face replaced
    assert np.array_equal(pasted[-16:, -16:], metaf2n[-16:, -16:])  # a corner far from the face: MetaF2N's
    widths = [cv2.imread(str(tmp_path / sub / 'astronaut_side_by_side.png')).shape[1] for sub in ('pasted', 'plain')]
    assert widths == [4 * 4 * SIDE, 3 * 4 * SIDE]  # LQ | plain | MetaF2N (| MetaF2N + restored faces)
