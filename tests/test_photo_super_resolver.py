"""PhotoSuperResolver: Algorithm 2 from Python, on arrays, with networks given as modules or files."""
import json

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs.rrdbnet_arch import RRDBNet
from torch.func import functional_call

from metaf2n_plugin import OptionError, memory
from metaf2n_plugin.archs.masknet_arch import MaskNet
from metaf2n_plugin.faces import FacePairExtractor, LandmarkSource, builtin_photo
from metaf2n_plugin.faces.paste_back import blend_weights
from metaf2n_plugin.faces.restoration import OracleRestorer
from metaf2n_plugin.models.adaptation import AdaptationSettings, adapt_to_photo, upsample
from metaf2n_plugin.photo_super_resolver import PhotoError, PhotoSuperResolver

SIDE = 96  # the astronaut, shrunk from 512: its faces keep 16-px patches


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
    """``(lq uint8, gt float32, landmarks JSON path)``: the astronaut at 96 and 384 pixels, its faces."""
    root = tmp_path_factory.mktemp('photo')
    image, faces = builtin_photo('astronaut')
    lq = (cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA) * 255).round().astype(np.uint8)
    gt = cv2.resize(image, (4 * SIDE, 4 * SIDE), interpolation=cv2.INTER_AREA)
    table = {'astronaut.png': {'faces': [{'landmarks': (face.landmarks * SIDE / 512).tolist()} for face in faces]}}
    (root / 'faces.json').write_text(json.dumps(table))
    return lq, gt, root / 'faces.json'


@pytest.fixture
def networks():
    torch.manual_seed(0)
    net_g = RRDBNet(3, 3, scale=4, num_feat=8, num_block=1, num_grow_ch=4)
    torch.nn.init.constant_(net_g.conv_last.bias, 0.5)  # outputs mid-gray, not clipped at 0
    return net_g, MaskNet(6, 8, 3)


ORACLE = {'type': 'oracle', 'size': 256}


def resolver(photo, net_g, net_mask, lines=None, **options):
    """A PhotoSuperResolver on the CPU in fp32, untiled, faces from the landmarks, the GT as their pseudo GT."""
    faces = {'type': 'landmarks', 'json_path': photo[2]}
    log = (lines if lines is not None else []).append
    return PhotoSuperResolver(
        net_g, net_mask, faces=faces, restorer=ORACLE, device='cpu', precision='fp32', tile=0, log=log, **options)


def image_of(tensor):
    """``(1, 3, H, W)`` -> ``(H, W, 3)`` clamped to [0, 1]."""
    return tensor[0].permute(1, 2, 0).clamp(0, 1).numpy()


def tensor_of(image):
    return torch.from_numpy(image).permute(2, 0, 1)[None]


def test_enhance_gives_the_adapted_output_and_what_a_page_would_show(photo, networks):
    net_g, net_mask = networks
    before = {name: value.clone() for name, value in net_g.state_dict().items()}
    lines = []
    changed = resolver(photo, net_g, net_mask, lines, adaptation={'lr': 0.5})
    output, report = changed.enhance(photo[0], 'astronaut.png', photo[1], plain=True)

    lq = photo[0].astype(np.float32) / 255
    pairs = FacePairExtractor(LandmarkSource(photo[2]), OracleRestorer(256))(lq, photo[1], 'astronaut.png')
    settings = AdaptationSettings(lr=0.5)
    adapted, _, _ = adapt_to_photo(net_g, net_mask, pairs, 4, 'astronaut.png', 0, settings)
    with torch.no_grad():
        expected = image_of(functional_call(net_g, adapted, (tensor_of(lq), )))
        plain = image_of(net_g(tensor_of(lq)))
        hq = tensor_of(pairs[0].hq)
        weights = net_mask(torch.cat([upsample(tensor_of(pairs[0].lq), hq.shape[-2:]), hq], 1))[0, 0].numpy()
    assert np.abs(expected - plain).max() > 5 / 255  # the step changed the output
    assert output.shape == (4 * SIDE, 4 * SIDE, 3) and output.dtype == np.float32
    assert 0 <= output.min() and output.max() <= 1
    assert np.abs(output - expected).max() < 1e-5 and np.abs(report.plain - plain).max() < 1e-5
    assert report.adapted and report.reason is None and report.settings == settings and report.precision == 'fp32'
    assert len(report.pairs) == 1 and report.pairs[0].box == pairs[0].box
    assert np.array_equal(report.pairs[0].hq, pairs[0].hq)
    assert report.inner_loss == pytest.approx(adapted.inner_losses[0].item(), rel=1e-6)
    (face_weights, ) = report.mask_weights
    assert face_weights.shape == pairs[0].mask.shape and not face_weights[~pairs[0].mask].any()
    np.testing.assert_allclose(face_weights[pairs[0].mask], weights[pairs[0].mask], rtol=1e-6)
    assert set(report.seconds) == {'faces', 'adaptation', 'super_resolution_and_plain'}
    assert all(torch.equal(before[name], value) for name, value in net_g.state_dict().items())
    assert lines[0] == 'the SR network: RRDBNet'  # an nn.Module, as given
    assert lines[1] == f"adaptation: {settings.to_dict()} (the defaults, changed by the adaptation argument)"
    assert lines[2] == ('the adaptation step: MaskNet in fp32 without a graph; the whole network in fp32 with its '
                        'graph (34 tensor(s) of its body change (e.g. body.0.rdb1.conv1.bias))')
    assert lines[3].startswith('super-resolution in fp32 on cpu (')
    again, _ = resolver(photo, net_g, net_mask, adaptation={'lr': 0.5}).enhance(lq, 'astronaut.png', photo[1])
    assert np.array_equal(again, output)  # uint8 is read as / 255


