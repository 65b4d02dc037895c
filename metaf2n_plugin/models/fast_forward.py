"""The photo's forward pass ``f_theta'(lq)`` made fast: channels_last, bf16 or fp16 autocast (precision.py), and
torch.compile with the weights as inputs, so every photo's theta' reuses one compilation (docs/photos.md; its
figures: docs/benchmarks.md)."""
import torch
from torch.func import functional_call

from metaf2n_plugin.models.frozen_body import RRDBNetBody, frozen_tail
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
        params = {name: self._prepared(value) for name, value in params.items()}
        window = (self.tile + 2 * self.tile_pad, ) * 2

        def forward(x):
            run = self.compiled if self.compiled is not None and tuple(x.shape[-2:]) == window else self._functional
            with torch.autocast(x.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                return run(params, x.contiguous(memory_format=self.memory_format)).float()

        fixed = self.compiled is not None
        return tiled_forward(forward, lq, self.scale, self.tile, self.tile_pad, fixed).contiguous()

    @torch.no_grad()
    def pair(self, first, second, lq):
        """``(f_first(lq), f_second(lq))`` (parameters as :meth:`__call__`'s ``params``), each equal to its own
        :meth:`__call__`. When the two differ only in an RRDBNet's tail (the test-time step adapted the tail alone),
        the body runs once per window and serves both; else, or when compiled, two passes."""
        first = dict(self.net.named_parameters()) if first is None else first
        second = dict(self.net.named_parameters()) if second is None else second
        changed = {
            name
            for name in first if first[name] is not second[name] and not torch.equal(first[name], second[name])
        }
        tail, _ = frozen_tail(self.net, changed)
        if tail is None or self.compiled is not None:
            return self(first, lq), self(second, lq)
        body = RRDBNetBody(self.net)
        body_params = {name: self._prepared(first[name]) for name, _ in body.named_parameters()}
        heads = [{
            name: self._prepared(params[name])
            for name, _ in tail.named_parameters()
        } for params in (first, second)]

        def forward(x):
            with torch.autocast(x.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                feat = functional_call(body, body_params, (x.contiguous(memory_format=self.memory_format), ))
                return torch.cat([functional_call(tail, head, (feat, )).float() for head in heads], dim=1)

        both = tiled_forward(forward, lq, self.scale, self.tile, self.tile_pad).contiguous()
        return both[:, :both.size(1) // 2].contiguous(), both[:, both.size(1) // 2:].contiguous()

    def _prepared(self, value):
        """A parameter for the pass: detached, a 4-D one in the pass's memory format."""
        value = value.detach()
        return value.contiguous(memory_format=self.memory_format) if value.dim() == 4 else value
