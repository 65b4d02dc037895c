"""resolve_precision: bf16 only where the hardware runs it fast, fp32 elsewhere; clear errors and warnings."""
import warnings
from types import MappingProxyType

import pytest
import torch

from metaf2n_plugin.models.fast_forward import FastForward
from metaf2n_plugin.models.precision import PRECISIONS, cpu_description, fast_bf16_instructions, resolve_precision

AVX2_ONLY = {'avx2': True, 'avx512_f': False, 'avx512_bf16': False, 'amx_bf16': False, 'amx_tile': False}
SAPPHIRE_RAPIDS = {'avx2': True, 'avx512_f': True, 'avx512_bf16': True, 'amx_bf16': True, 'amx_tile': True}


@pytest.fixture
def cpu(monkeypatch):
    """``cpu(capabilities, level)``: torch sees a CPU with these ``torch.cpu.get_capabilities()`` and kernel level."""

    def pretend(capabilities, level):
        monkeypatch.setattr(torch.cpu, 'get_capabilities', lambda: MappingProxyType(capabilities))
        monkeypatch.setattr(torch.backends.cpu, 'get_cpu_capability', lambda: level)

    return pretend


def test_the_bf16_instructions_are_read_from_torch(cpu):
    cpu(AVX2_ONLY, 'AVX2')
    assert fast_bf16_instructions() == ()
    assert cpu_description() == 'AVX2, no AVX-512 BF16 or AMX BF16'
    cpu(SAPPHIRE_RAPIDS, 'AVX512')
    assert fast_bf16_instructions() == ('avx512_bf16', 'amx_bf16')
    assert cpu_description() == 'AVX512, AVX-512 BF16 and AMX BF16'
    cpu({'avx512_bf16': True}, 'AVX512')  # Cooper Lake: AVX-512 BF16, no AMX
    assert fast_bf16_instructions() == ('avx512_bf16', )


def test_auto_is_bf16_on_a_cpu_with_bf16_instructions_else_fp32(cpu):
    cpu(SAPPHIRE_RAPIDS, 'AVX512')
    assert resolve_precision('auto', 'cpu') == 'bf16'
    assert resolve_precision('auto', torch.device('cpu')) == 'bf16'
    cpu(AVX2_ONLY, 'AVX2')
    assert resolve_precision('auto', 'cpu') == 'fp32'
    assert resolve_precision('fp32', 'cpu') == 'fp32'


def test_auto_on_cuda_is_bf16_where_supported_else_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *args, **kwargs: True)
    assert resolve_precision('auto', 'cuda:0') == 'bf16'
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *args, **kwargs: False)
    assert resolve_precision('auto', 'cuda') == 'fp16'
    assert resolve_precision('fp32', 'cuda') == 'fp32'
    assert resolve_precision('bf16', 'cuda') == 'bf16'


def test_explicit_bf16_without_the_instructions_is_honoured_with_a_warning(cpu):
    cpu(AVX2_ONLY, 'AVX2')
    slow = r'AVX2, no AVX-512 BF16 or AMX BF16.*several times slower.*docs/benchmarks.md.*use fp32'
    with pytest.warns(UserWarning, match=slow):
        assert resolve_precision('bf16', 'cpu') == 'bf16'
    cpu(SAPPHIRE_RAPIDS, 'AVX512')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert resolve_precision('bf16', 'cpu') == 'bf16'


def test_fp16_on_a_cpu_and_unknown_values_are_errors_naming_the_fix():
    with pytest.raises(ValueError, match='on a CPU use bf16 .* or fp32'):
        resolve_precision('fp16', 'cpu')
    with pytest.raises(ValueError, match='auto, fp32, bf16, fp16'):
        resolve_precision('float16', 'cpu')
    with pytest.raises(ValueError, match='auto, fp32, bf16, fp16'):
        resolve_precision(True, 'cpu')  # the former bf16 flag
    assert PRECISIONS == ('auto', 'fp32', 'bf16', 'fp16')


def test_fast_forward_takes_a_resolved_precision_only():
    net = torch.nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match='resolve_precision'):
        FastForward(net, 1, precision='auto')
    with pytest.raises(ValueError, match='fp32, bf16, fp16'):
        FastForward(net, 1, precision=False)  # the former bf16=False, passed by position


def test_fast_forward_autocasts_to_the_precision_and_returns_float32():
    dtypes = []
    net = torch.nn.Conv2d(3, 3, 1)
    net.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    lq = torch.rand(1, 3, 5, 6)
    for name in ('fp32', 'bf16', 'fp16'):  # fp16 autocast runs on a CPU too; resolve_precision keeps it for GPUs
        assert FastForward(net, 1, precision=name)(None, lq).dtype == torch.float32
    assert dtypes == [torch.float32, torch.bfloat16, torch.float16]
