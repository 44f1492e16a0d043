// Decode-step kernels whose lengths live on the device (compiled to PTX by build.rs).
//
// A decode step attends one new query per head to that layer's whole cache. Every length it
// needs (how many entries each layer's cache holds) is read from a small u32 `inputs` buffer
// on the device, laid out [token, position, len_0, len_1, ...], so one recorded sequence of
// launches (a CUDA graph) replays for every token: the host writes the buffer, nothing in
// the launches changes. `slot` is the index of this layer's length in it.
//
// cache_write_*: writes the new token's keys (or values) of every kv head into the cache at
//   entry len (the first free one).
// decode_attn_partial_*: split-K ("flash-decoding") attention. CTA (kv head, split) reads keys
//   split·chunk .. min(len + 1, (split + 1)·chunk) once for all query heads of its group and
//   leaves an unnormalised partial (row max m, sum l, Σ p·v) per query head. Splits past the
//   length return at once, so the grid is sized by the cache's capacity, not its length.
// decode_attn_combine_*: merges a head's partials into its output row.
//
// Softmax runs in log2 units (q is pre-scaled by log2(e)/sqrt(d)), as in flash_attn.cu.

#include "common.cuh"

#include <math_constants.h>

constexpr int DEC_WARPS = 4;
// Query heads per kv head: a template parameter (registers hold each head's query and
// accumulator), instantiated for 1..8; the host refuses larger groups.

template <typename T>
__device__ __forceinline__ void load_vec(const T* p, float* out) {
    constexpr int N = 16 / sizeof(T);
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = to_f(e[i]);
}

// exp2(a - b), 0 when a is -inf (an empty partial), never NaN.
__device__ __forceinline__ float rescale(float a, float b) {
    return a == -CUDART_INF_F ? 0.f : exp2f(a - b);
}

template <typename T>
__device__ void cache_write(T* __restrict__ cache, const T* __restrict__ src,
                            const uint32_t* __restrict__ inputs, int slot, int heads,
                            long long capacity, int d) {
    const long long entry = inputs[slot];
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < heads * d; i += gridDim.x * blockDim.x) {
        const int head = i / d, e = i % d;
        cache[(head * capacity + entry) * d + e] = src[i];
    }
}

template <typename T, int D, int G>
__device__ void decode_attn_partial(const T* __restrict__ q, const T* __restrict__ k,
                                    const T* __restrict__ v, const uint32_t* __restrict__ inputs,
                                    int slot, long long capacity, int chunk, float scale_log2,
                                    float* __restrict__ part_ml, float* __restrict__ part_acc,
                                    int max_splits) {
    constexpr int N = 16 / sizeof(T);  // elements per 16-byte load
    constexpr int LPK = D / N;         // lanes sharing one key row
    static_assert(LPK <= 32 && 32 % LPK == 0, "a key row must fit a warp evenly");
    constexpr int KPW = 32 / LPK;      // keys a warp reads at once
    constexpr int STEP = DEC_WARPS * KPW;
    // Key steps whose loads are issued together: enough bytes in flight per SM to cover the
    // memory latency (the kernel is bound by reading the cache once).
    constexpr int U = 4;
    __shared__ float s_ml[DEC_WARPS][G][2];
    __shared__ float s_acc[DEC_WARPS][G][D];

    const int kvh = blockIdx.x, split = blockIdx.y;
    const int len = (int)inputs[slot] + 1;  // the cache plus the token just written
    const int start = split * chunk;
    if (start >= len) return;
    const int end = min(start + chunk, len);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kg = lane / LPK, sub = lane % LPK;

    float qv[G][N], m[G], l[G], acc[G][N];
#pragma unroll
    for (int g = 0; g < G; ++g) {
        m[g] = -CUDART_INF_F;
        l[g] = 0.f;
        load_vec(q + (long long)(kvh * G + g) * D + sub * N, qv[g]);
#pragma unroll
        for (int e = 0; e < N; ++e) {
            qv[g][e] *= scale_log2;
            acc[g][e] = 0.f;
        }
    }
    const T* kb = k + (long long)kvh * capacity * D + sub * N;
    const T* vb = v + (long long)kvh * capacity * D + sub * N;
    // `base` is the same in every lane of a warp, so the shuffles below see whole warps.
    for (int base = start + warp * KPW; base < end; base += U * STEP) {
        uint4 kr[U], vr[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int j = base + u * STEP + kg;
            if (j < end) {
                kr[u] = __ldcs(reinterpret_cast<const uint4*>(kb + (long long)j * D));
                vr[u] = __ldcs(reinterpret_cast<const uint4*>(vb + (long long)j * D));
            } else {
                kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const bool valid = base + u * STEP + kg < end;
            const T* ke = reinterpret_cast<const T*>(&kr[u]);
            const T* ve = reinterpret_cast<const T*>(&vr[u]);
#pragma unroll
            for (int g = 0; g < G; ++g) {
                float s = 0.f;
#pragma unroll
                for (int e = 0; e < N; ++e) s += qv[g][e] * to_f(ke[e]);
#pragma unroll
                for (int off = LPK / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
                s = valid ? s : -CUDART_INF_F;
                const float m_new = fmaxf(m[g], s);
                const float alpha = rescale(m[g], m_new);
                const float p = rescale(s, m_new);
                l[g] = l[g] * alpha + p;
#pragma unroll
                for (int e = 0; e < N; ++e) acc[g][e] = acc[g][e] * alpha + p * to_f(ve[e]);
                m[g] = m_new;
            }
        }
    }
    // Merge the KPW key lanes of the warp (lanes with the same `sub`).
#pragma unroll
    for (int off = LPK; off < 32; off <<= 1) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m[g], off);
            const float l2 = __shfl_xor_sync(0xffffffffu, l[g], off);
            const float mn = fmaxf(m[g], m2);
            const float a = rescale(m[g], mn), b = rescale(m2, mn);
            l[g] = l[g] * a + l2 * b;
#pragma unroll
            for (int e = 0; e < N; ++e)
                acc[g][e] = acc[g][e] * a + __shfl_xor_sync(0xffffffffu, acc[g][e], off) * b;
            m[g] = mn;
        }
    }
    if (kg == 0) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
