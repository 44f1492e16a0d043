// Fused causal attention for prefill and decode (FlashAttention-2 style), and the fused
// tail-attention saliency the `attention` scorer ranks tokens by.
//
// flash_attn_*: one CTA of NW warps takes BM = NW·16·MT query rows of one head (16·MT
// consecutive rows a warp) and streams the visible keys through shared memory BN at a time,
// keeping a running max and sum per row (online softmax), so no n×n score matrix ever exists.
// Products run on tensor cores (mma.sync m16n8k16, f32 accumulation); operands come out of
// shared memory with ldmatrix (V with ldmatrix.trans), tiles arrive by cp.async so that V(j)
// loads while S = Q·K(j)ᵀ is computed and K(j+1) while softmax and P·V(j) run. A warp whose
// rows cannot see a tile skips it; only tiles on the diagonal are masked. Heads are the fast
// grid axis and query blocks come heaviest first, so the long causal rows start early.
//
// The attention scorer's saliency (mean attention the last `tail` queries pay to each key)
// takes two passes that never store a probability: tail_lse_* runs the same tile loop over
// the tail rows without V to get each row's log-sum-exp, and tail_scores_* recomputes those
// rows' scores key block by key block and sums exp(s - lse) down each column.
//
// Layouts (all row-major, last dim contiguous):
//   q   [heads][t][D]                      (the t new queries)
//   k,v [kv_heads][...][D], head stride given (KV-cache views have spare capacity)
//   out [t][heads][D]                      (ready for o_proj without a transpose)
//   lse [heads][tail] f32, log2 units
// The t queries are the last t of the n keys: query r may see keys 0..=n-t+r.
//
// The launch geometry (rows per CTA, shared memory) is mirrored in src/model/flash.rs.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

template <typename T> struct Mma;

template <> struct Mma<__nv_bfloat16> {
    static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t*>(&v);
    }
};

template <> struct Mma<__half> {
    static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t*>(&v);
    }
};

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8x8 16-bit matrices; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// 16 bytes global -> shared, bypassing L1; zero-filled when !valid (src is then not read).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// ROWS x D tile starting at row `row0` of `src` (row stride D) into `dst` (row stride LD);
// rows >= limit are zero-filled, so no garbage (or NaN) from past the end enters a product.
template <typename T, int D, int LD, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile_async(T* dst, const T* src, int row0, int limit) {
    // Each thread copies one 16-byte column chunk of every PASS-th row: one base address and
    // compile-time strides, so the unrolled copies cost no extra registers.
    constexpr int CHUNKS = D / 8;
    constexpr int PASS = THREADS / CHUNKS;
    static_assert(THREADS % CHUNKS == 0 && ROWS % PASS == 0, "tile must split evenly");
    const int r = threadIdx.x / CHUNKS, c = (threadIdx.x % CHUNKS) * 8;
    const T* from = src + (long long)(row0 + r) * D + c;
    const uint32_t to = smem_u32(dst + r * LD + c);
#pragma unroll
    for (int it = 0; it < ROWS / PASS; ++it) {
        const bool ok = row0 + r + it * PASS < limit;
        cp_async_16(to + it * PASS * LD * 2, ok ? from + (long long)it * PASS * D : src, ok);
    }
}

// Rows padded by 16 bytes: consecutive rows start 4 banks apart, so the 8 row addresses of
// an ldmatrix phase, and the 16-byte cp.async writes, hit distinct banks.
template <int D> __host__ __device__ constexpr int padded() { return D + 8; }

template <int D, int NW, int MT, int BN>
__host__ __device__ constexpr int flash_smem_bytes() {
    return (NW * 16 * MT + 2 * BN) * padded<D>() * 2;
}

