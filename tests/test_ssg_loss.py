"""SSG loss: equal to an explicit patch loop, exact gradients, natural masks, named bad arguments.

BasicSR's SRModel training with it: tests/test_basicsr_runners.py (the README's block).
"""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from metaf2n_plugin.losses.ssg_loss import SSGLoss, laplacian_mask, patch_distances, self_similarity_graph


def naive_graph(img, mask, patch_size, search_size, h):
    """The definition, one pixel and one window position at a time (reflect-padded full patches)."""
    r_patch, r_search = patch_size // 2, search_size // 2
    reach = r_patch + r_search
    padded = F.pad(img, (reach, ) * 4, mode='reflect')
    rows = []
    for n, y, x in mask[:, 0].nonzero().tolist():
        cy, cx = y + reach, x + reach
        centre = padded[n, :, cy - r_patch:cy + r_patch + 1, cx - r_patch:cx + r_patch + 1]
        dists = []
        for dy in range(-r_search, r_search + 1):
            for dx in range(-r_search, r_search + 1):
                other = padded[n, :, cy + dy - r_patch:cy + dy + r_patch + 1, cx + dx - r_patch:cx + dx + r_patch + 1]
                dists.append(((centre - other)**2).sum() / (img.size(1) * patch_size**2))
        sim = torch.exp(-torch.stack(dists) / h)
        rows.append(sim / sim.sum())
    return torch.stack(rows)


def smooth_images(n, c, height, width, seed=0, dtype=torch.float64):
    """Low-frequency random images in [0, 1]: patches resemble each other, so graphs are not one-hot."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, c, height // 4 + 2, width // 4 + 2, generator=gen, dtype=dtype)
    return F.interpolate(coarse, size=(height, width), mode='bilinear', align_corners=False)


def random_mask(n, height, width, count, seed=1):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n * height * width, dtype=torch.bool)
    mask[torch.randperm(n * height * width, generator=gen)[:count]] = True
    return mask.view(n, 1, height, width)


def photo(name='astronaut'):
    """(1, 3, H, W) RGB in [0, 1] from scikit-image's sample data."""
    return torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None].double() / 255


@pytest.mark.parametrize('patch_size, search_size, h', [(3, 5, 0.01), (9, 25, 0.004), (5, 3, 0.02)])
def test_graph_equals_the_explicit_patch_loop(patch_size, search_size, h):
    img = smooth_images(2, 3, 30, 27)
    mask = random_mask(2, 30, 27, count=7)
    mask[0, 0, 0, 0] = mask[1, 0, -1, -1] = True  # corners: reflection on two sides
    expected = naive_graph(img, mask, patch_size, search_size, h)
    ours = self_similarity_graph(img.float(), mask, patch_size, search_size, h)
    rows = int(mask.sum())
    assert rows >= 8 and ours.shape == (rows, search_size**2) and ours.dtype == torch.float32
    assert (ours.double() - expected).abs().max() <= 1e-5
    torch.testing.assert_close(ours.double().sum(dim=1), torch.ones(rows, dtype=torch.float64))


