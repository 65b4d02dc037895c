"""Self-similarity graph (SSG) loss (after SSL, Chen et al., ACM MM 2024) and its Laplacian mask.

Definition, cost and differences from SSL's code: docs/ssg.md. Distances are computed per window
offset from one squared-difference image and box sums, read at the masked pixels only; the backward passes are
hand-written and recompute each offset block instead of storing it.
"""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from torch.nn import functional as F

_LAPLACIAN = torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]])
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, on RGB
ROW_BLOCK = 4096  # graph rows compared at a time


@torch.no_grad()
def laplacian_mask(img, threshold=20, stride=1):
    """Edge/texture pixels: (N, 3, H, W) RGB or (N, 1, H, W) gray in [0, 1], H, W >= 2 -> (N, 1, H, W) bool.

    The 8-bit luma ``round(255 * (0.299 R + 0.587 G + 0.114 B))`` is filtered with the 3×3 Laplacian (reflect-101
    borders, OpenCV's default), saturated to [0, 255] as in 8-bit OpenCV, and kept where > ``threshold``; with
    ``stride`` > 1 only pixels with ``y % stride == 0 and x % stride == 0``. Other channel counts: ValueError.
    """
    img = img.detach().double()
    if img.size(1) == 3:
        img = sum(w * img[:, c:c + 1] for c, w in enumerate(_LUMA))
    elif img.size(1) != 1:
        raise ValueError(f'laplacian_mask needs 1 or 3 channels, got {img.size(1)}')
    luma = torch.round(255 * img)
    response = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode='reflect'), _LAPLACIAN.to(luma).view(1, 1, 3, 3))
    mask = response.clamp(0, 255) > threshold
    if stride > 1:
        grid = torch.zeros_like(mask)
        grid[..., ::stride, ::stride] = True
        mask &= grid
    return mask


def self_similarity_graph(img, mask, patch_size=9, search_size=25, h=0.004):
    """Rows S̄(p, ·) of the self-similarity graph of ``img`` at the pixels p of ``mask``.

    Args: img (N, C, H, W) in [0, 1] with H, W > search_size // 2 + patch_size // 2; mask (N, 1, H, W) bool;
    patch_size, search_size odd (else ValueError); h the bandwidth of ``exp(-d / h)``.
    Returns (M, search_size²), M = mask.sum(), rows summing to 1: row m is the m-th masked pixel in (n, y, x)
    order, column ``(dy + r) * search_size + (dx + r)`` (r = search_size // 2) the offset (dy, dx). fp32 (fp64
    for fp64 input), also under autocast.
    """
    return torch.softmax(patch_distances(img, mask, patch_size, search_size, scale=-1 / h), dim=1)


def patch_distances(img, mask, patch_size=9, search_size=25, scale=1.0, step_bytes=8 << 20):
    """``scale * d(p, q)``, (M, search_size²), laid out as :func:`self_similarity_graph`'s rows.

    Offsets go in blocks whose temporary planes take about ``step_bytes`` each.
    """
    with torch.autocast(img.device.type, enabled=False):
        (padded, ), where, blocks = _prepare((img, ), mask, patch_size, search_size, step_bytes)
        return _PatchDistances.apply(padded, where, blocks, patch_size, search_size,
                                     scale / (img.size(1) * patch_size**2))


