"""Relational self-attention (Kim et al., NeurIPS 2021), computed in its decomposed form.

For every position n of a clip the layer looks at the M = t*h*w neighbours around n and
produces, per head,

    y_n = (basic kernel + relational kernel) . (basic context + relational context)

The learned (M*dk) x M kernel projection is factorised through a latent dimension D,
H = H1 H2 and P = P1 H2 (see ``docs/layers.md``). With Pv (M x dv) the neighbourhood values
of a position, this module computes

    K_H1   = keys convolved with H1 over the neighbourhood   (dk x D)  one grouped conv
    kernel = q (K_H1 + P1)                                  (nh x D)  per head
    khat   = kernel H2                                      (nh x M)  weights on neighbours
    A      = khat Pv                                        (nh x dv) basic aggregation
    y      = A I + (A Pv^T) G^T                             (nh x dv)

which equals the paper's y_n exactly: the relational context (Pv Pv^T) G^T is never formed,
its product with khat is re-associated, and neither H nor any M x M matrix exists. The
per-position products run a few frames at a time, in fused kernels that read the
neighbourhoods in place (C++ on the CPU, :mod:`rsanet.layers.native`; Triton on a GPU,
:mod:`rsanet.layers.gpu`) or as batched GEMMs over unfolded channels-last neighbourhoods,
with a hand-written backward that recomputes what it needs instead of storing anything of
size M (see ``docs/performance.md``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from rsanet.layers import _args, gpu, native

KERNELS = ("basic", "relational", "basic+relational")
CONTEXTS = ("basic", "relational", "basic+relational")
COMPUTATIONS = ("auto", "reassociated", "official")
NORM_EPS = 1e-6


def l2_normalize(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x / sqrt(sum(x^2) + 1e-6) along ``dim`` (the authors' normalisation, eps inside)."""
    return x / (x.pow(2).sum(dim=dim, keepdim=True) + NORM_EPS).sqrt()


def l2_normalize_last(x: torch.Tensor) -> torch.Tensor:
    """:func:`l2_normalize` along the last dimension in three passes over x; in training
    only the output is kept for backward (not the un-normalised features)."""
    if _exporting():  # exporters know no vecdot
        return l2_normalize(x, dim=-1)
    if torch.is_grad_enabled():
        return L2NormalizeLast.apply(x)
    return x * (torch.linalg.vecdot(x, x).unsqueeze(-1) + NORM_EPS).rsqrt()


class L2NormalizeLast(torch.autograd.Function):
    """y = x r with r = (x.x + eps)^(-1/2); backward r (g - y (g.y)) needs only y and r."""

    @staticmethod
    def forward(ctx, x):
        scale = (torch.linalg.vecdot(x, x).unsqueeze(-1) + NORM_EPS).rsqrt()
        out = x * scale
        ctx.save_for_backward(out, scale)
        return out

    @staticmethod
    def backward(ctx, grad):
        out, scale = ctx.saved_tensors
        return (grad - out * torch.linalg.vecdot(grad, out).unsqueeze(-1)) * scale