// PV = false is the statistics-only pass of the tail scorer: no V, no output, only the row
// log-sum-exp.
template <typename T, int D, int NW, int MT, int BN, bool PV>
__device__ __forceinline__ void flash_attn_fwd(const T* __restrict__ q, const T* __restrict__ k,
                                               const T* __restrict__ v, T* __restrict__ out,
                                               float* __restrict__ lse, int t, int n, int heads,
                                               int groups, long long q_head_stride,
                                               long long k_head_stride, long long v_head_stride,
                                               float scale_log2) {
    constexpr int BM = NW * 16 * MT;
    constexpr int LD = padded<D>();
    constexpr int THREADS = NW * 32;
    extern __shared__ __align__(16) unsigned char smem[];
    T* q_s = reinterpret_cast<T*>(smem);
    T* k_s = q_s + BM * LD;
    T* v_s = k_s + BN * LD;

    const int head = blockIdx.x;
    const int m_block = gridDim.y - 1 - blockIdx.y;  // heaviest (last) query blocks first
    const int kv_head = head / groups;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane >> 2, tq = lane & 3;
    const int offset = n - t;  // absolute index of query row 0
    const int q0 = m_block * BM;
    const int wrow = warp * 16 * MT;  // this warp's first row within the CTA
    const bool warp_active = q0 + wrow < t;
    // Last key any row of this warp (or of the CTA) may see.
    const int warp_last_key = offset + min(q0 + wrow + 16 * MT, t) - 1;
    const int key_end = offset + min(q0 + BM, t);
    const int tiles = (key_end + BN - 1) / BN;

    const T* k_head = k + (long long)kv_head * k_head_stride;
    const T* v_head = v + (long long)kv_head * v_head_stride;

    load_tile_async<T, D, LD, BM, THREADS>(q_s, q + (long long)head * q_head_stride, q0, t);
    load_tile_async<T, D, LD, BN, THREADS>(k_s, k_head, 0, n);
    cp_async_commit();

    float o[MT][D / 8][4];
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int j = 0; j < D / 8; ++j) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.f;
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.f;
    }

    // ldmatrix lane addresses (element offsets within a tile).
    const int a_row = lane % 16, a_col = (lane / 16) * 8;                 // A: Q rows
    const int b_row = (lane % 8) + (lane / 16) * 8, b_col = ((lane / 8) % 2) * 8;  // B: K rows
    const int v_row = (lane % 8) + ((lane / 8) % 2) * 8, v_col = (lane / 16) * 8;  // B: V (trans)

    for (int j = 0; j < tiles; ++j) {
        const int key0 = j * BN;
        __syncthreads();  // every warp is done with V(j-1)
        if constexpr (PV) load_tile_async<T, D, LD, BN, THREADS>(v_s, v_head, key0, n);
        cp_async_commit();
        cp_async_wait<1>();  // Q and K(j) have landed (this thread's part)
        __syncthreads();     // ... and everyone's

        const bool compute = warp_active && key0 <= warp_last_key;
        float s[MT][BN / 8][4];
        if (compute) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int jn = 0; jn < BN / 8; ++jn) s[mt][jn][0] = s[mt][jn][1] = s[mt][jn][2] = s[mt][jn][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
                    ldmatrix_x4(a[mt], smem_u32(q_s + (wrow + mt * 16 + a_row) * LD + kk * 16 + a_col));
#pragma unroll
                for (int jn = 0; jn < BN / 16; ++jn) {
                    uint32_t b[4];
                    ldmatrix_x4(b, smem_u32(k_s + (jn * 16 + b_row) * LD + kk * 16 + b_col));
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        Mma<T>::run(s[mt][2 * jn], a[mt], b[0], b[1]);
                        Mma<T>::run(s[mt][2 * jn + 1], a[mt], b[2], b[3]);
                    }
                }
            }
        }
        cp_async_wait<0>();
        __syncthreads();  // V(j) visible; every warp is done with K(j)
        if (j + 1 < tiles) load_tile_async<T, D, LD, BN, THREADS>(k_s, k_head, key0 + BN, n);
        cp_async_commit();
        if (!compute) continue;

        // Only a tile reaching past the warp's first row needs the causal mask.
        const bool diagonal = key0 + BN - 1 > offset + q0 + wrow;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            const int abs_a = offset + q0 + wrow + mt * 16 + g, abs_b = abs_a + 8;
            float mx_a = m[mt][0], mx_b = m[mt][1];
