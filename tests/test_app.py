"""metaf2n-app: the page's work on a photo (faces, MaskNet's weights, both outputs, the PNG metaf2n-infer writes, the
restored faces pasted in), its errors said in the page, one photo at a time, nothing sent off this machine, and the page
in Chromium (e2e)."""
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.archs.rrdbnet_arch import RRDBNet
from basicsr.metrics import calculate_psnr
from PIL import Image
from test_infer import TINY_RRDB

from metaf2n_plugin import OptionError, app, infer, photo_super_resolver
from metaf2n_plugin.archs.gpen_arch import GPEN
from metaf2n_plugin.archs.masknet_arch import MaskNet
from metaf2n_plugin.faces import builtin_photo
from metaf2n_plugin.image_io import read_photo, write_image
from metaf2n_plugin.models.precision import resolve_precision
from metaf2n_plugin.package_weights import locate_wheel
from conftest import REPO

SIDE = 160  # Grace Hopper, shrunk from 512: MTCNN finds her face
HALF = resolve_precision('auto', 'cpu') != 'fp32'  # the page's default: the precision metaf2n-infer picks
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Tiny random weights (net_g, MaskNet, GPEN-BFR-256), MTCNN's wheel, Grace Hopper at 160 x 160, a text file."""
    root = tmp_path_factory.mktemp('app')
    torch.manual_seed(0)
    net_g = RRDBNet(**TINY_RRDB)
    torch.nn.init.constant_(net_g.conv_last.bias, 0.5)  # outputs mid-gray, not clipped at 0
    torch.save({'params': net_g.state_dict()}, root / 'net_g.pth')
    torch.save({'params': MaskNet(6, 8, 3).state_dict()}, root / 'net_mask.pth')
    torch.save(GPEN(256, channel_multiplier=1, narrow=0.5).state_dict(), root / 'GPEN-BFR-256.pth')
    (root / 'no_gpen').mkdir()
    shutil.copy(locate_wheel('facenet-pytorch', os.path.join(REPO, 'weights', 'wheels'), download=True), root)
    grace = builtin_photo('grace_hopper')[0][:512]
    write_image(root / 'grace.png', cv2.resize(grace, (SIDE, SIDE), interpolation=cv2.INTER_AREA))
    (root / 'notes.txt').write_text('not a photo')
    return root


def app_flags(root, *extra):
    """metaf2n-app's flags for the tiny weights (the first entry of the weights menu) and MTCNN's wheel."""
    wheel = next(root.glob('facenet_pytorch-*.whl'))
    return [
        '--model',
        str(root / 'net_g.pth'), '--mask',
        str(root / 'net_mask.pth'), '--restorer-weights',
        str(root), '--restorer-size', '256', '--detector-weights',
        str(wheel), *extra
    ]


def make_page(root, tmp_path, *extra):
    """A Page made in ``tmp_path`` (no weights/, no datasets/real: the package photos are the built-in ones)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        return app.page_of(app.build_parser().parse_args(app_flags(root, *extra)))


@pytest.fixture(scope='module')
def page(setup, tmp_path_factory):
    return make_page(setup, tmp_path_factory.mktemp('cwd'))


def tiny(page):
    """The label of the tiny weights in the page's menu."""
    return next(iter(page.choices))