def test_without_masknet_faces_weigh_one_and_without_adaptation_the_plain_network_runs(photo, networks):
    net_g, _ = networks
    _, report = resolver(photo, net_g, None).enhance(photo[0], 'astronaut.png', photo[1])
    assert report.adapted and report.mask_weights is None and len(report.pairs) == 1
    output, report = resolver(photo, net_g, None, adapt=False).enhance(photo[0], 'astronaut.png', plain=True)
    assert not report.adapted and report.reason == 'not asked (adapt=False)' and report.pairs == []
    assert report.plain is output and report.settings is None and report.inner_loss is None
    with torch.no_grad():
        plain = image_of(net_g(tensor_of(photo[0] / np.float32(255))))
    assert np.abs(output - plain).max() < 1e-5


@pytest.mark.parametrize('image, message', [
    (np.zeros((32, 32), np.float32), r'image: expected an \(H, W, 3\) RGB numpy array, got shape \(32, 32\)'),
    ([[0.5]], r'image: expected an \(H, W, 3\) RGB numpy array, got list'),
    (np.full((32, 32, 3), 1.5), r'image: float values must lie in \[0, 1\], found \[1.5, 1.5\]'),
    (np.full((32, 32, 3), np.nan), r'image: float values must lie in \[0, 1\]'),
    (np.zeros((32, 32, 3), np.int32), 'image: expected float values in \\[0, 1\\], uint8 or uint16, got int32'),
    (np.zeros((8, 32, 3), np.uint8), '32x8 pixels; MetaF2N needs at least 16x16'),
])
def test_an_image_it_cannot_take_is_refused_by_name(photo, networks, image, message):
    with pytest.raises(PhotoError, match=message):
        resolver(photo, networks[0], None, adapt=False).enhance(image)


def test_files_bring_the_settings_stored_with_masknet_and_arguments_change_them_by_name(photo, networks, tmp_path):
    net_g, net_mask = networks
    torch.save({'params': net_g.state_dict()}, tmp_path / 'net_g.pth')
    torch.save({'params': net_mask.state_dict(), 'adaptation': {'lr': 0.5, 'steps': 2}}, tmp_path / 'net_mask.pth')
    files = [str(tmp_path / 'net_g.pth'), str(tmp_path / 'net_mask.pth')]
    lines = []
    loaded = resolver(photo, *files, lines, adaptation={'steps': 1})
    assert loaded.settings == AdaptationSettings(lr=0.5, steps=1)
    assert lines[0] == 'the SR network: RRDBNet (num_feat 8, num_block 1, num_grow_ch 4)'  # read off the file
    assert lines[1] == f"adaptation.steps: 1 from the adaptation argument, not the 2 stored in {files[1]!r}"
    assert all(torch.equal(value, net_g.state_dict()[name]) for name, value in loaded.net_g.state_dict().items())
    with pytest.raises(ValueError, match=r"the adaptation argument: unknown adaptation options \['step'\]"):
        resolver(photo, *files, adaptation={'step': 1})
    with pytest.raises(FileNotFoundError, match=r"MetaF2N weights not found: model '.*none.pth'\. .*drive\.google"):
        resolver(photo, str(tmp_path / 'none.pth'), files[1])


def test_a_rate_whose_output_is_not_finite_gives_the_plain_output_with_the_reason(photo, networks):
    net_g, net_mask = networks
    output, report = resolver(
        photo, net_g, net_mask, adaptation={
            'lr': 1e30
        }).enhance(
            photo[0], 'astronaut.png', photo[1], plain=True)
    with torch.no_grad():
        plain = image_of(net_g(tensor_of(photo[0].astype(np.float32) / 255)))
    assert not report.adapted and report.reason == ("the adapted network's output is not finite (adaptation.lr 1e+30 "
                                                    'too large?)')
    assert np.abs(output - plain).max() < 1e-5 and np.array_equal(report.plain, output)


