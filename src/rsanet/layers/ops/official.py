"""The per-position products of the authors' order of operations.

    kernel  = q (K_H1 + P1)        (nh x D)
    context = (V_G + I)^T F        (dv x D)
    y       = context kernel^T     (dv x nh)

:func:`official_products` is the custom op ``rsanet::official_products``, whose CPU kernel
runs the three products of a position in one pass of the C++ kernel
(:func:`rsanet.layers.native.official_products`) where it applies, and on other devices
batched GEMMs. Its backward, ``rsanet::official_products_backward``, recomputes kernel and
context per position in C++ (float32 on the CPU) or takes the gradients with the same
batched GEMMs: with 4 x 4 or 8 x 8 matrices at tens of thousands of positions, GEMMs
differentiated by autograd spend far more on each tiny problem than on its arithmetic.
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
    if choose_backend("official_products", *operands) is Backend.TRACING:
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


def _gradients_with_operators(grad_out, queries, key_summary, basic, filtered, mixing):
    """The gradients of the products for grad_out (P, dv, nh) -> those of the queries, K_H1
    (an empty tensor without K_H1) and the filtered values, each in its operand's type; see
    ``official.cpp`` for the formulas."""
    dtype = queries.dtype
    summary = key_summary.to(dtype) if key_summary is not None else None
    if summary is not None and basic is not None:
        summary = summary + basic
    values = filtered.to(dtype)
    dd = summary.shape[-1] if summary is not None else queries.shape[-1]
    kernel = torch.bmm(queries, summary) if summary is not None else queries  # (P, nh, D)
    context = values[..., :dd]  # F
    mix = None
    if values.shape[-1] > dd:  # M = V_G + I
        mix = values[..., dd:] + mixing if mixing is not None else values[..., dd:]
        context = torch.bmm(mix.transpose(1, 2), context)
    grad_out = grad_out.to(dtype)
    grad_context = torch.bmm(grad_out, kernel)  # (P, dv, D)
    grad_kernel = torch.bmm(grad_out.transpose(1, 2), context)  # (P, nh, D)
    if summary is not None:
        grad_queries = torch.bmm(grad_kernel, summary.transpose(1, 2))
        grad_key_summary = torch.bmm(queries.transpose(1, 2), grad_kernel).to(key_summary.dtype)
    else:
        grad_queries, grad_key_summary = grad_kernel, queries.new_empty(0)
    if mix is None:
        grad_filtered = grad_context
    else:
        grad_filtered = torch.cat(
            [
                torch.bmm(mix, grad_context),
                torch.bmm(values[..., :dd], grad_context.transpose(1, 2)),
            ],
            dim=-1,
        )
    return grad_queries, grad_key_summary, grad_filtered.to(filtered.dtype)


def _gradients_on_chosen_backend(grad_out, queries, key_summary, basic, filtered, mixing):
    operands = (grad_out, queries, key_summary, basic, filtered, mixing)
    if choose_backend("official_products_backward", *operands) is not Backend.NATIVE:
        return _gradients_with_operators(*operands)
    grad_queries, grad_key_summary, grad_filtered = native.official_products_backward(
        *(t.contiguous() if t is not None else None for t in operands)
    )
    if grad_key_summary is None:
        grad_key_summary = queries.new_empty(0)
    return grad_queries, grad_key_summary, grad_filtered


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


_official_backward_op = torch.library.custom_op(
    "rsanet::official_products_backward",
    _gradients_with_operators,
    mutates_args=(),
    schema=(
        "(Tensor grad_out, Tensor queries, Tensor? key_summary, Tensor? basic, Tensor filtered,"
        " Tensor? mixing) -> (Tensor, Tensor, Tensor)"
    ),
)
_official_backward_op.register_kernel("cpu", _gradients_on_chosen_backend)


@_official_backward_op.register_fake
def _(grad_out, queries, key_summary, basic, filtered, mixing):
    grad_key_summary = (
        torch.empty_like(key_summary) if key_summary is not None else queries.new_empty(0)
    )
    return torch.empty_like(queries), grad_key_summary, torch.empty_like(filtered)


def _setup_products(ctx, inputs, output):
    ctx.save_for_backward(*inputs)  # queries, K_H1, P1, filtered values, I (None if absent)


def _backward_products(ctx, grad_out):
    queries, key_summary, basic, filtered, mixing = ctx.saved_tensors
    grad_queries, grad_key_summary, grad_filtered = torch.ops.rsanet.official_products_backward(
        grad_out, queries, key_summary, basic, filtered, mixing
    )
    grad_basic = grad_mixing = None
    if key_summary is None:  # kernel = q: P1 unused
        grad_key_summary = None
    elif basic is not None:  # kernel = q (K_H1 + P1)
        grad_basic = grad_key_summary.sum(0).to(basic.dtype)
    latent = key_summary.shape[-1] if key_summary is not None else queries.shape[-1]
    if mixing is not None and filtered.shape[-1] > latent:  # context = (V_G + I)^T F
        grad_mixing = grad_filtered[..., latent:].sum(0).to(mixing.dtype)
    return grad_queries, grad_key_summary, grad_basic, grad_filtered, grad_mixing


_official_op.register_autograd(_backward_products, setup_context=_setup_products)
# Under autocast, floating inputs are cast to float32 (the fused kernels' dtype) and the op
# runs with autocast off, as the RSA layer itself does; so does its backward.
for _device in ("cpu", "cuda"):
    _official_op.register_autocast(_device, torch.float32)
    _official_backward_op.register_autocast(_device, torch.float32)
