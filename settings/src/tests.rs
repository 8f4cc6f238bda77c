//! The config's rules, one test each.

use super::*;

#[test]
fn defaults_are_the_embedded_profile() {
    let c = Config::default();
    c.validate().unwrap();
    assert_eq!(c.objects.kind, ObjectsKind::Local);
    assert_eq!(c.objects_dir(), PathBuf::from("data/objects"));
}

#[test]
fn the_example_file_documents_the_defaults() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../appliance.example.toml");
    let loaded = Config::load(Some(&example)).unwrap();
    // Its relative paths are anchored at its folder, as the defaults are.
    let mut defaults = Config::default();
    let folder = std::path::absolute(example.parent().unwrap()).unwrap();
    defaults.anchor_paths(&folder, |var| std::env::var_os(var).is_some());
    assert_eq!(
        toml_of(&loaded),
        toml_of(&defaults),
        "appliance.example.toml and Config::default() disagree"
    );
}

fn toml_of(c: &Config) -> String {
    serde_json::to_string(c).unwrap()
}

#[test]
fn an_experiment_is_read_and_checked() {
    let c = Config::from_toml_str(
        "[feed.experiment]\nname = \"rank-v2\"\ncandidate_ranker = \"models/v2.safetensors\"\nshare = 0.25\n",
    )
    .unwrap();
    assert_eq!(c.feed.experiment.name, "rank-v2");
    assert_eq!(c.feed.experiment.candidate_ranker, "models/v2.safetensors");
    assert_eq!(c.feed.experiment.share, 0.25);
    assert!(
        Config::default().feed.experiment.name.is_empty(),
        "off by default"
    );
    for bad in [
        "share = 1.5",
        "share = -0.1",
        "name = \"two words\"",
        "name = \"x\"\ncandidate_ranker = \" \"",
    ] {
        let text = format!("[feed.experiment]\n{bad}\n");
        assert!(Config::from_toml_str(&text).is_err(), "{bad}");
    }
}

#[test]
fn unknown_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.toml");
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:9\"\nlisen = 1\n").unwrap();
    let err = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(err.contains("lisen"), "{err}");
    std::fs::write(&file, "[serve]\nlisten = \"127.0.0.1:9\"\n").unwrap();
    let err = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(err.contains("serve"), "{err}");
    std::fs::write(&file, "[uploads]\nchunk_size = 1024\n").unwrap();
    let err = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(err.contains("chunk_size"), "{err}");
    std::fs::write(&file, "[jobs]\nworkers = 3\n").unwrap();
    assert_eq!(Config::load(Some(&file)).unwrap().jobs.workers, 3);
    std::fs::write(&file, "[feed.experiment]\nname = \"a\"\nshares = 0.2\n").unwrap();
    let err = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(err.contains("shares"), "{err}");
    assert!(Config::load(Some(&dir.path().join("missing.toml"))).is_err());
}

#[test]
fn relative_paths_in_a_file_are_the_files_folders_but_the_environments_stay() {
    let mut c = Config::default();
    c.objects.path = Some("objects".into());
    c.player.hls_js = "/opt/hls.min.js".into();
    c.anchor_paths(Path::new("/etc/appliance"), |var| {
        var == "APPLIANCE_FEED__MODEL_DIR"
    });
    assert_eq!(c.storage.data_dir, PathBuf::from("/etc/appliance/data"));
    assert_eq!(
        c.objects.path,
        Some(PathBuf::from("/etc/appliance/objects"))
    );
    assert_eq!(
        c.player.hls_js,
        PathBuf::from("/opt/hls.min.js"),
        "absolute stays"
    );
    assert_eq!(
        c.feed.model_dir,
        PathBuf::from("models/all-MiniLM-L6-v2"),
        "from the environment"
    );
}

#[test]
fn a_config_file_elsewhere_anchors_its_paths_there() {
    let dir = std::env::temp_dir().join(format!("settings-anchor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("box.toml");
    std::fs::write(&file, "[storage]\ndata_dir = \"state\"\n").unwrap();
    let c = Config::load(Some(&file)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(c.storage.data_dir, dir.join("state"));
    assert_eq!(c.feed.model_dir, dir.join("models/all-MiniLM-L6-v2"));
}

#[test]
fn playback_keys_are_checked_and_anchored_like_every_path() {
    assert!(!Config::default().playback.enabled(), "off by default");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("box.toml");
    std::fs::write(
        &file,
        "[playback]\nkid = \"k2\"\nprivate_key = \"keys/k2.pem\"\npublic_key = \"/etc/k2.pub.pem\"\n\
         max_ttl_secs = 600\ndefault_ttl_secs = 60\n[playback.accepted]\nk1 = \"keys/k1.pub.pem\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&file)).unwrap();
    let folder = std::path::absolute(dir.path()).unwrap();
    assert_eq!(c.playback.private_key, Some(folder.join("keys/k2.pem")));
    assert_eq!(
        c.playback.public_key,
        Some(PathBuf::from("/etc/k2.pub.pem"))
    );
    assert_eq!(c.playback.accepted["k1"], folder.join("keys/k1.pub.pem"));
    for bad in [
        // Keys without a kid, a kid without keys, a bad kid, a rotated
        // kid equal to the signing one, lifetimes out of order.
        "private_key = \"a.pem\"",
        "kid = \"k\"\npublic_key = \"a.pub\"",
        "kid = \"k 1\"\nprivate_key = \"a\"\npublic_key = \"b\"",
        "kid = \"k\"\nprivate_key = \"a\"\npublic_key = \"b\"\naccepted = { k = \"c\" }",
        "default_ttl_secs = 0",
        "default_ttl_secs = 700\nmax_ttl_secs = 600",
        "max_ttl_secs = 99999999",
    ] {
        let text = format!("[playback]\n{bad}\n");
        assert!(Config::from_toml_str(&text).is_err(), "{bad}");
    }
}

#[test]
fn webhooks_are_read_and_checked() {
    let c = Config::from_toml_str(
        "[webhooks]\nallow_private = true\nfirst_retry_secs = 1\nmax_retry_secs = 2\ntimeout_secs = 2\n",
    )
    .unwrap();
    assert!(c.webhooks.allow_private);
    assert_eq!(
        (c.webhooks.first_retry_secs, c.webhooks.max_retry_secs),
        (1, 2)
    );
    let d = Config::default().webhooks;
    assert!(!d.allow_private, "private targets are opt-in");
    assert_eq!(d.retry_for_secs, 86_400, "a day of retries");
    for bad in [
        "timeout_secs = 0",
        "first_retry_secs = 0",
        "first_retry_secs = 10\nmax_retry_secs = 5",
        "retry_for_secs = 0",
        "concurrency = 0",
        "keep_days = 0",
        "alow_private = true",
    ] {
        let text = format!("[webhooks]\n{bad}\n");
        assert!(Config::from_toml_str(&text).is_err(), "{bad}");
    }
}
