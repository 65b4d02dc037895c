"""The photo's forward pass ``f_theta'(lq)`` made fast: channels_last, bf16 or fp16 autocast (precision.py), and
torch.compile with the weights as inputs, so every photo's theta' reuses one compilation (docs/photos.md; its
figures: docs/benchmarks.md)."""
import torch
from torch.func import functional_call

from metaf2n_plugin.models.precision import AUTOCAST_DTYPES
from metaf2n_plugin.models.tiling import TILE_PAD, tiled_forward


class FastForward:
    """``(params, lq) -> f_params(lq)`` for one SR network in eval mode, tiled (:func:`tiled_forward`), no gradients.

    ``tile``, ``tile_pad``: LQ tile side (0: whole image) and context per side; ``channels_last``: NHWC convolutions;
    ``precision``: ``'fp32'``, or ``'bf16'``/``'fp16'`` autocast (the output stays float32), as
    :func:`~metaf2n_plugin.models.precision.resolve_precision` returns it, ValueError for another; ``compile``:
    compiled once for ``tile + 2 * tile_pad`` windows, the tiles laid out so that every window has that size where
    the photo allows (``fixed``; smaller windows run eagerly), ValueError without ``tile``.
    """

    def __init__(self, net, scale, tile=0, tile_pad=TILE_PAD, channels_last=True, precision='fp32', compile=False):
        if compile and not tile:
            raise ValueError('compile needs a tile size: one compilation serves windows of one size')
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f'precision {precision!r} is not one of {", ".join(AUTOCAST_DTYPES)}; resolve_precision() '
                             'turns auto into one')
        self.net, self.scale, self.tile, self.tile_pad = net, scale, tile, tile_pad
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.dtype = AUTOCAST_DTYPES[precision]
        self.compiled = torch.compile(self._functional, dynamic=False) if compile else None

    def _functional(self, params, x):
        return functional_call(self.net, params, (x, ))

    @torch.no_grad()
    def __call__(self, params, lq):
        """``(N, 3, H, W)`` RGB in [0, 1] -> ``(N, 3, s*H, s*W)`` float32, with ``params`` (None: the network's)."""
        params = dict(self.net.named_parameters()) if params is None else params
        params = {
            name: value.detach().contiguous(memory_format=self.memory_format) if value.dim() == 4 else value.detach()
            for name, value in params.items()
        }
        window = (self.tile + 2 * self.tile_pad, ) * 2

        def forward(x):
            run = self.compiled if self.compiled is not None and tuple(x.shape[-2:]) == window else self._functional
            with torch.autocast(x.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                return run(params, x.contiguous(memory_format=self.memory_format)).float()

        fixed = self.compiled is not None
        return tiled_forward(forward, lq, self.scale, self.tile, self.tile_pad, fixed).contiguous()
