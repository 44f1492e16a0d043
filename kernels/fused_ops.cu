// Small fused element-wise and layout kernels for the CUDA build (compiled to PTX by build.rs).
//
// silu_mul_*: out = silu(gate) · up, the SwiGLU activation, in one pass: candle's separate
// silu and mul kernels read the intermediate-sized activations three times and write them
// twice; this reads them twice and writes once. 16-byte accesses (8 halves or 4 floats) when
// the sizes allow, one element at a time otherwise.

#include "common.cuh"

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

// gemv_*: y = W·x for one input row (a decode step's projections): W (rows, cols) row-major,
// x (cols), y (rows), f32 accumulation. W may be up to three matrices of the same width whose
// rows follow one another in y (q, k and v: one launch instead of three, without copying the
// weights into one). A warp owns ROWS rows; each lane reads 16-byte chunks of them at the
// offsets of its chunk of x (which stays in L1), several rows' loads in flight at once, so W
// streams from memory at close to the bandwidth; cuBLAS's GEMM with one row reads it more
// slowly (docs/gpu.md). cols must be a multiple of 16 bytes.
constexpr int GEMV_WARPS = 8;

template <typename T>
__device__ __forceinline__ const T* gemv_row(const T* w0, const T* w1, const T* w2, int rows0,
                                             int rows1, int r, int cols) {
    if (r < rows0) return w0 + (long long)r * cols;
    r -= rows0;
    if (r < rows1) return w1 + (long long)r * cols;
    return w2 + (long long)(r - rows1) * cols;
}

template <typename T, int ROWS>
__device__ void gemv(const T* __restrict__ w0, const T* __restrict__ w1, const T* __restrict__ w2,
                     const T* __restrict__ x, T* __restrict__ y, int rows0, int rows1, int rows,
                     int cols) {
    constexpr int N = 16 / sizeof(T);
    const int warp = blockIdx.x * GEMV_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row0 = warp * ROWS;
    if (row0 >= rows) return;
    const int chunks = cols / N;
    const uint4* wp[ROWS];
    float acc[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
        acc[r] = 0.f;
        wp[r] = reinterpret_cast<const uint4*>(
            gemv_row(w0, w1, w2, rows0, rows1, min(row0 + r, rows - 1), cols));
    }
#pragma unroll 2
    for (int c = lane; c < chunks; c += 32) {
        const uint4 xr = __ldg(reinterpret_cast<const uint4*>(x) + c);
        const T* xe = reinterpret_cast<const T*>(&xr);
        uint4 wr[ROWS];
#pragma unroll
        for (int r = 0; r < ROWS; ++r) wr[r] = __ldcs(wp[r] + c);
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
            const T* we = reinterpret_cast<const T*>(&wr[r]);
#pragma unroll
            for (int e = 0; e < N; ++e) acc[r] += to_f(we[e]) * to_f(xe[e]);
        }
    }
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
        if (lane == 0 && row0 + r < rows) y[row0 + r] = from_f<T>(acc[r]);
    }
}

#define GEMV_ROWS(SUFFIX, T, R)                                                                  \
    extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)                                \
        gemv_##SUFFIX##_r##R(const T* w0, const T* w1, const T* w2, const T* x, T* y,            \
                             int rows0, int rows1, int rows, int cols) {                         \
        gemv<T, R>(w0, w1, w2, x, y, rows0, rows1, rows, cols);                                  \
    }
#define GEMV(SUFFIX, T) GEMV_ROWS(SUFFIX, T, 1) GEMV_ROWS(SUFFIX, T, 4)

GEMV(bf16, __nv_bfloat16)
GEMV(f16, __half)
GEMV(f32, float)

// add_rms_norm_*: a residual add and the RMSNorm after it, for one row, in one kernel:
// sum = h + delta (stored in T, as a separate add stores it), out = rmsnorm(sum) · w. The
// loops, the block size and the reduction order are those of candle's add and rmsnorm
// kernels, so the results are the same bits, with one launch and one pass fewer.
// block_size: 32 below 1024 columns, else 1024 (candle's choice).
template <typename T>
__device__ void add_rms_norm(const T* __restrict__ h, const T* __restrict__ delta,
                             const T* __restrict__ w, T* __restrict__ sum, T* __restrict__ out,
                             int cols, float eps) {
    const int tid = threadIdx.x, block = blockDim.x;
    float tmp = 0.f;
    for (int c = tid; c < cols; c += block) {
        const T s = h[c] + delta[c];  // candle's add: the type's own operator
        sum[c] = s;
        const float x = to_f(s);
        tmp += x * x;
    }
#pragma unroll
    for (int mask = 16; mask > 0; mask >>= 1) tmp += __shfl_xor_sync(0xffffffffu, tmp, mask, 32);
    if (block > 32) {
        __shared__ float s_sum[32];
        const int warp = tid / 32, lane = tid % 32;
        if (lane == 0) s_sum[warp] = tmp;
        __syncthreads();
        tmp = s_sum[lane];
#pragma unroll
        for (int mask = 16; mask > 0; mask >>= 1) tmp += __shfl_xor_sync(0xffffffffu, tmp, mask, 32);
    }
    const float scale = rsqrtf(tmp / cols + eps);
    for (int c = tid; c < cols; c += block) out[c] = from_f<T>(scale * to_f(sum[c]) * to_f(w[c]));
}

#define ADD_RMS_NORM(SUFFIX, T)                                                                  \
    extern "C" __global__ void add_rms_norm_##SUFFIX(const T* h, const T* delta, const T* w,    \
                                                     T* sum, T* out, int cols, float eps) {      \
        add_rms_norm<T>(h, delta, w, sum, out, cols, eps);                                       \
    }

ADD_RMS_NORM(bf16, __nv_bfloat16)
ADD_RMS_NORM(f16, __half)
ADD_RMS_NORM(f32, float)
