// Small fused element-wise kernels for the CUDA build (compiled to PTX by build.rs).
//
// silu_mul_*: out = silu(gate) · up, the SwiGLU activation, in one pass: candle's separate
// silu and mul kernels read the intermediate-sized activations three times and write them
// twice; this reads them twice and writes once. 16-byte accesses (8 halves or 4 floats) when
// the sizes allow, one element at a time for the rest.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }

template <typename T>
__device__ __forceinline__ T silu_mul_one(T g, T u) {
    const float x = to_f(g);
    return from_f<T>(x / (1.f + __expf(-x)) * to_f(u));
}

template <typename T>
__device__ void silu_mul(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ out,
                         long long n) {
    constexpr int VEC = 16 / sizeof(T);
    const long long vectors = n / VEC;
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (long long i = first; i < vectors; i += stride) {
        uint4 g = reinterpret_cast<const uint4*>(gate)[i];
        uint4 u = reinterpret_cast<const uint4*>(up)[i];
        uint4 o;
        const T* gs = reinterpret_cast<const T*>(&g);
        const T* us = reinterpret_cast<const T*>(&u);
        T* os = reinterpret_cast<T*>(&o);
#pragma unroll
        for (int j = 0; j < VEC; ++j) os[j] = silu_mul_one(gs[j], us[j]);
        reinterpret_cast<uint4*>(out)[i] = o;
    }
    for (long long i = vectors * VEC + first; i < n; i += stride) out[i] = silu_mul_one(gate[i], up[i]);
}

#define SILU_MUL(NAME, T)                                                                        \
    extern "C" __global__ void NAME(const T* gate, const T* up, T* out, long long n) {          \
        silu_mul<T>(gate, up, out, n);                                                           \
    }

SILU_MUL(silu_mul_bf16, __nv_bfloat16)
SILU_MUL(silu_mul_f16, __half)
SILU_MUL(silu_mul_f32, float)
