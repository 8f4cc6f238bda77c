//! Where the models run. With the `gpu` cargo feature (candle's CUDA
//! backend, which needs `nvcc` at build time — `scripts/cuda-toolkit` — and
//! links `libcuda`, cuBLAS, cuRAND and NVRTC), the embedding model and the
//! ranker run on CUDA device 0 when it opens, and on the CPU otherwise;
//! without it, always on the CPU. `APPLIANCE_MODELS_ON` = `cpu` keeps them
//! on the CPU in a GPU build (for side-by-side benches). FAISS's GPU code is
//! the separate feature `faiss-gpu`; indexes are built on the CPU either way.

use candle_core::Device;

/// The device models load onto, chosen once per process.
pub fn models() -> Device {
    static CHOSEN: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    CHOSEN.get_or_init(choose).clone()
}

fn choose() -> Device {
    if std::env::var("APPLIANCE_MODELS_ON").is_ok_and(|v| v.eq_ignore_ascii_case("cpu")) {
        return Device::Cpu;
    }
    #[cfg(feature = "gpu")]
    match Device::new_cuda(0) {
        Ok(d) => return d,
        Err(e) => tracing::warn!(error = %e, "CUDA device 0 did not open; models run on the CPU"),
    }
    Device::Cpu
}

/// `cpu` or `cuda:0`, for reports and benchmarks.
pub fn describe(d: &Device) -> &'static str {
    match d {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda:0",
        Device::Metal(_) => "metal",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_build_without_the_gpu_feature_runs_models_on_the_cpu() {
        if cfg!(not(feature = "gpu")) {
            assert_eq!(super::describe(&super::models()), "cpu");
        }
    }
}
