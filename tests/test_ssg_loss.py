"""SSG loss: equal to an explicit patch loop, exact gradients, natural masks, named bad arguments.

BasicSR's SRModel training with it: tests/test_basicsr_runners.py (docs/basicsr.md's block).
"""
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from metaf2n_plugin.losses.ssg_loss import SSGLoss, laplacian_mask, patch_distances, self_similarity_graph
from tolerances import gamma, rounding_bound


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


def plane_total(img, patch_size, search_size):
    """The largest total, over one image and one window offset, of the squared differences of the reflect-padded
    planes that ``_distances`` sums by running sums: the magnitude of those running sums."""
    r_search = search_size // 2
    reach = r_search + patch_size // 2
    padded = F.pad(img.double(), (reach, ) * 4, mode='reflect')
    hp, wp = img.size(2) + patch_size - 1, img.size(3) + patch_size - 1
    centre = padded[:, :, r_search:r_search + hp, r_search:r_search + wp]
    return max(((centre - padded[:, :, dy:dy + hp, dx:dx + wp])**2).sum(dim=(1, 2, 3)).max().item()
               for dy in range(search_size) for dx in range(search_size))


def logit_error(dtype, img, patch_size, search_size, h, naive=False):
    """Bound on the error of any logit -d/h, d the mean squared patch difference, as computed in ``dtype``.

    Ours: each distance is the difference of two column running sums (Hp terms) of box sums, each the difference of
    two row running sums (Wp terms) of C-channel squared differences, all of magnitude <= S (:func:`plane_total`):
    2 (γ_Hp + 2 γ_(Wp+2C+1)) S + u d <= γ_(2Hp+4Wp+8C+7) S; the scaling and softmax's max subtraction: 4 more
    roundings of logits of magnitude <= S/(h C P²). The loop: C·P² squares of one patch, two divisions.
    """
    channels, (height, width) = img.size(1), img.shape[-2:]
    hp, wp = height + patch_size - 1, width + patch_size - 1
    terms = channels * patch_size**2 + 4 if naive else 2 * hp + 4 * wp + 8 * channels + 11
    return rounding_bound(
        dtype, terms, magnitude=plane_total(img, patch_size, search_size) / (h * channels * patch_size**2))


def graph_error(dtype, logit_err, columns):
    """Relative error bound of each S̄(p, q) given a logit error bound: a logit error δ changes each softmax output
    by at most a factor exp(±2δ); the normalisation (an exp within 1 ulp, a sum of ``columns`` terms, a reciprocal
    and a product) by γ_(Q+4)."""
    return math.exp(2 * logit_err) * (1 + gamma(dtype, columns + 4)) - 1


def assert_relatively_close(actual, expected, rel_actual, rel_expected):
    """|actual - expected| <= (ε_a + ε_e) S̄, S̄ the exact value, each side within its relative bound of it."""
    rel = (rel_actual + rel_expected) / (1 - rel_expected)
    assert torch.all((actual - expected).abs() <= rel * expected), ((actual - expected).abs() / expected).max()


def gradient_error(dtype, img, patch_size, search_size, h, rows, mass, mass_error, naive=False):
    """Bound on the error, in ``dtype``, of d/d img of a function of the graph whose gradient with respect to the
    logits has Σ|.| <= ``mass`` and is computed within Σ|error| <= ``mass_error``.

    A logit's gradient reaches a pixel at <= 8 places (twice per axis in the reflect-padded centre and offset patches),
    each times 2 (centre - other)/(h C P²): an amplification <= 16 R/(h C P²), R the image's range. Ours recomputes each
    offset's box sums as differences of running sums (Hp rows, then Wp + P columns, of magnitude <= that offset's share
    of ``mass``) and adds 2Q offsets and 4 reflections into a pixel: γ_(2(Hp+Wp+2P+Q+4)). The loop's autograd adds the
    M (Q + 1) patch gradients of a pixel, 4 reflections and a few products: γ_(M(Q+1)+Q+12).
    """
    channels, (height, width) = img.size(1), img.shape[-2:]
    hp, wp, columns = height + patch_size - 1, width + patch_size - 1, search_size**2
    terms = rows * (columns + 1) + columns + 12 if naive else 2 * (hp + wp + 2 * patch_size + columns + 4)
    gain = 16 * (img.max() - img.min()).item() / (h * channels * patch_size**2)
    return gain * (rounding_bound(dtype, terms, magnitude=mass) + mass_error)


