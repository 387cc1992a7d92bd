"""The per-position products of the re-associated order, a few frames at a time.

    khat = kernel H2      (nh x M)   weights on the neighbours
    A    = khat Pv        (nh x dv)  basic aggregation
    y    = A I + (A Pv^T) G^T

:func:`aggregate_neighbourhoods` is the custom op ``rsanet::aggregate_neighbourhoods``: one
op for autograd, torch.compile and torch.export. Its kernel for CPU and CUDA tensors runs
the products in the fused kernels :func:`rsanet.layers.backends.choose_backend` picks (C++
or Triton), else in PyTorch operators (an unfold and batched GEMMs), which are also its
kernel on every other device. Its backward (``rsanet::aggregate_neighbourhoods_backward``)
goes chunk by chunk like the forward: khat and the neighbourhoods (M times the size of the
values) are recomputed instead of being saved, and every gradient is written into one
buffer for the whole clip.
"""

import torch

from rsanet.layers import _args
from rsanet.layers.backends import Backend, choose_backend, fused_kernels
from rsanet.layers.ops.neighbourhoods import (
    Scratch,
    chunks,
    fold_channels_last_,
    halo,
    unfold_by_slices,
    unfold_windows,
)


def aggregate_neighbourhoods(
    kernel: torch.Tensor,
    latent_weight: torch.Tensor,
    padded_values: torch.Tensor,
    context_weight: torch.Tensor | None,
    mixing: torch.Tensor | None,
    kernel_size: _args.Size3,
    use_basic_context: bool,
    chunk: int,
) -> torch.Tensor:
    """y for every position, computed ``chunk`` frames at a time.

    Latent kernels (N, T, H*W, nh, D), H2 (D, kt, kh, kw), zero-padded channels-last
    values (N, T+kt-1, H+kh-1, W+kw-1, dv), G (dv, kt, kh, kw) or None (no relational
    context) and I (dv, dv) or None (identity) -> y (N, T, H*W, nh, dv), with
    khat = kernel H2, A = khat Pv, y = A I + (A Pv^T) G^T (the A I term only with
    ``use_basic_context``) and Pv (M, dv) the neighbourhood values of each position.
    On a GPU the Triton kernels take a whole clip at once, whatever ``chunk`` says.
    """
    arguments = (kernel, latent_weight, padded_values, context_weight, mixing)
    if choose_backend("aggregate", *arguments) is Backend.TRACING:
        return _forward(Backend.TRACING, *arguments, kernel_size, use_basic_context, chunk)[0]
    return torch.ops.rsanet.aggregate_neighbourhoods(
        *arguments, list(kernel_size), use_basic_context, chunk
    )[0]


