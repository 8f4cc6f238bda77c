//! NVRTC compiles every kernel for every supported architecture, and the PTX
//! parameters match the structs the launch wrappers pass.
//!
//! Needs only NVRTC, not a GPU. Without it the tests print
//! "skipped: libnvrtc not found", except under `CI`, where they fail.

use kernels::ptx::{self, KERNELS};

fn nvrtc_present() -> bool {
    if kernels::probe::nvrtc_library().is_some() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "libnvrtc not found under CI: run scripts/setup (it installs NVRTC) and put its \
         lib directory on LD_LIBRARY_PATH (scripts/test does)"
    );
    println!("skipped: libnvrtc not found");
    false
}

/// Each `.entry` in `ptx` with the byte size of each of its parameters.
fn entries(ptx: &str) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let mut lines = ptx.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix(".visible .entry ") else {
            continue;
        };
        let name = rest.trim_end_matches('(').to_owned();
        let mut params = Vec::new();
        for p in lines.by_ref() {
            if p.starts_with(')') {
                break;
            }
            params.push(param_bytes(p));
        }
        out.push((name, params));
    }
    out
}

/// `.param .align 8 .b8 name[32],` → 32; `.param .u64 name,` → 8.
fn param_bytes(decl: &str) -> usize {
    let decl = decl.trim_end_matches(',');
    if let Some(open) = decl.rfind('[') {
        return decl[open + 1..decl.len() - 1].parse().unwrap();
    }
    let ty = decl.split_whitespace().nth(1).unwrap_or_default();
    match ty {
        ".u64" | ".s64" | ".b64" | ".f64" => 8,
        ".u32" | ".s32" | ".b32" | ".f32" => 4,
        other => panic!("unexpected parameter declaration {decl:?} ({other})"),
    }
}

#[test]
fn compiles_every_kernel_for_every_arch() {
    if !nvrtc_present() {
        return;
    }
    let (major, minor) = ptx::nvrtc_version().unwrap();
    println!("NVRTC {major}.{minor}");
    for arch in ptx::ARCHS {
        let ptx = ptx::compile(arch).unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert!(ptx.contains(&format!(".target {arch}")), "{arch}: .target");
        assert!(ptx::names_every_kernel(&ptx), "{arch}: missing .entry");
        let found = entries(&ptx);
        let mut names: Vec<_> = found.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        let mut want: Vec<_> = KERNELS.iter().map(|k| k.name).collect();
        want.sort_unstable();
        assert_eq!(names, want, "{arch}: entries");
        for k in KERNELS {
            let (_, params) = found.iter().find(|(n, _)| n == k.name).unwrap();
            assert_eq!(params, k.param_bytes, "{arch} {}: parameter sizes", k.name);
        }
        println!(
            "{arch}: {} bytes of PTX, {} kernels",
            ptx.len(),
            found.len()
        );
    }
}

#[test]
fn picks_an_arch_nvrtc_supports() {
    if !nvrtc_present() {
        return;
    }
    let supported = ptx::supported_archs().unwrap();
    assert!(supported.contains(&90), "{supported:?}");
    assert_eq!(ptx::arch_for_device(7, 5).unwrap(), "sm_75");
    assert_eq!(ptx::arch_for_device(8, 9).unwrap(), "sm_89");
    assert_eq!(ptx::arch_for_device(9, 0).unwrap(), "sm_90");
    // A device newer than this NVRTC gets the newest target below it (the
    // driver JIT-compiles PTX forward).
    let newest = *supported.iter().max().unwrap();
    assert_eq!(ptx::arch_for_device(99, 9).unwrap(), format!("sm_{newest}"));
    assert!(ptx::arch_for_device(1, 0).is_err());
}

#[test]
fn caches_ptx_on_disk() {
    if !nvrtc_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = ptx::cache_path(dir.path(), "sm_75").unwrap();
    assert!(!path.exists());

    let first = ptx::load_or_compile_in(dir.path(), "sm_75").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A hit is served from the file, not recompiled.
    let marked = format!("// cached\n{first}");
    std::fs::write(&path, &marked).unwrap();
    assert_eq!(
        ptx::load_or_compile_in(dir.path(), "sm_75").unwrap(),
        marked
    );

    // A truncated file is recompiled and replaced.
    std::fs::write(&path, &first[..first.len() / 3]).unwrap();
    assert_eq!(ptx::load_or_compile_in(dir.path(), "sm_75").unwrap(), first);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);

    // Another architecture is another file.
    assert_ne!(ptx::cache_path(dir.path(), "sm_90").unwrap(), path);
}

#[test]
fn rejects_malformed_arch() {
    assert!(ptx::compile("sm_75 --define-macro=X").is_err());
    assert!(ptx::compile("compute_75").is_err());
}
