// Small fused element-wise and layout kernels for the CUDA build (compiled to PTX by build.rs).
//
// silu_mul_*: out = silu(gate) · up, the SwiGLU activation, in one pass: candle's separate
// silu and mul kernels read the intermediate-sized activations three times and write them
// twice; this reads them twice and writes once. 16-byte accesses (8 halves or 4 floats) when
// the sizes allow, one element at a time otherwise.

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

// rows x cols, each operand with its own row stride (gate and up are usually the two halves
// of one fused gate/up projection's rows); out is contiguous. `vec` says whether cols, the
// strides and the start addresses allow 16-byte accesses.
template <typename T>
__device__ void silu_mul(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ out,
                         int rows, int cols, long long gate_stride, long long up_stride, int vec) {
    constexpr int VEC = 16 / sizeof(T);
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (vec) {
        const int per_row = cols / VEC;
        const long long total = (long long)rows * per_row;
        for (long long i = first; i < total; i += stride) {
            const long long r = i / per_row;
            const int c = (int)(i % per_row) * VEC;
            uint4 g = *reinterpret_cast<const uint4*>(gate + r * gate_stride + c);
            uint4 u = *reinterpret_cast<const uint4*>(up + r * up_stride + c);
            uint4 o;
            const T* gs = reinterpret_cast<const T*>(&g);
            const T* us = reinterpret_cast<const T*>(&u);
            T* os = reinterpret_cast<T*>(&o);
#pragma unroll
            for (int j = 0; j < VEC; ++j) os[j] = silu_mul_one(gs[j], us[j]);
            *reinterpret_cast<uint4*>(out + r * cols + c) = o;
        }
    } else {
        const long long total = (long long)rows * cols;
        for (long long i = first; i < total; i += stride) {
            const long long r = i / cols;
            const int c = (int)(i % cols);
            out[i] = silu_mul_one(gate[r * gate_stride + c], up[r * up_stride + c]);
        }
    }
}

#define SILU_MUL(NAME, T)                                                                        \
    extern "C" __global__ void NAME(const T* gate, const T* up, T* out, int rows, int cols,     \
                                    long long gate_stride, long long up_stride, int vec) {      \
        silu_mul<T>(gate, up, out, rows, cols, gate_stride, up_stride, vec);                     \
    }

SILU_MUL(silu_mul_bf16, __nv_bfloat16)
SILU_MUL(silu_mul_f16, __half)
SILU_MUL(silu_mul_f32, float)

// heads_major_*: (t, heads, d) -> (heads, t, d) for 16-bit elements, d a multiple of 8: both
// layouts keep d contiguous, so this moves whole 16-byte chunks with coalesced reads and
// writes (candle's generic strided copy goes element by element, at a fraction of the
// bandwidth).
template <typename T>
__device__ void heads_major(const T* __restrict__ x, T* __restrict__ out, int t, int heads, int d) {
    constexpr int VEC = 16 / sizeof(T);
    const int per_row = d / VEC;
    const long long total = (long long)t * heads * per_row;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const long long row = i / per_row;  // = token * heads + head
        const int chunk = (int)(i % per_row);
        const long long token = row / heads, head = row % heads;
        reinterpret_cast<uint4*>(out + (head * t + token) * d)[chunk] =
            reinterpret_cast<const uint4*>(x + row * d)[chunk];
    }
}

#define HEADS_MAJOR(NAME, T)                                                                     \
    extern "C" __global__ void NAME(const T* x, T* out, int t, int heads, int d) {              \
        heads_major<T>(x, out, t, heads, d);                                                     \
    }

HEADS_MAJOR(heads_major_bf16, __nv_bfloat16)
HEADS_MAJOR(heads_major_f16, __half)

// gather_rows_*: out[i] = x[index[i]] for rows of `cols` 16-bit elements (cols a multiple of
// 8): the pruned prefill's selection of kept tokens, in 16-byte chunks.
template <typename T>
__device__ void gather_rows(const T* __restrict__ x, const uint32_t* __restrict__ index,
                            T* __restrict__ out, int rows, int cols) {
    constexpr int VEC = 16 / sizeof(T);
    const int per_row = cols / VEC;
    const long long total = (long long)rows * per_row;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const long long r = i / per_row;
        const int chunk = (int)(i % per_row);
        reinterpret_cast<uint4*>(out + r * cols)[chunk] =
            reinterpret_cast<const uint4*>(x + (long long)index[r] * cols)[chunk];
    }
}

#define GATHER_ROWS(NAME, T)                                                                     \
    extern "C" __global__ void NAME(const T* x, const uint32_t* index, T* out, int rows,        \
                                    int cols) {                                                  \
        gather_rows<T>(x, index, out, rows, cols);                                               \
    }

GATHER_ROWS(gather_rows_bf16, __nv_bfloat16)
GATHER_ROWS(gather_rows_f16, __half)
