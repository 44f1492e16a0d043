// Causal scaled-dot-product attention through cuDNN's fused SDPA (the graph API of the
// header-only cudnn-frontend), for the CUDA build. On Hopper cuDNN runs a wgmma flash kernel
// about twice as fast as our mma.sync kernel in kernels/flash_attn.cu (docs/gpu.md has the
// numbers), and it is what PyTorch's SDPA picks there.
//
// cuDNN, cudart and the driver are opened with dlopen at the first call
// (NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING), so the binary does not need cuDNN to start: when
// libcudnn.so.9 cannot be loaded, or cuDNN has no engine for a shape, the call returns an
// error and src/model/cudnn.rs falls back to our own kernel.
//
// One graph per distinct shape and stride set, built on first use and cached; the prefill of
// one prompt uses a handful (one per prune stage).

#define NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING
#include <cudnn_frontend.h>

#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace fe = cudnn_frontend;

// The frontend resolves every cuDNN call through this handle; the program that uses it opens
// the library (here: at the first call, see open_cudnn).
void* cudnn_frontend::cudnn_dlhandle = nullptr;

namespace {

constexpr int64_t Q_UID = 1, K_UID = 2, V_UID = 3, O_UID = 4, STATS_UID = 5;

struct Plan {
    std::shared_ptr<fe::graph::Graph> graph;
    int64_t workspace = 0;
};

struct State {
    std::mutex mutex;
    cudnnHandle_t handle = nullptr;
    std::unordered_map<std::string, Plan> plans;
};

State& state() {
    static State s;
    return s;
}

void set_error(char* err, size_t len, const std::string& message) {
    if (err == nullptr || len == 0) return;
    std::strncpy(err, message.c_str(), len - 1);
    err[len - 1] = '\0';
}

// libcudnn.so.9 from the loader's search path, or the file named by $SDTP_CUDNN_LIB.
bool open_cudnn(char* err, size_t err_len) {
    if (cudnn_frontend::cudnn_dlhandle != nullptr) return true;
    const char* name = std::getenv("SDTP_CUDNN_LIB");
    if (name == nullptr || name[0] == '\0') name = "libcudnn.so.9";
    cudnn_frontend::cudnn_dlhandle = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (cudnn_frontend::cudnn_dlhandle == nullptr) {
        const char* why = dlerror();
        set_error(err, err_len, std::string("cannot load ") + name + ": " + (why ? why : "unknown error"));
        return false;
    }
    return true;
}

std::vector<int64_t> vec4(const int64_t* x) { return {x[0], x[1], x[2], x[3]}; }

// Builds the graph for one shape; the error says which step refused.
fe::error_t build(Plan& plan, cudnnHandle_t handle, bool bf16, int64_t heads, int64_t kv_heads,
                  int64_t t, int64_t n, int64_t d, const int64_t* qs, const int64_t* ks,
                  const int64_t* vs, const int64_t* os, float scale, bool stats) {
    auto graph = std::make_shared<fe::graph::Graph>();
    graph->set_io_data_type(bf16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    auto tensor = [&](const char* name, int64_t uid, int64_t h, int64_t rows, const int64_t* st) {
        return graph->tensor(fe::graph::Tensor_attributes()
                                 .set_name(name)
                                 .set_uid(uid)
                                 .set_dim({1, h, rows, d})
                                 .set_stride(vec4(st)));
    };
    auto q = tensor("Q", Q_UID, heads, t, qs);
    auto k = tensor("K", K_UID, kv_heads, n, ks);
    auto v = tensor("V", V_UID, kv_heads, n, vs);
    // The t queries are the last t of the n keys: causal with the diagonal at the bottom right.
    auto options = fe::graph::SDPA_attributes()
                       .set_name("sdtp_causal_attention")
                       .set_generate_stats(stats)
                       .set_causal_mask_bottom_right(true)
                       .set_attn_scale(scale);
    auto [o, lse] = graph->sdpa(q, k, v, options);
    o->set_output(true).set_uid(O_UID).set_dim({1, heads, t, d}).set_stride(vec4(os));
    if (stats) {
        // Natural-log log-sum-exp of each row's scaled scores, [heads][t] f32.
        lse->set_output(true)
            .set_uid(STATS_UID)
            .set_data_type(fe::DataType_t::FLOAT)
            .set_dim({1, heads, t, 1})
            .set_stride({heads * t, t, 1, 1});
    }
    if (auto e = graph->validate(); e.is_bad()) return e;
    if (auto e = graph->build_operation_graph(handle); e.is_bad()) return e;
    if (auto e = graph->create_execution_plans({fe::HeurMode_t::A}); e.is_bad()) return e;
    if (auto e = graph->check_support(handle); e.is_bad()) return e;
    if (auto e = graph->build_plans(handle); e.is_bad()) return e;
    if (auto e = graph->get_workspace_size(plan.workspace); e.is_bad()) return e;
    plan.graph = graph;
    return {fe::error_code_t::OK, ""};
}

}  // namespace

// Returns 0 on success; 1 on failure (message in err); 2 when `workspace_size` is smaller
// than the plan needs (the size needed is in *workspace_needed; call again with that much).
// Strides are in elements, for the (1, heads, rows, d) views of q, k, v and the output.
// With `stats` non-null it also writes each row's natural-log log-sum-exp there, [heads][t].
extern "C" int sdtp_cudnn_sdpa(void* stream, int bf16, int64_t heads, int64_t kv_heads,
                               int64_t t, int64_t n, int64_t d, const void* q,
                               const int64_t* q_stride, const void* k, const int64_t* k_stride,
                               const void* v, const int64_t* v_stride, void* out,
                               const int64_t* out_stride, float scale, float* stats,
                               void* workspace,
                               int64_t workspace_size, int64_t* workspace_needed, char* err,
                               size_t err_len) {
    try {
        State& s = state();
        std::lock_guard<std::mutex> lock(s.mutex);
        if (s.handle == nullptr) {
            if (!open_cudnn(err, err_len)) return 1;
            if (fe::detail::create_handle(&s.handle) != CUDNN_STATUS_SUCCESS) {
                set_error(err, err_len, "cudnnCreate failed");
                s.handle = nullptr;
                return 1;
            }
        }
        if (fe::detail::set_stream(s.handle, static_cast<cudaStream_t>(stream)) != CUDNN_STATUS_SUCCESS) {
            set_error(err, err_len, "cudnnSetStream failed");
            return 1;
        }
        std::string key = std::to_string(bf16) + ":" + std::to_string(heads) + ":" +
                          std::to_string(kv_heads) + ":" + std::to_string(t) + ":" +
                          std::to_string(n) + ":" + std::to_string(d) + ":" + std::to_string(scale) +
                          (stats != nullptr ? ":stats" : "");
        for (const int64_t* st : {q_stride, k_stride, v_stride, out_stride})
            for (int i = 0; i < 4; ++i) key += ":" + std::to_string(st[i]);
        auto it = s.plans.find(key);
        if (it == s.plans.end()) {
            Plan plan;
            auto e = build(plan, s.handle, bf16 != 0, heads, kv_heads, t, n, d, q_stride, k_stride,
                           v_stride, out_stride, scale, stats != nullptr);
            if (e.is_bad()) {
                set_error(err, err_len, "cuDNN SDPA graph: " + e.get_message());
                return 1;
            }
            it = s.plans.emplace(key, std::move(plan)).first;
        }
        const Plan& plan = it->second;
        if (workspace_needed != nullptr) *workspace_needed = plan.workspace;
        if (plan.workspace > workspace_size) return 2;
        std::unordered_map<int64_t, void*> pack = {{Q_UID, const_cast<void*>(q)},
                                                   {K_UID, const_cast<void*>(k)},
                                                   {V_UID, const_cast<void*>(v)},
                                                   {O_UID, out}};
        if (stats != nullptr) pack.emplace(STATS_UID, stats);
        if (auto e = plan.graph->execute(s.handle, pack, workspace); e.is_bad()) {
            set_error(err, err_len, "cuDNN SDPA execute: " + e.get_message());
            return 1;
        }
        return 0;
    } catch (const std::exception& e) {
        set_error(err, err_len, std::string("cuDNN: ") + e.what());
        return 1;
    } catch (...) {
        set_error(err, err_len, "cuDNN: unknown C++ exception");
        return 1;
    }
}