def test_a_photo_shows_its_faces_weights_both_outputs_and_downloads_what_metaf2n_infer_writes(page, setup, tmp_path):
    stages = []
    result = page.run(
        str(setup / 'grace.png'), None, tiny(page), half=HALF, progress=lambda *stage: stages.append(stage))
    assert result.summary.startswith('### grace.png: 1 face used\n')
    assert '1 face used, restored by GPEN-BFR-256; the network took its step on them' in result.summary
    assert re.search(r'- \*\*time\*\*: [0-9.]+ s on the server \(faces [0-9.]+ s, adaptation', result.summary)
    assert "adaptation: {'lr': 0.01, 'steps': 1" in result.summary  # the settings the resolver logged
    assert [fraction for fraction, _ in stages] == sorted(fraction for fraction, _ in stages) and len(stages) == 4
    (face, caption), = result.faces
    width, height = map(int, re.search(r'(\d+)x(\d+) LQ pixels$', caption).groups())
    assert cv2.imread(face).shape == (4 * height + 24, 3 * 4 * width, 3)  # LQ | restored | W, labelled
    plain, ours = (cv2.imread(path) for path in result.slider)
    assert plain.shape == ours.shape == (4 * SIDE, 4 * SIDE, 3)
    assert cv2.imread(result.boxed).shape == (4 * SIDE, 4 * SIDE, 3)  # 160 px enlarged 4x to pass 512
    levels = float(re.search(r'yellow ([0-9.]+) grey levels', result.difference_caption)[1])
    assert levels == pytest.approx(np.abs(ours.astype(float) - plain).mean(axis=2).max(), abs=0.6)
    assert [os.path.basename(path) for path in result.slider] == ['grace_plain.png', 'grace_metaf2n.png']
    assert result.slider[1] == result.download

    for folder, flags in (('adapted', []), ('plain', ['--no-adapt'])):  # metaf2n-infer's defaults otherwise
        assert infer.main([str(setup / 'grace.png'), '-o', str(tmp_path / folder), *app_flags(setup), *flags]) == 0
    for shown, folder in zip(result.slider, ('plain', 'adapted')):
        assert np.array_equal(read_photo(shown).rgb, read_photo(tmp_path / folder / 'grace_metaf2n.png').rgb)


def test_with_the_faces_pasted_the_output_png_is_metaf2n_with_the_restored_face_blended_in_and_a_slider_shows_both(
        page, setup):
    photo = str(setup / 'grace.png')
    metaf2n = page.run(photo, None, tiny(page), half=HALF)
    result = page.run(photo, None, tiny(page), half=HALF, paste_faces=True)
    assert metaf2n.pasted is None
    assert result.pasted == (result.slider[1], result.download)  # the slider stays plain | MetaF2N
    assert [os.path.basename(path) for path in result.pasted] == ['grace_before_paste.png', 'grace_metaf2n.png']
    before, after = (read_photo(path).rgb for path in result.pasted)
    assert np.array_equal(before, read_photo(metaf2n.download).rgb)
    assert result.difference_caption == metaf2n.difference_caption  # MetaF2N against the plain network
    (_, caption), = result.faces
    x0, y0, x1, y1 = (4 * int(value) for value in re.search(r'\((\d+), (\d+)\)-\((\d+), (\d+)\)', caption).groups())
    face = np.zeros(before.shape[:2], bool)
    face[y0:y1, x0:x1] = True
    gap = np.abs(after - before).mean(axis=2)
    assert gap[~face].max() == 0  # away from the face, MetaF2N's pixels
    assert gap[(y0 + y1) // 2, (x0 + x1) // 2] > 0.02 and gap[face].mean() > 0.02  # on it, GPEN's
    assert "- **faces pasted**: 1 restored face blended into MetaF2N's output: the output PNG\n" in result.summary
    assert re.search(r'super-resolution, adapted and plain [0-9.]+ s, pasting the faces [0-9.]+ s\)', result.summary)


def test_the_output_png_keeps_16_bits_alpha_and_orientation_as_metaf2n_infer_writes_them(page, setup, tmp_path):
    rng = np.random.default_rng(0)
    bgra16 = rng.integers(0, 65536, (20, 24, 4), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / 'deep.png'), bgra16)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(rng.integers(0, 256, (20, 32), dtype=np.uint8)).save(tmp_path / 'gray.jpg', exif=exif.tobytes())
    for name, shape, dtype in (('deep', (80, 96, 4), np.uint16), ('gray', (128, 80), np.uint8)):
        path = str(tmp_path / f'{name}.{"png" if name == "deep" else "jpg"}')
        shown = cv2.imread(page.run(path, None, tiny(page), half=HALF).download, cv2.IMREAD_UNCHANGED)
        assert infer.main([path, '-o', str(tmp_path / 'out'), *app_flags(setup)]) == 0
        written = cv2.imread(str(tmp_path / 'out' / f'{name}_metaf2n.png'), cv2.IMREAD_UNCHANGED)
        assert shown.shape == shape and shown.dtype == dtype and np.array_equal(shown, written)


