"""Super-resolving a large photo tile by tile, so that memory does not grow with the photo."""


def tiled_forward(forward, lq, scale, tile=0, tile_pad=10):
    """``forward(lq)`` for ``forward: (N, C, h, w) -> (N, C', s*h, s*w)``, on ``tile`` x ``tile`` LQ tiles (0: whole).

    ``lq`` ``(N, C, H, W)`` -> ``(N, C', s*H, s*W)``. Each tile sees ``tile_pad`` LQ pixels of context per side; border
    windows are shifted inward, not clipped, so all are ``min(tile + 2 * tile_pad, H) x min(..., W)`` (one compiled
    graph serves every photo). With ``tile_pad`` >= the receptive field it equals the untiled result up to rounding.
    """
    if not tile:
        return forward(lq)
    height, width = lq.shape[-2:]
    window = tile + 2 * tile_pad
    output = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(min(top - tile_pad, height - window), 0), max(min(left - tile_pad, width - window), 0)
            sr = forward(lq[..., y0:y0 + window, x0:x0 + window])
            if output is None:
                output = sr.new_zeros(*sr.shape[:-2], scale * height, scale * width)
            output[..., scale * top:scale * bottom, scale * left:scale * right] = \
                sr[..., scale * (top - y0):scale * (bottom - y0), scale * (left - x0):scale * (right - x0)]
    return output
