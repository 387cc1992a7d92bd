// The per-position products of RSA's re-associated order, fused on the CPU.
//
// For every position p of a chunk of frames, with Pv (M x dv) its neighbourhood values read
// in place from the zero-padded channels-last clip (never unfolded into memory):
//
//   forward   A = khat Pv                      (nh x dv)
//             corr = A Pv^T                    (nh x M), when the context is relational
//   backward  corr = A Pv^T, gA += gcorr Pv, gkhat = gA Pv^T,
//             grad of Pv = gcorr^T A + khat^T gA, added onto the padded clip's gradient
//
// All of it stays in the first cache levels: one position's Pv is M*dv floats (31 KB for
// 5x7x7 neighbourhoods of 32 channels). The products are small GEMMs run by one register-
// blocked micro-kernel whose operands are addressed through row tables, so a neighbourhood
// is read where it lies. Plain C ABI: loaded with ctypes by rsanet.layers.native.

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "gemm.h"

namespace {

using rsanet::gemm;
using rsanet::Index;
using rsanet::Matrix;
using rsanet::Output;
using rsanet::strided_rows;

struct Shape {
    int frames, height, width;  // positions of the chunk
    int kt, kh, kw;             // neighbourhood
    int heads, channels;        // nh, dv

    Index padded_height() const { return height + kh - 1; }
    Index padded_width() const { return width + kw - 1; }
    Index neighbours() const { return Index(kt) * kh * kw; }
    Index positions() const { return Index(frames) * height * width; }
    Index padded_size() const {
        return (frames + kt - 1) * padded_height() * padded_width() * channels;
    }
    // offset in the padded clip of the first neighbour of position p
    Index origin(Index p) const {
        const Index x = p % width, y = (p / width) % height, t = p / (Index(width) * height);
        return ((t * padded_height() + y) * padded_width() + x) * channels;
    }
    // offset of every neighbour from a position's first one, in (dt, dh, dw) order
    std::vector<Index> neighbour_offsets() const {
        std::vector<Index> offsets;
        offsets.reserve(neighbours());
        for (int dt = 0; dt < kt; ++dt)
            for (int dh = 0; dh < kh; ++dh)
                for (int dw = 0; dw < kw; ++dw)
                    offsets.push_back(((dt * padded_height() + dh) * padded_width() + dw) *
                                      channels);
        return offsets;
    }
};

// Row tables shared by every position of a chunk: where row i of each operand starts.
struct Tables {
    std::vector<Index> neighbours;    // Pv (M x dv): each neighbour in the padded clip
    std::vector<Index> weight_rows;   // khat-like (nh x M)
    std::vector<Index> head_rows;     // A-like (nh x dv)
    std::vector<Index> channel_rows;  // A^T (dv x nh)
    std::vector<Index> identity;      // 0..M-1: (M x nh) results stored transposed
    explicit Tables(const Shape& s)
        : neighbours(s.neighbour_offsets()),
          weight_rows(strided_rows(s.heads, s.neighbours())),
          head_rows(strided_rows(s.heads, s.channels)),
          channel_rows(strided_rows(s.channels, s.heads)),
          identity(strided_rows(s.neighbours(), 1)) {}
};

// weights (nh x M) times the neighbourhood at `values` -> out (nh x dv)
void weigh_neighbours(const Shape& s, const Tables& tables, const float* weights,
                      const float* values, float* out, bool accumulate) {
    gemm(s.heads, s.channels, int(s.neighbours()),
         Matrix{weights, tables.weight_rows.data(), 1},
         Matrix{values, tables.neighbours.data(), 1},
         Output{out, tables.head_rows.data(), 1}, accumulate);
}

// rows (nh x dv) against every neighbour at `values` -> out (nh x M) = rows Pv^T,
// computed as Pv rows^T (M x nh) written transposed; `transposed` is scratch of dv x nh.
void correlate_neighbours(const Shape& s, const Tables& tables, const float* rows,
                          const float* values, float* transposed, float* out) {
    for (int h = 0; h < s.heads; ++h)
        for (int d = 0; d < s.channels; ++d) transposed[d * s.heads + h] = rows[h * s.channels + d];
    gemm(int(s.neighbours()), s.heads, s.channels,
         Matrix{values, tables.neighbours.data(), 1},
         Matrix{transposed, tables.channel_rows.data(), 1},
         Output{out, tables.identity.data(), s.neighbours()}, false);
}

// grad (nh x M)^T times rows (nh x dv), added onto the neighbourhood at `grad_values`
void spread_to_neighbours(const Shape& s, const Tables& tables, const float* grad,
                          const float* rows, float* grad_values) {
    gemm(int(s.neighbours()), s.channels, s.heads,
         Matrix{grad, tables.identity.data(), s.neighbours()},
         Matrix{rows, tables.head_rows.data(), 1},
         Output{grad_values, tables.neighbours.data(), 1}, true);
}

}  // namespace

