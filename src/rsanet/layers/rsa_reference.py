"""RSA written directly from the paper's formulas: slow, obvious, and used by the tests to
prove that the fast :class:`~rsanet.layers.RSA` computes exactly the paper's y_n.

Every position's neighbourhood is gathered explicitly (one shifted copy per offset), the
full kernel projection H = H1 H2 ((M*G) x M) and P = P1 H2 are formed, and

    kappa^V_n = q_n P                               basic kernel
    kappa^R_n = vec(group_sum(1 q_n^T (.) X^K_n)) H   relational kernel
    X^R_n     = (X^V_n X^V_n^T) G^T                 relational context
    y_n       = (kappa^V_n + kappa^R_n) (X^V_n I + X^R_n)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rsanet.layers.rsa import RSA


def gather_neighbourhoods(x: torch.Tensor, kernel_size: tuple[int, int, int]) -> torch.Tensor:
    """(N, C, T, H, W) -> (N*T*H*W, M, C): the zero-padded neighbours of every position,
    one shifted copy of the clip per offset (dt, dh, dw) in row-major order."""
    n, c, t, h, w = x.shape
    kt, kh, kw = kernel_size
    padded = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2, kt // 2, kt // 2))
    shifted = [
        padded[:, :, dt : dt + t, dh : dh + h, dw : dw + w]
        for dt in range(kt)
        for dh in range(kh)
        for dw in range(kw)
    ]
    return torch.stack(shifted, dim=-1).permute(0, 2, 3, 4, 5, 1).reshape(n * t * h * w, -1, c)


def _normalize(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x / torch.sqrt((x * x).sum(dim, keepdim=True) + 1e-6)


def rsa_reference(layer: RSA, x: torch.Tensor) -> torch.Tensor:
    """The paper's y_n with ``layer``'s parameters: (N, C, T, H, W) -> (N, nh*dv, T', H', W')."""
    n, _, t, h, w = x.shape
    nh, dk, dv, dd = (
        layer.num_heads,
        layer.key_channels,
        layer.value_channels,
        layer.latent_channels,
    )
    groups, m = layer.groups, layer.neighbourhood_size

    projected = F.conv3d(x, layer.projection.weight)
    query = projected[:, : nh * dk].reshape(n, nh, dk, t, h, w)
    query = _normalize(query, 2).permute(0, 3, 4, 5, 1, 2).reshape(-1, nh, dk)  # (P, nh, dk)
    value = _normalize(projected[:, projected.shape[1] - dv :], 1)
    neighbour_values = gather_neighbourhoods(value, layer.kernel_size)  # X^V: (P, M, dv)

    latent_to_neighbours = layer.latent_weight.reshape(dd, m)  # H2: (D, M)
    kernel = x.new_zeros(query.shape[0], nh, m)
    if layer.has_basic_kernel:
        p1 = layer.basic_kernel_weight
        if p1 is None:  # kernel="basic" alone: the query is the latent kernel
            p1 = torch.eye(dk, dtype=x.dtype, device=x.device)
        kernel = kernel + query @ (p1 @ latent_to_neighbours)  # q P, P = P1 H2: (dk, M)
    if layer.has_relational_kernel:
        key = _normalize(projected[:, nh * dk : nh * dk + dk], 1)
        neighbour_keys = gather_neighbourhoods(key, layer.kernel_size)  # X^K: (P, M, dk)
        hadamard = query[:, :, None, :] * neighbour_keys[:, None, :, :]  # (P, nh, M, dk)
        grouped = hadamard.reshape(*hadamard.shape[:3], groups, dk // groups).sum(-1)
        # H1 as an ((M*G) x D) matrix, rows ordered like vec(M x G)
        h1 = layer.relational_kernel_weight.reshape(groups, dd, m).permute(2, 0, 1)
        full_h = h1.reshape(m * groups, dd) @ latent_to_neighbours  # H: (M*G, M)
        kernel = kernel + grouped.reshape(*grouped.shape[:2], m * groups) @ full_h

    context = torch.zeros_like(neighbour_values)
    if layer.has_basic_context:
        mixing = layer.context_mixing
        context = context + (neighbour_values if mixing is None else neighbour_values @ mixing)
    if layer.has_relational_context:
        g = layer.relational_context_weight.reshape(dv, m).t()  # G_ctx: (M, dv)
        context = context + (neighbour_values @ neighbour_values.transpose(1, 2)) @ g

    y = kernel @ context  # (P, nh, dv)
    y = y.reshape(n, t, h, w, nh, dv).permute(0, 5, 4, 1, 2, 3).reshape(n, nh * dv, t, h, w)
    if layer.stride > 1:
        y = F.avg_pool3d(y, (1, 3, 3), (1, layer.stride, layer.stride), (0, 1, 1))
    return y
