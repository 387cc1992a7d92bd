"""Which code computes an RSA operator: the one place that decides.

Every operator of :mod:`rsanet.layers.ops` asks :func:`choose_backend`, once before it calls
its ``rsanet::`` custom op (to learn whether an exporter is tracing) and once inside the op's
kernel (to pick a fused kernel for the actual tensors). The candidates, in this order:

- ``TRACING``: TorchScript tracing or ONNX export is recording the graph. The operator is
  written out in plain PyTorch operators those exporters know (no custom op, no ``unfold``,
  no ``vecdot``, no ``out=`` buffers).
- the fused kernels the operator has (:data:`FUSED_KERNELS`): ``NATIVE`` (C++,
  :mod:`rsanet.layers.native`, float32 on the CPU) and ``TRITON`` (:mod:`rsanet.layers.gpu`,
  float32 on a GPU), each of which may refuse (switched off in :mod:`rsanet.layers.config`,
  another device or dtype, not built, a shape it has no kernel for);
- ``OPERATORS``: the same products with PyTorch operators, which always apply.

With ``logging.getLogger("rsanet.layers.backends").setLevel(logging.DEBUG)`` every choice and
every refusal is logged (once for as long as it stays the same), e.g.
``aggregate: native refused, dtype torch.float64 not supported (float32 only)``.
"""

from __future__ import annotations

import enum
import logging

import torch

from rsanet.layers import gpu, native

_log = logging.getLogger(__name__)


class Backend(enum.Enum):
    TRACING = "tracing"
    NATIVE = "native"
    TRITON = "triton"
    OPERATORS = "operators"


#: the fused kernels of every operator, in order of preference
FUSED_KERNELS: dict[str, tuple[Backend, ...]] = {
    "aggregate": (Backend.NATIVE, Backend.TRITON),
    "official_products": (Backend.NATIVE,),
    "official_products_backward": (Backend.NATIVE,),
    "filter_input_grad": (Backend.NATIVE,),
    "neighbourhood_filter": (),
    "l2_normalize": (),
    "unfold": (),
}

#: the module of every fused backend: its ``refusal(op, tensors)`` says why it cannot take
#: the tensors (None: it can), its ``aggregate``/``aggregate_backward`` compute
_MODULES = {Backend.NATIVE: native, Backend.TRITON: gpu}

_last_logged: dict[str, tuple] = {}


def tracing_for_export() -> bool:
    """Whether TorchScript tracing or ONNX export is recording the operators being run."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def choose_backend(op: str, *tensors: torch.Tensor | None) -> Backend:
    """The backend that computes operator ``op`` (a key of :data:`FUSED_KERNELS`) on these
    tensors, given in the operator's order (None for an absent optional operand: each
    backend's ``refusal`` reads them by position and skips the Nones).

    While torch.compile or torch.export traces, the answer is ``OPERATORS`` without probing
    the kernels: the graph holds the ``rsanet::`` op, whose kernel chooses again at run time.
    """
    if tracing_for_export():
        _log_choice(op, Backend.TRACING, ())
        return Backend.TRACING
    if torch.compiler.is_compiling():
        return Backend.OPERATORS
    refusals = []
    for backend in FUSED_KERNELS[op]:
        reason = _MODULES[backend].refusal(op, tensors)
        if reason is None:
            _log_choice(op, backend, refusals)
            return backend
        refusals.append((backend, reason))
    _log_choice(op, Backend.OPERATORS, refusals)
    return Backend.OPERATORS


def _log_choice(op: str, backend: Backend, refusals) -> None:
    if not _log.isEnabledFor(logging.DEBUG):
        return
    decision = (backend, tuple(refusals))
    if _last_logged.get(op) == decision:
        return
    _last_logged[op] = decision
    for refused, reason in refusals:
        _log.debug("%s: %s refused, %s", op, refused.value, reason)
    _log.debug("%s: %s chosen", op, backend.value)


def fused_kernels(backend: Backend):
    """The module with the neighbourhood products (``aggregate``, ``aggregate_backward``) of a
    fused backend; None for ``OPERATORS`` and ``TRACING``."""
    return _MODULES.get(backend)
