//! The index's ranking, prefixes and paging on small hand-made catalogs,
//! and the sweep keeping it current from a real catalog file.

use std::sync::Arc;

use rusqlite::Connection;

use super::index::Indexes;
use super::sweep::Sweeper;
use super::*;
use crate::store::catalog::{self as cat, SoundDoc, UserDoc};

fn open(dir: &std::path::Path) -> Indexes {
    Indexes::open(dir, 1, 15_000_000).unwrap()
}

fn user(seq: i64, name: &str, followers: u64) -> Doc {
    Doc::user(&UserDoc {
        seq,
        id: format!("id{seq}"),
        username: name.into(),
        followers,
    })
}

fn sound(seq: i64, title: &str, usage: u64) -> Doc {
    Doc::sound(&SoundDoc {
        seq,
        id: format!("s{seq}"),
        title: title.into(),
        owner_id: Some("o1".into()),
        owner_username: Some("owner".into()),
        duration_ms: 15_000,
        usage,
    })
}

fn names(hits: &[(Key, Stored)]) -> Vec<&str> {
    hits.iter().map(|(_, s)| s.name.as_str()).collect()
}

/// Every page of `q`, `limit` at a time, following the cursors.
fn all_pages(idx: &Indexes, kind: Kind, q: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let mut hits = idx.search(kind, q, limit + 1, after).unwrap();
        let more = hits.len() > limit;
        hits.truncate(limit);
        out.extend(hits.iter().map(|(_, s)| s.id.clone()));
        if !more {
            return out;
        }
        // Through the cursor's text, as a client would.
        let cursor = hits.last().unwrap().0.cursor(kind);
        after = Some(Key::parse_cursor(kind, &cursor).unwrap());
    }
}

#[test]
fn users_match_by_prefix_case_insensitively_most_followed_first() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    idx.upsert(
        Kind::Users,
        &[
            user(1, "Anna", 5),
            user(2, "annabel", 50),
            user(3, "ann", 5),
            user(4, "bob", 1000),
            user(5, "xann", 9),
        ],
    )
    .unwrap();
    idx.commit(Kind::Users).unwrap();
    let hits = idx.search(Kind::Users, "ANN", 10, None).unwrap();
    // Ties (5 followers) in registration order; "xann" does not start
    // with "ann".
    assert_eq!(names(&hits), ["annabel", "Anna", "ann"]);
    assert_eq!(hits[0].1.pop, 50);
    assert_eq!(
        names(&idx.search(Kind::Users, " annab ", 10, None).unwrap()),
        ["annabel"]
    );
    assert!(idx
        .search(Kind::Users, "annx", 10, None)
        .unwrap()
        .is_empty());
    assert!(idx
        .search(Kind::Users, &"a".repeat(40), 10, None)
        .unwrap()
        .is_empty());
}

#[test]
fn pages_follow_the_cursor_without_repeats_or_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    // Many ties on followers: the cursor must carry the tie-break.
    let docs: Vec<Doc> = (1..=57)
        .map(|i| user(i, &format!("user{i:03}"), (i % 4) as u64))
        .collect();
    idx.upsert(Kind::Users, &docs).unwrap();
    idx.commit(Kind::Users).unwrap();
    let paged = all_pages(&idx, Kind::Users, "user", 10);
    let whole: Vec<String> = idx
        .search(Kind::Users, "user", 100, None)
        .unwrap()
        .into_iter()
        .map(|(_, s)| s.id)
        .collect();
    assert_eq!(paged.len(), 57);
    assert_eq!(paged, whole);
    // And the order is the ranking: followers down, then seq up.
    let first = idx.search(Kind::Users, "user", 3, None).unwrap();
    assert_eq!(names(&first), ["user003", "user007", "user011"]);
}

#[test]
fn an_updated_document_replaces_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    idx.upsert(Kind::Users, &[user(1, "carol", 1), user(2, "carl", 2)])
        .unwrap();
    idx.commit(Kind::Users).unwrap();
    idx.upsert(Kind::Users, &[user(1, "carol", 10)]).unwrap();
    idx.commit(Kind::Users).unwrap();
    let hits = idx.search(Kind::Users, "car", 10, None).unwrap();
    assert_eq!(names(&hits), ["carol", "carl"]);
    assert_eq!(hits[0].1.pop, 10);
    assert_eq!(idx.num_docs(Kind::Users), 2);
}