@pytest.mark.parametrize('patch_size, search_size, h', [(3, 5, 0.01), (9, 25, 0.004), (5, 3, 0.02)])
def test_graph_equals_the_explicit_patch_loop(patch_size, search_size, h):
    img = smooth_images(2, 3, 30, 27).float().double()  # float32 values: the float32 run sees the same image
    mask = random_mask(2, 30, 27, count=7)
    mask[0, 0, 0, 0] = mask[1, 0, -1, -1] = True  # corners: reflection on two sides
    expected = naive_graph(img, mask, patch_size, search_size, h)
    ours = self_similarity_graph(img, mask, patch_size, search_size, h)
    ours32 = self_similarity_graph(img.float(), mask, patch_size, search_size, h)
    rows, columns = int(mask.sum()), search_size**2
    assert rows >= 8 and ours32.shape == (rows, columns) and ours32.dtype == torch.float32
    assert ours.shape == (rows, columns) and ours.dtype == torch.float64
    errors = {
        (dtype, naive): graph_error(dtype, logit_error(dtype, img, patch_size, search_size, h, naive), columns)
        for dtype, naive in ((torch.float64, True), (torch.float64, False), (torch.float32, False))
    }
    # The algorithm, in float64: every S̄ within the float64 bounds of both computations of the loop's.
    assert_relatively_close(ours, expected, errors[torch.float64, False], errors[torch.float64, True])
    # Rows sum to 1: the normalisation's error (γ_(Q+4)) and this sum's (Q terms).
    assert (ours.sum(dim=1) - 1).abs().max() <= rounding_bound(torch.float64, terms=2 * columns + 4)
    # float32 behaviour: within its own (looser) bound of float64, and rows summing to 1 in float32.
    assert_relatively_close(ours32.double(), ours, errors[torch.float32, False], errors[torch.float64, False])
    assert (ours32.double().sum(dim=1) - 1).abs().max() <= rounding_bound(torch.float32, terms=2 * columns + 4)


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
        x = img.clone().requires_grad_()
        (graph(x, mask, 3, 5, 0.01) * probe).sum().backward()
        grads.append(x.grad)
    # In float64. d/d logits of Σ probe·S̄ is S̄ (probe - <S̄, probe>): Σ|.| <= 2 A, A = Σ S̄ |probe|; a relative error
    # ε of S̄ and the softmax backward (Q-term sums and a few products) move it by <= A (ε (3 + ε) + 2 γ_(Q+6)).
    weight = (naive_graph(img, mask, 3, 5, 0.01) * probe.abs()).sum().item()
    bound = 0
    for naive in (True, False):
        eps = graph_error(torch.float64, logit_error(torch.float64, img, 3, 5, 0.01, naive), 25)
        mass_error = weight * (eps * (3 + eps) + 2 * gamma(torch.float64, 25 + 6))
        bound += gradient_error(torch.float64, img, 3, 5, 0.01, 6, 2 * weight, mass_error, naive)
    assert grads[1].abs().max() > 1e-3
    assert (grads[1] - grads[0]).abs().max() <= bound


def test_gradcheck_float64():
    x = smooth_images(1, 2, 6, 7).requires_grad_()
    mask = random_mask(1, 6, 7, count=4)
    assert torch.autograd.gradcheck(lambda img: self_similarity_graph(img, mask, 3, 5, 0.05), (x, ))


