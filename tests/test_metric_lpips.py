"""``calculate_lpips``: the lpips package's number, on BasicSR's BGR images, with weights found offline.

The AlexNet trunk here is an untrained torchvision AlexNet saved where torch caches downloads, so that
``lpips.LPIPS()`` itself (through torchvision) and the metric load the same file, independently.
"""
import lpips
import numpy as np
import pytest
import torch
from basicsr.utils import download_util
from basicsr.utils.registry import METRIC_REGISTRY
from torchvision import models

from metaf2n_plugin.metrics import lpips_metric
from metaf2n_plugin.metrics.lpips_metric import calculate_lpips

ALEXNET = 'alexnet-owt-7be5be79.pth'
ALEXNET_URL = 'https://download.pytorch.org/models/alexnet-owt-7be5be79.pth'


def colour_images(seed=0, size=48):
    """Two (size, size, 3) uint8 images, BGR, with different content in each channel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([np.sin(8 * xx), np.cos(5 * yy), xx * yy], axis=-1) * 100 + 120
    img2 = img + rng.normal(0, 20, img.shape)
    return [np.clip(i, 0, 255).round().astype(np.uint8) for i in (img, img2)]


def rgb_tensor(bgr):
    """What a user of lpips would build from an RGB image: (1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(bgr[..., ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]


@pytest.fixture(scope='module')
def alexnet_file(tmp_path_factory):
    """An untrained torchvision AlexNet's full state dict, saved once: (path, state dict)."""
    torch.manual_seed(0)
    state_dict = models.alexnet().state_dict()
    path = tmp_path_factory.mktemp('alexnet') / ALEXNET
    torch.save(state_dict, path)
    return path, state_dict


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch cache (TORCH_HOME) and working directory: no weights anywhere."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.chdir(tmp_path)
    return tmp_path / 'torch'


def test_calculate_lpips_is_registered_for_val_metrics():
    assert METRIC_REGISTRY.get('calculate_lpips') is calculate_lpips


def test_equals_lpips_package_on_the_same_rgb_images_with_trunk_from_torch_cache(torch_home, alexnet_file):
    (torch_home / 'hub' / 'checkpoints').mkdir(parents=True)
    (torch_home / 'hub' / 'checkpoints' / ALEXNET).symlink_to(alexnet_file[0])
    img, img2 = colour_images()

    ours = calculate_lpips(img=img, img2=img2, crop_border=0, type='calculate_lpips', device='cpu')

    reference = lpips.LPIPS(net='alex', version='0.1', verbose=False)  # torchvision loads the cached AlexNet
    with torch.no_grad():
        expected = reference(rgb_tensor(img), rgb_tensor(img2), normalize=True).item()
        channels_not_swapped = reference(rgb_tensor(img[..., ::-1]), rgb_tensor(img2[..., ::-1]), normalize=True).item()
    assert ours == pytest.approx(expected, rel=1e-5, abs=1e-7)  # exact by construction: same float32 input and net
    assert abs(channels_not_swapped - expected) > 100 * abs(ours - expected) + 1e-4, 'test cannot see BGR vs RGB'


def test_identical_images_score_zero_and_crop_border_crops_both():
    img, img2 = colour_images(size=40)
    # Exact by construction: identical features, and the crop precedes the same computation.
    assert calculate_lpips(img, img, random_weights=True, device='cpu') == pytest.approx(0, abs=1e-7)
    cropped = calculate_lpips(img[4:-4, 4:-4], img2[4:-4, 4:-4], random_weights=True, device='cpu')
    assert calculate_lpips(img, img2, crop_border=4, random_weights=True, device='cpu') == pytest.approx(cropped)
    assert calculate_lpips(img, img2, random_weights=True, device='cpu') != pytest.approx(cropped)


def test_network_is_built_once_per_trunk_weights_and_device(monkeypatch):
    built = []
    build = lpips.LPIPS

    def counting_build(*args, **kwargs):
        built.append(kwargs['net'])
        return build(*args, **kwargs)

    monkeypatch.setattr(lpips, 'LPIPS', counting_build)
    lpips_metric._build_lpips.cache_clear()
    img, img2 = colour_images(size=32)
    first = lpips_metric.lpips_network('squeeze', random_weights=True, device='cpu')
    for _ in range(3):
        calculate_lpips(img, img2, net='squeeze', random_weights=True, device='cpu')
    assert built == ['squeeze']
    assert lpips_metric.lpips_network('squeeze', random_weights=True, device='cpu') is first


def test_missing_trunk_weights_raise_an_error_naming_file_url_and_folder(torch_home):
    img, img2 = colour_images(size=32)
    with pytest.raises(FileNotFoundError) as error:
        calculate_lpips(img, img2, device='cpu')
    message = str(error.value)
    assert ALEXNET in message and ALEXNET_URL in message and str(torch_home / 'hub' / 'checkpoints') in message
    assert '`weights`' in message and 'download: true' in message
    with pytest.raises(FileNotFoundError, match='no_such.pth'):
        calculate_lpips(img, img2, weights='no_such.pth', device='cpu')


def test_explicit_weights_loads_that_file_into_every_trunk_layer(alexnet_file):
    path, state_dict = alexnet_file
    trunk = lpips_metric.lpips_network('alex', weights=str(path), device='cpu').net
    assert {
        key: tuple(value.shape)
        for key, value in trunk.state_dict().items()
    } == {
        'slice1.0.weight': (64, 3, 11, 11),
        'slice1.0.bias': (64, ),
        'slice2.3.weight': (192, 64, 5, 5),
        'slice2.3.bias': (192, ),
        'slice3.6.weight': (384, 192, 3, 3),
        'slice3.6.bias': (384, ),
        'slice4.8.weight': (256, 384, 3, 3),
        'slice4.8.bias': (256, ),
        'slice5.10.weight': (256, 256, 3, 3),
        'slice5.10.bias': (256, )
    }
    for key, value in trunk.state_dict().items():
        assert torch.equal(value, state_dict['features.' + key.split('.', 1)[1]]), key


def test_download_fetches_the_trunk_into_torch_cache_only_when_asked(torch_home, alexnet_file, monkeypatch):
    fetched = []

    def fake_download(url, destination, hash_prefix=None, progress=True):
        fetched.append((url, destination))
        torch.save({k: v for k, v in alexnet_file[1].items() if k.startswith('features.')}, destination)

    monkeypatch.setattr(download_util, 'download_url_to_file', fake_download)  # what load_file_from_url calls
    with pytest.raises(FileNotFoundError):
        lpips_metric.lpips_network('alex', device='cpu')
    assert fetched == []
    trunk = lpips_metric.lpips_network('alex', download=True, device='cpu').net
    assert fetched == [(ALEXNET_URL, str(torch_home / 'hub' / 'checkpoints' / ALEXNET))]
    assert torch.equal(trunk.slice1[0].weight, alexnet_file[1]['features.0.weight'])


def test_lpips_loss_equals_the_lpips_package_and_passes_gradients_to_the_output(alexnet_file, torch_home):
    from basicsr.losses import build_loss
    path, _ = alexnet_file
    loss = build_loss({'type': 'LPIPSLoss', 'loss_weight': 0.5, 'weights': str(path)})
    reference = lpips.LPIPS(net='alex', version='0.1', pnet_rand=True, verbose=False)
    reference.net.load_state_dict(loss.lpips.net.state_dict())
    img, img2 = (rgb_tensor(i) for i in colour_images())
    pred = torch.cat([img, img2]).requires_grad_()
    target = torch.cat([img2, img2])
    value = loss(pred, target)
    expected = reference(torch.cat([img, img2]), target, normalize=True).mean()
    assert value.item() == pytest.approx(0.5 * expected.item(), rel=1e-6) and value.item() > 0  # the same operations
    value.backward()
    assert pred.grad.abs().sum() > 0 and all(p.grad is None for p in loss.parameters())
    assert not loss.train().training and not loss.lpips.training  # its dropout stays off


def test_lpips_loss_without_weights_names_the_file(torch_home):
    from basicsr.losses import build_loss
    with pytest.raises(FileNotFoundError, match=ALEXNET):
        build_loss({'type': 'LPIPSLoss'})


def test_an_unknown_option_is_named_not_ignored():
    img, img2 = colour_images(size=32)
    with pytest.raises(ValueError, match=r"unknown options \['weights_path'\]"):
        calculate_lpips(img, img2, weights_path='alexnet.pth', device='cpu')
    assert calculate_lpips(img, img, type='calculate_lpips', better='lower', random_weights=True, device='cpu') == 0