#[test]
fn sounds_match_words_with_the_last_as_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    idx.upsert(
        Kind::Sounds,
        &[
            sound(1, "Summer Love (original sound)", 3),
            sound(2, "Love Story", 300),
            sound(3, "Lovely Day", 30),
            sound(4, "Summer Nights", 1),
            sound(5, "Gloves off", 1000),
        ],
    )
    .unwrap();
    idx.commit(Kind::Sounds).unwrap();
    // Prefix only: by use ("gloves" does not begin with "lov").
    let hits = idx.search(Kind::Sounds, "lov", 10, None).unwrap();
    assert_eq!(
        names(&hits),
        ["Love Story", "Lovely Day", "Summer Love (original sound)"]
    );
    // Earlier words are whole words, all required.
    let hits = idx.search(Kind::Sounds, "summer lo", 10, None).unwrap();
    assert_eq!(names(&hits), ["Summer Love (original sound)"]);
    let hit = &hits[0].1;
    assert_eq!(
        (hit.id.as_str(), hit.pop, hit.duration_ms),
        ("s1", 3, 15_000)
    );
    assert_eq!(hit.owner_name.as_deref(), Some("owner"));
    // A whole word scores: "love" as typed beats "lovely" of equal use.
    idx.upsert(Kind::Sounds, &[sound(6, "Lovely", 300)])
        .unwrap();
    idx.commit(Kind::Sounds).unwrap();
    let hits = idx.search(Kind::Sounds, "love", 2, None).unwrap();
    assert_eq!(names(&hits), ["Love Story", "Lovely"]);
    assert!(idx.search(Kind::Sounds, "!!", 10, None).unwrap().is_empty());
    assert!(idx
        .search(Kind::Sounds, "winter lo", 10, None)
        .unwrap()
        .is_empty());
    assert_eq!(all_pages(&idx, Kind::Sounds, "l", 1).len(), 4);
}

#[test]
fn hashtags_rank_trending_first_then_by_videos() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    idx.upsert(
        Kind::Hashtags,
        &[
            Doc::hashtag("cats", 500, 0.0),
            Doc::hashtag("catsofinstagram", 20, 7.5),
            Doc::hashtag("catnip", 40, 0.0),
            Doc::hashtag("dogs", 900, 9.0),
        ],
    )
    .unwrap();
    idx.commit(Kind::Hashtags).unwrap();
    let hits = idx.search(Kind::Hashtags, "#Cat", 10, None).unwrap();
    assert_eq!(names(&hits), ["catsofinstagram", "cats", "catnip"]);
    assert_eq!(hits[0].1.trend, 7.5);
    assert_eq!(hits[1].1.pop, 500);
}

#[test]
fn small_pages_rank_exactly_as_one_unpruned_page_of_everything() {
    // The collector drops most hits on their primary alone once a page is
    // full; paging a few at a time (pruning at work) must give what one
    // page holding every hit (no pruning) gives, for every kind, with many
    // ties on every part of the key.
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let (mut users, mut sounds, mut tags) = (Vec::new(), Vec::new(), Vec::new());
    for i in 1..=400 {
        users.push(user(i, &format!("a{}", next(1000)), next(6)));
        let title = format!(
            "a{} song {}",
            next(50),
            if next(2) == 0 { "a" } else { "b" }
        );
        sounds.push(sound(i, &title, next(6)));
        tags.push(Doc::hashtag(
            &format!("a{i}"),
            next(6),
            next(4) as f64 / 2.0,
        ));
    }
    for (kind, docs) in [
        (Kind::Users, &users),
        (Kind::Sounds, &sounds),
        (Kind::Hashtags, &tags),
    ] {
        idx.upsert(kind, docs).unwrap();
        idx.commit(kind).unwrap();
    }
    for (kind, q) in [
        (Kind::Users, "a"),
        (Kind::Users, "a1"),
        (Kind::Sounds, "a"),
        (Kind::Sounds, "song a"),
        (Kind::Hashtags, "a"),
        (Kind::Hashtags, "a3"),
    ] {
        let whole: Vec<String> = idx
            .search(kind, q, 10_000, None)
            .unwrap()
            .into_iter()
            .map(|(_, s)| s.id)
            .collect();
        assert!(whole.len() > 10, "{kind:?} {q}: {}", whole.len());
        for limit in [1, 3, 7, 20] {
            assert_eq!(
                all_pages(&idx, kind, q, limit),
                whole,
                "{kind:?} {q:?} by {limit}"
            );
        }
    }
}

