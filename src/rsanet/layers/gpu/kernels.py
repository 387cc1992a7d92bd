"""Triton kernels for the per-position products of RSA's re-associated order.

With Pv (M x dv) the neighbourhood values of position p, read in place from the zero-padded
channels-last clip (T + kt - 1, H + kh - 1, W + kw - 1, dv) through a table of neighbour
offsets, never unfolded:

    aggregate_forward     A = khat Pv  (nh x dv);  corr = A Pv^T  (nh x M) if RELATIONAL
    aggregate_backward    corr = A Pv^T;  gA += gcorr Pv;  gkhat = gA Pv^T
    spread_backward       grad of the padded clip at u = sum over the positions p that see u
                          as neighbour m of  gcorr[p, :, m]^T A_p + khat[p, :, m]^T gA_p

The first two run one program per position, the neighbours BLOCK at a time; the third is the
values' gradient as a gather (one program per BLOCK padded locations), so every location is
written by one program: deterministic, no atomics. Matrix blocks are padded to the sizes
``tl.dot`` accepts (powers of two, at least 16) and masked; products are exact float32
(``input_precision="ieee"``, not TF32).
"""

import triton
import triton.language as tl


@triton.jit
def _origin(p, width, height, padded_width, padded_height, CHANNELS: tl.constexpr):
    """Offset in the padded clip of the first neighbour of position p."""
    x = p % width
    y = (p // width) % height
    t = p // (width * height)
    return ((t * padded_height + y) * padded_width + x) * CHANNELS


@triton.jit
def _neighbourhood(
    padded,
    origin,
    offsets,
    start,
    NEIGHBOURS: tl.constexpr,
    CHANNELS: tl.constexpr,
    BLOCK: tl.constexpr,
    CHANNELS_P: tl.constexpr,
):
    """Pv rows start .. start + BLOCK (BLOCK x CHANNELS_P, zero beyond M and dv) and their
    indices."""
    m = start + tl.arange(0, BLOCK)
    c = tl.arange(0, CHANNELS_P)
    inside = m < NEIGHBOURS
    offset = tl.load(offsets + m, mask=inside, other=0)
    mask = inside[:, None] & (c < CHANNELS)[None, :]
    return tl.load(padded + origin + offset[:, None] + c[None, :], mask=mask, other=0.0), m


@triton.jit
def _head_block(
    base, p, HEADS: tl.constexpr, WIDTH: tl.constexpr, HEADS_P: tl.constexpr, WIDTH_P: tl.constexpr
):
    """Pointers and mask of position p's (HEADS x WIDTH) block of a (P, HEADS, WIDTH) tensor."""
    h = tl.arange(0, HEADS_P)
    c = tl.arange(0, WIDTH_P)
    pointers = base + p * (HEADS * WIDTH) + h[:, None] * WIDTH + c[None, :]
    return pointers, (h < HEADS)[:, None] & (c < WIDTH)[None, :]


@triton.jit
def _neighbour_columns(
    base, p, m, HEADS: tl.constexpr, NEIGHBOURS: tl.constexpr, HEADS_P: tl.constexpr
):
    """Pointers and mask of columns m of position p's (HEADS x M) block."""
    h = tl.arange(0, HEADS_P)
    pointers = base + p * (HEADS * NEIGHBOURS) + h[:, None] * NEIGHBOURS + m[None, :]
    return pointers, (h < HEADS)[:, None] & (m < NEIGHBOURS)[None, :]


@triton.jit
def _weigh(
    total,
    weights,
    padded,
    origin,
    offsets,
    p,
    HEADS: tl.constexpr,
    CHANNELS: tl.constexpr,
    NEIGHBOURS: tl.constexpr,
    HEADS_P: tl.constexpr,
    CHANNELS_P: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """total + weights[p] Pv: position p's (HEADS x M) weights on its neighbours' values."""
    for start in range(0, NEIGHBOURS, BLOCK):
        values, m = _neighbourhood(
            padded, origin, offsets, start, NEIGHBOURS, CHANNELS, BLOCK, CHANNELS_P
        )
        pointers, mask = _neighbour_columns(weights, p, m, HEADS, NEIGHBOURS, HEADS_P)
        block = tl.load(pointers, mask=mask, other=0.0)
        total += tl.dot(block, values, input_precision="ieee")
    return total


@triton.jit
def _correlate(
    rows,
    out,
    padded,
    origin,
    offsets,
    p,
    HEADS: tl.constexpr,
    CHANNELS: tl.constexpr,
    NEIGHBOURS: tl.constexpr,
    HEADS_P: tl.constexpr,
    CHANNELS_P: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """out[p] = rows Pv^T: (HEADS x dv) rows against every neighbour, (HEADS x M)."""
    for start in range(0, NEIGHBOURS, BLOCK):
        values, m = _neighbourhood(
            padded, origin, offsets, start, NEIGHBOURS, CHANNELS, BLOCK, CHANNELS_P
        )
        pointers, mask = _neighbour_columns(out, p, m, HEADS, NEIGHBOURS, HEADS_P)
        tl.store(pointers, tl.dot(rows, tl.trans(values), input_precision="ieee"), mask=mask)


@triton.jit
def aggregate_forward(
    khat,
    padded,
    offsets,
    aggregated,
    correlation,
    frames,
    height,
    width,
    padded_height,
    padded_width,
    HEADS: tl.constexpr,
    CHANNELS: tl.constexpr,
    NEIGHBOURS: tl.constexpr,
    HEADS_P: tl.constexpr,
    CHANNELS_P: tl.constexpr,
    BLOCK: tl.constexpr,
    RELATIONAL: tl.constexpr,
):
    p = tl.program_id(0).to(tl.int64)
    origin = _origin(p, width, height, padded_width, padded_height, CHANNELS)
    total = tl.zeros((HEADS_P, CHANNELS_P), dtype=tl.float32)
    total = _weigh(
        total,
        khat,
        padded,
        origin,
        offsets,
        p,
        HEADS,
        CHANNELS,
        NEIGHBOURS,
        HEADS_P,
        CHANNELS_P,
        BLOCK,
    )
    pointers, mask = _head_block(aggregated, p, HEADS, CHANNELS, HEADS_P, CHANNELS_P)
    tl.store(pointers, total, mask=mask)
    if RELATIONAL:
        _correlate(
            total,
            correlation,
            padded,
            origin,
            offsets,
            p,
            HEADS,
            CHANNELS,
            NEIGHBOURS,
            HEADS_P,
            CHANNELS_P,
            BLOCK,
        )


@triton.jit
def aggregate_backward(
    grad_correlation,
    aggregated,
    grad_aggregated,
    padded,
    offsets,
    grad_khat,
    correlation,
    frames,
    height,
    width,
    padded_height,
    padded_width,
    HEADS: tl.constexpr,
    CHANNELS: tl.constexpr,
    NEIGHBOURS: tl.constexpr,
    HEADS_P: tl.constexpr,
    CHANNELS_P: tl.constexpr,
    BLOCK: tl.constexpr,
    RELATIONAL: tl.constexpr,
):
    p = tl.program_id(0).to(tl.int64)
    origin = _origin(p, width, height, padded_width, padded_height, CHANNELS)
    grad_pointers, grad_mask = _head_block(grad_aggregated, p, HEADS, CHANNELS, HEADS_P, CHANNELS_P)
    grad_total = tl.load(grad_pointers, mask=grad_mask, other=0.0)
    if RELATIONAL:
        pointers, mask = _head_block(aggregated, p, HEADS, CHANNELS, HEADS_P, CHANNELS_P)
        total = tl.load(pointers, mask=mask, other=0.0)
        _correlate(
            total,
            correlation,
            padded,
            origin,
            offsets,
            p,
            HEADS,
            CHANNELS,
            NEIGHBOURS,
            HEADS_P,
            CHANNELS_P,
            BLOCK,
        )
        grad_total = _weigh(
            grad_total,
            grad_correlation,
            padded,
            origin,
            offsets,
            p,
            HEADS,
            CHANNELS,
            NEIGHBOURS,
            HEADS_P,
            CHANNELS_P,
            BLOCK,
        )
        tl.store(grad_pointers, grad_total, mask=grad_mask)
    _correlate(
        grad_total,
        grad_khat,
        padded,
        origin,
        offsets,
        p,
        HEADS,
        CHANNELS,
        NEIGHBOURS,
        HEADS_P,
        CHANNELS_P,
        BLOCK,
    )


@triton.jit
def _spread_term(
    weights,
    rows,
    position,
    m,
    valid,
    HEADS: tl.constexpr,
    CHANNELS: tl.constexpr,
    NEIGHBOURS: tl.constexpr,
    HEADS_P: tl.constexpr,
    CHANNELS_P: tl.constexpr,
):
    """sum over heads of weights[p, h, m] rows[p, h, :] for a vector of positions p:
    (BLOCK, CHANNELS_P)."""
    h = tl.arange(0, HEADS_P)
    c = tl.arange(0, CHANNELS_P)
    head_mask = valid[:, None] & (h < HEADS)[None, :]
    weight = tl.load(
        weights + position[:, None] * (HEADS * NEIGHBOURS) + h[None, :] * NEIGHBOURS + m,
        mask=head_mask,
        other=0.0,
    )
    row_pointers = (
        rows
        + position[:, None, None] * (HEADS * CHANNELS)
        + h[None, :, None] * CHANNELS
        + c[None, None, :]
    )
    row_mask = head_mask[:, :, None] & (c < CHANNELS)[None, None, :]
    row = tl.load(row_pointers, mask=row_mask, other=0.0)
    return tl.sum(weight[:, :, None] * row, axis=1)


@triton.jit
def spread_backward(
    khat,
    grad_correlation,
    aggregated,
    grad_aggregated,
    grad_padded,
    frames,
    height,
    width,
    padded_height,
    padded_width,
    HEADS: tl.constexpr,
    CHANNELS: tl.constexpr,
    NEIGHBOURS: tl.constexpr,
    HEADS_P: tl.constexpr,
    CHANNELS_P: tl.constexpr,
    BLOCK: tl.constexpr,
    RELATIONAL: tl.constexpr,
):
    kw = padded_width - width + 1
    kh = padded_height - height + 1
    locations = (frames + NEIGHBOURS // (kh * kw) - 1) * padded_height * padded_width
    u = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ux = u % padded_width
    uy = (u // padded_width) % padded_height
    ut = u // (padded_width * padded_height)
    total = tl.zeros((BLOCK, CHANNELS_P), dtype=tl.float32)
    for m in range(0, NEIGHBOURS):  # the position that sees u as its neighbour m
        t = ut - m // (kw * kh)
        y = uy - (m // kw) % kh
        x = ux - m % kw
        valid = (u < locations) & (t >= 0) & (t < frames) & (y >= 0) & (y < height)
        valid = valid & (x >= 0) & (x < width)
        position = tl.where(valid, (t * height + y) * width + x, 0)
        total += _spread_term(
            khat,
            grad_aggregated,
            position,
            m,
            valid,
            HEADS,
            CHANNELS,
            NEIGHBOURS,
            HEADS_P,
            CHANNELS_P,
        )
        if RELATIONAL:
            total += _spread_term(
                grad_correlation,
                aggregated,
                position,
                m,
                valid,
                HEADS,
                CHANNELS,
                NEIGHBOURS,
                HEADS_P,
                CHANNELS_P,
            )
    c = tl.arange(0, CHANNELS_P)
    pointers = grad_padded + u[:, None] * CHANNELS + c[None, :]
    mask = (u < locations)[:, None] & (c < CHANNELS)[None, :]
    tl.store(pointers, tl.load(pointers, mask=mask, other=0.0) + total, mask=mask)
