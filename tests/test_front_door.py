"""The public API: what ``metaf2n_plugin`` exports, the face-source registry that every front end reads, the typed
errors and their wording, and the keywords of 0.1 that still work with a warning."""
import re
import warnings

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs.rrdbnet_arch import RRDBNet

import metaf2n_plugin
from metaf2n_plugin import (FACE_SOURCES, AdaptationSettings, Face, FacePair, MetaF2NError, OptionError,
                            UnknownComponentError, WeightsFileError, WeightsNotFoundError, adapt_to_faces, app, infer)
from metaf2n_plugin.archs.masknet_arch import MaskNet
from metaf2n_plugin.data.metaf2n_paired_face_dataset import MetaF2NPairedFaceDataset
from metaf2n_plugin.faces import builtin_photo, sample_patches
from metaf2n_plugin.faces.extractor import FacePairExtractor
from metaf2n_plugin.image_io import write_image
from metaf2n_plugin.weights import locate_weights
from conftest import REPO

SIDE = 96  # the astronaut shrunk from 512; its face keeps 16-pixel patches
TINY_RRDB = dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=4, num_block=1, num_grow_ch=2)


class ToyDetector:
    """A detector known only to this test: the astronaut's face where the built-in landmarks put it."""
    calls = []

    def __init__(self, device='cpu'):
        self.device = device

    def __call__(self, image, image_path=None):
        ToyDetector.calls.append(image_path)
        _, faces = builtin_photo('astronaut')
        return [Face(face.landmarks * image.shape[1] / 512) for face in faces]


@pytest.fixture
def toy():
    """'toy' registered as a detector for the test's duration."""
    FACE_SOURCES.register('toy', detector=True)(ToyDetector)
    ToyDetector.calls.clear()
    yield 'toy'
    FACE_SOURCES.unregister('toy')


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Tiny random weights, the astronaut at 96 x 96 and its 384 x 384 ground truth."""
    root = tmp_path_factory.mktemp('front_door')
    torch.manual_seed(0)
    torch.save({'params': RRDBNet(**TINY_RRDB).state_dict()}, root / 'net_g.pth')
    torch.save({'params': MaskNet(6, 8, 3).state_dict()}, root / 'net_mask.pth')
    image = builtin_photo('astronaut')[0]
    for folder, side in (('photos', SIDE), ('gt', 4 * SIDE)):
        (root / folder).mkdir()
        write_image(root / folder / 'astronaut.png', cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA))
    return root


def test_the_public_api_is_importable_from_the_top_and_versioned():
    for name in metaf2n_plugin.__all__:
        assert getattr(metaf2n_plugin, name) is not None, name
    assert metaf2n_plugin.__version__ == '0.2.0'
    with open(f'{REPO}/CHANGELOG.md', encoding='utf-8') as f:
        assert re.search(r'^## 0\.2\.0\b', f.read(), re.M), 'CHANGELOG.md has an entry for the version'
    assert {
        'PhotoSuperResolver', 'PhotoReport', 'AdaptationSettings', 'adapt_to_faces', 'adapt_to_photo',
        'task_meta_gradient', 'FACE_SOURCES', 'RESTORERS'
    } <= set(metaf2n_plugin.__all__)


def test_a_detector_registered_in_one_place_appears_in_every_front_end(toy, files, tmp_path, capsys, monkeypatch):
    assert infer.build_parser().parse_args(['photo.png', '--detector', toy]).detector == toy  # the CLI's choices
    with pytest.raises(SystemExit):
        infer.build_parser().parse_args(['photo.png', '--detector', 'absent'])
    assert f'{{auto,retinaface,mtcnn,{toy}}}' in capsys.readouterr().err

    monkeypatch.chdir(tmp_path)  # the page's menu
    page = app.Page(str(files / 'net_g.pth'), str(files / 'net_mask.pth'))
    blocks, _ = app.build_blocks(page)
    (radio, ) = [
        block for block in blocks.blocks.values() if (getattr(block, 'label', None) or '').startswith('face detector')
    ]
    assert [value for _, value in radio.choices] == ['auto', 'retinaface', 'mtcnn', toy]

    dataset = MetaF2NPairedFaceDataset({'dataroot_lq': str(files / 'photos'), 'face_source': toy, 'scale': 4})
    assert dataset[0]['face_source'] == toy  # a dataset's check: the model detects with face_pairs.source
    with pytest.raises(UnknownComponentError, match=f"choose one of .*'{toy}'") as error:
        MetaF2NPairedFaceDataset({'dataroot_lq': str(files / 'photos'), 'face_source': 'haar', 'scale': 4})
    assert toy in error.value.choices and error.value.name == 'haar'  # the error texts
    with pytest.raises(UnknownComponentError, match=f"unknown face source type 'haar'; choose one of .*'{toy}'"):
        FacePairExtractor.from_options({'source': 'haar'})

    out = tmp_path / 'out'  # and it runs: metaf2n-infer --detector toy finds the face through it
    args = [str(files / 'photos'), '-o', str(out), '--detector', toy, '--gt', str(files / 'gt'), '--fp32']
    assert infer.main(['--model', str(files / 'net_g.pth'), '--mask', str(files / 'net_mask.pth'), *args]) == 0
    assert '1 face used' in capsys.readouterr().out and ToyDetector.calls == ['astronaut.png']
    assert (out / 'astronaut_metaf2n.png').is_file()


def test_a_name_is_registered_once():
    assert metaf2n_plugin.FACE_SOURCES['mtcnn'] is metaf2n_plugin.MTCNNDetector  # read as 0.1's dicts were
    assert metaf2n_plugin.RESTORERS['gpen'] is metaf2n_plugin.GPENRestorer and len(metaf2n_plugin.RESTORERS) == 3
    with pytest.raises(ValueError, match="face source 'mtcnn' is registered already"):
        FACE_SOURCES.register('mtcnn', detector=True)(ToyDetector)
    with pytest.raises(ValueError, match="'auto' is reserved"):
        FACE_SOURCES.register('auto', detector=True)(ToyDetector)


def test_the_library_raises_typed_errors_with_their_data_and_the_front_ends_word_them(files, tmp_path, capsys):
    missing = str(tmp_path / 'none.pth')
    with pytest.raises(WeightsNotFoundError) as error:
        metaf2n_plugin.PhotoSuperResolver(missing, str(files / 'net_mask.pth'), faces='landmarks')
    assert error.value.missing == {'model': missing} and isinstance(error.value, FileNotFoundError)
    assert str(error.value).startswith(f'MetaF2N weights not found: model {missing!r}. ')
    assert error.value.describe({
        'model': '--model',
        'mask': '--mask'
    }).startswith(f'MetaF2N weights not found: '
                  f'--model {missing!r}. ')
    assert infer.main([str(files / 'photos'), '--model', missing, '-o', str(tmp_path / 'o')]) == 2
    assert f'--model {missing!r}' in capsys.readouterr().err

    text = tmp_path / 'text.pth'
    text.write_text('not weights')
    with pytest.raises(WeightsFileError) as error:
        metaf2n_plugin.PhotoSuperResolver(str(files / 'net_g.pth'), str(text), faces='landmarks')
    assert error.value.path == str(text) and error.value.argument == 'mask'
    assert str(error.value).startswith(f'mask: {str(text)!r} is not a PyTorch weights file')
    assert error.value.describe(app.NAMES).startswith(f'MaskNet: {str(text)!r}')  # the page's word

    with pytest.raises(WeightsNotFoundError) as error:  # a face pipeline's weights, looked up by the same rule
        locate_weights('GPEN-BFR-512.pth', 'https://example.invalid/g.pth', 'GPEN-512', tmp_path)
    assert error.value.places == [str(tmp_path / 'GPEN-BFR-512.pth')] and error.value.file_name == 'GPEN-BFR-512.pth'

    with pytest.raises(OptionError) as error:
        AdaptationSettings(lr=-1.0)
    assert error.value.option == 'adaptation.lr' and error.value.value == -1.0
    assert isinstance(error.value, (MetaF2NError, ValueError))

    resolver = metaf2n_plugin.PhotoSuperResolver(str(files / 'net_g.pth'), adapt=False, log=lambda line: None)
    with pytest.raises(metaf2n_plugin.PhotoSizeError) as error:
        resolver.enhance(np.zeros((8, 32, 3), np.uint8))
    assert (error.value.width, error.value.height, error.value.needed) == (32, 8, None)


def face_patches(seed=0):
    """Random LQ face patches ``(2, 3, 16, 16)`` and their pseudo GT ``(2, 3, 64, 64)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 16, 16, generator=generator), torch.rand(2, 3, 64, 64, generator=generator)


