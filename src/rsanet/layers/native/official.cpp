// The per-position products of RSA in the authors' order on the CPU, and their gradients:
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
//
// In training, official_products_backward takes the output's gradient g (dv x nh) of every
// position to those of q, K_H1 and [F | V_G], recomputing kernel and context in L1 instead
// of reading them from memory (autograd of batched GEMMs would save and re-read both, and
// pay each GEMM's per-problem cost four more times).

#include <omp.h>

#include <cstdint>
#include <algorithm>
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

// The sizes of the products, compile-time constants where a template argument is nonzero
// (the common shapes: the compiler then unrolls and vectorises their tiny loops), else the
// arguments'.
template <int kHeads, int kKeys, int kChannels, int kLatent>
struct Sizes {
    Sizes(int heads, int keys, int channels, int latent, int filtered_width)
        : heads_(heads), keys_(keys), channels_(channels), latent_(latent),
          width(filtered_width) {}
    Index nh() const { return kHeads ? kHeads : heads_; }
    Index dk() const { return kKeys ? kKeys : keys_; }
    Index dv() const { return kChannels ? kChannels : channels_; }
    Index dd() const { return kLatent ? kLatent : latent_; }

    int heads_, keys_, channels_, latent_;
    Index width;
};

// One thread's buffers for a position's products.
struct Scratch {
    std::vector<float> summary, kernel, mix, context, grad_context, grad_kernel;
    Scratch(Index nh, Index dk, Index dv, Index dd)
        : summary(dk * dd), kernel(nh * dd), mix(dv * dv), context(dv * dd),
          grad_context(dv * dd), grad_kernel(nh * dd) {}
};

// Where a position's kernel (nh x D) and context (dv x D, rows `stride` apart) are.
struct Latent {
    const float* kernel;
    const float* context;
    Index stride;
};

// kernel = q (K_H1 + P1) and context = (V_G + I)^T F of one position, with loops (the gemm
// tiles of official_products suit larger matrices); K_H1 and the filtered values widened to
// float32 as they are read. The sums M = V_G + I and K = K_H1 + P1 stay in the scratch.
template <typename S, typename Stored>
inline Latent latent_products(const S& n, const float* q, const Stored* k_h1, const float* basic,
                              const Stored* f, const float* mixing, Scratch& s) {
    Latent latent{q, nullptr, n.dd()};
    if (k_h1 != nullptr) {
        for (Index i = 0; i < n.dk() * n.dd(); ++i)
            s.summary[i] = widen(k_h1[i]) + (basic != nullptr ? basic[i] : 0.0f);
        std::fill(s.kernel.begin(), s.kernel.end(), 0.0f);
        for (Index h = 0; h < n.nh(); ++h)
            for (Index c = 0; c < n.dk(); ++c) {
                const float q_hc = q[h * n.dk() + c];
                for (Index d = 0; d < n.dd(); ++d)
                    s.kernel[h * n.dd() + d] += q_hc * s.summary[c * n.dd() + d];
            }
        latent.kernel = s.kernel.data();
    }
    if (n.width == n.dd()) {  // no relational context: the context is F
        if constexpr (std::is_same<Stored, float>::value) {
            latent.context = f;
        } else {
            for (Index i = 0; i < n.dv() * n.dd(); ++i) s.context[i] = widen(f[i]);
            latent.context = s.context.data();
        }
        return latent;
    }
    for (Index u = 0; u < n.dv(); ++u)
        for (Index v = 0; v < n.dv(); ++v)
            s.mix[u * n.dv() + v] =
                widen(f[u * n.width + n.dd() + v]) + (mixing ? mixing[u * n.dv() + v] : 0.0f);
    std::fill(s.context.begin(), s.context.end(), 0.0f);
    for (Index u = 0; u < n.dv(); ++u)
        for (Index d = 0; d < n.dd(); ++d) {
            const float f_ud = widen(f[u * n.width + d]);
            for (Index v = 0; v < n.dv(); ++v)
                s.context[v * n.dd() + d] += s.mix[u * n.dv() + v] * f_ud;
        }
    latent.context = s.context.data();
    return latent;
}