def _chunk_weights(
    kernel: torch.Tensor,
    to_neighbours: torch.Tensor,
    clip: int | slice,
    frames: slice,
    scratch: Scratch,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent kernels (P' nh, D) and khat = kernel H2 (P', nh, M) of one chunk of frames of
    one clip (or of the clips of a slice); forward and backward build them alike."""
    nh, dd = kernel.shape[-2:]
    m = to_neighbours.shape[1]
    latent = kernel[clip, frames].reshape(-1, dd)
    neighbour_weights = torch.mm(latent, to_neighbours, out=scratch("khat", latent.shape[0], m))
    return latent, neighbour_weights.view(-1, nh, m)


def _frames_per_chunk(backend: Backend, frames: int, chunk: int) -> int:
    return frames if backend is Backend.TRITON else chunk  # a GPU has no cache to fit


def _forward(
    backend: Backend,
    kernel: torch.Tensor,
    latent_weight: torch.Tensor,
    padded_values: torch.Tensor,
    context_weight: torch.Tensor | None,
    mixing: torch.Tensor | None,
    kernel_size: _args.Size3,
    use_basic_context: bool,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, A), both (N, T, H*W, nh, dv), on ``backend``: A and A Pv^T from its fused kernels,
    or from an unfold and two batched GEMMs."""
    n, t, hw, nh, _ = kernel.shape
    dv = padded_values.shape[-1]
    to_neighbours = latent_weight.flatten(1)  # (D, M)
    m = to_neighbours.shape[1]
    kernels = fused_kernels(backend)
    tracing = backend is Backend.TRACING
    outputs, aggregated = [], []
    scratch = Scratch(padded_values, enabled=not tracing)
    pieces = chunks(t, n, _frames_per_chunk(backend, t, chunk))
    if tracing:  # every clip at once: the exported graph has no loop over the batch, whose
        # size then stays free (an ONNX export with a dynamic batch)
        pieces = [(slice(None), frames) for _, frames in chunks(t, 1, chunk)]
    for clip, frames in pieces:
        _, neighbour_weights = _chunk_weights(kernel, to_neighbours, clip, frames, scratch)
        chunk_halo = halo(padded_values, clip, frames, kernel_size)
        rows = neighbour_weights.shape[0]
        correlation = None
        if kernels is not None:
            if context_weight is not None:
                correlation = scratch.tensor("correlation", rows, nh, m)
            chunk_aggregated = kernels.aggregate(
                neighbour_weights, chunk_halo, kernel_size, correlation
            )
        else:
            if tracing:
                unfolded = unfold_by_slices(chunk_halo, kernel_size)
            else:
                unfolded = unfold_windows(chunk_halo, kernel_size, scratch("unfolded", rows, m, dv))
            chunk_aggregated = torch.bmm(neighbour_weights, unfolded)  # A: (P', nh, dv)
            if context_weight is not None:
                correlation = torch.bmm(  # A Pv^T: (P', nh, M)
                    chunk_aggregated,
                    unfolded.transpose(1, 2),
                    out=scratch("correlation", rows, nh, m),
                )
        out = torch.zeros_like(chunk_aggregated)
        if use_basic_context:
            out = chunk_aggregated @ mixing if mixing is not None else chunk_aggregated
        if correlation is not None:
            relational = correlation.view(-1, m) @ context_weight.reshape(dv, m).t()
            out = out + relational.reshape(out.shape)
        outputs.append(out)
        aggregated.append(chunk_aggregated)
    shape = (n, t, hw, nh, dv)
    if tracing:  # chunks of frames of every clip: (N, T', H*W, nh, dv) each, joined on T
        frames_of = [frames.stop - frames.start for _, frames in pieces]
        return tuple(
            torch.cat(
                [p.reshape(-1, f, hw, nh, dv) for p, f in zip(parts, frames_of, strict=True)], dim=1
            )
            for parts in (outputs, aggregated)
        )
    return torch.cat(outputs).reshape(shape), torch.cat(aggregated).reshape(shape)


def _chunk_backward_with_operators(
    neighbour_weights: torch.Tensor,
    grad_correlation: torch.Tensor | None,
    aggregated: torch.Tensor,
    grad_aggregated: torch.Tensor,
    chunk_halo: torch.Tensor,
    grad_halo: torch.Tensor,
    kernel_size: _args.Size3,
    scratch: Scratch,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Backward of one chunk's products A = khat Pv, corr = A Pv^T with PyTorch operators,
    what the fused ``aggregate_backward`` kernels compute: -> (corr, khat's gradient); the
    values' gradient is added onto ``grad_halo``."""
    rows, nh, m = neighbour_weights.shape
    dv = chunk_halo.shape[-1]
    unfolded = unfold_windows(chunk_halo, kernel_size, scratch("unfolded", rows, m, dv))
    correlation = None
    if grad_correlation is not None:
        correlation = torch.bmm(
            aggregated, unfolded.transpose(1, 2), out=scratch("correlation", rows, nh, m)
        )
        grad_aggregated = torch.baddbmm(grad_aggregated, grad_correlation, unfolded)
        # both paths into Pv in one GEMM: [gcorr; khat]^T [A; gA]
        left = torch.cat(  # (P', 2nh, M)
            [grad_correlation, neighbour_weights], 1, out=scratch("left", rows, 2 * nh, m)
        )
        right = torch.cat(  # (P', 2nh, dv)
            [aggregated, grad_aggregated], 1, out=scratch("right", rows, 2 * nh, dv)
        )
    else:
        left, right = neighbour_weights, grad_aggregated
    grad_weights = torch.bmm(grad_aggregated, unfolded.transpose(1, 2))
    grad_unfolded = torch.bmm(  # (P', M, dv)
        left.transpose(1, 2), right, out=scratch("grad_unfolded", rows, m, dv)
    )
    fold_channels_last_(grad_halo, grad_unfolded, kernel_size)
    return correlation, grad_weights


def _backward(
    backend: Backend,
    grad_out: torch.Tensor,
    kernel: torch.Tensor,
    latent_weight: torch.Tensor,
    padded_values: torch.Tensor,
    aggregated: torch.Tensor,
    context_weight: torch.Tensor | None,
    mixing: torch.Tensor | None,
    kernel_size: _args.Size3,
    use_basic_context: bool,
    chunk: int,
) -> tuple[torch.Tensor, ...]:
    """Gradients of kernel, H2, the padded values, G and I (an empty tensor for G or I
    where the layer has none), chunk by chunk on ``backend``."""
    n, t, hw, nh, dd = kernel.shape
    dv = padded_values.shape[-1]
    to_neighbours = latent_weight.reshape(dd, -1)
    m = to_neighbours.shape[1]
    context = context_weight.reshape(dv, m) if context_weight is not None else None
    grad_out = grad_out.contiguous()
    grad_kernel = torch.empty_like(kernel)
    grad_latent = torch.zeros_like(to_neighbours)
    grad_values = torch.zeros_like(padded_values)
    grad_context = torch.zeros_like(context) if context is not None else None
    grad_mixing = torch.zeros_like(mixing) if mixing is not None else None

    kernels = fused_kernels(backend)
    scratch = Scratch(padded_values)
    for clip, frames in chunks(t, n, _frames_per_chunk(backend, t, chunk)):
        latent, neighbour_weights = _chunk_weights(kernel, to_neighbours, clip, frames, scratch)
        rows = neighbour_weights.shape[0]
        chunk_aggregated = aggregated[clip, frames].reshape(-1, nh, dv)
        grad = grad_out[clip, frames].reshape(-1, nh, dv)

        if use_basic_context and mixing is not None:  # the basic context's part of gA
            grad_aggregated = grad @ mixing.t()
            grad_mixing.addmm_(chunk_aggregated.reshape(-1, dv).t(), grad.reshape(-1, dv))
        elif use_basic_context:
            grad_aggregated = grad.clone()
        else:
            grad_aggregated = torch.zeros_like(grad)
        grad_correlation = None
        if context is not None:
            grad_correlation = torch.mm(
                grad.reshape(-1, dv), context, out=scratch("grad_correlation", rows * nh, m)
            ).view(-1, nh, m)
        operands = (
            neighbour_weights,
            grad_correlation,
            chunk_aggregated,
            grad_aggregated,
            halo(padded_values, clip, frames, kernel_size),
        )
        grad_halo = halo(grad_values, clip, frames, kernel_size)
        if kernels is not None:
            correlation = None
            if context is not None:
                correlation = scratch.tensor("correlation", rows, nh, m)
            grad_weights = scratch.tensor("grad_weights", rows, nh, m)
            kernels.aggregate_backward(*operands, grad_weights, correlation, grad_halo, kernel_size)
        else:
            correlation, grad_weights = _chunk_backward_with_operators(
                *operands, grad_halo, kernel_size, scratch
            )
        if context is not None:
            grad_context.addmm_(grad.reshape(-1, dv).t(), correlation.reshape(-1, m))
        grad_weights = grad_weights.reshape(-1, m)
        grad_latent.addmm_(latent.t(), grad_weights)
        torch.mm(grad_weights, to_neighbours.t(), out=grad_kernel[clip, frames].view(-1, dd))
    return (  # an absent parameter's gradient: an empty tensor of its own (no aliases)
        grad_kernel,
        grad_latent.reshape(latent_weight.shape),
        grad_values,
        grad_context.reshape(context_weight.shape) if grad_context is not None else _empty(kernel),
        grad_mixing if grad_mixing is not None else _empty(kernel),
    )


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(0)


# -- the custom ops --------------------------------------------------------------------------

_FORWARD_SCHEMA = (
    "(Tensor kernel, Tensor latent_weight, Tensor padded_values, Tensor? context_weight, "
    "Tensor? mixing, int[] kernel_size, bool use_basic_context, int chunk) -> (Tensor, Tensor)"
)
_BACKWARD_SCHEMA = (
    "(Tensor grad_out, Tensor kernel, Tensor latent_weight, Tensor padded_values, "
    "Tensor aggregated, Tensor? context_weight, Tensor? mixing, int[] kernel_size, "
    "bool use_basic_context, int chunk) -> (Tensor, Tensor, Tensor, Tensor, Tensor)"
)


def _forward_with_operators(*arguments):
    *tensors, kernel_size, use_basic_context, chunk = arguments
    return _forward(Backend.OPERATORS, *tensors, tuple(kernel_size), use_basic_context, chunk)


def _forward_on_chosen_backend(*arguments):
    *tensors, kernel_size, use_basic_context, chunk = arguments
    backend = choose_backend("aggregate", *tensors)
    return _forward(backend, *tensors, tuple(kernel_size), use_basic_context, chunk)


def _backward_with_operators(*arguments):
    *tensors, kernel_size, use_basic_context, chunk = arguments
    return _backward(Backend.OPERATORS, *tensors, tuple(kernel_size), use_basic_context, chunk)


def _backward_on_chosen_backend(*arguments):
    *tensors, kernel_size, use_basic_context, chunk = arguments
    backend = choose_backend("aggregate", *tensors)
    return _backward(backend, *tensors, tuple(kernel_size), use_basic_context, chunk)


_aggregate_op = torch.library.custom_op(
    "rsanet::aggregate_neighbourhoods",
    _forward_with_operators,
    mutates_args=(),
    schema=_FORWARD_SCHEMA,
)
_aggregate_op.register_kernel(("cpu", "cuda"), _forward_on_chosen_backend)

_aggregate_backward_op = torch.library.custom_op(
    "rsanet::aggregate_neighbourhoods_backward",
    _backward_with_operators,
    mutates_args=(),
    schema=_BACKWARD_SCHEMA,
)
_aggregate_backward_op.register_kernel(("cpu", "cuda"), _backward_on_chosen_backend)


@_aggregate_op.register_fake
def _(kernel, latent_weight, padded_values, context_weight, mixing, *options):
    shape = (*kernel.shape[:-1], padded_values.shape[-1])
    return kernel.new_empty(shape), kernel.new_empty(shape)


@_aggregate_backward_op.register_fake
def _(grad_out, kernel, latent_weight, padded_values, aggregated, context_weight, mixing, *_):
    return (
        torch.empty_like(kernel),
        torch.empty_like(latent_weight),
        torch.empty_like(padded_values),
        torch.empty_like(context_weight) if context_weight is not None else _empty(kernel),
        torch.empty_like(mixing) if mixing is not None else _empty(kernel),
    )


def _setup_aggregate(ctx, inputs, output):
    kernel, latent_weight, padded_values, context_weight, mixing, *options = inputs
    ctx.save_for_backward(kernel, latent_weight, padded_values, output[1], context_weight, mixing)
    ctx.options = options  # kernel_size, use_basic_context, chunk


def _backward_aggregate(ctx, grad_out, _grad_aggregated):
    kernel, latent_weight, padded_values, aggregated, context_weight, mixing = ctx.saved_tensors
    grads = torch.ops.rsanet.aggregate_neighbourhoods_backward(
        grad_out,
        kernel,
        latent_weight,
        padded_values,
        aggregated,
        context_weight,
        mixing,
        *ctx.options,
    )
    grad_kernel, grad_latent, grad_values, grad_context, grad_mixing = grads
    return (
        grad_kernel,
        grad_latent,
        grad_values,
        grad_context if context_weight is not None else None,
        grad_mixing if mixing is not None else None,
        None,
        None,
        None,
    )


_aggregate_op.register_autograd(_backward_aggregate, setup_context=_setup_aggregate)
# Under autocast, floating inputs are cast to float32 (the fused kernels' dtype) and the op
# runs with autocast off, as the RSA layer itself does; so does the backward (a backward
# called inside an autocast region would otherwise hand the kernels bfloat16 tensors).
for _device in ("cpu", "cuda"):
    _aggregate_op.register_autocast(_device, torch.float32)
    _aggregate_backward_op.register_autocast(_device, torch.float32)