def _prepare(images, mask, patch_size, search_size, step_bytes=8 << 20):
    """``(padded, where, blocks)``: the reflect-padded fp32 (fp64) images, the masked (n, y, x), the offset blocks."""
    img = images[0]
    if patch_size % 2 == 0 or search_size % 2 == 0:
        raise ValueError(f'patch_size and search_size must be odd, got {patch_size} and {search_size}')
    if mask.shape != (img.size(0), 1, *img.shape[2:]):
        raise ValueError(f'mask must be (N, 1, H, W) = {(img.size(0), 1, *img.shape[2:])}, got {tuple(mask.shape)}')
    height, width = img.shape[2:]
    reach = search_size // 2 + patch_size // 2
    if min(height, width) <= reach:
        raise ValueError(f'the SSG needs images larger than {reach} px on each side, got {height}x{width}')
    dtype = torch.float64 if img.dtype == torch.float64 else torch.float32
    padded = [F.pad(image.to(dtype), (reach, ) * 4, mode='reflect') for image in images]
    plane_bytes = padded[0].element_size() * img.size(0) * (height + patch_size) * (width + patch_size)
    blocks = _offset_blocks(search_size, max(1, step_bytes // plane_bytes))
    return padded, mask[:, 0].nonzero(as_tuple=True), blocks  # where: (n, y, x), row-major


def _offset_blocks(search_size, per_block):
    """Offset blocks (dy0, dy1, dx0, dx1), each a contiguous range of graph columns."""
    if per_block >= search_size:
        rows = per_block // search_size
        return [(dy, min(dy + rows, search_size), 0, search_size) for dy in range(0, search_size, rows)]
    return [(dy, dy + 1, dx, min(dx + per_block, search_size)) for dy in range(search_size)
            for dx in range(0, search_size, per_block)]


class _PatchDistances(torch.autograd.Function):
    """Scaled patch distances of masked pixels; backward, the adjoint, recomputes each offset block's planes."""

    @staticmethod
    def forward(ctx, padded, where, blocks, patch_size, search_size, scale):
        ctx.save_for_backward(padded, *where)
        ctx.blocks, ctx.patch_size, ctx.search_size, ctx.scale = blocks, patch_size, search_size, scale
        return _distances(padded, where, blocks, patch_size, search_size, scale)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        padded, n, y, x = ctx.saved_tensors
        with torch.autocast(padded.device.type, enabled=False):
            return _PatchDistances._backward(ctx, padded, (n, y, x), grad_out), None, None, None, None, None

    @staticmethod
    def _backward(ctx, padded, where, grad_out):
        n, y, x = where
        patch_size, r_search = ctx.patch_size, ctx.search_size // 2
        grad = torch.zeros_like(padded)
        first = 0
        for block in ctx.blocks:
            centre, others = _block_views(padded, block, patch_size, ctx.search_size)
            k_y, k_x, hp, wp = others.shape[2:]
            g = grad_out[:, first:first + k_y * k_x].reshape(-1, k_y, k_x) * ctx.scale
            first += k_y * k_x
            grad_running = padded.new_zeros(padded.size(0), k_y, k_x, hp + 1, wp - patch_size + 1)
            grad_running[n, :, :, y + patch_size, x] = g
            grad_running[n, :, :, y, x] -= g
            # Each column of grad_running sums to zero, so the suffix sums are minus the prefix sums.
            grad_box = -grad_running.cumsum(-2)[..., :-1, :]  # (N, Ky, Kx, Hp, W)
            grad_sq = _box_sum_last(F.pad(grad_box, (patch_size - 1, patch_size - 1)), patch_size)  # (..., Hp, Wp)
            top, left = block[0], block[2]
            for c in range(padded.size(1)):
                pull = (centre[:, c] - others[:, c]).mul_(grad_sq).mul_(2)  # d loss / d centre, per offset
                grad[:, c, r_search:r_search + hp, r_search:r_search + wp] += pull.sum(dim=(1, 2))
                for i in range(k_y):
                    for j in range(k_x):
                        grad[:, c, top + i:top + i + hp, left + j:left + j + wp] -= pull[:, i, j]
        return grad


def _distances(padded, where, blocks, patch_size, search_size, scale):
    """``scale * d(p, q)``: (M, search_size²), each offset block written into its columns."""
    n, y, x = where
    out = padded.new_empty(len(n), search_size**2)
    first = 0
    for block in blocks:
        centre, others = _block_views(padded, block, patch_size, search_size)
        sq_diff = (centre[:, 0] - others[:, 0]).square_()
        for c in range(1, padded.size(1)):
            diff = centre[:, c] - others[:, c]
            sq_diff.addcmul_(diff, diff)
        running_y = F.pad(_box_sum_last(sq_diff, patch_size).cumsum(-2), (0, 0, 1, 0))  # (N, Ky, Kx, Hp+1, W)
        dist = running_y[n, :, :, y + patch_size, x] - running_y[n, :, :, y, x]  # (M, Ky, Kx)
        columns = (block[1] - block[0]) * (block[3] - block[2])
        torch.mul(dist.flatten(1), scale, out=out[:, first:first + columns])
        first += columns
    return out


class _GraphRowLosses(torch.autograd.Function):
    """Per-row losses of the SR vs HR graphs, differentiable in SR only; keeps just d rows / d SR logits."""

    @staticmethod
    def forward(ctx, padded_pred, padded_target, where, blocks, patch_size, search_size, scale, kl_weight):
        logits = _distances(padded_pred, where, blocks, patch_size, search_size, scale)
        target_logits = _distances(padded_target, where, blocks, patch_size, search_size, scale)
        rows = logits.new_empty(len(logits))
        for start in range(0, len(logits), ROW_BLOCK):
            block = slice(start, start + ROW_BLOCK)
            rows[block] = _row_losses_and_gradients(logits[block], target_logits[block], kl_weight)
        ctx.save_for_backward(padded_pred, logits, *where)  # logits now hold d rows / d logits
        ctx.blocks, ctx.patch_size, ctx.search_size, ctx.scale = blocks, patch_size, search_size, scale
        return rows

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_rows):
        padded_pred, row_gradients, *where = ctx.saved_tensors
        with torch.autocast(padded_pred.device.type, enabled=False):
            grad = _PatchDistances._backward(ctx, padded_pred, where, row_gradients.mul_(grad_rows[:, None]))
        return grad, None, None, None, None, None, None, None


def _row_losses_and_gradients(logits, target_logits, kl_weight):
    """Row losses of logit rows (M, Q); overwrites ``logits`` with their gradient (closed-form softmax Jacobian)."""
    graph, target = torch.softmax(logits, dim=1), torch.softmax(target_logits, dim=1)
    sign = torch.sign(graph - target)
    rows = (graph - target).abs().mean(dim=1)
    gradient = graph * (sign - (graph * sign).sum(dim=1, keepdim=True)) / logits.size(1)
    if kl_weight:
        log_target = torch.log_softmax(target_logits, dim=1)
        rows += kl_weight * (target * (log_target - torch.log_softmax(logits, dim=1))).sum(dim=1)
        gradient += kl_weight * (graph - target)
    logits.copy_(gradient)
    return rows


def _block_views(padded, block, patch_size, search_size):
    """Views of one offset block: the centre (N, C, 1, 1, Hp, Wp) and its shifts (N, C, Ky, Kx, Hp, Wp)."""
    r_search = search_size // 2
    hp, wp = padded.size(2) - 2 * r_search, padded.size(3) - 2 * r_search
    dy0, dy1, dx0, dx1 = block
    centre = padded[:, :, r_search:r_search + hp, r_search:r_search + wp][:, :, None, None]
    others = padded[:, :, dy0:dy1 - 1 + hp, dx0:dx1 - 1 + wp].unfold(2, hp, 1).unfold(3, wp, 1)
    return centre, others


def _box_sum_last(x, size):
    """Sums of ``size`` consecutive entries along the last dim (length L -> L - size + 1), by a running sum."""
    running = F.pad(x.cumsum(-1), (1, 0))
    return running[..., size:] - running[..., :-size]


def _odd(size):
    return isinstance(size, int) and size >= 1 and size % 2 == 1


@LOSS_REGISTRY.register()
class SSGLoss(nn.Module):
    """SSG loss between a prediction and its target (BasicSR loss conventions); bad options: ValueError.

    Args:
        loss_weight (float): >= 0. kl_weight (float): >= 0, weight of ``KL(S̄_target || S̄_pred)``.
        reduction (str): 'mean' (over masked pixels; weighted by ``weight`` when given), 'sum', or 'none'
            (an (N, 1, H, W) map of each masked pixel's row loss, 0 elsewhere).
        patch_size, search_size (int): odd sides of the patches and the search window (SSL: 9, 25).
        h (float): > 0, similarity bandwidth (SSL: 0.004). threshold (float): mask threshold in [0, 255] (SSL: 20).
        mask_stride (int): >= 1; keep only every ``mask_stride``-th masked pixel in y and x.
    """

    def __init__(self,
                 loss_weight=1.0,
                 reduction='mean',
                 patch_size=9,
                 search_size=25,
                 h=0.004,
                 threshold=20,
                 mask_stride=1,
                 kl_weight=0.0):
        super().__init__()
        checks = [('reduction', reduction, reduction in ('none', 'mean', 'sum'), "'none', 'mean' or 'sum'"),
                  ('loss_weight', loss_weight, loss_weight >= 0, 'a number >= 0'),
                  ('patch_size', patch_size, _odd(patch_size), 'an odd integer >= 1 (SSL: 9)'),
                  ('search_size', search_size, _odd(search_size), 'an odd integer >= 1 (SSL: 25)'),
                  ('h', h, h > 0, 'a number > 0 (SSL: 0.004, for images in [0, 1])'),
                  ('threshold', threshold, 0 <= threshold <= 255, 'a Laplacian response in [0, 255] (SSL: 20)'),
                  ('mask_stride', mask_stride, isinstance(mask_stride, int) and mask_stride >= 1, 'an integer >= 1'),
                  ('kl_weight', kl_weight, kl_weight >= 0, 'a number >= 0')]
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f'SSGLoss option {name} must be {allowed}, got {value!r}')
        self.loss_weight, self.reduction = loss_weight, reduction
        self.patch_size, self.search_size, self.h = patch_size, search_size, h
        self.threshold, self.mask_stride, self.kl_weight = threshold, mask_stride, kl_weight

    def forward(self, pred, target, weight=None, mask=None):
        """pred, target: (N, C, H, W) in [0, 1] (no gradient into target) -> scalar, or (N, 1, H, W) for 'none'.

        ``weight``: (N, 1, H, W) row weights; ``mask``: (N, 1, H, W) bool rows, default ``laplacian_mask(target)``.
        Zero, still differentiable, when nothing is masked. Wrong shapes, or a target past 2 in magnitude: ValueError.
        """
        if pred.dim() != 4:
            raise ValueError(f'SSGLoss takes (N, C, H, W) batches, got a {pred.dim()}-D pred {tuple(pred.shape)}' +
                             ('; add the batch dimension: x[None]' if pred.dim() == 3 else ''))
        if pred.shape != target.shape:
            raise ValueError(f'SSGLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ')
        if target.detach().abs().amax() > 2:
            raise ValueError(f'SSGLoss takes images in [0, 1] (h = {self.h} is set for that range); the target '
                             f'reaches {target.detach().abs().amax().item():.4g}: divide [0, 255] images by 255')
        if mask is None:
            mask = laplacian_mask(target, self.threshold, self.mask_stride)
        with torch.autocast(pred.device.type, enabled=False):
            (padded_pred, padded_target), where, blocks = _prepare((pred, target.detach()), mask, self.patch_size,
                                                                   self.search_size)
            rows = _GraphRowLosses.apply(padded_pred, padded_target, where, blocks, self.patch_size, self.search_size,
                                         -1 / (self.h * pred.size(1) * self.patch_size**2), self.kl_weight)  # (M,)
        if weight is not None:
            if weight.shape != mask.shape:
                raise ValueError(
                    f'SSGLoss: weight must be (N, 1, H, W) = {tuple(mask.shape)}, got {tuple(weight.shape)}')
            row_weight = weight[mask]
        if self.reduction == 'none':
            per_pixel = pred.new_zeros(mask.shape, dtype=rows.dtype).masked_scatter(mask, rows)
            loss = per_pixel if weight is None else per_pixel * weight
        elif weight is None:
            loss = rows.sum() if self.reduction == 'sum' else rows.sum() / max(rows.numel(), 1)
        else:
            loss = (rows * row_weight).sum()
            if self.reduction == 'mean':
                loss = loss / row_weight.sum().clamp_min(torch.finfo(loss.dtype).tiny)
        return self.loss_weight * loss
