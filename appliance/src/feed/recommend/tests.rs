//! The recommender's breaker, arms and ranker reloads.
use super::*;

#[test]
fn breaker_opens_after_consecutive_failures_and_half_opens() {
    let b = Breaker::new(3, Duration::from_millis(50));
    b.failure();
    b.failure();
    b.success();
    b.failure();
    b.failure();
    assert!(!b.is_open(), "a success resets the count");
    b.failure();
    assert!(b.is_open());
    std::thread::sleep(Duration::from_millis(60));
    assert!(!b.is_open(), "half-open after the cool-down");
}

#[tokio::test]
async fn the_two_sides_of_an_experiment_fail_apart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config::Config::default();
    config.storage.data_dir = dir.path().to_owned();
    config.feed.breaker_failures = 2;
    config.feed.breaker_open_secs = 600;
    config.feed.experiment = config::Experiment {
        name: "exp".into(),
        candidate_ranker: "formula".into(),
        share: 1.0,
    };
    let r = Recommender::new(&config);
    r.reload_experiment();
    // A broken current ranker holds back no candidate page, and no
    // following page (no ranker orders those).
    let ranker = dir.path().join("models/ranker.safetensors");
    std::fs::create_dir_all(ranker.parent().unwrap()).unwrap();
    std::fs::write(&ranker, b"not a model").unwrap();
    r.reload_ranker();
    assert!(r.ranker_broken.lock().is_some());
    let s = r
        .feed(FeedKind::ForYou, Some("fresh"), 5, None)
        .await
        .unwrap();
    assert_eq!(s.source, "cold_start", "{:?}", s.degraded);
    assert_eq!(
        (s.page.variant, s.page.experiment.as_deref(), s.page.ranker),
        (Variant::Candidate, Some("exp"), "formula")
    );
    let s = r
        .feed(FeedKind::Following, Some("fresh"), 5, None)
        .await
        .unwrap();
    assert_eq!(s.source, "following", "{:?}", s.degraded);
    assert_eq!((s.page.ranker, s.page.experiment), ("none", None));

    // Candidate pages that fail (an embedding, no video index: every
    // for-you page errors) pause the experiment, not the breaker; their
    // fallbacks count for the candidate.
    r.engine
        .set_interests("u", &["x".into()], &[vec![1.0; inference::DIM]])
        .unwrap();
    for _ in 0..2 {
        let s = r.feed(FeedKind::ForYou, Some("u"), 5, None).await.unwrap();
        assert_eq!(s.source, "trending_fallback");
        assert_eq!(
            (s.page.variant, s.page.experiment.as_deref(), s.page.ranker),
            (Variant::Candidate, Some("exp"), "none")
        );
    }
    let why = r.experiment_status().unwrap().paused.expect("paused");
    assert!(why.contains("2 pages in a row"), "{why}");
    assert!(
        !r.breaker.is_open(),
        "the candidate never trips the breaker"
    );

    // Paused: everyone is control, and the broken ranker holds back the
    // control for-you pages (without tripping the breaker either).
    let s = r
        .feed(FeedKind::ForYou, Some("fresh"), 5, None)
        .await
        .unwrap();
    assert!(s.degraded.unwrap().contains("ranking model unusable"));
    assert_eq!(
        (s.page.variant, s.page.experiment),
        (Variant::Control, None)
    );
    assert!(!r.breaker.is_open());
    // Control pages that fail trip the breaker.
    std::fs::remove_file(&ranker).unwrap();
    r.reload_ranker();
    for _ in 0..2 {
        let s = r.feed(FeedKind::ForYou, Some("u"), 5, None).await.unwrap();
        assert!(s.degraded.unwrap().contains("personalisation failed"));
    }
    assert!(r.breaker.is_open());
}

#[tokio::test]
async fn a_model_of_an_older_release_ranks_with_the_formula_not_trending() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config::Config::default();
    config.storage.data_dir = dir.path().to_owned();
    let r = Recommender::new(&config);
    let ranker = dir.path().join("models/ranker.safetensors");
    std::fs::create_dir_all(ranker.parent().unwrap()).unwrap();
    // Twelve features' statistics, what the previous release trained, as
    // safetensors: header length, JSON header, little-endian f32 data.
    let header = br#"{"norm.mean":{"dtype":"F32","shape":[12],"data_offsets":[0,48]},"norm.std":{"dtype":"F32","shape":[12],"data_offsets":[48,96]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend((0..12).flat_map(|_| 0f32.to_le_bytes()));
    file.extend((0..12).flat_map(|_| 1f32.to_le_bytes()));
    std::fs::write(&ranker, file).unwrap();
    r.reload_ranker();
    assert!(r.ranker_broken.lock().is_none());
    assert_eq!(r.engine.ranker_name(), "formula");
    let s = r
        .feed(FeedKind::ForYou, Some("fresh"), 5, None)
        .await
        .unwrap();
    assert!(s.degraded.is_none(), "{:?}", s.degraded);
}