def test_with_its_ground_truth_and_no_gpen_the_faces_are_cut_from_it_and_both_psnr_given(setup, tmp_path):
    page = make_page(setup, tmp_path, '--restorer-weights', str(setup / 'no_gpen'))
    lq, gt = page.builtins['grace_hopper.png']
    assert read_photo(lq).rgb.shape == (128, 128, 3) and read_photo(gt).rgb.shape == (512, 512, 3)
    result = page.run(lq, gt, tiny(page), half=HALF)
    assert '1 face used, restored by their crops of the ground truth (the oracle; no GPEN)' in result.summary
    psnr = re.search(r'MetaF2N ([0-9.]+) dB, plain network ([0-9.]+) dB \(([+-][0-9.]+) dB\)', result.summary)
    truth = cv2.imread(gt)
    for value, path in zip(psnr.groups(), reversed(result.slider)):
        assert float(value) == pytest.approx(calculate_psnr(cv2.imread(path), truth, 4, test_y_channel=True), abs=0.05)

    without = page.run(lq, None, tiny(page), half=HALF)  # no GT, no GPEN: the plain network, and the page says why
    assert without.summary.startswith('### grace_hopper.png: no faces used')
    assert "not adapted: GPEN-BFR-256.pth not found at '" in without.summary
    assert "The output is the plain network's" in without.summary and without.faces == []
    assert np.array_equal(cv2.imread(without.download), cv2.imread(without.slider[0]))
    assert without.difference_caption == 'MetaF2N - plain network: identical (no face step)'
    asked = page.run(lq, None, tiny(page), half=HALF, paste_faces=True)  # nothing to paste: said, no second slider
    assert '- **faces pasted**: none: no face was restored\n' in asked.summary and asked.pasted is None

    pasted = page.run(lq, gt, tiny(page), half=HALF, paste_faces=True)  # the GT's own face pasted: closer to the GT
    psnr_pasted = re.search(r'MetaF2N ([0-9.]+) dB, .*; MetaF2N with the faces pasted ([0-9.]+) dB$', pasted.summary)
    assert psnr_pasted[1] == psnr[1]
    assert float(psnr_pasted[2]) == pytest.approx(
        calculate_psnr(cv2.imread(pasted.download), truth, 4, test_y_channel=True), abs=0.05)
    assert float(psnr_pasted[2]) > float(psnr[1]) + 0.1


