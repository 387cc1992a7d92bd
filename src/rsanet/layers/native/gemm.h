// Small GEMMs on operands addressed through row tables, register-blocked: the products every
// kernel of rsanet.layers.native runs per position.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "lanes.h"

namespace rsanet {

using Index = int64_t;

// A matrix read as element (i, j) = data[rows[i] + j * column_stride] ...
struct Matrix {
    const float* data;
    const Index* rows;
    Index column_stride;
};

// ... and one written that way.
struct Output {
    float* data;
    const Index* rows;
    Index column_stride;
};

// C(i, j) (+)= sum_k A(i, k) B(k, j) for the tile i0..i0+MR, j0..j0+NR, all in range, with
// the MR x NR accumulators in registers. B's columns must be contiguous (column_stride 1):
// they are what the vector lanes hold.
template <int MR, int NR>
inline void full_tile(int depth, Matrix a, Matrix b, Output c, int i0, int j0, bool accumulate) {
    constexpr int V = NR / kLanes;
    Lanes acc[MR][V] = {};
    const float* a_rows[MR];
    for (int i = 0; i < MR; ++i) a_rows[i] = a.data + a.rows[i0 + i];
    for (int k = 0; k < depth; ++k) {
        const float* b_row = b.data + b.rows[k] + j0;
        Lanes b_k[V];
        for (int v = 0; v < V; ++v) b_k[v] = load(b_row + v * kLanes);
        const Index a_offset = k * a.column_stride;
        for (int i = 0; i < MR; ++i) {
            const float a_ik = a_rows[i][a_offset];
            for (int v = 0; v < V; ++v) acc[i][v] += a_ik * b_k[v];
        }
    }
    for (int i = 0; i < MR; ++i) {
        float* c_row = c.data + c.rows[i0 + i] + j0 * c.column_stride;
        if (c.column_stride == 1) {
            for (int v = 0; v < V; ++v) {
                float* out = c_row + v * kLanes;
                store(out, accumulate ? load(out) + acc[i][v] : acc[i][v]);
            }
        } else {
            for (int j = 0; j < NR; ++j) {
                float& out = c_row[j * c.column_stride];
                out = (accumulate ? out : 0.0f) + acc[i][j / kLanes][j % kLanes];
            }
        }
    }
}

// The same for a partial tile at the matrix's edge (rows < MR, columns < NR).
template <int MR, int NR>
inline void edge_tile(int depth, Matrix a, Matrix b, Output c, int i0, int j0, int rows,
                      int columns, bool accumulate) {
    float acc[MR][NR] = {};
    for (int k = 0; k < depth; ++k) {
        const float* b_row = b.data + b.rows[k] + j0;
        for (int i = 0; i < rows; ++i) {
            const float a_ik = a.data[a.rows[i0 + i] + k * a.column_stride];
            for (int j = 0; j < columns; ++j) acc[i][j] += a_ik * b_row[j];
        }
    }
    for (int i = 0; i < rows; ++i) {
        float* c_row = c.data + c.rows[i0 + i];
        for (int j = 0; j < columns; ++j) {
            float& out = c_row[(j0 + j) * c.column_stride];
            out = (accumulate ? out : 0.0f) + acc[i][j];
        }
    }
}

template <int MR, int NR>
inline void tiled_gemm(int m, int n, int depth, Matrix a, Matrix b, Output c, bool accumulate) {
    for (int i0 = 0; i0 < m; i0 += MR) {
        const int rows = std::min(MR, m - i0);
        for (int j0 = 0; j0 < n; j0 += NR) {
            const int columns = std::min(NR, n - j0);
            if (rows == MR && columns == NR) {
                full_tile<MR, NR>(depth, a, b, c, i0, j0, accumulate);
            } else {
                edge_tile<MR, NR>(depth, a, b, c, i0, j0, rows, columns, accumulate);
            }
        }
    }
}

// C (m x n) (+)= A (m x depth) B (depth x n): wide outputs in 4 x 16 tiles (8 AVX2
// accumulators), narrow ones (n = heads) in 8 x 8.
inline void gemm(int m, int n, int depth, Matrix a, Matrix b, Output c, bool accumulate) {
    if (n >= 16) {
        tiled_gemm<4, 16>(m, n, depth, a, b, c, accumulate);
    } else {
        tiled_gemm<8, 8>(m, n, depth, a, b, c, accumulate);
    }
}

// Row offsets 0, stride, 2 stride, ...: the row table of a plain row-major matrix.
inline std::vector<Index> strided_rows(Index count, Index stride) {
    std::vector<Index> rows(count);
    for (Index i = 0; i < count; ++i) rows[i] = i * stride;
    return rows;
}

}  // namespace rsanet