@pytest.mark.parametrize('options, argument, message', [
    (dict(adaptation=dict(lr=float('inf'))), 'adaptation', 'adaptation.lr must be a finite number >= 0, got float inf'),
    (dict(adaptation=dict(params='[')), 'adaptation', "adaptation.params '[' is not a regular expression"),
    (dict(adaptation=dict(params='nomatch')), 'adaptation',
     "adaptation.params 'nomatch' matches no parameter of RRDBNet (its first: conv_first.weight"),
    (dict(adaptation=dict(patch_size=100000)), 'adaptation', 'even one patch per face does not fit'),
    (dict(adaptation=dict(patch_size=30)), 'adaptation', 'adaptation.patch_size 30 must be a multiple of the scale 4'),
    (dict(adaptation=dict(num_patches=200000)), 'adaptation', 'GiB are available; adaptation.num_patches '),
    (dict(device='banana'), 'device', "device 'banana' is not a torch device (Expected one of cpu"),
    (dict(device='cuda:7'), 'device', "device 'cuda:7': this PyTorch sees "),
    (dict(tile=1), 'tile', 'tile 1: each 1x1 tile runs with 10 pixels of context on each side, about 441x the work'),
    (dict(tile=-1), 'tile', 'tile must be an integer >= 0, got -1'),
    (dict(seed=-5000000000), 'seed', 'seed must be an integer from 0 to 2**63 - 1, got -5000000000'),
])
def test_settings_that_cannot_work_stop_before_the_first_photo_by_name(photo, networks, monkeypatch, options, argument,
                                                                       message):
    monkeypatch.setattr(memory, 'available_memory', lambda device=None: 8 * 2**30)  # the same answer everywhere
    faces = {'type': 'landmarks', 'json_path': photo[2]}
    arguments = {'device': 'cpu', 'precision': 'fp32', 'tile': 0, **options}
    with pytest.raises(OptionError) as error:
        PhotoSuperResolver(*networks, faces=faces, restorer=ORACLE, log=lambda line: None, **arguments)
    assert error.value.argument == argument and message in str(error.value)
    assert error.value.describe({argument: '--flag'}).startswith('--flag')


def test_a_photo_whose_faces_need_more_memory_than_there_is_gets_the_plain_network_by_name(
        photo, networks, monkeypatch):
    net_g, net_mask = networks
    photos = resolver(photo, net_g, net_mask)
    monkeypatch.setattr(memory, 'available_memory', lambda device=None: 2**20)
    output, report = photos.enhance(photo[0], 'astronaut.png', photo[1], plain=True)
    assert not report.adapted and np.array_equal(output, report.plain)
    assert report.reason.startswith('the adaptation step on 1 face(s) x 16 patches of 64x64 pixels needs about')


def test_with_the_oracle_the_pasted_faces_are_their_gt_crops_inside_the_blend_mask_and_metaf2n_elsewhere(
        photo, networks):
    output, report = resolver(photo, *networks, paste_faces=True).enhance(photo[0], 'astronaut.png', gt=photo[1])
    assert report.adapted and report.before_paste is not None and 'paste_faces' in report.seconds
    (pair, ) = report.pairs
    x0, y0, x1, y1 = (4 * value for value in pair.box)
    blend = blend_weights(pair.mask)
    inside = blend == 1
    assert 0.5 < inside.mean() < pair.mask.mean()  # most of the face, not the band at its edge
    assert not blend[~pair.mask].any()  # nothing of the restored face where it is not valid
    region = output[y0:y1, x0:x1]
    assert np.array_equal(region[inside], pair.hq[inside])  # the restored face itself
    # the oracle's restored face is the GT's aligned crop warped back: its GT crop, up to those two resamplings
    error = np.mean(np.square(region[inside] - photo[1][y0:y1, x0:x1][inside]))
    assert 10 * np.log10(1 / error) > 30
    untouched = np.ones(output.shape[:2], bool)
    untouched[y0:y1, x0:x1] = blend == 0
    assert np.array_equal(output[untouched], report.before_paste[untouched])  # MetaF2N's background
    band = (blend > 0) & (blend < 1)
    metaf2n = report.before_paste[y0:y1, x0:x1]
    low, high = np.minimum(pair.hq, metaf2n), np.maximum(pair.hq, metaf2n)
    assert np.all((low[band] - 1e-6 <= region[band]) & (region[band] <= high[band] + 1e-6))  # a blend of the two
    with pytest.raises(OptionError, match='paste_faces needs the faces, which adapt=False does not look for'):
        resolver(photo, *networks, paste_faces=True, adapt=False)


def test_blend_weights_are_zero_where_the_restored_face_is_not_valid_one_deep_inside_and_feathered_between():
    mask = np.zeros((200, 240), np.uint8)  # a tilted face's warped square, not filling its box
    cv2.fillConvexPoly(mask, np.array([[120, 10], [225, 100], [130, 195], [20, 105]], np.int32), 1)
    mask = mask.astype(bool)
    weights = blend_weights(mask)
    assert weights.dtype == np.float32 and not weights[~mask].any()
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_C, 3)  # square steps to the nearest invalid pixel
    reach = 4 + 2 * 8  # the margin (2% of the side, 200) and the blur's radius (4%) on either side of its edge
    assert np.all(weights[depth > reach] == 1)  # the restored face itself
    band = (weights > 0) & (weights < 1)
    assert band.any() and depth[band].max() <= reach and depth[weights > 0].min() > 4