@pytest.mark.parametrize('per_block', [1, 3, 7, 14, 49])  # offsets per block: parts of rows, rows, all
def test_offset_blocks_do_not_change_values_or_gradients(per_block):
    img, mask = smooth_images(1, 3, 24, 24), random_mask(1, 24, 24, count=20)
    plane_bytes = 8 * (24 + 3) * (24 + 3)  # fp64, patch 3
    probe = torch.rand(20, 49, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    results = []
    for step_bytes in (per_block * plane_bytes, 1 << 30):
        x = img.clone().requires_grad_()
        dist = patch_distances(x, mask, 3, 7, step_bytes=step_bytes)
        (dist * probe).sum().backward()
        results.append((dist, x.grad))
    torch.testing.assert_close(results[0], results[1])


def test_gradients_equal_those_of_the_explicit_patch_loop():
    img = smooth_images(1, 3, 14, 15)
    mask = random_mask(1, 14, 15, count=6)
    probe = torch.rand(6, 25, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grads = []
    for graph in (naive_graph, self_similarity_graph):
        x = img.float().clone().requires_grad_()
        (graph(x, mask, 3, 5, 0.01) * probe.float()).sum().backward()
        grads.append(x.grad.double())
    assert grads[1].abs().max() > 1e-3
    assert (grads[1] - grads[0]).abs().max() <= 1e-4


def test_gradcheck_float64():
    x = smooth_images(1, 2, 6, 7).requires_grad_()
    mask = random_mask(1, 6, 7, count=4)
    assert torch.autograd.gradcheck(lambda img: self_similarity_graph(img, mask, 3, 5, 0.05), (x, ))


@pytest.mark.parametrize('kl_weight', [0.0, 0.5])
def test_loss_value_and_gradient_follow_the_definition(kl_weight):
    target = smooth_images(2, 3, 20, 20, seed=4)
    pred = (target + 0.05 * smooth_images(2, 3, 20, 20, seed=5)).clamp(0, 1)
    mask = laplacian_mask(target, threshold=2)
    assert 0 < mask.sum() < mask.numel()
    g_pred, g_target = naive_graph(pred, mask, 3, 7, 0.01), naive_graph(target, mask, 3, 7, 0.01)
    kl = (g_target * (g_target.log() - g_pred.log())).sum(dim=1).mean()
    expected = 2.0 * ((g_pred - g_target).abs().mean() + kl_weight * kl)
    loss_fn = SSGLoss(loss_weight=2.0, patch_size=3, search_size=7, h=0.01, threshold=2, kl_weight=kl_weight)
    x = pred.float().clone().requires_grad_()
    loss = loss_fn(x, target.float())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    loss.backward()
    ref = pred.clone().requires_grad_()
    g_ref = naive_graph(ref, mask, 3, 7, 0.01)
    kl_ref = (g_target * (g_target.log() - g_ref.log())).sum(dim=1).mean()
    (2.0 * ((g_ref - g_target).abs().mean() + kl_weight * kl_ref)).backward()
    assert (x.grad.double() - ref.grad).abs().max() <= 1e-4 * ref.grad.abs().max()


def test_identical_images_give_exactly_zero():
    img = photo()[..., 100:164, 200:264].float()
    assert SSGLoss()(img, img).item() == 0


def test_reductions_and_weights():
    target = photo()[..., 180:228, 200:248].float()
    pred = (target + 0.03 * torch.randn_like(target, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    mask = laplacian_mask(target)
    per_pixel = SSGLoss(reduction='none')(pred, target)
    assert per_pixel.shape == (1, 1, 48, 48) and torch.all(per_pixel[~mask] == 0) and torch.all(per_pixel[mask] > 0)
    mean = SSGLoss()(pred, target)
    assert mean.item() == pytest.approx(per_pixel[mask].mean().item(), rel=1e-5)
    assert SSGLoss(reduction='sum')(pred, target).item() == pytest.approx(per_pixel.sum().item(), rel=1e-5)
    weight = torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    weighted = SSGLoss()(pred, target, weight=weight)
    expected = (per_pixel * weight).sum() / weight[mask].sum()
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-5)


def test_given_mask_replaces_the_laplacian_one():
    target = photo()[..., 180:228, 200:248].float()
    pred = target.flip(-1)
    y, x = laplacian_mask(target)[0, 0].nonzero()[0].tolist()
    only = torch.zeros(1, 1, 48, 48, dtype=torch.bool)
    only[0, 0, y, x] = True
    full = SSGLoss(reduction='none')(pred, target)
    single = SSGLoss(reduction='none')(pred, target, mask=only)
    assert single[only].item() == pytest.approx(full[0, 0, y, x].item(), rel=1e-6)
    assert torch.count_nonzero(single) == 1


def test_empty_mask_gives_zero_and_zero_gradient():
    pred = torch.full((2, 3, 32, 32), 0.5, requires_grad=True)
    target = torch.full((2, 3, 32, 32), 0.25)  # flat: no Laplacian response
    for reduction in ('mean', 'sum'):
        loss = SSGLoss(reduction=reduction)(pred, target)
        loss.backward()
        assert loss.item() == 0 and torch.count_nonzero(pred.grad) == 0


def test_autocast_keeps_distances_in_float32():
    target = photo()[..., 180:228, 200:248].float()
    pred = (target + 0.03 * torch.randn_like(target, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    reference = SSGLoss()(pred, target)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert SSGLoss()(pred.bfloat16(), target.bfloat16()).dtype == torch.float32
        autocast = SSGLoss()(pred, target)
    assert autocast.item() == pytest.approx(reference.item(), rel=1e-6)


def test_laplacian_mask_equals_opencv_on_a_photo():
    img = photo()
    gray8 = np.round(
        255 * (img[0] * torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)[:, None, None]).sum(0).numpy()).astype(
            np.uint8)
    expected = cv2.Laplacian(gray8, cv2.CV_8U, ksize=1) > 20  # ksize 1: the 4-neighbour kernel, reflect-101
    mask = laplacian_mask(img, threshold=20)
    assert mask.shape == (1, 1, 512, 512) and np.array_equal(mask[0, 0].numpy(), expected)
    assert 0.05 <= mask.float().mean().item() <= 0.15  # SSL: 8-13 % of a natural image


def test_mask_stride_keeps_the_grid_subset():
    img = photo()[..., :96, :96]
    full, strided = laplacian_mask(img), laplacian_mask(img, stride=3)
    assert torch.equal(strided[..., ::3, ::3], full[..., ::3, ::3])
    strided[..., ::3, ::3] = False
    assert not strided.any()


def test_bad_arguments_are_named():
    img = torch.rand(1, 3, 20, 20)
    with pytest.raises(ValueError, match='larger than 16 px'):
        SSGLoss()(img[..., :16, :], img[..., :16, :])
    with pytest.raises(ValueError, match='must be odd'):
        patch_distances(img, torch.ones(1, 1, 20, 20, dtype=torch.bool), patch_size=4, search_size=5)
    with pytest.raises(ValueError, match='differ'):
        SSGLoss()(img, img[..., :19])


@pytest.mark.parametrize('option, value, allowed',
                         [('loss_weight', -1, 'a number >= 0'), ('patch_size', 4, 'an odd integer >= 1'),
                          ('search_size', 24, 'an odd'), ('h', 0, 'a number > 0'), ('h', -0.004, 'a number > 0'),
                          ('mask_stride', 0, 'an integer >= 1'),
                          ('threshold', 300, r'a Laplacian response in \[0, 255\]'),
                          ('kl_weight', -0.5, 'a number >= 0'), ('reduction', 'avg', "'none'")])
def test_options_are_checked_at_construction_with_their_allowed_values(option, value, allowed):
    with pytest.raises(ValueError, match=f'SSGLoss option {option} must be {allowed}.*got {value!r}'):
        SSGLoss(**{option: value})


def test_images_in_0_255_and_unbatched_images_are_named():
    img = torch.rand(1, 3, 20, 20)
    with pytest.raises(ValueError, match=r'images in \[0, 1\].*reaches 2[0-9.]+: divide \[0, 255\] images by 255'):
        SSGLoss()(img * 255, img * 255)
    with pytest.raises(
            ValueError, match=r'\(N, C, H, W\) batches, got a 3-D pred \(3, 20, 20\); add the batch dimension'):
        SSGLoss()(img[0], img[0])