#pragma unroll
            for (int jn = 0; jn < BN / 8; ++jn) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    if (diagonal) {
                        const int key = key0 + jn * 8 + 2 * tq + e;
                        if (key > abs_a) s[mt][jn][e] = -INFINITY;
                        if (key > abs_b) s[mt][jn][2 + e] = -INFINITY;
                    }
                    mx_a = fmaxf(mx_a, s[mt][jn][e]);
                    mx_b = fmaxf(mx_b, s[mt][jn][2 + e]);
                }
            }
#pragma unroll
            for (int d = 1; d < 4; d <<= 1) {
                mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffff, mx_a, d));
                mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffff, mx_b, d));
            }
            // Every row sees key 0 in the first tile, so the maxima are finite from then on;
            // exp2(-inf) = 0 rescales the empty accumulators of the first tile.
            const float corr_a = exp2f((m[mt][0] - mx_a) * scale_log2);
            const float corr_b = exp2f((m[mt][1] - mx_b) * scale_log2);
            m[mt][0] = mx_a;
            m[mt][1] = mx_b;
            const float base_a = mx_a * scale_log2, base_b = mx_b * scale_log2;
            float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
            for (int jn = 0; jn < BN / 8; ++jn) {
                s[mt][jn][0] = exp2f(fmaf(s[mt][jn][0], scale_log2, -base_a));
                s[mt][jn][1] = exp2f(fmaf(s[mt][jn][1], scale_log2, -base_a));
                s[mt][jn][2] = exp2f(fmaf(s[mt][jn][2], scale_log2, -base_b));
                s[mt][jn][3] = exp2f(fmaf(s[mt][jn][3], scale_log2, -base_b));
                sum_a += s[mt][jn][0] + s[mt][jn][1];
                sum_b += s[mt][jn][2] + s[mt][jn][3];
            }
            l[mt][0] = l[mt][0] * corr_a + sum_a;  // per-lane partial sums, reduced at the end
            l[mt][1] = l[mt][1] * corr_b + sum_b;
            if constexpr (PV) {
#pragma unroll
                for (int jd = 0; jd < D / 8; ++jd) {
                    o[mt][jd][0] *= corr_a;
                    o[mt][jd][1] *= corr_a;
                    o[mt][jd][2] *= corr_b;
                    o[mt][jd][3] *= corr_b;
                }
            }
        }
        if constexpr (PV) {
            // O += P·V: P's A fragments come straight from the S accumulators.
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    a[mt][0] = Mma<T>::pack(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    a[mt][1] = Mma<T>::pack(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                    a[mt][2] = Mma<T>::pack(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    a[mt][3] = Mma<T>::pack(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int jd = 0; jd < D / 16; ++jd) {
                    uint32_t b[4];
                    ldmatrix_x4_trans(b, smem_u32(v_s + (kk * 16 + v_row) * LD + jd * 16 + v_col));
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        Mma<T>::run(o[mt][2 * jd], a[mt], b[0], b[1]);
                        Mma<T>::run(o[mt][2 * jd + 1], a[mt], b[2], b[3]);
                    }
                }
            }
        }
    }
    if (!warp_active) return;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        float la = l[mt][0], lb = l[mt][1];
#pragma unroll
        for (int d = 1; d < 4; d <<= 1) {
            la += __shfl_xor_sync(0xffffffff, la, d);
            lb += __shfl_xor_sync(0xffffffff, lb, d);
        }
        const int ra = q0 + wrow + mt * 16 + g, rb = ra + 8;
        const float inv_a = 1.f / la, inv_b = 1.f / lb;
#pragma unroll
        for (int jd = 0; jd < D / 8; ++jd) {
            if constexpr (!PV) break;
            const int c = jd * 8 + 2 * tq;
            if (ra < t)
                *reinterpret_cast<uint32_t*>(out + ((long long)ra * heads + head) * D + c) =
                    Mma<T>::pack(o[mt][jd][0] * inv_a, o[mt][jd][1] * inv_a);
            if (rb < t)
                *reinterpret_cast<uint32_t*>(out + ((long long)rb * heads + head) * D + c) =
                    Mma<T>::pack(o[mt][jd][2] * inv_b, o[mt][jd][3] * inv_b);
        }
        if (lse != nullptr && tq == 0) {
            if (ra < t) lse[(long long)head * t + ra] = m[mt][0] * scale_log2 + __log2f(la);
            if (rb < t) lse[(long long)head * t + rb] = m[mt][1] * scale_log2 + __log2f(lb);
        }
    }
}

