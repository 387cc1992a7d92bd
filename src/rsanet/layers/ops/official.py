"""The per-position products of the authors' order of operations.

    kernel  = q (K_H1 + P1)        (nh x D)
    context = (V_G + I)^T F        (dv x D)
    y       = context kernel^T     (dv x nh)

In inference :func:`official_products` is the custom op ``rsanet::official_products``, whose
CPU kernel runs the three products of a position in one pass of the C++ kernel
(:func:`rsanet.layers.native.official_products`) where it applies; in training, and on other
devices, they are batched GEMMs that autograd differentiates.
"""

import torch

from rsanet.layers import native
from rsanet.layers.backends import Backend, choose_backend


def latent_kernel(
    queries: torch.Tensor, key_summary: torch.Tensor | None, basic: torch.Tensor | None
) -> torch.Tensor:
    """The kernel of every position and head in the latent space, q (K_H1 + P1).

    queries (..., nh, dk), K_H1 (..., dk, D) or None (the basic kernel alone: P1 = identity),
    P1 (dk, D) or None (the relational kernel alone) -> (P, nh, D), P the positions.
    """
    nh, dk = queries.shape[-2:]
    queries = queries.reshape(-1, nh, dk)
    if key_summary is None:
        return queries
    dd = key_summary.shape[-1]
    key_summary = key_summary.reshape(-1, dk, dd)
    if basic is None:
        return torch.bmm(queries, key_summary)
    basic_kernel = (queries.reshape(-1, dk) @ basic).reshape(-1, nh, dd)
    return torch.baddbmm(basic_kernel, queries, key_summary)


def official_products(
    queries: torch.Tensor,
    key_summary: torch.Tensor | None,
    basic: torch.Tensor | None,
    filtered: torch.Tensor,
    mixing: torch.Tensor | None,
) -> torch.Tensor:
    """queries (P, nh, dk), K_H1 (P, dk, D) or None, P1 (dk, D) or None, filtered values
    (P, dv, D) = F or (P, dv, D + dv) = [F | V_G] and I (dv, dv) or None -> y (P, dv, nh),
    value-major. K_H1 and the filtered values may be in a lower precision than the queries
    (the filters' type in reduced-precision inference): they are read in the queries' type.
    """
    operands = (queries, key_summary, basic, filtered, mixing)
    # the op has no backward: in training autograd differentiates the GEMMs
    if torch.is_grad_enabled() or choose_backend("official_products", *operands) is Backend.TRACING:
        return _products_with_operators(*operands)
    return torch.ops.rsanet.official_products(*operands)


def _products_with_operators(queries, key_summary, basic, filtered, mixing) -> torch.Tensor:
    filtered = filtered.to(queries.dtype)
    key_summary = key_summary.to(queries.dtype) if key_summary is not None else None
    kernel = latent_kernel(queries, key_summary, basic)  # (P, nh, D)
    dd = kernel.shape[-1]
    context = filtered[..., :dd]  # F: (P, dv, D)
    if filtered.shape[-1] > dd:  # a relational context
        context_mixing = filtered[..., dd:]  # V_G: (P, dv, dv)
        if mixing is not None:
            context_mixing = context_mixing + mixing
        context = torch.bmm(context_mixing.transpose(1, 2), context)
    return torch.bmm(context, kernel.transpose(1, 2))


def _products_on_chosen_backend(queries, key_summary, basic, filtered, mixing) -> torch.Tensor:
    operands = (queries, key_summary, basic, filtered, mixing)
    if choose_backend("official_products", *operands) is not Backend.NATIVE:
        return _products_with_operators(*operands)
    return native.official_products(
        queries.contiguous(),
        key_summary.contiguous() if key_summary is not None else None,
        basic,
        filtered.contiguous(),
        mixing,
    )


_official_op = torch.library.custom_op(
    "rsanet::official_products",
    _products_with_operators,
    mutates_args=(),
    schema=(
        "(Tensor queries, Tensor? key_summary, Tensor? basic, Tensor filtered, Tensor? mixing)"
        " -> Tensor"
    ),
)
_official_op.register_kernel("cpu", _products_on_chosen_backend)


@_official_op.register_fake
def _(queries, key_summary, basic, filtered, mixing):
    return queries.new_empty(queries.shape[0], filtered.shape[1], queries.shape[1])


# Under autocast, floating inputs are cast to float32 (the fused kernels' dtype) and the op
# runs with autocast off, as the RSA layer itself does.
for _device in ("cpu", "cuda"):
    _official_op.register_autocast(_device, torch.float32)