def loss_error(dtype, pred, target, graphs, kl_weight, naive=False):
    """Bounds on the errors, in ``dtype``, of the loss of :func:`test_loss_value_and_gradient_follow_the_definition`
    (weight 2, patch 3, window 7, h 0.01) and of its gradient with respect to ``pred``: ``(loss bound, gradient
    bound, ε)``, ε the larger relative error bound of the two graphs' S̄; ``graphs`` the loop's (S̄, T̄).

    Loss, per row: (1/Q) Σ |S̄ - T̄| moves by <= (ε_S + ε_T)/Q; Σ T̄ (log T̄ - log S̄) by <= ε_T Σ T̄ |log T̄ - log S̄|
    + 2 λ, λ <= ε/(1 - ε) + 2δ + γ_(Q+5) (2L + log Q + 1) bounding a log-softmax's error (logits <= L); the means'
    sums: γ_(MQ+M+Q+4) of the magnitudes. Gradient: w/M [S̄ (sign - <S̄, sign>)/Q + kl (S̄ - T̄)] per row, Σ|.| <= w
    (2/Q + 2 kl), moved by <= w [ε_S (3 + ε_S)/Q + kl (ε_S + ε_T)] and γ_(Q+8) of 2 Σ|.|; then :func:`gradient_error`.
    """
    (graph, target_graph), weight, (patch_size, search_size, h) = graphs, 2.0, (3, 7, 0.01)
    rows, columns = graph.shape
    deltas = [logit_error(dtype, img, patch_size, search_size, h, naive) for img in (pred, target)]
    eps_pred, eps_target = (graph_error(dtype, delta, columns) for delta in deltas)
    logits = max(plane_total(img, patch_size, search_size) for img in (pred, target)) / (h * 3 * patch_size**2)
    log_error = sum(eps / (1 - eps) + 2 * delta for eps, delta in zip((eps_pred, eps_target), deltas))
    log_error += rounding_bound(dtype, columns + 5, magnitude=2 * (2 * logits + math.log(columns) + 1))
    l1 = (graph - target_graph).abs().mean().item()
    kl_abs = (target_graph * (target_graph.log() - graph.log()).abs()).sum(dim=1).mean().item()
    loss = weight * ((eps_pred + eps_target) / columns + kl_weight * (eps_target * kl_abs + log_error))
    loss += rounding_bound(dtype, rows * columns + rows + columns + 4, magnitude=weight * (l1 + kl_weight * kl_abs))
    mass = weight * (2 / columns + 2 * kl_weight)
    mass_error = weight * (eps_pred * (3 + eps_pred) / columns + kl_weight * (eps_pred + eps_target))
    mass_error += rounding_bound(dtype, columns + 8, magnitude=2 * mass)
    gradient = gradient_error(dtype, pred, patch_size, search_size, h, rows, mass, mass_error, naive)
    return loss, gradient, max(eps_pred, eps_target)


