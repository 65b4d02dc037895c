"""Tolerances of numerical assertions, derived from the dtype and the reduction size, never measured.

Convention: every numerical assertion's tolerance is derived from the dtype and the size of the reduction it checks,
never from one machine's measured luck. A sum of n terms computed in any order errs by at most γ_n · Σ|x_i|, with
γ_n = n·u / (1 − n·u) and u = eps(dtype) / 2 (Higham, Accuracy and Stability of Numerical Algorithms, §3.1, §4.2);
since the bound holds for every summation order, it holds on every CPU, kernel and thread count. Other rounded
operations on the path (a product, a division, an exp within 1 ulp = 2u) count as extra terms; a network's layers
add up as a chain (to first order, the later layers' gain taken as 1). An algorithm's correctness is best checked in
float64 against a reference, where the derived bound is tiny; its float32 (float16, bfloat16) behaviour separately,
with its own, looser, derived bound.
"""
import numpy as np
import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode


def unit_roundoff(dtype):
    """u = eps(dtype) / 2, the largest relative error of one rounding; ``dtype`` a torch or NumPy float type."""
    return (torch.finfo(dtype) if isinstance(dtype, torch.dtype) else np.finfo(dtype)).eps / 2


def gamma(dtype, terms):
    """γ_n = n·u / (1 − n·u), n = ``terms``: the relative error bound of an n-term sum or dot product, any order."""
    nu = terms * unit_roundoff(dtype)
    if nu >= 1:
        raise ValueError(f'{terms} terms are too many to bound in {dtype} (n·u = {nu:.3g} >= 1)')
    return nu / (1 - nu)


def rounding_bound(dtype, terms, magnitude=1.0):
    """The absolute error bound γ_n · ``magnitude`` of an n-term sum in ``dtype``, where magnitude >= Σ|x_i|."""
    return gamma(dtype, terms) * magnitude


def chain_bound(dtype, terms_per_step, magnitude=1.0):
    """The error bound of a chain of reductions (a network's layers) of the given sizes, ``magnitude`` bounding each
    step's Σ|x_i| times the gain of the steps after it: Σ γ_(n_l) · magnitude <= γ_(Σ n_l) · magnitude (Higham,
    Lemma 3.3)."""
    return rounding_bound(dtype, sum(terms_per_step), magnitude)


def _abs(value):
    return value.abs() if torch.is_tensor(value) else value


class _Steps(TorchFunctionMode):
    """Records each convolution's or linear map's dot-product size and largest |W|·|x| + |b|."""

    def __init__(self):
        super().__init__()
        self.terms, self.magnitude = [], 0.0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (F.conv2d, F.conv_transpose2d, F.linear):
            x, w, *rest = args
            size = func(*map(_abs, args), **{k: _abs(v) for k, v in kwargs.items()})  # |W|·|x| + |b|
            groups = kwargs.get('groups', rest[4] if len(rest) > 4 else 1)  # argument 6 of both convolutions
            fan_in = w.shape[0] // groups * w[0, 0].numel() if func is F.conv_transpose2d else w[0].numel()
            self.terms.append(fan_in + 4)
            self.magnitude = max(self.magnitude, size.max().item())
        return func(*args, **kwargs)


@torch.no_grad()
def network_steps(net, *inputs):
    """``(terms, magnitude)`` of one forward of ``net(*inputs)``, for :func:`chain_bound`: per convolution or linear
    map, its dot products' size + 4 (the bias and up to three elementwise roundings: activation, residual scale and
    sum), and the largest |W|·|x| + |b| of any of them. The bound is then first-order with the later layers' gain
    taken as 1 (the worst case, |W| multiplied over the layers, is vacuous for deep networks)."""
    steps = _Steps()
    with steps:
        net(*inputs)
    return steps.terms, steps.magnitude


def probabilistic_chain_bound(dtype, terms_per_step, magnitude=1.0, lam=6.0):
    """:func:`chain_bound` with the probabilistic γ̃_n(λ) = exp(λ·√n·u + n·u²/(1 − u)) − 1 ≈ λ·√n·u in place of γ_n
    (Higham and Mary, "A New Approach to Probabilistic Rounding Error Analysis", SIAM J. Sci. Comput. 2019, Thm.
    2.4): it holds with probability at least 1 − 2·exp(−λ²(1 − u)²/2) (λ = 6: 3e-8) when the rounding errors are
    independent and of mean zero. For networks so deep that the worst case is vacuous."""
    u, n = unit_roundoff(dtype), sum(terms_per_step)
    return float(np.expm1(lam * np.sqrt(n) * u + n * u * u / (1 - u))) * magnitude
