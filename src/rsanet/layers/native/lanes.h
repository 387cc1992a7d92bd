// Eight float lanes (one AVX2 register; two NEON ones), as a GCC/Clang vector extension:
// the compiler emits the target's vector instructions, no intrinsics.
#pragma once

#include <cstring>

typedef float Lanes __attribute__((vector_size(32)));
constexpr int kLanes = 8;

inline Lanes load(const float* p) {
    Lanes v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline void store(float* p, Lanes v) { std::memcpy(p, &v, sizeof v); }
