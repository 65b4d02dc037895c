"""The number format of the super-resolution pass: bf16 where the hardware runs it fast, fp32 elsewhere.

The photo's forward pass f_theta'(lq) changes format (FastForward's autocast), and so do the parts of the inner step
that it never differentiates (``adaptation.photo_step``); its adapted part always runs in fp32. The CPU's
instructions are read with ``torch.cpu.get_capabilities()`` (cpuinfo, at run time): bf16 convolutions are fast with
AVX-512 BF16 or AMX BF16 and emulated, far slower than fp32, without them.
"""
import warnings

import torch

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
AUTOCAST_DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}  # float32: no autocast
FAST_BF16 = {'avx512_bf16': 'AVX-512 BF16', 'amx_bf16': 'AMX BF16'}  # torch.cpu.get_capabilities() key: name
SLOW_BF16 = ('bf16 on this CPU ({}) is emulated: several times slower than fp32 (measured in docs/benchmarks.md); '
             'use fp32')


def fast_bf16_instructions():
    """The CPU's bf16 fast-path instructions that torch detects, as ``torch.cpu.get_capabilities()`` keys, e.g.
    ``('avx512_bf16', 'amx_bf16')``; ``()`` when none."""
    capabilities = torch.cpu.get_capabilities()
    return tuple(key for key in FAST_BF16 if capabilities.get(key, False))


def cpu_description():
    """One line for logs: torch's kernel level and the bf16 instructions, e.g. ``'AVX2, no AVX-512 BF16 or AMX
    BF16'`` or ``'AVX512, AVX-512 BF16 and AMX BF16'``."""
    found = [FAST_BF16[key] for key in fast_bf16_instructions()]
    instructions = ' and '.join(found) if found else 'no ' + ' or '.join(FAST_BF16.values())
    return f'{torch.backends.cpu.get_cpu_capability()}, {instructions}'


def resolve_precision(requested, device):
    """``requested`` (one of :data:`PRECISIONS`) on ``device`` (a ``torch.device`` or its name) -> ``'fp32'``,
    ``'bf16'`` or ``'fp16'``.

    ``'auto'``: on CUDA bf16 where the GPU supports it, else fp16; on a CPU bf16 with :func:`fast_bf16_instructions`,
    else fp32; fp32 on other devices. An explicit ``'bf16'`` on a CPU without those instructions is honoured with a
    warning. ValueError for ``'fp16'`` on a CPU or a value not in :data:`PRECISIONS`.
    """
    if requested not in PRECISIONS:
        raise ValueError(f'precision {requested!r} is not one of {", ".join(PRECISIONS)}')
    kind = torch.device(device).type
    if requested == 'auto':
        if kind == 'cuda':
            return 'bf16' if torch.cuda.is_bf16_supported() else 'fp16'
        if kind == 'cpu' and fast_bf16_instructions():
            return 'bf16'
        return 'fp32'
    if kind == 'cpu' and requested == 'fp16':
        raise ValueError('fp16 is for GPUs: on a CPU use bf16 (fast with AVX-512 BF16 or AMX) or fp32')
    if kind == 'cpu' and requested == 'bf16' and not fast_bf16_instructions():
        warnings.warn(SLOW_BF16.format(cpu_description()), stacklevel=2)
    return requested