#[test]
fn an_index_reopens_as_it_was_and_a_damaged_one_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let idx = open(dir.path());
        assert_eq!(idx.rebuilt.len(), 3, "a missing index is built");
        idx.upsert(Kind::Users, &[user(7, "dana", 1)]).unwrap();
        idx.commit(Kind::Users).unwrap();
    }
    {
        let idx = open(dir.path());
        assert!(idx.rebuilt.is_empty(), "{:?}", idx.rebuilt);
        assert_eq!(idx.max_seq(Kind::Users).unwrap(), 7);
        assert_eq!(
            names(&idx.search(Kind::Users, "d", 5, None).unwrap()),
            ["dana"]
        );
    }
    // Another version's (or a torn) meta.json: built anew, empty.
    let meta = dir.path().join("users").join("meta.json");
    std::fs::write(&meta, b"{not json").unwrap();
    let idx = open(dir.path());
    assert_eq!(idx.rebuilt.len(), 1);
    assert_eq!(idx.rebuilt[0].0, Kind::Users);
    assert_eq!(idx.num_docs(Kind::Users), 0);
    assert_eq!(idx.max_seq(Kind::Users).unwrap(), 0);
}

fn catalog_user(c: &Connection, id: &str, name: &str) {
    cat::insert_user(
        c,
        &cat::UserRow {
            id: id.into(),
            username: name.into(),
            password_hash: String::new(),
            role: "creator".into(),
            created_at: 0,
        },
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_follows_the_catalog_and_reconciliation_catches_unfollows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let catalog = Catalog::open(&path).unwrap();
    let c = Connection::open(&path).unwrap();
    catalog_user(&c, "u1", "zoe");
    catalog_user(&c, "u2", "zoey");
    catalog_user(&c, "u3", "adam");
    cat::set_follow(&c, "u3", "u2", true).unwrap();

    let idx = Arc::new(open(&dir.path().join("index")));
    let trending: Arc<parking_lot::Mutex<Vec<(String, f64)>>> = Arc::default();
    let source = trending.clone();
    let mut sweeper = Sweeper::new(
        catalog.clone(),
        idx.clone(),
        Box::new(move || source.lock().clone()),
    );
    sweeper.start().await.unwrap();
    sweeper.sweep().await.unwrap();
    sweeper.reconcile().await.unwrap();
    let users = |q: &str| -> Vec<(String, u64)> {
        idx.search(Kind::Users, q, 10, None)
            .unwrap()
            .into_iter()
            .map(|(_, s)| (s.name, s.pop))
            .collect()
    };
    assert_eq!(users("zo"), [("zoey".into(), 1), ("zoe".into(), 0)]);

    // A new user and a new follow show up at the next sweep.
    catalog_user(&c, "u4", "zorro");
    cat::set_follow(&c, "u3", "u1", true).unwrap();
    cat::set_follow(&c, "u2", "u1", true).unwrap();
    sweeper.sweep().await.unwrap();
    assert_eq!(
        users("zo"),
        [("zoe".into(), 2), ("zoey".into(), 1), ("zorro".into(), 0)]
    );

    // Videos: listed ones count for their hashtags; trending ranks first.
    let mut v1 = cat::VideoRow::bench("v1", "u1");
    v1.hashtags = vec!["dance".into(), "danceoff".into()];
    let mut v2 = cat::VideoRow::bench("v2", "u2");
    v2.hashtags = vec!["dance".into()];
    let mut v3 = cat::VideoRow::bench("v3", "u2");
    v3.hashtags = vec!["dancing".into()];
    v3.visibility = "private".into();
    for v in [&v1, &v2, &v3] {
        cat::insert_video(&c, v).unwrap();
    }
    *trending.lock() = vec![("danceoff".into(), 3.0)];
    sweeper.sweep().await.unwrap();
    let tags = |q: &str| -> Vec<(String, u64, f64)> {
        idx.search(Kind::Hashtags, q, 10, None)
            .unwrap()
            .into_iter()
            .map(|(_, s)| (s.name, s.pop, s.trend))
            .collect()
    };
    assert_eq!(
        tags("dan"),
        [("danceoff".into(), 1, 3.0), ("dance".into(), 2, 0.0)]
    );
    // A video made private stops counting.
    c.execute(
        "UPDATE videos SET visibility = 'private', updated_at = ?1 WHERE id = 'v2'",
        [cat::now_ms() + 1],
    )
    .unwrap();
    sweeper.sweep().await.unwrap();
    assert_eq!(tags("dance")[1], ("dance".into(), 1, 0.0));

    // An unfollow leaves no row to see: the reconciliation recounts.
    cat::set_follow(&c, "u3", "u1", false).unwrap();
    sweeper.sweep().await.unwrap();
    assert_eq!(users("zoe")[0], ("zoe".into(), 2));
    sweeper.reconcile().await.unwrap();
    assert_eq!(users("zoe")[0], ("zoe".into(), 1));
    // It finds nothing else to change.
    assert_eq!(tags("dan").len(), 2);
}