def test_what_cannot_be_processed_is_said_in_the_page(page, setup, tmp_path, monkeypatch):
    good = cv2.imread(str(setup / 'grace.png'))
    cv2.imwrite(str(tmp_path / 'whole.jpg'), good)
    (tmp_path / 'truncated.jpg').write_bytes((tmp_path / 'whole.jpg').read_bytes()[:1500])
    cv2.imwrite(str(tmp_path / 'flat.png'), np.full((64, 64, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / 'small_gt.png'), np.zeros((100, 100, 3), np.uint8))
    run = {
        'notes': page.run(str(setup / 'notes.txt'), None, tiny(page)),
        'truncated': page.run(str(tmp_path / 'truncated.jpg'), None, tiny(page)),
        'flat': page.run(str(tmp_path / 'flat.png'), None, tiny(page)),
        'gt': page.run(str(setup / 'grace.png'), str(tmp_path / 'small_gt.png'), tiny(page)),
        'nothing': page.run(None, None, tiny(page)),
    }
    assert run['notes'].summary == ("**notes.txt could not be processed.** 'notes.txt' is not an image (.txt); the "
                                    'page reads photos: .png .jpg .jpeg .bmp .tif .tiff .webp')
    assert run['truncated'].summary.startswith("**truncated.jpg could not be processed.** cannot read image "
                                               "'truncated.jpg': OpenCV cannot decode it (truncated, or not an image)")
    assert run['gt'].summary.endswith('the ground truth is 100x100 pixels; for this 160x160 photo it must be 640x640')
    assert run['nothing'].summary == 'Drop a photo, or pick a built-in one.'
    for key in ('notes', 'truncated', 'gt', 'nothing'):
        assert run[key].download is None and run[key].slider is None and str(tmp_path) not in run[key].summary
    assert "0 faces found, not adapted: no usable face. The output is the plain network's" in run['flat'].summary
    assert cv2.imread(run['flat'].download).shape == (256, 256, 3)

    monkeypatch.setattr(photo_super_resolver, 'available_memory', lambda device=None: 2**30)
    cv2.imwrite(str(tmp_path / 'huge.png'), np.zeros((4000, 4000), np.uint8))
    huge = make_page(setup, tmp_path).run(str(tmp_path / 'huge.png'), None, tiny(page))
    said = re.fullmatch(
        r'\*\*huge.png could not be processed.\*\* 4000x4000 pixels: its 16000x16000 output needs about [0-9.]+ GiB, '
        r'1.0 GiB are available \(enough for about (\d+)x\1 pixels, [0-9.]+ megapixels\); crop it into parts or '
        'downscale it', huge.summary)
    side = int(said[1])
    needed = [photo_super_resolver.memory_needed(s, s, 8, 256, 10, TINY_RRDB['num_feat']) for s in (side, side + 1)]
    assert needed[0] <= 2**30 < needed[1]


def test_psnr_y_is_basicsrs_on_the_y_channel_with_a_4_pixel_border():
    rng = np.random.default_rng(0)
    gt = rng.random((40, 48, 3), dtype=np.float32)
    images = [np.clip(gt + rng.normal(0, sigma, gt.shape), 0, 1).astype(np.float32) for sigma in (0.01, 0.1)]
    expected = [
        calculate_psnr(image[:, :, ::-1] * 255, gt[:, :, ::-1] * 255, 4, test_y_channel=True) for image in images
    ]
    assert app.psnr_y(images, gt) == pytest.approx(expected, abs=1e-4)


def test_the_weights_menu_pairs_each_masknet_with_its_network_and_says_how_to_make_a_missing_file(tmp_path):
    empty = app.weights_choices(folder=str(tmp_path))
    assert [choice.label for choice in empty] == [
        'x4plus_masknet_meta MaskNet on RealESRGAN_x4plus.pth (missing)', 'RealESRGAN_x4plus.pth, no MaskNet (W = 1) '
        '(missing)'
    ]
    x4plus, masknet = (os.path.join(tmp_path, name) for name in ('RealESRGAN_x4plus.pth', app.X4PLUS_MASKNET))
    assert empty[0].missing() == (
        f'Weights not found: `{x4plus}` (make it with `make demo`, or `metaf2n-convert realesrgan-ncnn --download` in '
        f'the repository root); `{masknet}` (make it with `make demo`, or `metaf2n-convert '
        'pretrained/x4plus_masknet_meta.pth --download` in the repository root). Then press Super-resolve again.')
    for name in ('RealESRGAN_x4plus.pth', 'a_net_mask.pth', 'b_net_mask.pth', 'b_net_g.pth'):
        (tmp_path / name).write_bytes(b'')
    mine = str(tmp_path / 'mine.pth')
    choices = app.weights_choices(mine, None, str(tmp_path))
    assert [(choice.label, choice.model, choice.mask) for choice in choices] == [
        (f'{mine} + no MaskNet (W = 1) (missing)', mine, None),
        ('a MaskNet on RealESRGAN_x4plus.pth', x4plus, str(tmp_path / 'a_net_mask.pth')),
        ('b MaskNet on b_net_g.pth', str(tmp_path / 'b_net_g.pth'), str(tmp_path / 'b_net_mask.pth')),
        ('RealESRGAN_x4plus.pth, no MaskNet (W = 1)', x4plus, None),
    ]
    assert choices[0].missing() == f'Weights not found: `{mine}` (put the file there). Then press Super-resolve again.'


def free_port():
    with socket.socket() as probe:
        probe.bind((app.HOST, 0))
        return probe.getsockname()[1]


def test_two_requests_at_once_run_one_after_the_other_and_nothing_leaves_the_machine(page, setup, monkeypatch):
    from gradio_client import Client, client, handle_file
    from gradio_client.utils import Status

    # the test's client: its Hugging Face headers look an agent registry up online, which is not the page's doing
    monkeypatch.setattr(client, 'build_hf_headers', lambda **_: {})

    outside, lookup, connect = [], socket.getaddrinfo, socket.socket.connect
    local = ('127.0.0.1', '::1', 'localhost')

    def refused(where):
        outside.append(where)
        raise OSError(f'test: nothing goes off this machine ({where})')

    def local_lookup(host, *args, **kwargs):
        return lookup(host, *args, **kwargs) if host in local else refused(host)

    def local_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in local:
            refused(address)
        return connect(sock, address)

    monkeypatch.setattr(socket, 'getaddrinfo', local_lookup)
    monkeypatch.setattr(socket.socket, 'connect', local_connect)
    running, most, real_run = [], [], page.run

    def counted(*args, **kwargs):
        running.append(threading.get_ident())
        most.append(len(running))
        time.sleep(0.5)  # long enough for the second request to arrive while the first runs
        try:
            return real_run(*args, **kwargs)
        finally:
            running.pop()

    monkeypatch.setattr(page, 'run', counted)
    port = free_port()
    blocks = app.serve(page, port, wait=False)
    try:
        user = Client(f'http://{app.HOST}:{port}/', verbose=False, analytics_enabled=False)
        inputs = (handle_file(str(setup / 'grace.png')), None, tiny(page), None, 256, HALF, 'auto')
        jobs = [user.submit(*inputs, api_name='/super_resolve') for _ in range(2)]
        while not running:  # one request is being processed, the other waits in Gradio's queue, told its place
            time.sleep(0.05)
        time.sleep(0.2)  # status messages on their way
        statuses = sorted((job.status() for job in jobs), key=lambda status: status.code.value)
        summaries = [job.result(timeout=120)[0] for job in jobs]
    finally:
        blocks.close()
    assert [(status.code, status.rank) for status in statuses] == [(Status.IN_QUEUE, 0), (Status.PROCESSING, None)]
    assert all(summary.startswith('### grace.png: 1 face used') for summary in summaries)
    assert most == [1, 1] and outside == []


# metaf2n-app whose page takes an hour over a photo (Page.run sleeps), in a process of its own
ENDLESS_APP = ("import sys, time; from metaf2n_plugin import app; "
               "app.Page.run = lambda *_: (print('processing', flush=True), time.sleep(3600)); "
               "sys.exit(app.main(sys.argv[1:]))")


def test_sigterm_while_a_photo_is_processed_stops_the_page_at_once_and_ends_the_request(
        page, setup, tmp_path, monkeypatch):
    from gradio_client import Client, client, handle_file

    monkeypatch.setattr(client, 'build_hf_headers', lambda **_: {})  # as in the test above
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != 'PYTHONPATH'}
    server = subprocess.Popen([sys.executable, '-c', ENDLESS_APP, '--port',
                               str(port), *app_flags(setup)],
                              cwd=tmp_path,
                              env=env,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              text=True)
    url = f'http://{app.HOST}:{port}/'
    try:
        wait_for_server(server, url)
        user = Client(url, verbose=False, analytics_enabled=False)
        job = user.submit(
            handle_file(str(setup / 'grace.png')), None, tiny(page), None, 256, HALF, 'auto', api_name='/super_resolve')
        seen = []
        for line in server.stdout:  # until the page has taken the photo
            if line == 'processing\n':
                break
            seen.append(line)
    finally:
        log = stop(server)
    assert server.returncode == 0 and 'Traceback' not in log, ''.join(seen) + log
    with pytest.raises(Exception) as ended:  # the request ends with the page, not 30 s later
        job.result(timeout=30)
    assert not isinstance(ended.value, TimeoutError)


