//! Every pixel kernel on the GPU against its CPU reference
//! (`kernels::conformance`), with the time the kernels took to load (NVRTC
//! compilation on a cold PTX cache).

use std::time::Instant;

use hardware::nvidia::memory::Device;
use kernels::conformance::Case;
use serde::Serialize;

use crate::error::Result;

#[derive(Debug, Serialize)]
pub struct KernelReport {
    pub arch: String,
    pub load_ms: f64,
    pub cases: Vec<Case>,
    pub passed: bool,
}

pub fn run(gpu: usize) -> Result<KernelReport> {
    let device = Device::get(gpu)?;
    let t = Instant::now();
    let k = device.kernels()?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let stream = device.stream()?;
    let cases = kernels::conformance::check(k, &stream)?;
    for c in &cases {
        eprintln!(
            "  {} {}: max diff {:e} (tolerance {:e}){}",
            c.kernel,
            c.case,
            c.max_diff,
            c.tolerance,
            if c.passed { "" } else { "  FAILED" }
        );
    }
    Ok(KernelReport {
        arch: k.arch().to_owned(),
        load_ms,
        passed: cases.iter().all(|c| c.passed),
        cases,
    })
}
