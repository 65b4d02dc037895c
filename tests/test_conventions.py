"""One rule per idea: the weights lookup, the image-folder helpers, atomic writes and every command line's --help."""
import contextlib
import io
import os
import re

import pytest

from metaf2n_plugin import app, infer, official_weights
from metaf2n_plugin.atomic_write import atomic_file, write_atomically
from metaf2n_plugin.image_io import image_with_stem, images_in
from metaf2n_plugin.weights import locate_weights
from conftest import load_script

URL = 'https://example.invalid/w.pth'
SCRIPTS = ('check_realesrgan_ncnn', 'demo', 'export_delta', 'extract_face_pairs', 'heldout_study', 'make_heldout_folds',
           'make_real_testset', 'make_testset', 'make_tiny_dataset', 'results_table', 'side_by_side')
COMMANDS = {
    'metaf2n-app': app,
    'metaf2n-infer': infer,
    'metaf2n-convert': official_weights,
    **{
        name: load_script(name)
        for name in SCRIPTS
    }
}


@pytest.fixture
def places(tmp_path, monkeypatch):
    """An empty working directory and torch cache; returns the three search folders in their order."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    folders = [
        tmp_path / 'weights', tmp_path / 'experiments' / 'pretrained_models', tmp_path / 'torch' / 'hub' / 'checkpoints'
    ]
    for folder in folders:
        folder.mkdir(parents=True)
    return folders


def test_weights_are_searched_in_order_and_a_given_place_is_the_only_one(places):
    expected = [
        os.path.join('weights', 'w.pth'),
        os.path.join('experiments', 'pretrained_models', 'w.pth'),
        str(places[2] / 'w.pth')
    ]
    for folder, path in reversed(list(zip(places, expected))):  # each new copy is found before the ones after it
        (folder / 'w.pth').write_bytes(b'x')
        assert locate_weights('w.pth', URL, 'test') == path
    given = places[0].parent / 'mine'
    given.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(f"w.pth not found at '{given / 'w.pth'}'")):
        locate_weights('w.pth', URL, 'test', given)  # present elsewhere, but only `given` is looked at


def test_downloads_go_into_the_given_place_or_torch_cache(places, monkeypatch):
    from basicsr.utils import download_util
    fetched = []
    monkeypatch.setattr(
        download_util,
        'download_url_to_file',
        lambda url, path, hash_prefix=None, progress=True: fetched.append(path) or open(path, 'wb'))
    with pytest.raises(FileNotFoundError, match='`download: true`'):
        locate_weights('w.pth', URL, 'test')
    assert fetched == []
    assert locate_weights('w.pth', URL, 'test', download=True) == str(places[2] / 'w.pth')
    given = places[0].parent / 'given.pth'
    assert locate_weights('w.pth', URL, 'test', given, download=True) == str(given)
    assert fetched == [str(places[2] / 'w.pth'), str(given)]


def test_image_folders_list_images_only_and_find_them_by_stem(tmp_path):
    for name in ('b.png', 'a.JPG', '.hidden.png', 'notes.txt', 'a.png'):
        (tmp_path / name).write_bytes(b'')
    (tmp_path / 'dir.png').mkdir()
    assert images_in(tmp_path) == [str(tmp_path / name) for name in ('a.JPG', 'a.png', 'b.png')]
    assert image_with_stem(tmp_path, 'a') == str(tmp_path / 'a.JPG')
    assert image_with_stem(tmp_path, 'notes') is None and image_with_stem(tmp_path, 'c') is None


def test_an_atomic_write_leaves_the_old_file_when_it_fails(tmp_path):
    path = tmp_path / 'out.txt'
    write_atomically(path, 'old')
    with pytest.raises(RuntimeError), atomic_file(path) as f:
        f.write(b'half')
        raise RuntimeError('killed')
    assert path.read_text() == 'old' and os.listdir(tmp_path) == ['out.txt']


@pytest.mark.parametrize('command', sorted(COMMANDS))
def test_every_command_has_dash_flags_and_its_docstring_as_help(command):
    module = COMMANDS[command]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        module.main(['--help'])
    assert exit_.value.code == 0
    text = out.getvalue()
    description, _, epilog = module.__doc__.strip().partition('\n\n')
    flags = re.findall(r'(?<![\w-])--[\w-]+', text[:text.rfind(epilog.splitlines()[0])])  # its own, not BasicSR's
    assert flags and not [flag for flag in flags if '_' in flag], 'flags are spelt with dashes'
    assert text.count(description.splitlines()[0]) == 1, 'the description is shown once'
    assert text.rstrip().endswith(epilog.rstrip().splitlines()[-1].strip()), 'the rest of the docstring is the epilog'
    assert not [line for line in epilog.splitlines() if '  ' in line.strip()], 'no runs of spaces in the examples'
