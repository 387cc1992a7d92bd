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
per-position products are batched GEMMs over channels-last neighbourhoods, processed a few
frames at a time, with a hand-written backward that recomputes the unfolded values instead
of storing them (see ``docs/performance.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from rsanet.layers import _args

KERNELS = ("basic", "relational", "basic+relational")
CONTEXTS = ("basic", "relational", "basic+relational")
COMPUTATIONS = ("auto", "reassociated", "official")
NORM_EPS = 1e-6


def l2_normalize(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x / sqrt(sum(x^2) + 1e-6) along ``dim`` (the authors' normalisation, eps inside)."""
    return x / (x.pow(2).sum(dim=dim, keepdim=True) + NORM_EPS).sqrt()


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

    # -- pieces shared with the reference implementation and the kernel pictures --------

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Normalised queries (N, nh, dk, T, H, W), keys (N, dk, T, H, W) or None, values
        (N, dv, T, H, W)."""
        _args.check_clip(type(self).__name__, x, self.in_channels)
        n, _, t, h, w = x.shape
        nh, dk, dv = self.num_heads, self.key_channels, self.value_channels
        features = self.projection(x)
        queries = l2_normalize(features[:, : nh * dk].reshape(n, nh, dk, t, h, w), dim=2)
        keys = None
        if self.has_relational_kernel:
            keys = l2_normalize(features[:, nh * dk : nh * dk + dk], dim=1)
        values = l2_normalize(features[:, features.shape[1] - dv :], dim=1)
        return queries, keys, values

    def expanded_relational_kernel_weight(self) -> torch.Tensor:
        """H1 per key channel, (dk, D, M): channels of one group share their weights."""
        assert self.relational_kernel_weight is not None
        per_group = self.key_channels // self.groups
        weight = self.relational_kernel_weight.flatten(2)
        return weight.repeat_interleave(per_group, dim=0) if per_group > 1 else weight

    # -- the fast path ---------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        queries, keys, values = self.project(x)
        if self.uses_official_order():
            return self.pool(self.aggregate_official_order(queries, keys, values))
        return self.pool(self.aggregate_reassociated(queries, keys, values))

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

    def aggregate_reassociated(
        self, queries: torch.Tensor, keys: torch.Tensor | None, values: torch.Tensor
    ) -> torch.Tensor:
        """The re-associated order: (N, nh, dk, T, H, W) queries, (N, dk, T, H, W) keys,
        (N, dv, T, H, W) values -> (N, dv*nh, T, H, W) before pooling."""
        n, _, t, h, w = values.shape
        kt, kh, kw = self.kernel_size
        pad = (kw // 2, kw // 2, kh // 2, kh // 2, kt // 2, kt // 2)
        # values channels-last (N, T, H, W, dv): neighbourhoods then gather contiguous rows
        values = F.pad(values.permute(0, 2, 3, 4, 1), (0, 0, *pad))
        key_summary = self.key_summary(keys) if keys is not None else None
        # A few frames at a time: every intermediate stays small enough to be reused by the
        # allocator instead of being faulted in afresh (which costs more than the arithmetic).
        per_frame = n * h * w * self.neighbourhood_size * self.value_channels
        chunk = max(1, min(t, self.max_unfold_bytes // (per_frame * values.element_size())))
        outputs = []
        for start in range(0, t, chunk):
            stop = min(t, start + chunk)
            halo = slice(start, stop + kt - 1)
            outputs.append(
                self._attend(
                    queries[:, :, :, start:stop],
                    key_summary[:, start:stop] if key_summary is not None else None,
                    values[:, halo],
                )
            )
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
        # (N, T, H, W, nh, dv) -> value-major channels (N, dv*nh, T, H, W)
        return out.permute(0, 5, 4, 1, 2, 3).reshape(n, self.out_channels, t, h, w)

    def aggregate_official_order(
        self, queries: torch.Tensor, keys: torch.Tensor | None, values: torch.Tensor
    ) -> torch.Tensor:
        """The authors' order of operations, same inputs and output as
        :meth:`aggregate_reassociated`: K_H1, F = values convolved with H2 and V_G = values
        convolved with G (one convolution per value channel), then per position
        kernel = q (K_H1 + P1), context = (V_G + I)^T F, y = kernel context^T."""
        n, nh, dk, t, h, w = queries.shape
        dv, dd = self.value_channels, self.latent_channels
        kt, kh, kw = self.kernel_size
        pad = (kt // 2, kh // 2, kw // 2)
        kernel = self.latent_kernel(queries, self.key_summary(keys) if keys is not None else None)
        per_channel = values.reshape(n * dv, 1, t, h, w)
        latent = F.conv3d(per_channel, self.latent_weight.reshape(dd, 1, kt, kh, kw), padding=pad)
        context = latent.reshape(n, dv, dd, t, h, w).permute(0, 3, 4, 5, 1, 2).reshape(-1, dv, dd)
        if self.has_relational_context:
            g = self.relational_context_weight.reshape(dv, 1, kt, kh, kw)
            mixing = F.conv3d(per_channel, g, padding=pad)  # V_G: (N*dv, dv, T, H, W)
            mixing = mixing.reshape(n, dv, dv, t, h, w).permute(0, 3, 4, 5, 1, 2)
            mixing = mixing.reshape(-1, dv, dv)
            if self.context_mixing is not None:
                mixing = mixing + self.context_mixing
            context = torch.bmm(mixing.transpose(1, 2).contiguous(), context.contiguous())
        out = torch.bmm(context.contiguous(), kernel.transpose(1, 2))  # (P, dv, nh): value-major
        return out.reshape(n, t, h, w, dv * nh).permute(0, 4, 1, 2, 3)

    def _attend(
        self, queries: torch.Tensor, key_summary: torch.Tensor | None, values: torch.Tensor
    ) -> torch.Tensor:
        """queries (N, nh, dk, T', H, W), K_H1 + P1 (N, T', H, W, dk, D) or None and zero-padded
        channels-last values (N, T'+kt-1, H+kh-1, W+kw-1, dv) -> (N, T', H, W, nh, dv)."""
        n, nh, _, t, h, w = queries.shape
        dd, m = self.latent_channels, self.neighbourhood_size
        kernel = self.latent_kernel(queries, key_summary)  # (N*T'*H*W, nh, D)
        # khat = kernel H2: every head's weight on every neighbour
        neighbour_weights = torch.mm(kernel.reshape(-1, dd), self.latent_weight.reshape(dd, m))
        arguments = (
            neighbour_weights.reshape(-1, nh, m),
            values,
            self.relational_context_weight,
            self.context_mixing,
            self.kernel_size,
            self.has_basic_context,
        )
        if torch.is_grad_enabled() and not _exporting():
            out = NeighbourhoodAggregation.apply(*arguments)
        else:  # inference and export: nothing to save, and exporters see plain operators
            out = aggregate_neighbourhoods(*arguments)[0]
        return out.reshape(n, t, h, w, nh, self.value_channels)

    def key_summary(self, keys: torch.Tensor) -> torch.Tensor:
        """K_H1 + P1: every key channel filtered by its group's D neighbourhood filters (one
        grouped convolution), plus the basic kernel's P1.

        keys (N, dk, T, H, W) -> (N, T, H, W, dk, D), contiguous.
        """
        n, dk, t, h, w = keys.shape
        kt, kh, kw = self.kernel_size
        weight = self.expanded_relational_kernel_weight().reshape(-1, 1, kt, kh, kw)
        summary = F.conv3d(keys, weight, padding=(kt // 2, kh // 2, kw // 2), groups=dk)
        summary = summary.reshape(n, dk, self.latent_channels, t, h, w)
        summary = summary.permute(0, 3, 4, 5, 1, 2).contiguous()
        if self.basic_kernel_weight is not None:
            summary = summary.add_(self.basic_kernel_weight)
        return summary

    def latent_kernel(
        self, queries: torch.Tensor, key_summary: torch.Tensor | None
    ) -> torch.Tensor:
        """The kernel of every position and head in the latent space: q (K_H1 + P1).

        queries (N, nh, dk, T, H, W), K_H1 + P1 (N, T, H, W, dk, D) or None
        -> (N*T*H*W, nh, D).
        """
        nh, dk = queries.shape[1:3]
        queries = queries.permute(0, 3, 4, 5, 1, 2).reshape(-1, nh, dk).contiguous()
        if key_summary is None:
            return queries  # basic kernel alone: P1 = identity
        # batched GEMMs run fast on CPU only when every item is contiguous
        return torch.bmm(queries, key_summary.reshape(-1, dk, self.latent_channels))

    # -- inspection -------------------------------------------------------------------------

    @torch.no_grad()
    def neighbour_kernels(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The kernels this layer applies at every position, for analysis and pictures.

        (N, C, T, H, W) -> {"basic": kappa^V, "relational": kappa^R}, each
        (N, T, H, W, nh, kt, kh, kw): every head's weight on every neighbour (the kinds this
        layer does not use are left out). kappa^V depends on the query alone; kappa^R on the
        query and the keys around it, so it changes with the motion.
        """
        queries, keys, _ = self.project(x)
        n, nh, dk, t, h, w = queries.shape
        dd, m = self.latent_channels, self.neighbourhood_size
        flat_queries = queries.permute(0, 3, 4, 5, 1, 2).reshape(-1, nh, dk)
        to_neighbours = self.latent_weight.reshape(dd, m)
        shape = (n, t, h, w, nh, *self.kernel_size)
        kernels = {}
        if self.has_basic_kernel:
            latent = (
                flat_queries
                if self.basic_kernel_weight is None
                else flat_queries @ self.basic_kernel_weight
            )
            kernels["basic"] = (latent @ to_neighbours).reshape(shape)
        if self.has_relational_kernel:
            kt, kh, kw = self.kernel_size
            weight = self.expanded_relational_kernel_weight().reshape(-1, 1, kt, kh, kw)
            summary = F.conv3d(keys, weight, padding=(kt // 2, kh // 2, kw // 2), groups=dk)
            summary = summary.reshape(n, dk, dd, t, h, w).permute(0, 3, 4, 5, 1, 2)
            latent = torch.bmm(flat_queries, summary.reshape(-1, dk, dd).contiguous())
            kernels["relational"] = (latent @ to_neighbours).reshape(shape)
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


def unfold_channels_last(padded: torch.Tensor, kernel_size: _args.Size3) -> torch.Tensor:
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
    return windows.permute(0, 1, 2, 3, 5, 6, 7, 4).reshape(-1, kt * kh * kw, c)


def fold_channels_last(
    gradient: torch.Tensor, padded_shape: torch.Size, kernel_size: _args.Size3
) -> torch.Tensor:
    """Adjoint of :func:`unfold_channels_last`: every neighbour's gradient summed back onto
    the padded clip. (N*T*H*W, M, C) -> ``padded_shape`` (N, T', H', W', C)."""
    kt, kh, kw = kernel_size
    n, tp, hp, wp, c = padded_shape
    t, h, w = tp - kt + 1, hp - kh + 1, wp - kw + 1
    windows = gradient.reshape(n, t, h, w, kt, kh, kw, c).permute(0, 1, 2, 3, 7, 4, 5, 6)
    unfold_backward = torch.ops.aten.unfold_backward
    by_width = unfold_backward(windows, [n, t, h, wp, c, kt, kh], 3, kw, 1)
    by_height = unfold_backward(by_width, [n, t, hp, wp, c, kt], 2, kh, 1)
    return unfold_backward(by_height, [n, tp, hp, wp, c], 1, kt, 1)


def aggregate_neighbourhoods(
    neighbour_weights: torch.Tensor,
    padded_values: torch.Tensor,
    context_weight: torch.Tensor | None,
    mixing: torch.Tensor | None,
    kernel_size: _args.Size3,
    use_basic_context: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-position part of RSA: khat (P, nh, M) weights on the neighbours and zero-padded
    channels-last values (N, T'+kt-1, H+kh-1, W+kw-1, dv) -> (y, A), both (P, nh, dv), with
    y = A I + (A Pv^T) G^T, A = khat Pv and Pv (P, M, dv) the unfolded neighbourhood values."""
    neighbour_values = unfold_channels_last(padded_values, kernel_size)  # (P, M, dv)
    aggregated = torch.bmm(neighbour_weights, neighbour_values)  # A: (P, nh, dv)
    out = torch.zeros_like(aggregated)
    if use_basic_context:
        out = aggregated @ mixing if mixing is not None else aggregated
    if context_weight is not None:
        correlation = torch.bmm(aggregated, neighbour_values.transpose(1, 2))  # (P, nh, M)
        m = correlation.shape[-1]
        relational = correlation.reshape(-1, m) @ context_weight.reshape(-1, m).t()
        out = out + relational.reshape(out.shape)
    return out, aggregated


class NeighbourhoodAggregation(torch.autograd.Function):
    """:func:`aggregate_neighbourhoods` with a hand-written backward: the unfolded values
    (M times the size of the values) are recomputed instead of being saved, and the two
    gradients that reach them are summed by one batched GEMM."""

    @staticmethod
    def forward(
        ctx,
        neighbour_weights,
        padded_values,
        context_weight,
        mixing,
        kernel_size,
        use_basic_context,
    ):
        out, aggregated = aggregate_neighbourhoods(
            neighbour_weights,
            padded_values,
            context_weight,
            mixing,
            kernel_size,
            use_basic_context,
        )
        ctx.save_for_backward(neighbour_weights, padded_values, aggregated, context_weight, mixing)
        ctx.kernel_size = kernel_size
        ctx.use_basic_context = use_basic_context
        return out

    @staticmethod
    def backward(ctx, grad_out):
        neighbour_weights, padded_values, aggregated, context_weight, mixing = ctx.saved_tensors
        positions, nh, dv = aggregated.shape
        grad_out = grad_out.contiguous()
        flat_grad = grad_out.reshape(-1, dv)
        neighbour_values = unfold_channels_last(padded_values, ctx.kernel_size)  # (P, M, dv)
        m = neighbour_values.shape[1]
        grad_context_weight = grad_mixing = None

        grad_aggregated = torch.zeros_like(aggregated)
        if ctx.use_basic_context:
            grad_aggregated = grad_out @ mixing.t() if mixing is not None else grad_out
            if mixing is not None and ctx.needs_input_grad[3]:
                grad_mixing = aggregated.reshape(-1, dv).t() @ flat_grad
        if context_weight is not None:
            weight = context_weight.reshape(dv, m)
            grad_correlation = (flat_grad @ weight).reshape(positions, nh, m)
            if ctx.needs_input_grad[2]:
                correlation = torch.bmm(aggregated, neighbour_values.transpose(1, 2))
                grad_context_weight = (flat_grad.t() @ correlation.reshape(-1, m)).reshape(
                    context_weight.shape
                )
            grad_aggregated = grad_aggregated + torch.bmm(grad_correlation, neighbour_values)
            # both paths into Pv in one GEMM: [gcorr; khat]^T [A; gA]
            left = torch.cat([grad_correlation, neighbour_weights], dim=1)  # (P, 2nh, M)
            right = torch.cat([aggregated, grad_aggregated], dim=1)  # (P, 2nh, dv)
        else:
            left, right = neighbour_weights, grad_aggregated
        grad_weights = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_weights = torch.bmm(grad_aggregated, neighbour_values.transpose(1, 2))
        if ctx.needs_input_grad[1]:
            grad_unfolded = torch.bmm(left.transpose(1, 2), right)  # (P, M, dv)
            grad_values = fold_channels_last(grad_unfolded, padded_values.shape, ctx.kernel_size)
        return grad_weights, grad_values, grad_context_weight, grad_mixing, None, None