def test_the_keywords_of_0_1_still_adapt_with_a_warning_that_names_the_replacement():
    torch.manual_seed(0)
    net_g, net_mask = RRDBNet(**TINY_RRDB), MaskNet(6, 8, 3)
    lq, hq = face_patches()
    with pytest.warns(
            DeprecationWarning,
            match=r'adapt_to_faces\(lr=\.\.\.\) is deprecated .* '
            r'settings=AdaptationSettings\(lr=\.\.\.\)'):
        old = adapt_to_faces(net_g, net_mask, lq, hq, lr=0.5, steps=2, params='conv_last', legacy_bicubic=True)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the new call warns about nothing
        new = adapt_to_faces(net_g, net_mask, lq, hq,
                             AdaptationSettings(lr=0.5, steps=2, params='conv_last', legacy_bicubic=True))
    assert old.keys() == new.keys() and all(torch.equal(old[name], new[name]) for name in new)
    assert not torch.equal(new['conv_last.weight'], net_g.conv_last.weight)
    with pytest.raises(TypeError, match="adapt_to_faces\\(\\) got an unexpected keyword argument 'rate'"):
        adapt_to_faces(net_g, net_mask, lq, hq, rate=0.5)


def test_names_of_0_1_still_word_the_errors_with_a_warning(files, tmp_path):
    missing = str(tmp_path / 'none.pth')
    with pytest.warns(DeprecationWarning, match=r'names=\.\.\.\) is deprecated .* error\.describe\(names\)'), \
            pytest.raises(WeightsNotFoundError, match=f'not found: --model {re.escape(repr(missing))}'):
        metaf2n_plugin.PhotoSuperResolver(missing, adapt=False, names={'model': '--model'})


def test_sample_patches_without_a_count_or_size_takes_the_old_defaults_with_a_warning():
    image = np.random.default_rng(0).random((40, 40, 3), dtype=np.float32)
    hq = cv2.resize(image, (160, 160), interpolation=cv2.INTER_CUBIC)
    pairs = [FacePair(image, hq, np.ones((160, 160), bool))]
    with pytest.warns(DeprecationWarning, match='sample_patches without num_patches is deprecated'):
        old = sample_patches(pairs, 4, rng=np.random.default_rng(1))
    settings = AdaptationSettings()
    new = sample_patches(pairs, 4, settings.num_patches, settings.patch_size, np.random.default_rng(1))
    assert len(old) == len(new) == 16 and torch.equal(old.lq, new.lq) and torch.equal(old.hq, new.hq)
