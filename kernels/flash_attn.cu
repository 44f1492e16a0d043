// Fused causal attention for prefill and decode (FlashAttention-2 style): one CTA of 4 warps
// takes 64 query rows of one head (16 rows a warp) and streams the visible keys through shared
// memory 64 at a time, keeping a running max and sum per row (online softmax), so no n×n score
// matrix ever exists. Products use tensor cores through mma.sync m16n8k16 with f32
// accumulation; P is fed back as the A operand straight from the S accumulators.
//
// Layouts (all row-major, last dim contiguous):
//   q   [heads][t][D]                      (the t new queries)
//   k,v [kv_heads][...][D], head stride given (KV-cache views have spare capacity)
//   out [t][heads][D]                      (ready for o_proj without a transpose)
// The t queries are the last t of the n keys: query r may see keys 0..=n-t+r.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#define BLOCK_M 64
#define BLOCK_N 64
#define WARPS 4

template <typename T> struct Mma;

template <> struct Mma<__nv_bfloat16> {
    static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], const uint32_t b[2]) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t*>(&v);
    }
};

template <> struct Mma<__half> {
    static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], const uint32_t b[2]) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t*>(&v);
    }
};

// Two consecutive 16-bit elements as one 32-bit register.
template <typename T>
__device__ __forceinline__ uint32_t load_pair(const T* p) {
    return *reinterpret_cast<const uint32_t*>(p);
}

template <typename T>
__device__ __forceinline__ uint32_t gather_pair(const T* lo, const T* hi) {
    uint16_t a = *reinterpret_cast<const uint16_t*>(lo);
    uint16_t b = *reinterpret_cast<const uint16_t*>(hi);
    return (uint32_t)a | ((uint32_t)b << 16);
}

template <typename T, int D>
__device__ void flash_attn_fwd(const T* __restrict__ q, const T* __restrict__ k,
                               const T* __restrict__ v, T* __restrict__ out, int t, int n,
                               int heads, int groups, long long k_head_stride,
                               long long v_head_stride, float scale_log2) {
    // Row padding of 8 elements keeps the per-lane column reads off a single bank.
    constexpr int LD = D + 8;
    __shared__ __align__(16) T k_tile[BLOCK_N * LD];
    __shared__ __align__(16) T v_tile[BLOCK_N * LD];

    const int head = blockIdx.y;
    const int kv_head = head / groups;
    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int g = lane >> 2;  // row within the 8-row group of an mma fragment
    const int tq = lane & 3;  // column pair within the fragment
    const int offset = n - t; // absolute index of query row 0
    const int row0 = blockIdx.x * BLOCK_M + warp * 16;  // first query row of this warp

    const T* q_head = q + (long long)head * t * D;
    const T* k_head = k + (long long)kv_head * k_head_stride;
    const T* v_head = v + (long long)kv_head * v_head_stride;

    // Q fragments (A operand), kept in registers: rows row0+g and row0+g+8.
    uint32_t qf[D / 16][4];
    const int ra = row0 + g, rb = row0 + g + 8;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        const int c = kk * 16 + 2 * tq;
        qf[kk][0] = ra < t ? load_pair(q_head + (long long)ra * D + c) : 0u;
        qf[kk][1] = rb < t ? load_pair(q_head + (long long)rb * D + c) : 0u;
        qf[kk][2] = ra < t ? load_pair(q_head + (long long)ra * D + c + 8) : 0u;
        qf[kk][3] = rb < t ? load_pair(q_head + (long long)rb * D + c + 8) : 0u;
    }

    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f;

    // Keys beyond the CTA's last query are never visible to it.
    const int cta_last_row = min(t, (int)(blockIdx.x + 1) * BLOCK_M) - 1;
    const int key_end = offset + cta_last_row + 1;
    const int abs_a = offset + ra, abs_b = offset + rb;

    for (int key0 = 0; key0 < key_end; key0 += BLOCK_N) {
        __syncthreads();  // the previous tiles are no longer read
        // Cooperative 16-byte loads of the K and V tiles; rows past n are zero.
        constexpr int VEC = 8;
        for (int i = threadIdx.x; i < BLOCK_N * (D / VEC); i += WARPS * 32) {
            const int r = i / (D / VEC), c = (i % (D / VEC)) * VEC;
            uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
            if (key0 + r < n) {
                kv = *reinterpret_cast<const uint4*>(k_head + (long long)(key0 + r) * D + c);
                vv = *reinterpret_cast<const uint4*>(v_head + (long long)(key0 + r) * D + c);
            }
            *reinterpret_cast<uint4*>(&k_tile[r * LD + c]) = kv;
            *reinterpret_cast<uint4*>(&v_tile[r * LD + c]) = vv;
        }
        __syncthreads();
        if (row0 >= t) continue;  // this warp has no rows (still joins the barriers)

        // S = Q K^T for 64 keys: 8 n-tiles of 8 keys.
        float s[BLOCK_N / 8][4];
#pragma unroll
        for (int j = 0; j < BLOCK_N / 8; ++j) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                const T* kr = &k_tile[(j * 8 + g) * LD + kk * 16 + 2 * tq];
                uint32_t b[2] = {load_pair(kr), load_pair(kr + 8)};
                Mma<T>::run(s[j], qf[kk], b);
            }
        }
        // Causal mask (and keys past n), scale into log2 units, running max.
        float mx_a = m_a, mx_b = m_b;
