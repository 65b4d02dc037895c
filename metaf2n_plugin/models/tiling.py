"""Super-resolving a large photo tile by tile, so that memory does not grow with the photo."""


def tiled_forward(forward, lq, scale, tile=0, tile_pad=10):
    """``forward(lq)``, computed on ``tile`` x ``tile`` LQ tiles that each see at least ``tile_pad`` more pixels.

    Every tile is cut with ``tile_pad`` pixels of context per side; at the image border the window is shifted
    inward instead of clipped, so every window has the same size, ``min(tile + 2 * tile_pad, H) x min(...,
    W)`` (one compiled graph serves every photo). Only the tile's own ``scale`` times larger part of the
    output is kept; with ``tile_pad`` at least the network's receptive field (in LQ pixels) the result equals
    the untiled one up to float rounding.

    Args:
        forward: ``(N, C, h, w) -> (N, C', s*h, s*w)``.
        lq: ``(N, C, H, W)``.
        scale: integer SR factor s.
        tile: LQ tile side; 0 runs ``forward`` on the whole image.
        tile_pad: LQ pixels of context on each side of a tile.

    Returns:
        ``(N, C', s*H, s*W)``.
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