@pytest.mark.e2e
def test_the_page_in_chromium_shows_a_photos_faces_and_its_x4_output_and_says_what_is_not_a_photo(setup, tmp_path):
    if not os.path.isfile(CHROMIUM):
        pytest.fail(f'Chromium not found at {CHROMIUM}: install Debian\'s package with `apt-get install chromium` '
                    '(the package registries have no browser downloads; .ci/run installs it)')
    from playwright.sync_api import sync_playwright

    start, port = time.perf_counter(), free_port()
    env = {key: value for key, value in os.environ.items() if key != 'PYTHONPATH'}
    script = os.path.join(os.path.dirname(sys.executable), 'metaf2n-app')
    server = subprocess.Popen([script, '--port', str(port), *app_flags(setup)],
                              cwd=tmp_path,
                              env=env,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              text=True)
    url, requests = f'http://{app.HOST}:{port}/', []
    try:
        wait_for_server(server, url)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
            view = browser.new_page(viewport={'width': 1280, 'height': 1400})
            view.on('request', lambda request: requests.append(request.url))
            view.goto(url)
            hidden = not view.locator('#pasted').is_visible()  # the second slider waits for the checkbox
            view.check('#paste input')
            view.locator('#photo input[type=file]').set_input_files(str(setup / 'grace.png'))
            view.wait_for_selector('#summary h3', timeout=60000)
            summary = view.inner_text('#summary')
            loaded = "[...document.querySelectorAll('#slider img, #pasted img')]"
            view.wait_for_function(f'{loaded}.length == 4 && {loaded}.every(i => i.naturalWidth > 0)')
            sizes = view.evaluate(f'{loaded}.map(i => [i.naturalWidth, i.naturalHeight])')
            faces = view.locator('#faces img').count()
            with view.expect_download() as download:
                view.click('#download a')
            download.value.save_as(tmp_path / 'downloaded.png')
            view.screenshot(path=tmp_path / 'result.png', full_page=True)

            view.click('#photo button[aria-label="Clear"]')  # the photo's box takes a new file
            view.locator('#photo input[type=file]').set_input_files(str(setup / 'notes.txt'))
            view.wait_for_function("document.querySelector('#summary').innerText.includes('notes.txt')")
            error = view.inner_text('#summary')
            view.screenshot(path=tmp_path / 'error.png', full_page=True)

            view.click('#builtin input')  # a built-in photo brings its GT: both outputs' PSNR
            view.get_by_role('option', name='astronaut.png').click()
            view.wait_for_function("document.querySelector('#summary').innerText.includes('astronaut.png')")
            builtin = view.inner_text('#summary')
            browser.close()
    finally:
        log = stop(server)
    print(f'browser test: {time.perf_counter() - start:.1f} s; screenshots in {tmp_path}')
    assert summary.startswith('grace.png: 1 face used'), log[-3000:]
    assert '1 face used, restored by GPEN-BFR-256; the network took its step on them' in summary
    assert "faces pasted: 1 restored face blended into MetaF2N's output: the output PNG" in summary
    assert hidden and sizes == [[4 * SIDE, 4 * SIDE]] * 4 and faces == 1
    assert cv2.imread(str(tmp_path / 'downloaded.png')).shape == (4 * SIDE, 4 * SIDE, 3)
    assert error == "notes.txt could not be processed. 'notes.txt' is not an image (.txt); the page reads photos: " \
        '.png .jpg .jpeg .bmp .tif .tiff .webp'
    assert 'astronaut.png: ' in builtin and 'PSNR-Y against the ground truth: MetaF2N' in builtin
    elsewhere = sorted({request for request in requests if not request.startswith((url, 'data:', 'blob:'))})
    assert elsewhere == [], 'the page asked for something off this machine'
    assert len(requests) > 10  # the page's scripts and styles, seen