#pragma unroll
        for (int j = 0; j < BLOCK_N / 8; ++j) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int key = key0 + j * 8 + 2 * tq + e;
                s[j][e] = (key <= abs_a && key < n) ? s[j][e] * scale_log2 : -INFINITY;
                s[j][2 + e] = (key <= abs_b && key < n) ? s[j][2 + e] * scale_log2 : -INFINITY;
                mx_a = fmaxf(mx_a, s[j][e]);
                mx_b = fmaxf(mx_b, s[j][2 + e]);
            }
        }
#pragma unroll
        for (int d = 1; d < 4; d <<= 1) {
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffff, mx_a, d));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffff, mx_b, d));
        }
        // A row that sees no key in this tile keeps max -inf; guard the exp of -inf - -inf.
        const float base_a = mx_a == -INFINITY ? 0.f : mx_a;
        const float base_b = mx_b == -INFINITY ? 0.f : mx_b;
        const float corr_a = exp2f(m_a - base_a), corr_b = exp2f(m_b - base_b);
        m_a = mx_a;
        m_b = mx_b;
        float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
        for (int j = 0; j < BLOCK_N / 8; ++j) {
            s[j][0] = exp2f(s[j][0] - base_a);
            s[j][1] = exp2f(s[j][1] - base_a);
            s[j][2] = exp2f(s[j][2] - base_b);
            s[j][3] = exp2f(s[j][3] - base_b);
            sum_a += s[j][0] + s[j][1];
            sum_b += s[j][2] + s[j][3];
        }
        l_a = l_a * corr_a + sum_a;  // per-lane partial sums; reduced across the quad at the end
        l_b = l_b * corr_b + sum_b;
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
            o[j][0] *= corr_a;
            o[j][1] *= corr_a;
            o[j][2] *= corr_b;
            o[j][3] *= corr_b;
        }
        // O += P V: P's A fragments come straight from the S accumulators.
#pragma unroll
        for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
            uint32_t a[4] = {
                Mma<T>::pack(s[2 * kk][0], s[2 * kk][1]),
                Mma<T>::pack(s[2 * kk][2], s[2 * kk][3]),
                Mma<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                Mma<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]),
            };
            const int key = kk * 16 + 2 * tq;
#pragma unroll
            for (int j = 0; j < D / 8; ++j) {
                const int col = j * 8 + g;
                uint32_t b[2] = {
                    gather_pair(&v_tile[key * LD + col], &v_tile[(key + 1) * LD + col]),
                    gather_pair(&v_tile[(key + 8) * LD + col], &v_tile[(key + 9) * LD + col]),
                };
                Mma<T>::run(o[j], a, b);
            }
        }
    }
    if (row0 >= t) return;
#pragma unroll
    for (int d = 1; d < 4; d <<= 1) {
        l_a += __shfl_xor_sync(0xffffffff, l_a, d);
        l_b += __shfl_xor_sync(0xffffffff, l_b, d);
    }
    const float inv_a = 1.f / l_a, inv_b = 1.f / l_b;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
        const int c = j * 8 + 2 * tq;
        if (ra < t)
            *reinterpret_cast<uint32_t*>(out + ((long long)ra * heads + head) * D + c) =
                Mma<T>::pack(o[j][0] * inv_a, o[j][1] * inv_a);
        if (rb < t)
            *reinterpret_cast<uint32_t*>(out + ((long long)rb * heads + head) * D + c) =
                Mma<T>::pack(o[j][2] * inv_b, o[j][3] * inv_b);
    }
}

#define INSTANTIATE(NAME, T, D)                                                                  \
    extern "C" __global__ void __launch_bounds__(WARPS * 32)                                     \
        NAME(const T* q, const T* k, const T* v, T* out, int t, int n, int heads, int groups,   \
             long long k_head_stride, long long v_head_stride, float scale_log2) {               \
        flash_attn_fwd<T, D>(q, k, v, out, t, n, heads, groups, k_head_stride, v_head_stride,   \
                             scale_log2);                                                        \
    }

INSTANTIATE(flash_attn_bf16_d64, __nv_bfloat16, 64)
INSTANTIATE(flash_attn_bf16_d128, __nv_bfloat16, 128)
INSTANTIATE(flash_attn_f16_d64, __half, 64)
INSTANTIATE(flash_attn_f16_d128, __half, 128)
