// The per-position products of RSA in the authors' order, for inference on the CPU:
//
//   kernel  = q (K_H1 + P1)      (nh x D); q K_H1 without P1, q itself without K_H1
//   context = (V_G + I)^T F      (dv x D); F alone without a relational context
//   y       = context kernel^T   (dv x nh)
//
// from the queries q (nh x dk), the key summary K_H1 (dk x D) and the filtered values
// [F | V_G] (dv x (D + dv)) or F (dv x D) of every position. With few value channels per
// head (RSANet-R50's stages 1-2: 8 x 8 and 16 x 16 matrices) batched GEMMs spend more on
// each of their thousands of tiny problems than on the arithmetic; here the three products
// of a position are done in registers and L1, kernel and context never reaching memory.
// K_H1 and the filtered values may be stored in bfloat16 (the filters' type in reduced-
// precision inference): a position's blocks are widened to float32 in L1 as they are read,
// so the large filter outputs are never cast in memory.

#include <omp.h>

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "gemm.h"

using rsanet::gemm;
using rsanet::Index;
using rsanet::Matrix;
using rsanet::Output;
using rsanet::strided_rows;

namespace {

using bfloat16 = std::uint16_t;  // the upper half of a float32's bits

inline float widen(float x) { return x; }

inline float widen(bfloat16 x) {
    const std::uint32_t bits = std::uint32_t(x) << 16;
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
}

// queries (P, nh, dk), key_summary (P, dk, D) or null (then D = dk and kernel = q), basic
// P1 (dk, D) or null, filtered (P, dv, width) with width = D (no relational context) or
// D + dv ([F | V_G]), mixing I (dv, dv) or null -> out (P, dv, nh).
template <typename Stored>
void official_products(const float* queries, const Stored* key_summary, const float* basic,
                       const Stored* filtered, const float* mixing, float* out, Index positions,
                       int heads, int keys, int channels, int latent, int width, int threads) {
    constexpr bool widened = !std::is_same<Stored, float>::value;
    const bool relational = width > latent;
    const std::vector<Index> query_rows = strided_rows(heads, keys);           // q (nh x dk)
    const std::vector<Index> summary_rows = strided_rows(keys, latent);        // K_H1 (dk x D)
    const std::vector<Index> kernel_rows = strided_rows(heads, latent);        // kernel (nh x D)
    const std::vector<Index> filtered_rows = strided_rows(channels, width);   // F, V_G: (dv x .)
    const std::vector<Index> context_rows = strided_rows(channels, latent);    // (dv x D)
    const std::vector<Index> latent_rows = strided_rows(latent, heads);        // kernel^T (D x nh)
    const std::vector<Index> out_rows = strided_rows(channels, heads);         // y (dv x nh)
    const std::vector<Index> identity = strided_rows(channels, 1);
#pragma omp parallel num_threads(threads)
    {
        std::vector<float> summary(Index(keys) * latent), kernel(Index(heads) * latent);
        std::vector<float> mix(Index(channels) * channels), context(Index(channels) * latent);
        std::vector<float> kernel_t(Index(latent) * heads);
        std::vector<float> block(widened ? Index(channels) * width : 0);
#pragma omp for schedule(static)
        for (Index p = 0; p < positions; ++p) {
            const float* q = queries + p * heads * keys;
            const float* weights = q;
            if (key_summary != nullptr) {
                const Stored* k_h1 = key_summary + p * keys * latent;
                const float* b;
                if constexpr (widened) {
                    for (Index i = 0; i < Index(keys) * latent; ++i)
                        summary[i] = widen(k_h1[i]) + (basic != nullptr ? basic[i] : 0.0f);
                    b = summary.data();
                } else if (basic != nullptr) {
                    for (Index i = 0; i < Index(keys) * latent; ++i)
                        summary[i] = k_h1[i] + basic[i];
                    b = summary.data();
                } else {
                    b = k_h1;
                }
                gemm(heads, latent, keys, Matrix{q, query_rows.data(), 1},
                     Matrix{b, summary_rows.data(), 1},
                     Output{kernel.data(), kernel_rows.data(), 1}, false);
                weights = kernel.data();
            }
            const Stored* stored = filtered + p * channels * width;  // [F | V_G] of p
            const float* values;
            if constexpr (widened) {
                for (Index i = 0; i < Index(channels) * width; ++i) block[i] = widen(stored[i]);
                values = block.data();
            } else {
                values = stored;
            }
            Matrix f{values, filtered_rows.data(), 1};
            if (relational) {
                for (int u = 0; u < channels; ++u)
                    for (int v = 0; v < channels; ++v)
                        mix[u * channels + v] = values[u * width + latent + v] +
                                                (mixing ? mixing[u * channels + v] : 0.0f);
                // context (v, d) = sum_u mix(u, v) F(u, d): A = mix^T
                gemm(channels, latent, channels, Matrix{mix.data(), identity.data(), channels},
                     f, Output{context.data(), context_rows.data(), 1}, false);
                f = Matrix{context.data(), context_rows.data(), 1};
            }
            for (int h = 0; h < heads; ++h)
                for (int d = 0; d < latent; ++d) kernel_t[d * heads + h] = weights[h * latent + d];
            gemm(channels, heads, latent, f, Matrix{kernel_t.data(), latent_rows.data(), 1},
                 Output{out + p * channels * heads, out_rows.data(), 1}, false);
        }
    }
}

}  // namespace

extern "C" {

// official_products with K_H1 and the filtered values in float32
void rsa_official_products(const float* queries, const float* key_summary, const float* basic,
                           const float* filtered, const float* mixing, float* out,
                           Index positions, int heads, int keys, int channels, int latent,
                           int width, int threads) {
    official_products(queries, key_summary, basic, filtered, mixing, out, positions, heads, keys,
                      channels, latent, width, threads);
}

// official_products with K_H1 and the filtered values in bfloat16 (the rest float32)
void rsa_official_products_bf16(const float* queries, const bfloat16* key_summary,
                                const float* basic, const bfloat16* filtered,
                                const float* mixing, float* out, Index positions, int heads,
                                int keys, int channels, int latent, int width, int threads) {
    official_products(queries, key_summary, basic, filtered, mixing, out, positions, heads, keys,
                      channels, latent, width, threads);
}

}  // extern "C"