// official_products for the common small shapes: y = context kernel^T, per position.
template <int kHeads, int kKeys, int kChannels, int kLatent, typename Stored>
void small_official_products(const float* queries, const Stored* key_summary,
                             const float* basic, const Stored* filtered, const float* mixing,
                             float* out, Index positions, int heads, int keys, int channels,
                             int latent, int width, int threads) {
    const Sizes<kHeads, kKeys, kChannels, kLatent> n(heads, keys, channels, latent, width);
#pragma omp parallel num_threads(threads)
    {
        Scratch scratch(n.nh(), n.dk(), n.dv(), n.dd());
#pragma omp for schedule(static)
        for (Index p = 0; p < positions; ++p) {
            const Latent l = latent_products(
                n, queries + p * n.nh() * n.dk(),
                key_summary != nullptr ? key_summary + p * n.dk() * n.dd() : nullptr, basic,
                filtered + p * n.dv() * n.width, mixing, scratch);
            float* y = out + p * n.dv() * n.nh();
            for (Index c = 0; c < n.dv(); ++c)
                for (Index h = 0; h < n.nh(); ++h) {
                    float sum = 0.0f;
                    for (Index d = 0; d < n.dd(); ++d)
                        sum += l.context[c * l.stride + d] * l.kernel[h * n.dd() + d];
                    y[c * n.nh() + h] = sum;
                }
        }
    }
}

// queries (P, nh, dk), key_summary (P, dk, D) or null, basic P1 (dk, D) or null, filtered
// (P, dv, width), mixing I (dv, dv) or null and the output's gradient (P, dv, nh) -> the
// gradients of the queries (P, nh, dk), of K_H1 (P, dk, D; unless key_summary is null) and of
// the filtered values (P, dv, width). P1's and I's gradients are the sums over positions of
// K_H1's and V_G's, which the caller takes. With M = V_G + I and K = K_H1 + P1:
//   kernel = q K, context = M^T F,  dcontext = g kernel,  dkernel = g^T context,
//   dq = dkernel K^T,  dK_H1 = q^T dkernel,  dF = M dcontext,  dV_G = F dcontext^T.
template <int kHeads, int kKeys, int kChannels, int kLatent>
void official_products_backward(const float* queries, const float* key_summary,
                                const float* basic, const float* filtered, const float* mixing,
                                const float* grad_out, float* grad_queries,
                                float* grad_key_summary, float* grad_filtered, Index positions,
                                int heads, int keys, int channels, int latent, int width,
                                int threads) {
    const Sizes<kHeads, kKeys, kChannels, kLatent> n(heads, keys, channels, latent, width);
#pragma omp parallel num_threads(threads)
    {
        const Index nh = n.nh(), dk = n.dk(), dv = n.dv(), dd = n.dd();
        Scratch s(nh, dk, dv, dd);
#pragma omp for schedule(static)
        for (Index p = 0; p < positions; ++p) {
            const float* q = queries + p * nh * dk;
            const float* f = filtered + p * dv * width;  // [F | V_G] of p
            const float* g = grad_out + p * dv * nh;    // (dv x nh)
            const Latent l = latent_products(
                n, q, key_summary != nullptr ? key_summary + p * dk * dd : nullptr, basic, f,
                mixing, s);
            float* __restrict grad_context = s.grad_context.data();  // (dv x D)
            float* __restrict grad_kernel = s.grad_kernel.data();    // (nh x D)
            std::fill(grad_context, grad_context + dv * dd, 0.0f);
            std::fill(grad_kernel, grad_kernel + nh * dd, 0.0f);
            for (Index c = 0; c < dv; ++c)
                for (Index h = 0; h < nh; ++h) {
                    const float g_ch = g[c * nh + h];
                    for (Index d = 0; d < dd; ++d) {
                        grad_context[c * dd + d] += g_ch * l.kernel[h * dd + d];
                        grad_kernel[h * dd + d] += g_ch * l.context[c * l.stride + d];
                    }
                }
            float* grad_q = grad_queries + p * nh * dk;
            if (key_summary != nullptr) {
                float* grad_k = grad_key_summary + p * dk * dd;
                for (Index h = 0; h < nh; ++h)
                    for (Index c = 0; c < dk; ++c) {
                        float sum = 0.0f;
                        for (Index d = 0; d < dd; ++d)
                            sum += grad_kernel[h * dd + d] * s.summary[c * dd + d];
                        grad_q[h * dk + c] = sum;
                    }
                std::fill(grad_k, grad_k + dk * dd, 0.0f);
                for (Index h = 0; h < nh; ++h)
                    for (Index c = 0; c < dk; ++c) {
                        const float q_hc = q[h * dk + c];
                        for (Index d = 0; d < dd; ++d)
                            grad_k[c * dd + d] += q_hc * grad_kernel[h * dd + d];
                    }
            } else {
                std::copy(grad_kernel, grad_kernel + nh * dd, grad_q);
            }
            float* grad_f = grad_filtered + p * dv * width;
            if (width == dd) {  // no relational context
                std::copy(grad_context, grad_context + dv * dd, grad_f);
                continue;
            }
            for (Index u = 0; u < dv; ++u) {
                float* row = grad_f + u * width;
                std::fill(row, row + dd, 0.0f);
                for (Index v = 0; v < dv; ++v) {
                    const float m_uv = s.mix[u * dv + v];
                    float sum = 0.0f;
                    for (Index d = 0; d < dd; ++d) {
                        row[d] += m_uv * grad_context[v * dd + d];
                        sum += f[u * width + d] * grad_context[v * dd + d];
                    }
                    row[dd + v] = sum;
                }
            }
        }
    }
}