@pytest.mark.parametrize('kl_weight', [0.0, 0.5])
def test_loss_value_and_gradient_follow_the_definition(kl_weight):
    target = smooth_images(2, 3, 20, 20, seed=4).float().double()  # float32 values: float32 sees the same images
    pred = (target + 0.05 * smooth_images(2, 3, 20, 20, seed=5)).clamp(0, 1).float().double()
    mask = laplacian_mask(target, threshold=2)
    assert 0 < mask.sum() < mask.numel()
    loss_fn = SSGLoss(loss_weight=2.0, patch_size=3, search_size=7, h=0.01, threshold=2, kl_weight=kl_weight)
    x = pred.clone().requires_grad_()
    loss = loss_fn(x, target)
    loss.backward()
    ref = pred.clone().requires_grad_()
    g_ref, g_target = naive_graph(ref, mask, 3, 7, 0.01), naive_graph(target, mask, 3, 7, 0.01)
    expected = 2.0 * ((g_ref - g_target).abs().mean() + kl_weight * (g_target *
                                                                     (g_target.log() - g_ref.log())).sum(1).mean())
    expected.backward()
    g_pred = g_ref.detach()
    # The algorithm, in float64, against the definition, within both computations' bounds.
    ours_loss, ours_gradient, ours_eps = loss_error(torch.float64, pred, target, (g_pred, g_target), kl_weight)
    loop_loss, loop_gradient, loop_eps = loss_error(
        torch.float64, pred, target, (g_pred, g_target), kl_weight, naive=True)
    # No |S̄ - T̄| is within rounding of 0, so both computations take the exact signs.
    assert torch.all((g_pred - g_target).abs() > 2 * (ours_eps + loop_eps) * (g_pred + g_target))
    assert loss.dtype == torch.float64 and abs(loss.item() - expected.item()) <= ours_loss + loop_loss
    assert (x.grad - ref.grad).abs().max() <= ours_gradient + loop_gradient
    assert ref.grad.abs().max() > 1e3 * (ours_gradient + loop_gradient)
    # float32 behaviour: the loss within its own bound of float64's. (Its gradient's worst-case bound exceeds the
    # gradient itself, so the gradient is checked in float64 only.)
    loss32 = loss_fn(pred.float(), target.float())
    assert loss32.dtype == torch.float32
    assert abs(loss32.item() - loss.item()) <= loss_error(torch.float32, pred, target,
                                                          (g_pred, g_target), kl_weight)[0] + ours_loss


def test_identical_images_give_exactly_zero():
    img = photo()[..., 100:164, 200:264].float()
    assert SSGLoss()(img, img).item() == 0


def test_reductions_and_weights():
    target = photo()[..., 180:228, 200:248].float()
    pred = (target + 0.03 * torch.randn_like(target, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    mask = laplacian_mask(target)
    per_pixel = SSGLoss(reduction='none')(pred, target)
    assert per_pixel.shape == (1, 1, 48, 48) and torch.all(per_pixel[~mask] == 0) and torch.all(per_pixel[mask] > 0)
    # The same float32 rows (>= 0), reduced in other orders: relative bounds of sums of M masked or H W pixels.
    rows, pixels = int(mask.sum()), 48 * 48
    mean = SSGLoss()(pred, target)
    mean_rel = 2 * gamma(torch.float32, rows + 2)  # two M-term sums, each divided by M
    assert mean.item() == pytest.approx(per_pixel[mask].mean().item(), rel=mean_rel)
    sum_rel = gamma(torch.float32, rows + pixels + 1)
    assert SSGLoss(reduction='sum')(pred, target).item() == pytest.approx(per_pixel.sum().item(), rel=sum_rel)
    weight = torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    weighted = SSGLoss()(pred, target, weight=weight)
    expected = (per_pixel * weight).sum() / weight[mask].sum()
    weighted_rel = gamma(torch.float32, 3 * rows + pixels + 5)  # weighted M- and H W-term sums, weight sums, division
    assert weighted.item() == pytest.approx(expected.item(), rel=weighted_rel)


def test_given_mask_replaces_the_laplacian_one():
    target = photo()[..., 180:228, 200:248].float()
    pred = target.flip(-1)
    y, x = laplacian_mask(target)[0, 0].nonzero()[0].tolist()
    only = torch.zeros(1, 1, 48, 48, dtype=torch.bool)
    only[0, 0, y, x] = True
    full = SSGLoss(reduction='none')(pred, target)
    single = SSGLoss(reduction='none')(pred, target, mask=only)
    # The same logits (running sums over whole planes, read at the pixel); the softmax normalisations (γ_(Q+3) of S̄
    # and T̄, each summing to 1) and the row's mean (γ_(Q+1)) may run in other orders, in each of the two runs.
    row, columns = full[0, 0, y, x].item(), 25**2
    bound = 2 * rounding_bound(torch.float32, terms=2 * columns + 4, magnitude=2 / columns + row)
    assert single[only].item() == pytest.approx(row, rel=0, abs=bound)
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
    assert autocast.item() == pytest.approx(reference.item(), rel=1e-6)  # exact by construction: same float32 ops


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