#pragma unroll
            for (int e = 0; e < N; ++e) s_acc[warp][g][sub * N + e] = acc[g][e];
            if (sub == 0) {
                s_ml[warp][g][0] = m[g];
                s_ml[warp][g][1] = l[g];
            }
        }
    }
    __syncthreads();
    // Merge the warps and write the CTA's partial for each query head of the group.
    for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
        const int g = i / D, e = i % D;
        float mx = -CUDART_INF_F;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; ++w) mx = fmaxf(mx, s_ml[w][g][0]);
        float sum_l = 0.f, sum_acc = 0.f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; ++w) {
            const float c = rescale(s_ml[w][g][0], mx);
            sum_l += s_ml[w][g][1] * c;
            sum_acc += s_acc[w][g][e] * c;
        }
        const long long row = (long long)(kvh * G + g) * max_splits + split;
        part_acc[row * D + e] = sum_acc;
        if (e == 0) {
            part_ml[row * 2] = mx;
            part_ml[row * 2 + 1] = sum_l;
        }
    }
}

// One CTA per query head, one thread per output element.
template <typename T>
__device__ void decode_attn_combine(const float* __restrict__ part_ml,
                                    const float* __restrict__ part_acc,
                                    const uint32_t* __restrict__ inputs, int slot, int chunk,
                                    int max_splits, int d, T* __restrict__ out) {
    const int head = blockIdx.x, e = threadIdx.x;
    const int len = (int)inputs[slot] + 1;
    const int splits = min((len + chunk - 1) / chunk, max_splits);
    const float* ml = part_ml + (long long)head * max_splits * 2;
    const float* acc = part_acc + (long long)head * max_splits * d;
    float mx = -CUDART_INF_F;
    for (int s = 0; s < splits; ++s) mx = fmaxf(mx, ml[2 * s]);
    float sum_l = 0.f, sum_acc = 0.f;
    for (int s = 0; s < splits; ++s) {
        const float c = rescale(ml[2 * s], mx);
        sum_l += ml[2 * s + 1] * c;
        sum_acc += acc[(long long)s * d + e] * c;
    }
    if (e < d) out[(long long)head * d + e] = from_f<T>(sum_acc / sum_l);
}

#define DECODE_KERNELS(SUFFIX, T)                                                                \
    extern "C" __global__ void cache_write_##SUFFIX(T* cache, const T* src,                    \
                                                    const uint32_t* inputs, int slot, int heads, \
                                                    long long capacity, int d) {                 \
        cache_write<T>(cache, src, inputs, slot, heads, capacity, d);                            \
    }                                                                                            \
    extern "C" __global__ void decode_attn_combine_##SUFFIX(                                     \
        const float* part_ml, const float* part_acc, const uint32_t* inputs, int slot,           \
        int chunk, int max_splits, int d, T* out) {                                              \
        decode_attn_combine<T>(part_ml, part_acc, inputs, slot, chunk, max_splits, d, out);      \
    }

#define DECODE_PARTIAL_G(SUFFIX, T, D, G)                                                        \
    extern "C" __global__ void __launch_bounds__(DEC_WARPS * 32)                                 \
        decode_attn_partial_##SUFFIX##_d##D##_g##G(                                              \
            const T* q, const T* k, const T* v, const uint32_t* inputs, int slot,                \
            long long capacity, int chunk, float scale_log2, float* part_ml, float* part_acc,    \
            int max_splits) {                                                                    \
        decode_attn_partial<T, D, G>(q, k, v, inputs, slot, capacity, chunk, scale_log2,         \
                                     part_ml, part_acc, max_splits);                             \
    }
// Every grouping of Llama-family models up to 8 query heads per kv head (Llama-2: 1,
// SmolLM2: 3, Llama-3 and Mistral: 4, Qwen2-7B: 7).
#define DECODE_PARTIAL(SUFFIX, T, D)                                                             \
    DECODE_PARTIAL_G(SUFFIX, T, D, 1)                                                            \
    DECODE_PARTIAL_G(SUFFIX, T, D, 2)                                                            \
    DECODE_PARTIAL_G(SUFFIX, T, D, 3)                                                            \
    DECODE_PARTIAL_G(SUFFIX, T, D, 4)                                                            \
    DECODE_PARTIAL_G(SUFFIX, T, D, 5)                                                            \
    DECODE_PARTIAL_G(SUFFIX, T, D, 6)                                                            \
    DECODE_PARTIAL_G(SUFFIX, T, D, 7)                                                            \
    DECODE_PARTIAL_G(SUFFIX, T, D, 8)

DECODE_KERNELS(bf16, __nv_bfloat16)
DECODE_KERNELS(f16, __half)
DECODE_KERNELS(f32, float)
DECODE_PARTIAL(bf16, __nv_bfloat16, 64)
DECODE_PARTIAL(bf16, __nv_bfloat16, 128)
DECODE_PARTIAL(f16, __half, 64)
DECODE_PARTIAL(f16, __half, 128)
DECODE_PARTIAL(f32, float, 64)
DECODE_PARTIAL(f32, float, 128)