// The shapes compiled with constant sizes: rsanet_tiny's first two stages (4 heads of 4 and
// of 8 channels) and RSANet-R50's first two (8 heads of 8 and of 16); kOther for any other.
enum Shape { kOther, k4x4, k4x8, k8x8, k8x16 };

inline Shape shape_of(int heads, int keys, int channels, int latent) {
    if (keys != channels || channels != latent) return kOther;
    if (heads == 4 && keys == 4) return k4x4;
    if (heads == 4 && keys == 8) return k4x8;
    if (heads == 8 && keys == 8) return k8x8;
    if (heads == 8 && keys == 16) return k8x16;
    return kOther;
}

// official_products: the loops for rsanet_tiny's shapes, gemm tiles for the others.
template <typename Stored>
void products_for_shape(const float* queries, const Stored* key_summary, const float* basic,
                        const Stored* filtered, const float* mixing, float* out, Index positions,
                        int heads, int keys, int channels, int latent, int width, int threads) {
    switch (shape_of(heads, keys, channels, latent)) {
        case k4x4:
            return small_official_products<4, 4, 4, 4>(queries, key_summary, basic, filtered,
                                                        mixing, out, positions, heads, keys,
                                                        channels, latent, width, threads);
        case k4x8:
            return small_official_products<4, 8, 8, 8>(queries, key_summary, basic, filtered,
                                                        mixing, out, positions, heads, keys,
                                                        channels, latent, width, threads);
        default:
            return official_products(queries, key_summary, basic, filtered, mixing, out,
                                     positions, heads, keys, channels, latent, width, threads);
    }
}

}  // namespace

extern "C" {

// official_products with K_H1 and the filtered values in float32
void rsa_official_products(const float* queries, const float* key_summary, const float* basic,
                           const float* filtered, const float* mixing, float* out,
                           Index positions, int heads, int keys, int channels, int latent,
                           int width, int threads) {
    products_for_shape(queries, key_summary, basic, filtered, mixing, out, positions, heads,
                       keys, channels, latent, width, threads);
}

// official_products with K_H1 and the filtered values in bfloat16 (the rest float32)
void rsa_official_products_bf16(const float* queries, const bfloat16* key_summary,
                                const float* basic, const bfloat16* filtered,
                                const float* mixing, float* out, Index positions, int heads,
                                int keys, int channels, int latent, int width, int threads) {
    products_for_shape(queries, key_summary, basic, filtered, mixing, out, positions, heads,
                       keys, channels, latent, width, threads);
}

// the gradients of official_products (everything float32)
void rsa_official_products_backward(const float* queries, const float* key_summary,
                                    const float* basic, const float* filtered,
                                    const float* mixing, const float* grad_out,
                                    float* grad_queries, float* grad_key_summary,
                                    float* grad_filtered, Index positions, int heads, int keys,
                                    int channels, int latent, int width, int threads) {
    const auto backward = [&](auto kernel) {
        kernel(queries, key_summary, basic, filtered, mixing, grad_out, grad_queries,
               grad_key_summary, grad_filtered, positions, heads, keys, channels, latent, width,
               threads);
    };
    switch (shape_of(heads, keys, channels, latent)) {
        case k4x4: return backward(official_products_backward<4, 4, 4, 4>);
        case k4x8: return backward(official_products_backward<4, 8, 8, 8>);
        case k8x8: return backward(official_products_backward<8, 8, 8, 8>);
        case k8x16: return backward(official_products_backward<8, 16, 16, 16>);
        default: return backward(official_products_backward<0, 0, 0, 0>);
    }
}

}  // extern "C"
