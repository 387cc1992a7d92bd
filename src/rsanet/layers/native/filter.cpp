// Input gradient of RSA's neighbourhood filter K_H1 (every key channel c filtered by its own
// F filters over the kt x kh x kw neighbourhood), on the CPU.
//
//   forward   out[p, c, f] = sum_m w[c, f, m] x[p + m - half, c]
//   backward  grad_x[q, c] = sum_m sum_f grad[q - m + half, c, f] w[c, f, m]
//
// oneDNN runs this gradient as a grouped convolution with kt output channels per group, its
// slow case. Here it is a gather, eight channels to a vector register. The gradient is first
// blocked by eight channels and zero-padded along the width, (Cb, N, T, H, W + 2 (kw/2), F, 8),
// the filters come as (Cb, M, F, 8). A row of output positions of one channel block is then
// accumulated source row by source row (one source row and its kw x F filter vectors stay in
// L1), eight positions at a time: every filter vector is loaded once for the eight, and eight
// independent accumulators keep both FMA units busy despite their latency.

#include <omp.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "lanes.h"

namespace {

using Index = int64_t;

struct FilterShape {
    int batch, frames, height, width, channels, filters, kt, kh, kw;
    Index padded_width() const { return width + 2 * (kw / 2); }
    Index blocks() const { return channels / kLanes; }
};

// Adds one source row's contribution (its kw x F filter vectors at `filters`) to `count`
// positions x0.. of an output row's accumulators.
template <int count>
void accumulate(const FilterShape& s, const float* source_row, const float* filters, int x0,
                Lanes* row) {
    const Index f8 = Index(s.filters) * kLanes;
    Lanes acc[count];
    for (int i = 0; i < count; ++i) acc[i] = row[x0 + i];
    for (int dw = 0; dw < s.kw; ++dw) {
        // the padded column of source x - dw + kw/2 (kw/2 zero columns on the left)
        const float* g = source_row + (x0 - dw + 2 * (s.kw / 2)) * f8;
        const float* w = filters + dw * f8;
        for (int f = 0; f < s.filters; ++f) {
            const Lanes w_f = load(w + f * kLanes);
            for (int i = 0; i < count; ++i) acc[i] += load(g + i * f8 + f * kLanes) * w_f;
        }
    }
    for (int i = 0; i < count; ++i) row[x0 + i] = acc[i];
}

// grad_x of one row of positions (clip n, frame t, row y) for channel block cb: source row
// by source row, so that one source row (W x F x 8 floats) and its filters stay in L1.
void gather_row(const FilterShape& s, const float* grad, const float* weight, Index cb, Index n,
                int t, int y, Lanes* row, float* grad_input) {
    const Index f8 = Index(s.filters) * kLanes;
    for (int x = 0; x < s.width; ++x) row[x] = Lanes{};
    for (int dt = 0; dt < s.kt; ++dt) {
        const int source_t = t - dt + s.kt / 2;
        if (source_t < 0 || source_t >= s.frames) continue;
        for (int dh = 0; dh < s.kh; ++dh) {
            const int source_y = y - dh + s.kh / 2;
            if (source_y < 0 || source_y >= s.height) continue;
            const Index source = ((cb * s.batch + n) * s.frames + source_t) * s.height + source_y;
            const float* source_row = grad + source * s.padded_width() * f8;
            const Index m = (Index(dt) * s.kh + dh) * s.kw;
            const float* filters = weight + (cb * s.kt * s.kh * s.kw + m) * f8;
            int x = 0;
            for (; x + 8 <= s.width; x += 8) accumulate<8>(s, source_row, filters, x, row);
            switch (s.width - x) {
                case 7: accumulate<7>(s, source_row, filters, x, row); break;
                case 6: accumulate<6>(s, source_row, filters, x, row); break;
                case 5: accumulate<5>(s, source_row, filters, x, row); break;
                case 4: accumulate<4>(s, source_row, filters, x, row); break;
                case 3: accumulate<3>(s, source_row, filters, x, row); break;
                case 2: accumulate<2>(s, source_row, filters, x, row); break;
                case 1: accumulate<1>(s, source_row, filters, x, row); break;
                default: break;
            }
        }
    }
    const Index first = ((n * s.frames + t) * s.height + y) * s.width;
    for (int x = 0; x < s.width; ++x)
        store(grad_input + (first + x) * s.channels + cb * kLanes, row[x]);
}

// The output's gradient (N, T, H, W, C, F) blocked by eight channels and zero-padded along
// the width: (Cb, N, T, H, W + 2 (kw / 2), F, 8), one 8 x F transposition per position.
std::unique_ptr<float[]> block_gradient(const FilterShape& s, const float* grad, int threads) {
    const Index f8 = Index(s.filters) * kLanes, pad = s.kw / 2;
    const Index rows = s.blocks() * s.batch * s.frames * s.height;
    // every element is written below: no zero-filling of the whole buffer
    std::unique_ptr<float[]> blocked(new float[rows * s.padded_width() * f8]);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (Index r = 0; r < rows; ++r) {
        const Index source_row = r % (Index(s.batch) * s.frames * s.height);
        const Index cb = r / (Index(s.batch) * s.frames * s.height);
        float* out = blocked.get() + r * s.padded_width() * f8;
        std::memset(out, 0, pad * f8 * sizeof(float));
        for (Index x = 0; x < s.width; ++x) {
            const float* in = grad + ((source_row * s.width + x) * s.channels + cb * kLanes) *
                                         s.filters;
            float* position = out + (x + pad) * f8;
            for (int f = 0; f < s.filters; ++f)
                for (int j = 0; j < kLanes; ++j) position[f * kLanes + j] = in[j * s.filters + f];
        }
        const Index right = s.padded_width() - s.width - pad;
        std::memset(out + (s.width + pad) * f8, 0, right * f8 * sizeof(float));
    }
    return blocked;
}

}  // namespace

extern "C" {

// grad (N, T, H, W, C, F) and weight (Cb, M, F, 8), C = 8 Cb -> grad_input (N, T, H, W, C),
// overwritten.
void rsa_filter_input_grad(const float* grad, const float* weight, float* grad_input, int batch,
                           int frames, int height, int width, int channels, int filters, int kt,
                           int kh, int kw, int threads) {
    const FilterShape s{batch, frames, height, width, channels, filters, kt, kh, kw};
    const std::unique_ptr<float[]> blocked = block_gradient(s, grad, threads);
    const Index rows = s.blocks() * batch * frames * height;
#pragma omp parallel num_threads(threads)
    {
        std::vector<Lanes> row(width);
#pragma omp for schedule(static)
        for (Index r = 0; r < rows; ++r) {
            const int y = int(r % height), t = int((r / height) % frames);
            const Index n = (r / (Index(height) * frames)) % batch;
            const Index cb = r / (Index(height) * frames * batch);
            gather_row(s, blocked.get(), weight, cb, n, t, y, row.data(), grad_input);
        }
    }
}

}  // extern "C"