class RSA(nn.Module):
    """Relational self-attention over a local spatio-temporal neighbourhood.

    (N, in_channels, T, H, W) -> (N, out_channels, T, H/stride, W/stride)

    Args:
        in_channels: channels C of the input.
        out_channels: channels of the output, ``num_heads * value_channels``.
        num_heads: query heads nh; keys and values are shared by all heads.
        key_channels: dk, channels per query head and of the key (default dv).
        value_channels: dv (default out_channels / num_heads).
        latent_channels: D of the decomposition H = H1 H2 (default dk).
        kernel_size: odd neighbourhood size (t, h, w), M = t*h*w.
        stride: spatial stride, applied as 3x3 average pooling after the transform.
        kernel: "basic", "relational" or "basic+relational".
        context: "basic", "relational" or "basic+relational".
        groups: G query-key channel groups of the relational kernel, 1..dk dividing dk
            (default dk: the Hadamard form; 1: one dot product per neighbour).
        computation: the exact order of operations: "reassociated", "official" (the
            authors') or "auto" (the one with fewer multiply-accumulates for this shape).
        activation_checkpointing: in training, keep only the input for backward and
            recompute the layer there (less memory, one more forward).

    Output channels are value-major (channel = value_channel * num_heads + head), as in the
    authors' code, so their checkpoints load unchanged (see ``rsanet.compat``).
    With kernel="basic" alone P1 is the identity (as in the authors' code: a learned P1
    would be redundant with H2), so latent_channels must equal key_channels.
    """

    #: upper bound for the unfolded neighbourhood buffer of one chunk of frames
    max_unfold_bytes: int = 8 * 2**20

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        num_heads: int = 8,
        key_channels: int | None = None,
        value_channels: int | None = None,
        latent_channels: int | None = None,
        kernel_size: int | Sequence[int] = (5, 7, 7),
        stride: int | Sequence[int] = 1,
        kernel: str = "basic+relational",
        context: str = "basic+relational",
        groups: int | None = None,
        computation: str = "auto",
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.activation_checkpointing = bool(activation_checkpointing)
        self.in_channels = _args.positive_int("in_channels", in_channels)
        out_channels = _args.positive_int("out_channels", out_channels)
        self.num_heads = _args.positive_int("num_heads", num_heads)
        if value_channels is None:
            _args.divides("num_heads", num_heads, "out_channels", out_channels)
            value_channels = out_channels // num_heads
        self.value_channels = _args.positive_int("value_channels", value_channels)
        if num_heads * value_channels != out_channels:
            raise ValueError(
                f"out_channels={out_channels} must equal num_heads * value_channels = "
                f"{num_heads} * {value_channels} = {num_heads * value_channels}"
            )
        self.out_channels = out_channels
        self.key_channels = _args.positive_int(
            "key_channels", value_channels if key_channels is None else key_channels
        )
        self.latent_channels = _args.positive_int(
            "latent_channels", self.key_channels if latent_channels is None else latent_channels
        )
        self.kernel_size = _args.kernel_size3("kernel_size", kernel_size)
        self.stride = _args.spatial_stride("stride", stride)
        self.computation = _args.choice("computation", computation, COMPUTATIONS)
        self.kernel = _args.choice("kernel", kernel, KERNELS)
        self.context = _args.choice("context", context, CONTEXTS)
        self.has_relational_kernel = "relational" in self.kernel
        self.has_basic_kernel = "basic" in self.kernel
        self.has_relational_context = "relational" in self.context
        self.has_basic_context = "basic" in self.context

        dk, dv, dd = self.key_channels, self.value_channels, self.latent_channels
        if groups is None:
            groups = dk
        groups = _args.positive_int("groups", groups)
        if not self.has_relational_kernel and groups != dk:
            raise ValueError(
                f"groups={groups} only applies to a relational kernel, got kernel={kernel!r}; "
                "leave groups=None"
            )
        _args.divides("groups", groups, "key_channels", dk)
        self.groups = groups
        if self.kernel == "basic" and dd != dk:
            raise ValueError(
                f"kernel='basic' uses the query itself as the latent kernel, so latent_channels "
                f"must equal key_channels={dk}, got latent_channels={dd}"
            )

        m = math.prod(self.kernel_size)
        shape = self.kernel_size
        key_width = dk if self.has_relational_kernel else 0
        self.projection = nn.Conv3d(in_channels, num_heads * dk + key_width + dv, 1, bias=False)
        # H2: latent dimension -> neighbour weights (shared by kernel and P = P1 H2).
        self.latent_weight = nn.Parameter(torch.empty(dd, *shape))
        # H1: query-key products of each neighbour -> latent dimension, per channel group.
        self.relational_kernel_weight = (
            nn.Parameter(torch.empty(groups, dd, *shape)) if self.has_relational_kernel else None
        )
        # P1: query -> latent dimension (the basic kernel), beside the relational one.
        self.basic_kernel_weight = (
            nn.Parameter(torch.randn(dk, dd) * math.sqrt(1.0 / (m * dd)))
            if self.kernel == "basic+relational"
            else None
        )
        # G: neighbour weights of the relational context (Pv Pv^T) G^T.
        self.relational_context_weight = (
            nn.Parameter(torch.empty(dv, *shape)) if self.has_relational_context else None
        )
        # I: learned mixing of the basic context, initialised to the identity.
        self.context_mixing = (
            nn.Parameter(torch.eye(dv)) if self.context == "basic+relational" else None
        )
        bound = 1.0 / math.sqrt(m)  # PyTorch's default for a 1-input-channel convolution
        for weight in (
            self.latent_weight,
            self.relational_kernel_weight,
            self.relational_context_weight,
        ):
            if weight is not None:
                nn.init.uniform_(weight, -bound, bound)
        self.pool = (
            nn.AvgPool3d((1, 3, 3), (1, self.stride, self.stride), (0, 1, 1))
            if self.stride > 1
            else nn.Identity()
        )

    @property
    def neighbourhood_size(self) -> int:
        return math.prod(self.kernel_size)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, num_heads={self.num_heads}, "
            f"key_channels={self.key_channels}, value_channels={self.value_channels}, "
            f"latent_channels={self.latent_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, kernel={self.kernel!r}, context={self.context!r}, "
            f"groups={self.groups}"
        )

    # -- pieces shared with the analysis tools --------------------------------------------

    def project_channels_last(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Normalised queries (N, T, H, W, nh, dk), keys (N, T, H, W, dk) or None and values
        (N, T, H, W, dv): the 1x1x1 projection as one GEMM whose output is channels-last, the
        layout every later step reads."""
        _args.check_clip(type(self).__name__, x, self.in_channels)
        nh, dk, dv = self.num_heads, self.key_channels, self.value_channels
        weight = self.projection.weight.reshape(self.projection.out_channels, self.in_channels)
        features = F.linear(x.permute(0, 2, 3, 4, 1), weight)  # (N, T, H, W, C')
        queries = l2_normalize_last(features[..., : nh * dk].unflatten(-1, (nh, dk)))
        keys = None
        if self.has_relational_kernel:
            keys = l2_normalize_last(features[..., nh * dk : nh * dk + dk])
        values = l2_normalize_last(features[..., features.shape[-1] - dv :])
        return queries, keys, values

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Normalised queries (N, nh, dk, T, H, W), keys (N, dk, T, H, W) or None, values
        (N, dv, T, H, W): views of :meth:`project_channels_last`."""
        queries, keys, values = self.project_channels_last(x)
        keys = keys.permute(0, 4, 1, 2, 3) if keys is not None else None
        return queries.permute(0, 4, 5, 1, 2, 3), keys, values.permute(0, 4, 1, 2, 3)

    def expanded_relational_kernel_weight(self) -> torch.Tensor:
        """H1 per key channel, (dk, D, M): channels of one group share their weights."""
        assert self.relational_kernel_weight is not None
        per_group = self.key_channels // self.groups
        weight = self.relational_kernel_weight.flatten(2)
        return weight.repeat_interleave(per_group, dim=0) if per_group > 1 else weight

    def key_summary(self, keys: torch.Tensor) -> torch.Tensor:
        """K_H1: every key channel filtered by its group's D neighbourhood filters H1.

        keys (N, T, H, W, dk) -> (N, T, H, W, dk, D), contiguous.
        """
        weight = self.expanded_relational_kernel_weight().reshape(-1, *self.kernel_size)
        return neighbourhood_filter(keys, weight, self.kernel_size)

    def latent_kernel(
        self, queries: torch.Tensor, key_summary: torch.Tensor | None
    ) -> torch.Tensor:
        """The kernel of every position and head in the latent space: q (K_H1 + P1).

        queries (N, T, H, W, nh, dk), K_H1 (N, T, H, W, dk, D) or None -> (N*T*H*W, nh, D).
        """
        nh, dk, dd = *queries.shape[-2:], self.latent_channels
        queries = queries.reshape(-1, nh, dk)
        if key_summary is None:
            return queries  # basic kernel alone: P1 = identity
        key_summary = key_summary.reshape(-1, dk, dd)
        if self.basic_kernel_weight is None:
            return torch.bmm(queries, key_summary)
        basic = (queries.reshape(-1, dk) @ self.basic_kernel_weight).reshape(-1, nh, dd)
        return torch.baddbmm(basic, queries, key_summary)

    # -- the fast path ---------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        queries, keys, values = self.project_channels_last(x)
        n, t, h, w, _ = values.shape
        key_summary = self.key_summary(keys) if keys is not None else None
        if self.uses_official_order():
            out = self.aggregate_official_order(queries, key_summary, values)  # (P, dv, nh)
        else:  # (P, nh, dv) -> value-major (P, dv, nh)
            kernel = self.latent_kernel(queries, key_summary)  # (P, nh, D)
            out = self.aggregate_reassociated(kernel, values).transpose(1, 2)
        out = out.reshape(n, t, h, w, self.out_channels).permute(0, 4, 1, 2, 3)
        return self.pool(out.contiguous())

    def uses_official_order(self) -> bool:
        """Which exact order of operations is cheaper for this layer's shape.

        The re-associated order costs nh M (D + dv) per position (plus nh M dv twice for a
        relational context); the authors' order costs dv D M (plus dv^2 M). With few value
        channels per head (early stages of a network) the authors' order is the cheaper one.
        """
        if self.computation != "auto":
            return self.computation == "official"
        nh, dv, dd, m = (
            self.num_heads,
            self.value_channels,
            self.latent_channels,
            self.neighbourhood_size,
        )
        reassociated = nh * m * (dd + dv) + (2 * nh * m * dv if self.has_relational_context else 0)
        official = dv * dd * m + (dv * dv * m if self.has_relational_context else 0)
        return official <= reassociated

    def aggregate_reassociated(self, kernel: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The re-associated order: latent kernels (P, nh, D) and channels-last values
        (N, T, H, W, dv) -> (P, nh, dv), P = N*T*H*W."""
        n, t, h, w, dv = values.shape
        kt, kh, kw = self.kernel_size
        padded = F.pad(values, (0, 0, kw // 2, kw // 2, kh // 2, kh // 2, kt // 2, kt // 2))
        # A few frames at a time: the unfolded neighbourhoods (M times the values) of a chunk
        # stay small enough to be reused from cache instead of being faulted in afresh.
        per_frame = h * w * self.neighbourhood_size * dv * values.element_size()
        chunk = max(1, min(t, self.max_unfold_bytes // per_frame))
        if gpu.available(values):  # no cache to fit: every position of a clip in one launch
            chunk = t
        arguments = (
            kernel.reshape(n, t, h * w, self.num_heads, self.latent_channels),
            self.latent_weight,
            padded,
            self.relational_context_weight,
            self.context_mixing,
            self.kernel_size,
            self.has_basic_context,
            chunk,
        )
        if torch.is_grad_enabled() and not _exporting():
            out = NeighbourhoodAggregation.apply(*arguments)
        else:  # inference and export: nothing to save, and exporters see plain operators
            out = aggregate_neighbourhoods(*arguments)[0]
        return out.reshape(-1, self.num_heads, dv)

    def aggregate_official_order(
        self, queries: torch.Tensor, key_summary: torch.Tensor | None, values: torch.Tensor
    ) -> torch.Tensor:
        """The authors' order of operations: queries (N, T, H, W, nh, dk), K_H1
        (N, T, H, W, dk, D) or None and values (N, T, H, W, dv) -> (P, dv, nh), value-major.
        F = values filtered with H2 and V_G = values filtered with G (every value channel
        by every filter, one grouped convolution), then per position kernel = q (K_H1 + P1),
        context = (V_G + I)^T F and y = context kernel^T; in inference on the CPU the three
        products run in one fused kernel (:func:`rsanet.layers.native.official_products`)."""
        dv, dd = self.value_channels, self.latent_channels
        filters = self.latent_weight
        if self.has_relational_context:
            filters = torch.cat([filters, self.relational_context_weight])
        per_channel = filters.expand(dv, *filters.shape).reshape(-1, *self.kernel_size)
        filtered = neighbourhood_filter(values, per_channel, self.kernel_size)
        filtered = filtered.reshape(-1, dv, filters.shape[0])  # (P, dv, D [+ dv])
        parameters = (self.basic_kernel_weight, self.context_mixing)
        if not torch.is_grad_enabled() and _uses_native(
            filtered, queries, key_summary, *parameters
        ):
            nh, dk = queries.shape[-2:]
            return native.official_products(
                queries.reshape(-1, nh, dk).contiguous(),
                key_summary.reshape(-1, dk, dd).contiguous() if key_summary is not None else None,
                self.basic_kernel_weight,
                filtered.contiguous(),
                self.context_mixing,
            )
        kernel = self.latent_kernel(queries, key_summary)  # (P, nh, D)
        context = filtered[..., :dd]  # F: (P, dv, D)
        if self.has_relational_context:
            mixing = filtered[..., dd:]  # V_G: (P, dv, dv)
            if self.context_mixing is not None:
                mixing = mixing + self.context_mixing
            context = torch.bmm(mixing.transpose(1, 2), context)
        return torch.bmm(context, kernel.transpose(1, 2))

    # -- inspection -------------------------------------------------------------------------

    @torch.no_grad()
    def neighbour_kernels(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The kernels this layer applies at every position, for analysis and pictures.

        (N, C, T, H, W) -> {"basic": kappa^V, "relational": kappa^R}, each
        (N, T, H, W, nh, kt, kh, kw): every head's weight on every neighbour (the kinds this
        layer does not use are left out). kappa^V depends on the query alone; kappa^R on the
        query and the keys around it, so it changes with the motion.
        """
        queries, keys, _ = self.project_channels_last(x)
        n, t, h, w, nh, dk = queries.shape
        flat_queries = queries.reshape(-1, nh, dk)
        to_neighbours = self.latent_weight.reshape(self.latent_channels, -1)  # H2: (D, M)
        shape = (n, t, h, w, nh, *self.kernel_size)
        kernels = {}
        if self.has_basic_kernel:
            latent = flat_queries
            if self.basic_kernel_weight is not None:
                latent = flat_queries @ self.basic_kernel_weight
            kernels["basic"] = (latent @ to_neighbours).reshape(shape)
        if self.has_relational_kernel:
            summary = self.key_summary(keys).reshape(-1, dk, self.latent_channels)
            kernels["relational"] = (torch.bmm(flat_queries, summary) @ to_neighbours).reshape(
                shape
            )
        return kernels

    # -- cost -----------------------------------------------------------------------------

    def macs(self, frames: int, height: int, width: int) -> int:
        """Multiply-accumulates this layer actually performs on one clip (in the order that
        :meth:`uses_official_order` picks); the roofline of ``docs/performance.md``."""
        if self.uses_official_order():
            return self.official_macs(frames, height, width)
        nh, dk, dv, dd = (
            self.num_heads,
            self.key_channels,
            self.value_channels,
            self.latent_channels,
        )
        m = self.neighbourhood_size
        per_position = self.projection.out_channels * self.in_channels
        per_position += nh * dd * m + nh * m * dv  # khat = kernel H2, A = khat Pv
        if self.has_relational_kernel:
            per_position += dk * dd * m + nh * dk * dd  # K_H1, kernel = q (K_H1 + P1)
        if self.has_relational_context:
            per_position += 2 * nh * m * dv  # A Pv^T, then G
        if self.context_mixing is not None:
            per_position += nh * dv * dv  # A I
        return frames * height * width * per_position

    def official_macs(self, frames: int, height: int, width: int) -> int:
        """Multiply-accumulates of one clip, counted in the authors' order of operations
        (projection, H1/H2/G convolutions, per-position products): the convention of the
        paper's FLOP figures, which ``rsanet profile`` reports."""
        positions = frames * height * width
        nh, dk, dv, dd = (
            self.num_heads,
            self.key_channels,
            self.value_channels,
            self.latent_channels,
        )
        m = self.neighbourhood_size
        per_position = self.projection.out_channels * self.in_channels
        per_position += dv * dd * m  # H2 on the values
        if self.has_relational_kernel:
            per_position += dk * dd * m + nh * dk * dd  # H1 on the keys, query products
        if self.has_relational_context:
            per_position += dv * dv * m + dv * dv * dd  # G on the values, V_G^T F
        per_position += nh * dv * dd  # kernel x context
        return positions * per_position


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def unfold_channels_last(
    padded: torch.Tensor, kernel_size: _args.Size3, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Neighbourhoods of a zero-padded channels-last clip, one contiguous row of C values per
    neighbour: (N, T + kt - 1, H + kh - 1, W + kw - 1, C) -> (N*T*H*W, M, C), neighbours in
    (dt, dh, dw) row-major order like a convolution's weight."""
    kt, kh, kw = kernel_size
    n, tp, hp, wp, c = padded.shape
    if _exporting():
        # exporters know no unfold: the same gather as one shifted slice per neighbour
        t, h, w = tp - kt + 1, hp - kh + 1, wp - kw + 1
        shifted = [
            padded[:, dt : dt + t, dh : dh + h, dw : dw + w]
            for dt in range(kt)
            for dh in range(kh)
            for dw in range(kw)
        ]
        return torch.stack(shifted, dim=4).reshape(-1, kt * kh * kw, c)
    windows = padded.unfold(1, kt, 1).unfold(2, kh, 1).unfold(3, kw, 1)  # N T H W C kt kh kw
    windows = windows.permute(0, 1, 2, 3, 5, 6, 7, 4)
    if out is None:
        return windows.reshape(-1, kt * kh * kw, c)
    out = out[: windows[..., 0, 0, 0, 0].numel()].view(windows.shape)
    return out.copy_(windows).view(-1, kt * kh * kw, c)


@functools.lru_cache(maxsize=64)
def _neighbour_rows(
    padded_size: tuple[int, int, int], kernel_size: _args.Size3, device: torch.device
) -> torch.Tensor:
    """The row of every neighbour of every position in a flattened padded clip of
    (T', H', W') positions, in :func:`unfold_channels_last`'s order: (T*H*W*M,) int64."""
    rows = torch.arange(math.prod(padded_size), device=device).reshape(1, *padded_size, 1)
    return unfold_channels_last(rows, kernel_size).reshape(-1)


def fold_channels_last_(
    out: torch.Tensor, gradient: torch.Tensor, kernel_size: _args.Size3
) -> torch.Tensor:
    """Adjoint of :func:`unfold_channels_last`, accumulated in place: every neighbour's
    gradient (N*T*H*W, M, C) summed onto the padded clip ``out`` (N, T', H', W', C)."""
    kt, kh, kw = kernel_size
    n, tp, hp, wp, c = out.shape
    if n == 1 and c >= 32 and out.is_contiguous():
        # one vectorised row add per neighbour: 3-6x faster than unfold_backward for long rows
        rows = _neighbour_rows((tp, hp, wp), kernel_size, out.device)
        out.view(-1, c).index_add_(0, rows, gradient.reshape(-1, c))
        return out
    t, h, w = tp - kt + 1, hp - kh + 1, wp - kw + 1
    windows = gradient.reshape(n, t, h, w, kt, kh, kw, c).permute(0, 1, 2, 3, 7, 4, 5, 6)
    unfold_backward = torch.ops.aten.unfold_backward
    by_width = unfold_backward(windows, [n, t, h, wp, c, kt, kh], 3, kw, 1)
    by_height = unfold_backward(by_width, [n, t, hp, wp, c, kt], 2, kh, 1)
    return out.add_(unfold_backward(by_height, [n, tp, hp, wp, c], 1, kt, 1))


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
    if torch.is_grad_enabled() and not _exporting():
        return NeighbourhoodFilter.apply(x, weight, kernel_size)
    return _filter_frames(x, weight, kernel_size)


def _temporal_taps(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(N, T, H, W, C) -> channels-last (N*T, C*kt, H, W): channel c*kt + dt holds channel
    c at frame t + dt - kt//2 (zero outside the clip)."""
    n, t, h, w, c = x.shape
    padded = F.pad(x, (0, 0, 0, 0, 0, 0, frames // 2, frames // 2))
    shifted = torch.stack([padded[:, dt : dt + t] for dt in range(frames)], dim=-1)
    return shifted.reshape(n * t, h, w, c * frames).permute(0, 3, 1, 2)


def _filter_frames(x: torch.Tensor, weight: torch.Tensor, kernel_size: _args.Size3):
    n, t, h, w, c = x.shape
    kt, kh, kw = kernel_size
    out = F.conv2d(_temporal_taps(x, kt), weight, padding=(kh // 2, kw // 2), groups=c)
    return out.permute(0, 2, 3, 1).reshape(n, t, h, w, c, weight.shape[0] // c)


class NeighbourhoodFilter(torch.autograd.Function):
    """:func:`neighbourhood_filter` saving its input, not the kt times larger stack of shifts."""

    @staticmethod
    def forward(ctx, x, weight, kernel_size):
        ctx.save_for_backward(x, weight)
        ctx.kernel_size = kernel_size
        return _filter_frames(x, weight, kernel_size)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        n, t, h, w, c = x.shape
        kt, kh, kw = ctx.kernel_size
        grad_x = None
        # oneDNN's input gradient has kt output channels per group, its slow case
        fused = (
            ctx.needs_input_grad[0] and native.filter_applies(x, grad, weight) and not _exporting()
        )
        if fused:
            grad_x = native.filter_input_grad(
                grad.reshape(n, t, h, w, c, -1).contiguous(), weight, ctx.kernel_size
            )
        if not ctx.needs_input_grad[1] and (fused or not ctx.needs_input_grad[0]):
            return grad_x, None, None
        grad = grad.reshape(n * t, h, w, weight.shape[0]).permute(0, 3, 1, 2)
        grad_taps, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad,
            _temporal_taps(x, kt),
            weight,
            None,
            [1, 1],
            [kh // 2, kw // 2],
            [1, 1],
            False,
            [0, 0],
            c,
            [ctx.needs_input_grad[0] and not fused, ctx.needs_input_grad[1], False],
        )
        if grad_taps is not None:  # every shift's gradient back onto its frames
            taps = grad_taps.permute(0, 2, 3, 1).reshape(n, t, h, w, c, kt)
            padded = taps.new_zeros(n, t + kt - 1, h, w, c)
            for dt in range(kt):
                padded[:, dt : dt + t] += taps[..., dt]
            grad_x = padded[:, kt // 2 : kt // 2 + t]
        return grad_x, grad_weight, None


def _chunks(frames: int, batch: int, chunk: int):
    """(clip, first frame, last frame + 1) of every chunk of ``chunk`` frames."""
    for clip in range(batch):
        for start in range(0, frames, chunk):
            yield clip, start, min(frames, start + chunk)


class _Scratch:
    """Named work buffers reused by every chunk of a loop: the allocator would otherwise hand
    each chunk fresh pages, and faulting them in costs more than the products that fill
    them. The first request of a name sizes its buffer (the first chunk is the largest).
    Gives None (a fresh output) where ``out=`` cannot be used: under autograd or export."""

    def __init__(self, like: torch.Tensor, enabled: bool = True) -> None:
        self.like, self.enabled, self.buffers = like, enabled, {}

    def __call__(self, name: str, *shape: int) -> torch.Tensor | None:
        if not self.enabled:
            return None
        buffer = self.buffers.get(name)
        if buffer is None:
            buffer = self.buffers[name] = self.like.new_empty(shape)
        return buffer[: shape[0]]

    def tensor(self, name: str, *shape: int) -> torch.Tensor:
        """The buffer, or a fresh tensor where buffers are off."""
        buffer = self(name, *shape)
        return self.like.new_empty(shape) if buffer is None else buffer


def _chunk_weights(
    kernel: torch.Tensor, to_neighbours: torch.Tensor, clip: int, frames: slice, scratch: _Scratch
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent kernels (P' nh, D) and khat = kernel H2 (P', nh, M) of one chunk of frames of
    one clip; forward and backward build them alike."""
    nh, dd = kernel.shape[-2:]
    m = to_neighbours.shape[1]
    latent = kernel[clip, frames].reshape(-1, dd)
    neighbour_weights = torch.mm(latent, to_neighbours, out=scratch("khat", latent.shape[0], m))
    return latent, neighbour_weights.view(-1, nh, m)


def _halo(padded: torch.Tensor, clip: int, frames: slice, kernel_size: _args.Size3):
    """The padded frames a chunk's neighbourhoods reach: (1, T' + kt - 1, H', W', C)."""
    return padded[clip : clip + 1, frames.start : frames.stop + kernel_size[0] - 1]


def _fused_kernels(*tensors: torch.Tensor | None):
    """The fused neighbourhood products for these tensors: :mod:`rsanet.layers.native` (C++,
    CPU), :mod:`rsanet.layers.gpu` (Triton, GPU) or None (PyTorch operators)."""
    if _exporting():
        return None
    tensors = tuple(t for t in tensors if t is not None)
    return next((kernels for kernels in (native, gpu) if kernels.available(*tensors)), None)


def _uses_native(*tensors: torch.Tensor | None) -> bool:
    """Whether the C++ kernels compute for these tensors (the authors' order has no others)."""
    return _fused_kernels(*tensors) is native


def aggregate_neighbourhoods(
    kernel: torch.Tensor,
    latent_weight: torch.Tensor,
    padded_values: torch.Tensor,
    context_weight: torch.Tensor | None,
    mixing: torch.Tensor | None,
    kernel_size: _args.Size3,
    use_basic_context: bool,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-position part of the re-associated order, ``chunk`` frames at a time.

    Latent kernels (N, T, H*W, nh, D), H2 (D, kt, kh, kw) and zero-padded channels-last
    values (N, T+kt-1, H+kh-1, W+kw-1, dv) -> (y, A), both (N, T, H*W, nh, dv), with
    khat = kernel H2, A = khat Pv, y = A I + (A Pv^T) G^T and Pv (M, dv) the neighbourhood
    values of each position. A and A Pv^T come from the fused kernels where they apply
    (:func:`_fused_kernels`), else from an unfold and two batched GEMMs.
    """
    n, t, hw, nh, _ = kernel.shape
    dv = padded_values.shape[-1]
    to_neighbours = latent_weight.flatten(1)  # (D, M)
    m = to_neighbours.shape[1]
    kernels = _fused_kernels(padded_values, kernel, latent_weight, context_weight, mixing)
    outputs, aggregated = [], []
    scratch = _Scratch(padded_values, not (torch.is_grad_enabled() or _exporting()))
    for clip, start, stop in _chunks(t, n, chunk):
        frames = slice(start, stop)
        _, neighbour_weights = _chunk_weights(kernel, to_neighbours, clip, frames, scratch)
        halo = _halo(padded_values, clip, frames, kernel_size)
        rows = neighbour_weights.shape[0]
        correlation = None
        if kernels is not None:
            if context_weight is not None:
                correlation = scratch.tensor("correlation", rows, nh, m)
            chunk_aggregated = kernels.aggregate(neighbour_weights, halo, kernel_size, correlation)
        else:
            unfolded = unfold_channels_last(halo, kernel_size, scratch("unfolded", rows, m, dv))
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
    return torch.cat(outputs).reshape(shape), torch.cat(aggregated).reshape(shape)


def _neighbourhood_backward(
    neighbour_weights: torch.Tensor,
    grad_correlation: torch.Tensor | None,
    aggregated: torch.Tensor,
    grad_aggregated: torch.Tensor,
    halo: torch.Tensor,
    grad_halo: torch.Tensor,
    kernel_size: _args.Size3,
    scratch: _Scratch,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Backward of one chunk's products A = khat Pv, corr = A Pv^T with PyTorch operators,
    what :func:`rsanet.layers.native.aggregate_backward` computes: -> (corr, khat's
    gradient); the values' gradient is added onto ``grad_halo``."""
    rows, nh, m = neighbour_weights.shape
    dv = halo.shape[-1]
    unfolded = unfold_channels_last(halo, kernel_size, scratch("unfolded", rows, m, dv))
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


class NeighbourhoodAggregation(torch.autograd.Function):
    """:func:`aggregate_neighbourhoods` with a hand-written backward, chunk by chunk like the
    forward: khat and the neighbourhoods (M times the size of the values) are recomputed
    instead of being saved, the per-position products run in the fused kernel or
    :func:`_neighbourhood_backward`, and every gradient is written into one buffer for the
    whole clip."""

    @staticmethod
    def forward(
        ctx,
        kernel,
        latent_weight,
        padded_values,
        context_weight,
        mixing,
        kernel_size,
        use_basic_context,
        chunk,
    ):
        out, aggregated = aggregate_neighbourhoods(
            kernel,
            latent_weight,
            padded_values,
            context_weight,
            mixing,
            kernel_size,
            use_basic_context,
            chunk,
        )
        ctx.save_for_backward(
            kernel, latent_weight, padded_values, aggregated, context_weight, mixing
        )
        ctx.options = kernel_size, use_basic_context, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out):
        kernel, latent_weight, padded_values, aggregated, context_weight, mixing = ctx.saved_tensors
        kernel_size, use_basic_context, chunk = ctx.options
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

        kernels = _fused_kernels(padded_values, kernel, grad_out, latent_weight, context, mixing)
        scratch = _Scratch(padded_values)
        for clip, start, stop in _chunks(t, n, chunk):
            frames = slice(start, stop)
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
                _halo(padded_values, clip, frames, kernel_size),
            )
            grad_halo = _halo(grad_values, clip, frames, kernel_size)
            if kernels is not None:
                correlation = None
                if context is not None:
                    correlation = scratch.tensor("correlation", rows, nh, m)
                grad_weights = scratch.tensor("grad_weights", rows, nh, m)
                kernels.aggregate_backward(
                    *operands, grad_weights, correlation, grad_halo, kernel_size
                )
            else:
                correlation, grad_weights = _neighbourhood_backward(
                    *operands, grad_halo, kernel_size, scratch
                )
            if context is not None:
                grad_context.addmm_(grad.reshape(-1, dv).t(), correlation.reshape(-1, m))
            grad_weights = grad_weights.reshape(-1, m)
            grad_latent.addmm_(latent.t(), grad_weights)
            torch.mm(grad_weights, to_neighbours.t(), out=grad_kernel[clip, frames].view(-1, dd))
        return (
            grad_kernel,
            grad_latent.reshape(latent_weight.shape),
            grad_values,
            grad_context.reshape(context_weight.shape) if context is not None else None,
            grad_mixing,
            None,
            None,
            None,
        )