extern "C" {

// khat (P, nh, M), padded values (T + kt - 1, H + kh - 1, W + kw - 1, dv) ->
// aggregated (P, nh, dv) and, unless null, correlation (P, nh, M); P = T*H*W.
void rsa_aggregate_forward(const float* khat, const float* padded, float* aggregated,
                           float* correlation, int frames, int height, int width, int kt, int kh,
                           int kw, int heads, int channels, int threads) {
    const Shape s{frames, height, width, kt, kh, kw, heads, channels};
    const Tables tables(s);
    const Index m = s.neighbours(), head_block = Index(heads) * channels;
#pragma omp parallel num_threads(threads)
    {
        std::vector<float> transposed(head_block);
#pragma omp for schedule(static)
        for (Index p = 0; p < s.positions(); ++p) {
            const float* values = padded + s.origin(p);
            float* out = aggregated + p * head_block;
            weigh_neighbours(s, tables, khat + p * heads * m, values, out, false);
            if (correlation != nullptr)
                correlate_neighbours(s, tables, out, values, transposed.data(),
                                     correlation + p * heads * m);
        }
    }
}

// The backward of rsa_aggregate_forward for one chunk. grad_aggregated (P, nh, dv) holds the
// gradient reaching A from the basic context and receives A's full gradient; grad_correlation
// (P, nh, M) and correlation (out) are null without a relational context. Writes grad_khat
// (P, nh, M) and adds the values' gradient onto grad_padded (the padded chunk's shape).
void rsa_aggregate_backward(const float* khat, const float* grad_correlation,
                            const float* aggregated, float* grad_aggregated, const float* padded,
                            float* grad_khat, float* correlation, float* grad_padded, int frames,
                            int height, int width, int kt, int kh, int kw, int heads,
                            int channels, int threads) {
    const Shape s{frames, height, width, kt, kh, kw, heads, channels};
    const Tables tables(s);
    const Index m = s.neighbours(), head_block = Index(heads) * channels;
    const Index size = s.padded_size();
    threads = std::max(1, threads);
    // neighbourhoods overlap, so every thread spreads gradients onto a private copy
    std::vector<float> private_grads(Index(threads) * size, 0.0f);
#pragma omp parallel num_threads(threads)
    {
        std::vector<float> transposed(head_block);
        float* grad_values = private_grads.data() + Index(omp_get_thread_num()) * size;
#pragma omp for schedule(static)
        for (Index p = 0; p < s.positions(); ++p) {
            const Index origin = s.origin(p);
            const float* values = padded + origin;
            const float* a = aggregated + p * head_block;
            float* grad_a = grad_aggregated + p * head_block;
            const float* weights = khat + p * heads * m;
            if (grad_correlation != nullptr) {
                const float* grad_corr = grad_correlation + p * heads * m;
                correlate_neighbours(s, tables, a, values, transposed.data(),
                                     correlation + p * heads * m);
                weigh_neighbours(s, tables, grad_corr, values, grad_a, true);
                spread_to_neighbours(s, tables, grad_corr, a, grad_values + origin);
            }
            correlate_neighbours(s, tables, grad_a, values, transposed.data(),
                                 grad_khat + p * heads * m);
            spread_to_neighbours(s, tables, weights, grad_a, grad_values + origin);
        }
#pragma omp for schedule(static)
        for (Index i = 0; i < size; ++i) {
            float sum = 0.0f;
            for (int thread = 0; thread < threads; ++thread)
                sum += private_grads[thread * size + i];
            grad_padded[i] += sum;
        }
    }
}

}  // extern "C"