// Column sums of softmax(Q·Kᵀ) over the query rows [t - tail, t), one CTA per (head, 64-key
// block): 4 warps of 16 keys, held in registers; the tail queries stream through two shared
// memory buffers 64 at a time.
// lse holds the tail rows' log-sum-exps, head h's at lse + h·lse_head_stride, in log2 units
// after multiplying by lse_scale (1 for tail_lse's, log2(e) for cuDNN's natural-log stats).
// Adds each key's sum over this head into scores[head][key] (f32, [heads][n], zeroed by the
// caller): the scorer combines heads itself (max or mean).
#define TAIL_KEYS 64
#define TAIL_QUERIES 64

template <int D>
__host__ __device__ constexpr int tail_smem_bytes() {
    return (TAIL_KEYS + 2 * TAIL_QUERIES) * padded<D>() * 2;
}

template <typename T, int D>
__device__ __forceinline__ void tail_scores_fwd(const T* __restrict__ q, const T* __restrict__ k,
                                                const float* __restrict__ lse,
                                                long long lse_head_stride, float lse_scale,
                                                float* __restrict__ scores, int t, int n,
                                                int tail, int groups, long long k_head_stride,
                                                float scale_log2) {
    constexpr int LD = padded<D>();
    constexpr int THREADS = 128;
    extern __shared__ __align__(16) unsigned char smem[];
    T* k_s = reinterpret_cast<T*>(smem);
    T* q_s = k_s + TAIL_KEYS * LD;

    const int head = blockIdx.x;
    const int key0 = blockIdx.y * TAIL_KEYS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane >> 2, tq = lane & 3;
    const int offset = n - t;
    const int first = t - tail;  // first tail query row
    const T* q_head = q + (long long)head * t * D;
    const float* lse_head = lse + (long long)head * lse_head_stride;  // row r: [r - first]

    // Tail queries that can see at least one key of this block: absolute row >= key0.
    const int start = max(first, key0 - offset);
    load_tile_async<T, D, LD, TAIL_KEYS, THREADS>(k_s, k + (long long)(head / groups) * k_head_stride,
                                                  key0, n);
    if (start < t) load_tile_async<T, D, LD, TAIL_QUERIES, THREADS>(q_s, q_head, start, t);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    // This warp's 16 keys stay in registers as the A operand for every query tile.
    const int a_row = lane % 16, a_col = (lane / 16) * 8;
    const int b_row = (lane % 8) + (lane / 16) * 8, b_col = ((lane / 8) % 2) * 8;
    uint32_t a[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
        ldmatrix_x4(a[kk], smem_u32(k_s + (warp * 16 + a_row) * LD + kk * 16 + a_col));
    const int key_a = key0 + warp * 16 + g, key_b = key_a + 8;
    float col_a = 0.f, col_b = 0.f;

    // Query tiles are double-buffered: tile i+1 loads while tile i is multiplied.
    for (int r0 = start, buf = 0; r0 < t; r0 += TAIL_QUERIES, buf ^= 1) {
        const T* q_tile = q_s + buf * TAIL_QUERIES * LD;
        if (r0 + TAIL_QUERIES < t)
            load_tile_async<T, D, LD, TAIL_QUERIES, THREADS>(q_s + (buf ^ 1) * TAIL_QUERIES * LD,
                                                             q_head, r0 + TAIL_QUERIES, t);
        cp_async_commit();
        // Sᵀ for 16 keys x 64 queries: keys are the A operand (rows), queries the B operand.
        float s[TAIL_QUERIES / 8][4];
#pragma unroll
        for (int jn = 0; jn < TAIL_QUERIES / 8; ++jn) s[jn][0] = s[jn][1] = s[jn][2] = s[jn][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
            for (int jn = 0; jn < TAIL_QUERIES / 16; ++jn) {
                uint32_t b[4];
                ldmatrix_x4(b, smem_u32(q_tile + (jn * 16 + b_row) * LD + kk * 16 + b_col));
                Mma<T>::run(s[2 * jn], a[kk], b[0], b[1]);
                Mma<T>::run(s[2 * jn + 1], a[kk], b[2], b[3]);
            }
        }
#pragma unroll
        for (int jn = 0; jn < TAIL_QUERIES / 8; ++jn) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int row = r0 + jn * 8 + 2 * tq + e;
                if (row < t) {
                    const float norm = lse_head[row - first] * lse_scale;
                    const int abs_row = offset + row;
                    if (key_a <= abs_row) col_a += exp2f(fmaf(s[jn][e], scale_log2, -norm));
                    if (key_b <= abs_row) col_b += exp2f(fmaf(s[jn][2 + e], scale_log2, -norm));
                }
            }
        }
        cp_async_wait<0>();
        __syncthreads();  // the next tile has landed; every warp is done with this one
    }
