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

# fmt: off
# (Triton kernels take their sizes as arguments: one line per group of them reads better)


@triton.jit
def _origin(p, width, height, padded_width, padded_height, CHANNELS: tl.constexpr):
    """Offset in the padded clip of the first neighbour of position p."""
    x = p % width
    y = (p // width) % height
    t = p // (width * height)
    return ((t * padded_height + y) * padded_width + x) * CHANNELS


@triton.jit
def _neighbourhood(neighbourhood, offsets, start, NEIGHBOURS: tl.constexpr,
                   CHANNELS: tl.constexpr, CHANNELS_P: tl.constexpr, BLOCK: tl.constexpr):
    """Rows start .. start + BLOCK of Pv, the neighbourhood whose first neighbour is at
    ``neighbourhood`` (BLOCK x CHANNELS_P, zero beyond M and dv), and their indices m."""
    m = start + tl.arange(0, BLOCK)
    c = tl.arange(0, CHANNELS_P)
    inside = m < NEIGHBOURS
    offset = tl.load(offsets + m, mask=inside, other=0)
    mask = inside[:, None] & (c < CHANNELS)[None, :]
    return tl.load(neighbourhood + offset[:, None] + c[None, :], mask=mask, other=0.0), m


@triton.jit
def _block(base, rows, columns, ROWS: tl.constexpr, COLUMNS: tl.constexpr):
    """Pointers and mask of entries (rows, columns) of a (ROWS x COLUMNS) matrix at base."""
    pointers = base + rows[:, None] * COLUMNS + columns[None, :]
    return pointers, (rows < ROWS)[:, None] & (columns < COLUMNS)[None, :]


@triton.jit
def _weigh(total, weights, neighbourhood, offsets, HEADS: tl.constexpr, CHANNELS: tl.constexpr,
           NEIGHBOURS: tl.constexpr, HEADS_P: tl.constexpr, CHANNELS_P: tl.constexpr,
           BLOCK: tl.constexpr):
    """total + weights Pv: a position's (HEADS x M) weights on its neighbours' values."""
    heads = tl.arange(0, HEADS_P)
    for start in range(0, NEIGHBOURS, BLOCK):
        values, m = _neighbourhood(neighbourhood, offsets, start, NEIGHBOURS, CHANNELS,
                                   CHANNELS_P, BLOCK)
        pointers, mask = _block(weights, heads, m, HEADS, NEIGHBOURS)
        block = tl.load(pointers, mask=mask, other=0.0)
        total += tl.dot(block, values, input_precision="ieee")
    return total


@triton.jit
def _correlate(rows, out, neighbourhood, offsets, HEADS: tl.constexpr, CHANNELS: tl.constexpr,
               NEIGHBOURS: tl.constexpr, HEADS_P: tl.constexpr, CHANNELS_P: tl.constexpr,
               BLOCK: tl.constexpr):
    """out = rows Pv^T: a position's (HEADS x dv) rows against every neighbour (HEADS x M)."""
    heads = tl.arange(0, HEADS_P)
    for start in range(0, NEIGHBOURS, BLOCK):
        values, m = _neighbourhood(neighbourhood, offsets, start, NEIGHBOURS, CHANNELS,
                                   CHANNELS_P, BLOCK)
        pointers, mask = _block(out, heads, m, HEADS, NEIGHBOURS)
        tl.store(pointers, tl.dot(rows, tl.trans(values), input_precision="ieee"), mask=mask)


@triton.jit
def aggregate_forward(khat, padded, offsets, aggregated, correlation,
                      frames, height, width, padded_height, padded_width,
                      HEADS: tl.constexpr, CHANNELS: tl.constexpr, NEIGHBOURS: tl.constexpr,
                      HEADS_P: tl.constexpr, CHANNELS_P: tl.constexpr, BLOCK: tl.constexpr,
                      RELATIONAL: tl.constexpr):
    p = tl.program_id(0).to(tl.int64)
    neighbourhood = padded + _origin(p, width, height, padded_width, padded_height, CHANNELS)
    by_neighbour = p * HEADS * NEIGHBOURS  # position p's (nh x M) block
    total = tl.zeros((HEADS_P, CHANNELS_P), dtype=tl.float32)
    total = _weigh(total, khat + by_neighbour, neighbourhood, offsets, HEADS, CHANNELS,
                   NEIGHBOURS, HEADS_P, CHANNELS_P, BLOCK)
    pointers, mask = _block(aggregated + p * HEADS * CHANNELS, tl.arange(0, HEADS_P),
                            tl.arange(0, CHANNELS_P), HEADS, CHANNELS)
    tl.store(pointers, total, mask=mask)
    if RELATIONAL:
        _correlate(total, correlation + by_neighbour, neighbourhood, offsets, HEADS, CHANNELS,
                   NEIGHBOURS, HEADS_P, CHANNELS_P, BLOCK)


@triton.jit
def aggregate_backward(grad_correlation, aggregated, grad_aggregated, padded, offsets,
                       grad_khat, correlation,
                       frames, height, width, padded_height, padded_width,
                       HEADS: tl.constexpr, CHANNELS: tl.constexpr, NEIGHBOURS: tl.constexpr,
                       HEADS_P: tl.constexpr, CHANNELS_P: tl.constexpr, BLOCK: tl.constexpr,
                       RELATIONAL: tl.constexpr):
    p = tl.program_id(0).to(tl.int64)
    neighbourhood = padded + _origin(p, width, height, padded_width, padded_height, CHANNELS)
    by_neighbour = p * HEADS * NEIGHBOURS
    by_channel = p * HEADS * CHANNELS  # position p's (nh x dv) block
    heads, channels = tl.arange(0, HEADS_P), tl.arange(0, CHANNELS_P)
    grad_pointers, grad_mask = _block(grad_aggregated + by_channel, heads, channels, HEADS,
                                      CHANNELS)
    grad_total = tl.load(grad_pointers, mask=grad_mask, other=0.0)
    if RELATIONAL:
        pointers, mask = _block(aggregated + by_channel, heads, channels, HEADS, CHANNELS)
        total = tl.load(pointers, mask=mask, other=0.0)
        _correlate(total, correlation + by_neighbour, neighbourhood, offsets, HEADS, CHANNELS,
                   NEIGHBOURS, HEADS_P, CHANNELS_P, BLOCK)
        grad_total = _weigh(grad_total, grad_correlation + by_neighbour, neighbourhood, offsets,
                            HEADS, CHANNELS, NEIGHBOURS, HEADS_P, CHANNELS_P, BLOCK)
        tl.store(grad_pointers, grad_total, mask=grad_mask)
    _correlate(grad_total, grad_khat + by_neighbour, neighbourhood, offsets, HEADS, CHANNELS,
               NEIGHBOURS, HEADS_P, CHANNELS_P, BLOCK)


@triton.jit
def _spread_term(weights, rows, position, m, valid, HEADS: tl.constexpr,
                 CHANNELS: tl.constexpr, NEIGHBOURS: tl.constexpr, HEADS_P: tl.constexpr,
                 CHANNELS_P: tl.constexpr):
    """Sum over heads of weights[p, h, m] rows[p, h, :] for a vector of positions p (zero
    where not valid): (BLOCK, CHANNELS_P)."""
    h = tl.arange(0, HEADS_P)
    c = tl.arange(0, CHANNELS_P)
    head_mask = valid[:, None] & (h < HEADS)[None, :]
    weight = tl.load(weights + position[:, None] * (HEADS * NEIGHBOURS) + h[None, :] * NEIGHBOURS
                     + m, mask=head_mask, other=0.0)
    row_pointers = (rows + position[:, None, None] * (HEADS * CHANNELS)
                    + h[None, :, None] * CHANNELS + c[None, None, :])
    row_mask = head_mask[:, :, None] & (c < CHANNELS)[None, None, :]
    row = tl.load(row_pointers, mask=row_mask, other=0.0)
    return tl.sum(weight[:, :, None] * row, axis=1)


@triton.jit
def spread_backward(khat, grad_correlation, aggregated, grad_aggregated, grad_padded,
                    frames, height, width, padded_height, padded_width,
                    HEADS: tl.constexpr, CHANNELS: tl.constexpr, NEIGHBOURS: tl.constexpr,
                    HEADS_P: tl.constexpr, CHANNELS_P: tl.constexpr, BLOCK: tl.constexpr,
                    RELATIONAL: tl.constexpr):
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
        total += _spread_term(khat, grad_aggregated, position, m, valid, HEADS, CHANNELS,
                              NEIGHBOURS, HEADS_P, CHANNELS_P)
        if RELATIONAL:
            total += _spread_term(grad_correlation, aggregated, position, m, valid, HEADS,
                                  CHANNELS, NEIGHBOURS, HEADS_P, CHANNELS_P)
    c = tl.arange(0, CHANNELS_P)
    pointers = grad_padded + u[:, None] * CHANNELS + c[None, :]
    mask = (u < locations)[:, None] & (c < CHANNELS)[None, :]
    tl.store(pointers, tl.load(pointers, mask=mask, other=0.0) + total, mask=mask)


# fmt: on