def stop(server):
    """SIGTERM metaf2n-app's process ``server``; its output, or a failure when it is still running 30 s later."""
    server.terminate()
    try:
        return server.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        server.kill()
        pytest.fail('metaf2n-app did not exit within 30 s of SIGTERM; its output:\n' + server.communicate()[0])


def wait_for_server(server, url, timeout=120):
    """Return once ``url`` answers; fail with the server's output if it exits or ``timeout`` seconds pass."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f'metaf2n-app exited {server.returncode}:\n{server.stdout.read()[-3000:]}')
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f'metaf2n-app did not answer at {url} within {timeout} s')


def test_an_options_file_puts_its_network_first_in_the_menu_and_the_page_builds_it(tmp_path):
    from basicsr.archs.srvgg_arch import SRVGGNetCompact

    network = {'type': 'SRVGGNetCompact', 'num_feat': 8, 'num_conv': 2, 'upscale': 4}
    (tmp_path / 'models').mkdir()
    torch.save({'params': SRVGGNetCompact(**{
        k: v
        for k, v in network.items() if k != 'type'
    }).state_dict()}, tmp_path / 'models' / 'net_g.pth')
    options = tmp_path / 'run.yml'
    options.write_text(
        yaml.safe_dump({
            'scale': 4,
            'network_g': network,
            'network_mask': None,
            'path': {
                'pretrain_network_g': str(tmp_path / 'models' / 'net_g.pth')
            }
        }))
    page = app.Page(opt=str(options), device='cpu')
    first = next(iter(page.choices.values()))
    assert first.label == f"SRVGGNetCompact of {options}: {tmp_path / 'models' / 'net_g.pth'} + no MaskNet (W = 1)"
    resolver, lines = page.resolver(first, 'mtcnn', 'fp32', 0, None, None)
    assert type(resolver.net_g).__name__ == 'SRVGGNetCompact' and 'the SR network: SRVGGNetCompact (' in lines[0]
    options.write_text('name: not a training\n')
    with pytest.raises(OptionError, match="opt '.*run.yml' has no network_g"):
        app.Page(opt=str(options), device='cpu')
