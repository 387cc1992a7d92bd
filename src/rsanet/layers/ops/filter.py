"""K_H1, F and V_G: every channel of a channels-last clip filtered over its neighbourhood.

:func:`neighbourhood_filter` is the custom op ``rsanet::neighbourhood_filter`` with a
hand-written backward (``rsanet::neighbourhood_filter_backward``), whose input gradient runs
in the C++ gather kernel (:func:`rsanet.layers.native.filter_input_grad`) where it applies.
"""

import torch
import torch.nn.functional as F

from rsanet.layers import _args, native
from rsanet.layers.backends import Backend, choose_backend


def neighbourhood_filter(
    x: torch.Tensor, weight: torch.Tensor, kernel_size: _args.Size3
) -> torch.Tensor:
    """Every channel of a channels-last clip filtered by its own F neighbourhood filters
    (zero padding, output size = input size).

    x (N, T, H, W, C), weight (C*F, kt, kh, kw) -> (N, T, H, W, C, F), contiguous.

    Computed as one grouped 2D convolution over channels-last frames whose input channels
    are the kt temporal shifts of every channel: oneDNN runs this form two to four times
    faster than the equivalent grouped 3D convolution, forward and backward, and its output
    is already in the layout the per-position products read. In training the kt-fold input
    is rebuilt for backward instead of being saved.
    """
    if choose_backend("neighbourhood_filter", x, weight) is Backend.TRACING:
        return filter_frames(x, weight, kernel_size)
    return torch.ops.rsanet.neighbourhood_filter(x, weight, list(kernel_size))


def temporal_taps(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(N, T, H, W, C) -> channels-last (N*T, C*kt, H, W): channel c*kt + dt holds channel
    c at frame t + dt - kt//2 (zero outside the clip)."""
    n, t, h, w, c = x.shape
    padded = F.pad(x, (0, 0, 0, 0, 0, 0, frames // 2, frames // 2))
    shifted = torch.stack([padded[:, dt : dt + t] for dt in range(frames)], dim=-1)
    return shifted.reshape(n * t, h, w, c * frames).permute(0, 3, 1, 2)


def filter_frames(x: torch.Tensor, weight: torch.Tensor, kernel_size) -> torch.Tensor:
    """:func:`neighbourhood_filter`'s forward in PyTorch operators."""
    n, t, h, w, c = x.shape
    kt, kh, kw = kernel_size
    out = F.conv2d(temporal_taps(x, kt), weight, padding=(kh // 2, kw // 2), groups=c)
    return out.permute(0, 2, 3, 1).reshape(n, t, h, w, c, weight.shape[0] // c)


def _filter_backward(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    kernel_size: list[int],
    input_grad: bool,
    weight_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad of x or an empty tensor, grad of weight or an empty tensor)."""
    n, t, h, w, c = x.shape
    kt, kh, kw = kernel_size
    grad_x = grad_weight = None
    # oneDNN's input gradient has kt output channels per group, its slow case
    fused = input_grad and choose_backend("filter_input_grad", x, grad, weight) is Backend.NATIVE
    if fused:
        grad_x = native.filter_input_grad(
            grad.reshape(n, t, h, w, c, -1).contiguous(), weight, tuple(kernel_size)
        )
    if weight_grad or (input_grad and not fused):
        grad = grad.reshape(n * t, h, w, weight.shape[0]).permute(0, 3, 1, 2)
        grad_taps, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad,
            temporal_taps(x, kt),
            weight,
            None,
            [1, 1],
            [kh // 2, kw // 2],
            [1, 1],
            False,
            [0, 0],
            c,
            [input_grad and not fused, weight_grad, False],
        )
        if grad_taps is not None:  # every shift's gradient back onto its frames
            taps = grad_taps.permute(0, 2, 3, 1).reshape(n, t, h, w, c, kt)
            grad_x = taps.new_zeros(n, t, h, w, c)
            for dt in range(kt):  # frame u took tap dt of frame u + shift
                shift = kt // 2 - dt
                first, stop = max(0, -shift), min(t, t - shift)
                grad_x[:, first:stop] += taps[:, first + shift : stop + shift, ..., dt]
    return (  # a gradient not asked for: an empty tensor of its own (no aliases)
        grad_x if grad_x is not None else x.new_empty(0),
        grad_weight if grad_weight is not None else x.new_empty(0),
    )


_filter_op = torch.library.custom_op(
    "rsanet::neighbourhood_filter",
    lambda x, weight, kernel_size: filter_frames(x, weight, kernel_size),
    mutates_args=(),
    schema="(Tensor x, Tensor weight, int[] kernel_size) -> Tensor",
)
_filter_backward_op = torch.library.custom_op(
    "rsanet::neighbourhood_filter_backward",
    _filter_backward,
    mutates_args=(),
    schema=(
        "(Tensor grad, Tensor x, Tensor weight, int[] kernel_size, bool input_grad, "
        "bool weight_grad) -> (Tensor, Tensor)"
    ),
)


@_filter_op.register_fake
def _(x, weight, kernel_size):
    return x.new_empty(*x.shape, weight.shape[0] // x.shape[-1])


@_filter_backward_op.register_fake
def _(grad, x, weight, kernel_size, input_grad, weight_grad):
    return (
        torch.empty_like(x) if input_grad else x.new_empty(0),
        torch.empty_like(weight) if weight_grad else x.new_empty(0),
    )


def _setup_filter(ctx, inputs, output):
    x, weight, kernel_size = inputs
    ctx.save_for_backward(x, weight)
    ctx.kernel_size = kernel_size


def _backward_filter(ctx, grad):
    x, weight = ctx.saved_tensors
    input_grad, weight_grad = ctx.needs_input_grad[:2]
    if not (input_grad or weight_grad):
        return None, None, None
    grad_x, grad_weight = torch.ops.rsanet.neighbourhood_filter_backward(
        grad, x, weight, ctx.kernel_size, input_grad, weight_grad
    )
    return (grad_x if input_grad else None), (grad_weight if weight_grad else None), None


_filter_op.register_autograd(_backward_filter, setup_context=_setup_filter)
# Under autocast, floating inputs are cast to float32 (the fused kernels' dtype) and the op
# runs with autocast off, as the RSA layer itself does; so does the backward (a backward
# called inside an autocast region would otherwise hand the kernels bfloat16 tensors).
for _device in ("cpu", "cuda"):
    _filter_op.register_autocast(_device, torch.float32)
    _filter_backward_op.register_autocast(_device, torch.float32)
