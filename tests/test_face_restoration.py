"""Restorers: GPEN (tiny random network, weights loaded by path), oracle and identity."""
import pytest
import torch
from torch import nn

from metaf2n_plugin.archs.gpen_arch import GPEN
from metaf2n_plugin.faces import FacePairExtractor, GPENRestorer, IdentityRestorer, OracleRestorer
from tolerances import chain_bound, network_steps, rounding_bound

TINY = {'size': 32, 'channel_multiplier': 1, 'narrow': 1 / 16, 'style_dim': 32, 'n_mlp': 1}


@pytest.fixture(scope='module')
def tiny_gpen_file(tmp_path_factory):
    torch.manual_seed(0)
    arch = {k: v for k, v in TINY.items() if k != 'size'}
    path = tmp_path_factory.mktemp('weights') / 'tiny_gpen.pth'
    torch.save(GPEN(TINY['size'], **arch).state_dict(), path)
    return path


def gpen_difference_bound(restorer, faces, dtype):
    """Bound on the difference of two runs of ``restorer`` on ``faces`` whose GPEN (in ``dtype``) sums in other
    orders: twice the network's chain bound, halved by (y + 1) / 2, and the two runs' roundings of the float32
    output in [0, 1] (the + 1 and the cast)."""
    terms, magnitude = network_steps(restorer.net, faces.to(dtype) * 2 - 1)
    return chain_bound(dtype, terms, magnitude) + rounding_bound(torch.float32, terms=2, magnitude=1.0)


def test_gpen_batched_equals_one_by_one(tiny_gpen_file):
    faces = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    restorer = GPENRestorer(**TINY, weights=tiny_gpen_file, batch_size=2, device='cpu')
    batched = restorer(faces)
    restorer.batch_size = 1
    single = restorer(faces)
    assert batched.shape == (3, 3, 32, 32) and batched.dtype == torch.float32
    torch.testing.assert_close(batched, single, atol=gpen_difference_bound(restorer, faces, torch.float32), rtol=0)
    assert 0 <= batched.min() and batched.max() <= 1 and not batched.requires_grad
    assert batched.std() > 0.01  # a real output, not a constant
    # The batching itself, in float64: only the float32 output's roundings remain.
    restorer.net.double()
    single = restorer(faces.double())
    restorer.batch_size = 2
    torch.testing.assert_close(
        restorer(faces.double()), single, atol=gpen_difference_bound(restorer, faces, torch.float64), rtol=0)


def test_gpen_sees_minus_one_to_one_and_its_output_is_clamped(tiny_gpen_file):
    restorer = GPENRestorer(**TINY, weights=tiny_gpen_file, device='cpu')
    assert all(not p.requires_grad for p in restorer.net.parameters()) and not restorer.net.training
    faces = torch.rand(2, 3, 32, 32)
    restorer.net = nn.Identity()
    # (2x - 1 + 1) / 2 = x up to the roundings of - 1 and + 1 (2x and / 2 are exact)
    torch.testing.assert_close(restorer(faces), faces, atol=rounding_bound(torch.float32, terms=2), rtol=0)
    restorer.net = lambda x: x * 3  # out of range -> clamped to [-1, 1] before mapping back
    expected = ((faces * 2 - 1) * 3).clamp(-1, 1).add(1).div(2)  # the same float32 operations: exact
    torch.testing.assert_close(restorer(faces), expected, atol=0, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_gpen_runs_on_the_device_from_options(tiny_gpen_file):
    faces = torch.rand(3, 3, 32, 32)
    on_gpu = GPENRestorer(**TINY, weights=tiny_gpen_file, device='cuda')
    assert next(on_gpu.net.parameters()).is_cuda
    on_cpu = GPENRestorer(**TINY, weights=tiny_gpen_file, device='cpu')
    # Convolutions as float32 dot products: not cuDNN's (it may pick Winograd or FFT), nor TF32's 10-bit significands.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.backends.cudnn, 'enabled', False)
        patch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
        on_gpu_faces = on_gpu(faces)
    torch.testing.assert_close(
        on_gpu_faces, on_cpu(faces), atol=gpen_difference_bound(on_cpu, faces, torch.float32), rtol=0)


def test_missing_gpen_weights_name_file_url_and_place(tmp_path):
    extractor = FacePairExtractor.from_options({
        'source': 'landmarks',
        'restorer': {
            'type': 'gpen',
            'weights': str(tmp_path)
        }
    })
    with pytest.raises(FileNotFoundError) as err:
        extractor.restorer  # looked up when first needed: a run whose data brings its face pairs needs no GPEN
    message = str(err.value)
    assert 'GPEN-BFR-512.pth not found' in message
    assert 'https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/GPEN-BFR-512.pth' in message
    assert str(tmp_path / 'GPEN-BFR-512.pth') in message


def test_identity_and_oracle():
    faces, gt_faces = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert IdentityRestorer(8)(faces) is faces
    assert OracleRestorer(8)(faces, gt_faces) is gt_faces
    with pytest.raises(ValueError, match='oracle restorer needs the GT image'):
        OracleRestorer(8)(faces)


def test_gpen_restorer_defaults_to_the_released_architecture_of_its_size(tmp_path):
    from metaf2n_plugin.faces.restoration import GPEN_RELEASES
    with torch.device('meta'):
        state = GPEN(256, **GPEN_RELEASES[256]).state_dict()
    torch.save({k: torch.zeros(v.shape) for k, v in state.items()}, tmp_path / 'GPEN-BFR-256.pth')
    restorer = GPENRestorer(size=256, weights=str(tmp_path))  # would not load with the 512 model's widths
    assert restorer.net.generator.to_rgbs[0].conv.weight.shape == state['generator.to_rgbs.0.conv.weight'].shape


def test_weights_may_be_any_existing_file(tmp_path):
    from metaf2n_plugin.weights import locate_weights
    path = tmp_path / 'my_gpen.pt'
    path.write_bytes(b'x')
    assert locate_weights('GPEN-BFR-512.pth', 'https://example.invalid/x', 'GPEN', str(path)) == str(path)
    assert locate_weights('my_gpen.pt', 'https://example.invalid/x', 'GPEN', str(tmp_path)) == str(path)