#pragma unroll
    for (int d = 1; d < 4; d <<= 1) {
        col_a += __shfl_xor_sync(0xffffffff, col_a, d);
        col_b += __shfl_xor_sync(0xffffffff, col_b, d);
    }
    if (tq == 0) {
        float* head_scores = scores + (long long)head * n;
        if (key_a < n) atomicAdd(head_scores + key_a, col_a);
        if (key_b < n) atomicAdd(head_scores + key_b, col_b);
    }
}

// The production configuration: 4 warps of 32 rows (two m16 tiles, so each K/V fragment
// read from shared memory feeds two products), 64-key tiles. src/model/flash.rs mirrors
// BM = 128 and the shared-memory size.
#ifndef SDTP_FLASH_NO_EXPORTS
#define FLASH_NW 4
#define FLASH_MT 2
#define FLASH_BN 64

// flash_attn_*: out = softmax(Q·Kᵀ)·V (q head stride t·D).
// tail_lse_*: log-sum-exp of the last `tail` of the t query rows, lse [heads][tail].
// tail_scores_*: see tail_scores_fwd.
#define INSTANTIATE(NAME, T, D)                                                                  \
    extern "C" __global__ void __launch_bounds__(FLASH_NW * 32)                                  \
        flash_attn_##NAME(const T* q, const T* k, const T* v, T* out, int t, int n, int heads,   \
                          int groups, long long k_head_stride, long long v_head_stride,          \
                          float scale_log2) {                                                    \
        flash_attn_fwd<T, D, FLASH_NW, FLASH_MT, FLASH_BN, true>(                                \
            q, k, v, out, nullptr, t, n, heads, groups, (long long)t * D, k_head_stride,         \
            v_head_stride, scale_log2);                                                          \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(FLASH_NW * 32)                                  \
        tail_lse_##NAME(const T* q, const T* k, float* lse, int t, int tail, int n, int heads,   \
                        int groups, long long k_head_stride, float scale_log2) {                 \
        flash_attn_fwd<T, D, FLASH_NW, FLASH_MT, FLASH_BN, false>(                               \
            q + (long long)(t - tail) * D, k, nullptr, nullptr, lse, tail, n, heads, groups,     \
            (long long)t * D, k_head_stride, 0, scale_log2);                                     \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(128)                                            \
        tail_scores_##NAME(const T* q, const T* k, const float* lse, long long lse_head_stride, \
                           float lse_scale, float* scores, int t, int n, int tail, int groups,   \
                           long long k_head_stride, float scale_log2) {                          \
        tail_scores_fwd<T, D>(q, k, lse, lse_head_stride, lse_scale, scores, t, n, tail, groups, \
                              k_head_stride, scale_log2);                                        \
    }

INSTANTIATE(bf16_d64, __nv_bfloat16, 64)
INSTANTIATE(bf16_d128, __nv_bfloat16, 128)
INSTANTIATE(f16_d64, __half, 64)
INSTANTIATE(f16_d128, __half, 128)
#endif
