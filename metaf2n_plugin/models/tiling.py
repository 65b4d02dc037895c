"""Super-resolving a large photo tile by tile, so that memory does not grow with the photo.

Every tile runs in a window of at most ``tile + 2 * tile_pad`` LQ pixels per axis: the tile and up to ``tile_pad``
pixels of context per side. By default (the even grid) an axis of ``side`` pixels is cut into as few windows as
that allows, ``n = ceil((side - 2 * tile_pad) / tile)``, of (nearly) equal size and clipped at the photo's border:
the network runs on ``side + 2 * tile_pad * (n - 1)`` pixels, close to the photo's. A 320-pixel side in tiles of
256 with 10 of context runs windows of 170 + 170 pixels (1.06x), a 257-pixel side one window. ``fixed=True`` (for
torch.compile: one graph for every window) keeps the tiles and widens every window to ``tile + 2 * tile_pad``,
shifted inward at the border: 276 + 276 pixels for 320 (1.73x).
"""
import math

TILE_PAD = 10  # LQ context pixels per side of a tile, the default everywhere


def tile_windows(side, tile, tile_pad, fixed=False):
    """The tiles of one axis of ``side`` pixels, as ``[(start, stop, window_start, window_stop), ...]`` with
    ``window_start <= start < stop <= window_stop`` and windows of at most ``tile + 2 * tile_pad``; one tile, the whole
    side, when ``tile`` is 0 or ``side <= tile + 2 * tile_pad``. ``fixed``: every window of a longer side is
    ``tile + 2 * tile_pad``, shifted inward at the border."""
    count = max(math.ceil((side - 2 * tile_pad) / tile), 1) if tile else 1
    inner = [tile_pad + i * (side - 2 * tile_pad) // count for i in range(1, count)]  # border tiles tile_pad longer
    bounds = [0, *inner, side]
    tiles = []
    for start, stop in zip(bounds, bounds[1:]):
        window_start, window_stop = max(start - tile_pad, 0), min(stop + tile_pad, side)
        if fixed and count > 1:
            window_start = max(min(start - tile_pad, side - tile - 2 * tile_pad), 0)
            window_stop = window_start + tile + 2 * tile_pad
        tiles.append((start, stop, window_start, window_stop))
    return tiles


def work_per_pixel(height, width, tile, tile_pad, fixed=False):
    """LQ pixels the network runs on per photo pixel: the windows' areas summed, over ``height * width``."""
    rows = sum(bottom - top for _, _, top, bottom in tile_windows(height, tile, tile_pad, fixed))
    columns = sum(right - left for _, _, left, right in tile_windows(width, tile, tile_pad, fixed))
    return rows * columns / (height * width)


def tiled_forward(forward, lq, scale, tile=0, tile_pad=TILE_PAD, fixed=False):
    """``forward(lq)`` for ``forward: (N, C, h, w) -> (N, C', s*h, s*w)``, on the windows of :func:`tile_windows`.

    ``lq`` ``(N, C, H, W)`` -> ``(N, C', s*H, s*W)``; ``tile`` 0: one pass over the whole photo. With ``tile_pad`` >=
    the network's receptive field it equals the untiled result up to rounding.
    """
    if not tile:
        return forward(lq)
    height, width = lq.shape[-2:]
    output = None
    for top, bottom, y0, y1 in tile_windows(height, tile, tile_pad, fixed):
        for left, right, x0, x1 in tile_windows(width, tile, tile_pad, fixed):
            sr = forward(lq[..., y0:y1, x0:x1])
            if output is None:
                output = sr.new_zeros(*sr.shape[:-2], scale * height, scale * width)
            output[..., scale * top:scale * bottom, scale * left:scale * right] = \
                sr[..., scale * (top - y0):scale * (bottom - y0), scale * (left - x0):scale * (right - x0)]
    return output
