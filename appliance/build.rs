//! Records the commit the binary is built from (`appliance_build_info`,
//! the status page; `unknown` outside a git checkout), and embeds the
//! player's hls.js when `npm ci --prefix player` has installed it, so
//! `/play` works wherever the binary runs.

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=APPLIANCE_COMMIT={commit}");
    // Rerun when HEAD moves (a commit, a checkout) or the index changes.
    for f in ["../.git/HEAD", "../.git/index"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    embed_hls_js();
    println!("cargo:rerun-if-changed=build.rs");
}

fn embed_hls_js() {
    let src = std::path::Path::new("../player/node_modules/hls.js/dist/hls.min.js");
    println!("cargo:rustc-check-cfg=cfg(embedded_hls_js)");
    println!("cargo:rerun-if-changed={}", src.display());
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    if std::fs::copy(src, out.join("hls.min.js")).is_ok() {
        println!("cargo:rustc-cfg=embedded_hls_js");
    } else {
        println!("cargo:warning=player/node_modules/hls.js is not installed (npm ci --prefix player): the binary will not embed hls.js");
    }
}
