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
its product with khat is re-associated, and neither H nor any M x M matrix exists. For
few value channels per head the authors' order (kernel and context in the latent space,
then their product) costs less, and the layer takes it instead (:meth:`RSA.uses_official_order`).

This module holds the parameters and the order of the steps; the steps themselves are the
operators of :mod:`rsanet.layers.ops` (``rsanet::`` custom ops, computed by C++ or Triton
kernels or PyTorch operators as :mod:`rsanet.layers.backends` decides; see
``docs/performance.md`` for why they are fast).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from rsanet.layers import _args
from rsanet.layers.backends import tracing_for_export
from rsanet.layers.ops import (
    aggregate_neighbourhoods,
    frames_per_chunk,
    l2_normalize_last,
    latent_kernel,
    neighbourhood_filter,
    official_products,
)

KERNELS = ("basic", "relational", "basic+relational")
CONTEXTS = ("basic", "relational", "basic+relational")
COMPUTATIONS = ("auto", "reassociated", "official")


def _in(dtype: torch.dtype | None, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """The tensors cast to ``dtype`` (None: as they are)."""
    return [t if dtype is None else t.to(dtype) for t in tensors]


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
        self, x: torch.Tensor, reduced: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Normalised queries (N, T, H, W, nh, dk), keys (N, T, H, W, dk) or None and values
        (N, T, H, W, dv): the 1x1x1 projection as one GEMM whose output is channels-last, the
        layout every later step reads (computed in ``reduced`` if given, returned in x's
        type)."""
        _args.check_clip(type(self).__name__, x, self.in_channels)
        nh, dk, dv = self.num_heads, self.key_channels, self.value_channels
        weight = self.projection.weight.reshape(self.projection.out_channels, self.in_channels)
        # (N, T*H*W, C) @ (C, C'): a plain GEMM for channels-first and channels-last clips
        # alike (F.linear on the permuted clip copies it first)
        if tracing_for_export():  # shapes stay symbolic
            features = F.linear(x.permute(0, 2, 3, 4, 1), weight)
        else:
            columns, weight = _in(reduced, x.flatten(2).transpose(1, 2), weight.t())
            features = torch.matmul(columns, weight).to(x.dtype).unflatten(1, x.shape[2:])
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

    def key_summary(self, keys: torch.Tensor, reduced: torch.dtype | None = None) -> torch.Tensor:
        """K_H1: every key channel filtered by its group's D neighbourhood filters H1
        (computed and returned in ``reduced`` if given).

        keys (N, T, H, W, dk) -> (N, T, H, W, dk, D), contiguous.
        """
        weight = self.expanded_relational_kernel_weight().reshape(-1, *self.kernel_size)
        return neighbourhood_filter(*_in(reduced, keys, weight), self.kernel_size)

    def latent_kernel(
        self, queries: torch.Tensor, key_summary: torch.Tensor | None
    ) -> torch.Tensor:
        """The kernel of every position and head in the latent space: q (K_H1 + P1).

        queries (N, T, H, W, nh, dk), K_H1 (N, T, H, W, dk, D) or None -> (N*T*H*W, nh, D).
        """
        return latent_kernel(queries, key_summary, self.basic_kernel_weight)

    # -- the fast path ---------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type  # (no autocast on the meta device the profiler runs on)
        if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
            # Under autocast (bf16/fp16) the per-position products stay in float32 (the fused
            # kernels' type; on CPUs they were not faster in bfloat16, docs/performance.md,
            # Inference). In inference the projection and the neighbourhood filters, plain
            # GEMMs and convolutions, run in the autocast type, their outputs read back as
            # float32.
            reduced = torch.get_autocast_dtype(device)
            with torch.autocast(device, enabled=False):
                if torch.is_grad_enabled():  # float32 throughout: the fused backward's type
                    return self.forward(x.float())
                return self._forward(x.float(), reduced)
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: torch.Tensor, reduced: torch.dtype | None = None) -> torch.Tensor:
        """``reduced``: the type of the projection and the filters (None: x's own)."""
        queries, keys, values = self.project_channels_last(x, reduced)
        n, t, h, w, _ = values.shape
        key_summary = self.key_summary(keys, reduced) if keys is not None else None
        if self.uses_official_order():  # (P, dv, nh)
            out = self.aggregate_official_order(queries, key_summary, values, reduced)
        else:  # (P, nh, dv) -> value-major (P, dv, nh)
            if key_summary is not None:
                key_summary = key_summary.to(queries.dtype)
            kernel = self.latent_kernel(queries, key_summary)  # (P, nh, D)
            out = self.aggregate_reassociated(kernel, values).transpose(1, 2)
        out = out.reshape(n, t, h, w, self.out_channels).permute(0, 4, 1, 2, 3)
        if x.is_contiguous() or self.stride > 1:  # else keep the clip's channels-last layout
            out = out.contiguous()
        return self.pool(out)

    def uses_official_order(self) -> bool:
        """Which exact order of operations is cheaper for this layer's shape.

        The re-associated order costs nh M (D + dv) per position (plus nh M dv twice for a
        relational context); the authors' order costs dv D M (plus dv^2 M). With few value
        channels per head (early stages of a network) the authors' order is the cheaper one.
        In evaluation mode each order's multiply-accumulates are weighted by the speed of the
        kernels that run them.
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
        if self.training:
            return official <= reassociated
        # In evaluation the two orders run on different kernels: the authors' order's filters
        # are convolutions (oneDNN), the re-associated products small GEMMs of nh rows. On
        # the CPU a multiply-accumulate of the products took about twice the time of one of
        # the filters with 8 heads, four times with 4 (docs/performance.md, Inference).
        return official < reassociated * 2 * max(1.0, 8 / nh)

    def aggregate_reassociated(self, kernel: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The re-associated order: latent kernels (P, nh, D) and channels-last values
        (N, T, H, W, dv) -> (P, nh, dv), P = N*T*H*W."""
        n, t, h, w, dv = values.shape
        kt, kh, kw = self.kernel_size
        padded = F.pad(values, (0, 0, kw // 2, kw // 2, kh // 2, kh // 2, kt // 2, kt // 2))
        out = aggregate_neighbourhoods(
            kernel.reshape(n, t, h * w, self.num_heads, self.latent_channels),
            self.latent_weight,
            padded,
            self.relational_context_weight,
            self.context_mixing,
            self.kernel_size,
            use_basic_context=self.has_basic_context,
            # a few frames at a time: their neighbourhoods stay in cache
            chunk=frames_per_chunk(values, self.kernel_size, self.max_unfold_bytes),
        )
        return out.reshape(-1, self.num_heads, dv)

    def aggregate_official_order(
        self,
        queries: torch.Tensor,
        key_summary: torch.Tensor | None,
        values: torch.Tensor,
        reduced: torch.dtype | None = None,
    ) -> torch.Tensor:
        """The authors' order of operations: queries (N, T, H, W, nh, dk), K_H1
        (N, T, H, W, dk, D) or None and values (N, T, H, W, dv) -> (P, dv, nh), value-major.
        F = values filtered with H2 and V_G = values filtered with G (every value channel
        by every filter, one grouped convolution), then per position kernel = q (K_H1 + P1),
        context = (V_G + I)^T F and y = context kernel^T (:func:`official_products`); the
        filters computed in ``reduced`` if given."""
        dv, dd = self.value_channels, self.latent_channels
        filters = self.latent_weight
        if self.has_relational_context:
            filters = torch.cat([filters, self.relational_context_weight])
        per_channel = filters.expand(dv, *filters.shape).reshape(-1, *self.kernel_size)
        # (the products read filters in the reduced type directly)
        filtered = neighbourhood_filter(*_in(reduced, values, per_channel), self.kernel_size)
        nh, dk = queries.shape[-2:]
        return official_products(
            queries.reshape(-1, nh, dk),
            key_summary.reshape(-1, dk, dd) if key_summary is not None else None,
            self.basic_kernel_weight,
            filtered.reshape(-1, dv, filters.shape[0]),  # (P, dv, D [+ dv])
            self.context_mixing,
        )

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
