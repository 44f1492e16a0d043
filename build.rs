//! Embeds the git commit that built this binary as `SDTP_GIT_COMMIT`, so every report
//! `sdtp profile` writes says which code made it.
//!
//! `SDTP_GIT_COMMIT` in the build environment wins (for builds from a source tarball);
//! otherwise `git rev-parse --short HEAD`; "unknown" when git or the repository is missing.
//! Cargo reruns this script when HEAD moves, so the embedded commit follows checkouts and
//! commits without rebuilding on every source edit.
//!
//! With the `cuda` feature it also compiles kernels/flash_attn.cu, kernels/fused_ops.cu and kernels/decode_attn.cu to
//! PTX with nvcc (`$CUDA_HOME/bin/nvcc`, else `nvcc` on PATH) for `CUDA_COMPUTE_CAP` (default
//! 90; the bf16 tensor-core instructions need 80 or more), and kernels/cudnn_sdpa.cpp.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        compile_cuda_kernels_ptx();
        compile_cudnn_attention();
    }
    println!("cargo:rerun-if-env-changed=SDTP_GIT_COMMIT");
    let commit = std::env::var("SDTP_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SDTP_GIT_COMMIT={commit}");

    // HEAD, the branch it points to, and packed-refs: the files a commit or checkout changes.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    let mut any = false;
    for path in watched.into_iter().flatten().map(PathBuf::from) {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
            any = true;
        }
    }
    if !any {
        // No repository: nothing to watch but this script (without any rerun-if line cargo
        // would rerun it after every source change).
        println!("cargo:rerun-if-changed=build.rs");
    }
}

fn compile_cuda_kernels_ptx() {
    println!("cargo:rerun-if-changed=kernels/common.cuh");
    for name in ["flash_attn", "fused_ops", "decode_attn"] {
        compile_ptx(name);
    }
}

/// kernels/NAME.cu to $OUT_DIR/NAME.ptx.
fn compile_ptx(name: &str) {
    let source = format!("kernels/{name}.cu");
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".to_string());
    let nvcc = std::env::var_os("CUDA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("nvcc"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join(format!("{name}.ptx"));
    let status = Command::new(&nvcc)
        .args(["-ptx", "-O3", "--std=c++17", "-lineinfo"])
        .arg(format!("-arch=compute_{cap}"))
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("nvcc failed to compile {source} ({s})"),
        Err(e) => panic!(
            "cannot run {} for the cuda feature: {e}; see scripts/build_cuda.sh",
            nvcc.display()
        ),
    }
}

/// kernels/cudnn_sdpa.cpp (cuDNN's fused attention through the header-only cudnn-frontend,
/// cuDNN itself opened with dlopen at run time) as a static library. Needs the headers
/// scripts/build_cuda.sh installs.
fn compile_cudnn_attention() {
    println!("cargo:rerun-if-changed=kernels/cudnn_sdpa.cpp");
    println!("cargo:rerun-if-env-changed=SDTP_CUDNN_INCLUDE");
    // scripts/build_cuda.sh puts them beside its CUDA_HOME: $SDTP_CUDA_ROOT/{home,cudnn}.
    let beside_cuda_home = std::env::var_os("CUDA_HOME")
        .map(|home| PathBuf::from(home).join("../cudnn/include"))
        .filter(|dir| dir.join("cudnn_frontend.h").exists());
    let Some(cudnn_include) = std::env::var_os("SDTP_CUDNN_INCLUDE")
        .map(PathBuf::from)
        .or(beside_cuda_home)
    else {
        panic!(
            "the cuda feature needs cuDNN and cudnn-frontend headers in $SDTP_CUDNN_INCLUDE \
             (or $CUDA_HOME/../cudnn/include); scripts/build_cuda.sh installs them"
        );
    };
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .opt_level(2)
        .include(cudnn_include)
        .file("kernels/cudnn_sdpa.cpp")
        // The frontend's headers are not warning-clean; our file is checked by review.
        .warnings(false);
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        build.include(PathBuf::from(home).join("include"));
    }
    build.compile("sdtp_cudnn");
    println!("cargo:rustc-link-lib=dl");
}
