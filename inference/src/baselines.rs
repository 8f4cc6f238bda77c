//! Offline recommendation baselines for the evaluation: all-time and recent
//! popularity, item-based k-nearest-neighbours (cosine) and EASE^R
//! (Steck 2019), each fitted on the same training interactions.
//!
//! Every training event counts as one implicit, binary interaction: a user
//! either touched a video or did not (repeats and engagement strength are
//! ignored). All rankings are deterministic: scores are accumulated in a
//! fixed order and ties fall back to all-time popularity (distinct users,
//! then video id). A user's own history is never recommended back.

use std::collections::{HashMap, HashSet};

use nalgebra::DMatrix;

use crate::engine::Watch;

/// Something that ranks videos for a user from that user's training history.
pub trait Baseline: Sync {
    fn name(&self) -> &'static str;
    /// Top `k` video ids for a user whose training history is `history`
    /// (video ids, any order, may be empty), never one in `exclude`.
    fn recommend(&self, history: &[&str], exclude: &HashSet<&str>, k: usize) -> Vec<String>;
}

/// Videos ranked by how many distinct users interacted with them.
///
/// Cost: fitting sorts the distinct (video, user) pairs, O(E log E) time and
/// O(E) transient memory for E training events; the model keeps one id and
/// one count per video, O(V). `recommend` walks the ranking from the top,
/// O(k + |history| + |exclude|) time in practice (skipped ids included).
#[derive(Debug, Clone)]
pub struct Popularity {
    name: &'static str,
    /// Every training video, best first.
    ranked: Vec<String>,
    /// The count each video is ranked by (distinct users, in the window for
    /// [`Popularity::recent`]).
    counts: HashMap<String, usize>,
}

impl Popularity {
    /// Distinct users per video over the whole training log; ties by id.
    pub fn all_time(train: &[Watch]) -> Self {
        let all = distinct_users_per_video(train, |_| true);
        let mut ranked: Vec<(&str, usize)> = all.iter().map(|(v, &c)| (*v, c)).collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        Self {
            name: "popularity",
            ranked: ranked.iter().map(|(v, _)| (*v).to_owned()).collect(),
            counts: all.into_iter().map(|(v, c)| (v.to_owned(), c)).collect(),
        }
    }

    /// Distinct users per video counting only events with `ts` in
    /// `(now - window_secs, now]`; ties (videos outside the window included,
    /// at zero) by all-time count, then id.
    pub fn recent(train: &[Watch], window_secs: i64, now: i64) -> Self {
        let start = now.saturating_sub(window_secs);
        let all = distinct_users_per_video(train, |_| true);
        let recent = distinct_users_per_video(train, |w| w.ts > start && w.ts <= now);
        let mut ranked: Vec<(&str, usize, usize)> = all
            .iter()
            .map(|(v, &c)| (*v, recent.get(v).copied().unwrap_or(0), c))
            .collect();
        ranked.sort_unstable_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| b.2.cmp(&a.2))
                .then_with(|| a.0.cmp(b.0))
        });
        Self {
            name: "popularity-recent",
            ranked: ranked.iter().map(|(v, _, _)| (*v).to_owned()).collect(),
            counts: ranked.iter().map(|&(v, r, _)| (v.to_owned(), r)).collect(),
        }
    }

    /// The count `video` is ranked by (0 for a video it has not seen).
    pub fn count(&self, video: &str) -> usize {
        self.counts.get(video).copied().unwrap_or(0)
    }

    /// Every training video, best first.
    pub fn ranked(&self) -> &[String] {
        &self.ranked
    }
}

impl Baseline for Popularity {
    fn name(&self) -> &'static str {
        self.name
    }

    fn recommend(&self, history: &[&str], exclude: &HashSet<&str>, k: usize) -> Vec<String> {
        let seen: HashSet<&str> = history.iter().copied().collect();
        self.ranked
            .iter()
            .filter(|v| !seen.contains(v.as_str()) && !exclude.contains(v.as_str()))
            .take(k)
            .cloned()
            .collect()
    }
}

/// Item-based collaborative filtering: cosine similarity between the
/// binary user columns of the `max_items` most popular videos, each item
/// keeping its `neighbours` most similar items.
///
/// Cost, for n = `max_items`, m = `neighbours`, E training events and
/// |I_u| the distinct model items of user u: fitting is O(E log E) for the
/// popularity ranking plus O(Σ_u |I_u|² + n·m log m) for the co-occurrence
/// counts and the neighbour selection (an item's co-counts are gathered
/// through an inverted index into one reusable length-n buffer, so no n×n
/// matrix is ever built); memory O(E) while fitting, then O(n·m + V).
/// `recommend` is O(|history|·m + n + k log k).
#[derive(Debug, Clone)]
pub struct ItemKnn {
    popularity: Popularity,
    /// Model item id → index (its all-time popularity rank).
    index: HashMap<String, u32>,
    /// Per model item (index = all-time popularity rank): neighbours by
    /// similarity, best first.
    neighbours: Vec<Vec<(u32, f32)>>,
}

impl ItemKnn {
    pub fn fit(train: &[Watch], max_items: usize, neighbours: usize) -> Self {
        let popularity = Popularity::all_time(train);
        let n = max_items.min(popularity.ranked.len());
        let index = item_index(&popularity.ranked[..n]);
        let users = user_item_lists(train, &index);

        let mut item_users: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (u, items) in users.iter().enumerate() {
            for &i in items {
                item_users[i as usize].push(u as u32);
            }
        }

        let mut co = vec![0u32; n];
        let mut touched: Vec<u32> = Vec::new();
        let mut lists = Vec::with_capacity(n);
        for i in 0..n {
            for &u in &item_users[i] {
                for &j in &users[u as usize] {
                    if co[j as usize] == 0 {
                        touched.push(j);
                    }
                    co[j as usize] += 1;
                }
            }
            let di = item_users[i].len() as f64;
            let mut sims: Vec<(u32, f32)> = touched
                .iter()
                .filter(|&&j| j as usize != i)
                .map(|&j| {
                    let dj = item_users[j as usize].len() as f64;
                    (j, (f64::from(co[j as usize]) / (di * dj).sqrt()) as f32)
                })
                .collect();
            for &j in &touched {
                co[j as usize] = 0;
            }
            touched.clear();
            let by_sim = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
            if sims.len() > neighbours {
                if neighbours == 0 {
                    sims.clear();
                } else {
                    sims.select_nth_unstable_by(neighbours - 1, by_sim);
                    sims.truncate(neighbours);
                }
            }
            sims.sort_unstable_by(by_sim);
            lists.push(sims);
        }
        Self {
            popularity,
            index,
            neighbours: lists,
        }
    }
}

impl Baseline for ItemKnn {
    fn name(&self) -> &'static str {
        "item-knn"
    }

    fn recommend(&self, history: &[&str], exclude: &HashSet<&str>, k: usize) -> Vec<String> {
        let n = self.neighbours.len();
        let (seen, hist) = history_indices(history, &self.index);
        let mut scores = vec![0.0f64; n];
        for &j in &hist {
            for &(i, s) in &self.neighbours[j as usize] {
                scores[i as usize] += f64::from(s);
            }
        }
        rank_scored(&scores, &self.popularity.ranked, &seen, exclude, k)
    }
}

/// EASE^R (Steck 2019, "Embarrassingly Shallow Autoencoders"): the
/// closed-form item-item weights B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹,
/// on the binary user × item matrix X of the `max_items` most popular
/// videos; a user's scores are x_u·B.
///
/// Cost, for n = `max_items` and E training events: fitting is O(E log E)
/// for the popularity ranking, O(Σ_u |I_u|²) to accumulate the Gram matrix
/// user by user (X is never materialised), and O(n³) for the inverse
/// ([`spd_inverse`], about n³ multiply-adds in blocked matrix products:
/// ≈ 0.25 s in all for n = 2000 and 100k events on a 2-core EPYC). Memory
/// while fitting peaks at two dense n×n f64 matrices at a time (≈ 16·n²
/// bytes, 64 MB for n = 2000); the model keeps B as n×n f32 (4·n² bytes,
/// 16 MB for n = 2000). `recommend` is O(|history|·n + k log k).
#[derive(Debug, Clone)]
pub struct Ease {
    popularity: Popularity,
    /// Model item id → index (its all-time popularity rank).
    index: HashMap<String, u32>,
    n: usize,
    /// Row-major n×n: `b[j * n + i]` is B(j, i), the weight item j's
    /// presence in a history gives item i. Zero diagonal.
    b: Vec<f32>,
}

impl Ease {
    /// Fails when `lambda` is negative or not finite, or when XᵀX + λI is
    /// not numerically positive definite (in practice only with λ = 0 and
    /// linearly dependent item columns).
    pub fn fit(train: &[Watch], max_items: usize, lambda: f64) -> Result<Ease, String> {
        if lambda.is_nan() || lambda.is_infinite() || lambda < 0.0 {
            return Err(format!(
                "EASE: lambda must be finite and non-negative, got {lambda}"
            ));
        }
        let popularity = Popularity::all_time(train);
        let n = max_items.min(popularity.ranked.len());
        let index = item_index(&popularity.ranked[..n]);
        let users = user_item_lists(train, &index);

        // G = XᵀX + λI, one user's outer product at a time (symmetric, so
        // column-major and row-major agree).
        let mut g = DMatrix::<f64>::zeros(n, n);
        {
            let gs = g.as_mut_slice();
            for items in &users {
                for &a in items {
                    let col = &mut gs[a as usize * n..(a as usize + 1) * n];
                    for &c in items {
                        col[c as usize] += 1.0;
                    }
                }
            }
        }
        for d in 0..n {
            g[(d, d)] += lambda;
        }

        let p = spd_inverse(g)?;
        let ps = p.as_slice();
        let mut b = vec![0.0f32; n * n];
        for i in 0..n {
            // Column i of P (= row i, P is symmetric) scaled by −1/P(i,i).
            let pii = ps[i * n + i];
            for j in 0..n {
                if j != i {
                    b[j * n + i] = (-ps[i * n + j] / pii) as f32;
                }
            }
        }
        Ok(Self {
            popularity,
            index,
            n,
            b,
        })
    }
}

impl Baseline for Ease {
    fn name(&self) -> &'static str {
        "ease"
    }

    fn recommend(&self, history: &[&str], exclude: &HashSet<&str>, k: usize) -> Vec<String> {
        let n = self.n;
        let (seen, hist) = history_indices(history, &self.index);
        let mut scores = vec![0.0f64; n];
        for &j in &hist {
            let row = &self.b[j as usize * n..(j as usize + 1) * n];
            for (s, &w) in scores.iter_mut().zip(row) {
                *s += f64::from(w);
            }
        }
        rank_scored(&scores, &self.popularity.ranked, &seen, exclude, k)
    }
}

/// Block size of the blocked factorisation: 128 columns of f64 keep a
/// 2000-row panel (2 MB) in the L2 cache, and the diagonal blocks are tiny.
const BLOCK: usize = 128;

/// The inverse of a symmetric positive definite matrix (only the lower
/// triangle of `g` is read), LAPACK `potrf` + `potri` style: a blocked
/// Cholesky factorisation G = L·Lᵀ in place, W = L⁻¹ by blocks, then
/// P = Wᵀ·W by blocks, with the O(n³) work in matrix products
/// (`matrixmultiply` through nalgebra's `gemm`), about n³ multiply-adds in
/// all; peak memory two n×n f64 matrices. Fails when a pivot is not
/// positive or is lost in rounding (under n·ε of its diagonal entry).
///
/// nalgebra's own `cholesky().inverse()` (column `axpy`s, then two
/// triangular solves against the identity) gives the same result but is
/// memory-bound once the matrix outgrows the caches: for n = 2000 on a
/// 2-core EPYC it takes 6.5 s, this one 0.16 s (results equal to ~1e-13).
pub fn spd_inverse(mut g: DMatrix<f64>) -> Result<DMatrix<f64>, String> {
    let n = g.nrows();
    if n != g.ncols() {
        return Err(format!("spd_inverse: {n}×{} is not square", g.ncols()));
    }
    cholesky_in_place(&mut g)?;
    let w = lower_inverse(&g);
    drop(g);
    Ok(gram_of_lower(&w))
}

/// Blocked right-looking Cholesky: replaces the lower triangle of `a` by
/// L with A = L·Lᵀ, reading only the lower triangle (the strict upper
/// triangle is left as scratch).
fn cholesky_in_place(a: &mut DMatrix<f64>) -> Result<(), String> {
    let n = a.nrows();
    let tol = f64::EPSILON * n as f64;
    let diag: Vec<f64> = a.diagonal().iter().copied().collect();
    for k0 in (0..n).step_by(BLOCK) {
        let k1 = (k0 + BLOCK).min(n);
        {
            let data = a.as_mut_slice();
            // The diagonal block, column by column (its trailing updates
            // from earlier blocks are already applied).
            for j in k0..k1 {
                let (left, right) = data.split_at_mut(j * n);
                let col_j = &mut right[..n];
                for p in k0..j {
                    let col_p = &left[p * n..(p + 1) * n];
                    let f = col_p[j];
                    for (x, &y) in col_j[j..k1].iter_mut().zip(&col_p[j..k1]) {
                        *x -= f * y;
                    }
                }
                let d = col_j[j];
                // What is left of G(j, j): not positive, or only rounding
                // error, means G is not (numerically) positive definite.
                if d.is_nan() || d <= 0.0 || d <= tol * diag[j].abs() {
                    return Err("spd_inverse: matrix is not positive definite".to_owned());
                }
                let d = d.sqrt();
                col_j[j] = d;
                for x in &mut col_j[j + 1..k1] {
                    *x /= d;
                }
            }
            // The panel below it: X·L_kkᵀ = A[k1.., k0..k1].
            for j in k0..k1 {
                let (left, right) = data.split_at_mut(j * n);
                let col_j = &mut right[..n];
                for p in k0..j {
                    let col_p = &left[p * n..(p + 1) * n];
                    let f = col_p[j];
                    for (x, &y) in col_j[k1..].iter_mut().zip(&col_p[k1..]) {
                        *x -= f * y;
                    }
                }
                let d = col_j[j];
                for x in &mut col_j[k1..] {
                    *x /= d;
                }
            }
        }
        if k1 == n {
            break;
        }
        // The trailing lower triangle, one block column at a time:
        // A[j0.., j0..j1] −= panel[j0..] · panel[j0..j1]ᵀ.
        let panel = a.view((k1, k0), (n - k1, k1 - k0)).clone_owned();
        let panel_t = panel.transpose();
        for j0 in (k1..n).step_by(BLOCK) {
            let j1 = (j0 + BLOCK).min(n);
            a.view_mut((j0, j0), (n - j0, j1 - j0)).gemm(
                -1.0,
                &panel.rows(j0 - k1, n - j0),
                &panel_t.columns(j0 - k1, j1 - j0),
                1.0,
            );
        }
    }
    Ok(())
}

/// W = L⁻¹ for the lower-triangular L in the lower triangle of `l`, by
/// block rows: W_kk = L_kk⁻¹ and W_kj = −W_kk · Σ_{j≤p<k} L_kp·W_pj.
fn lower_inverse(l: &DMatrix<f64>) -> DMatrix<f64> {
    let n = l.nrows();
    let mut w = DMatrix::<f64>::zeros(n, n);
    for k0 in (0..n).step_by(BLOCK) {
        let k1 = (k0 + BLOCK).min(n);
        let b = k1 - k0;
        // The diagonal block by forward substitution, column by column.
        let mut wkk = DMatrix::<f64>::zeros(b, b);
        for c in 0..b {
            for i in c..b {
                let mut x = if i == c { 1.0 } else { 0.0 };
                for p in c..i {
                    x -= l[(k0 + i, k0 + p)] * wkk[(p, c)];
                }
                wkk[(i, c)] = x / l[(k0 + i, k0 + i)];
            }
        }
        w.view_mut((k0, k0), (b, b)).copy_from(&wkk);
        if k0 == 0 {
            continue;
        }
        // T = L[k, ..k0] · W[..k0, ..k0], skipping W's zero upper blocks.
        let mut t = DMatrix::<f64>::zeros(b, k0);
        for c0 in (0..k0).step_by(BLOCK) {
            let c1 = (c0 + BLOCK).min(k0);
            t.columns_mut(c0, c1 - c0).gemm(
                1.0,
                &l.view((k0, c0), (b, k0 - c0)),
                &w.view((c0, c0), (k0 - c0, c1 - c0)),
                0.0,
            );
        }
        w.view_mut((k0, 0), (b, k0)).gemm(-1.0, &wkk, &t, 0.0);
    }
    w
}

/// P = Wᵀ·W for a lower-triangular W, by blocks of the lower triangle
/// (P(i, j) = Σ_{p ≥ i} W(p, i)·W(p, j) for i ≥ j), then mirrored.
fn gram_of_lower(w: &DMatrix<f64>) -> DMatrix<f64> {
    let n = w.nrows();
    let mut p = DMatrix::<f64>::zeros(n, n);
    for i0 in (0..n).step_by(BLOCK) {
        let i1 = (i0 + BLOCK).min(n);
        // W[i0.., i0..i1]ᵀ, copied: nalgebra 0.34's small-size `gemm`
        // fallback mishandles row-strided views (it walks past their end),
        // so no transposed strided view is handed to it.
        let wt = w.view((i0, i0), (n - i0, i1 - i0)).transpose();
        for j0 in (0..=i0).step_by(BLOCK) {
            let j1 = (j0 + BLOCK).min(n);
            p.view_mut((i0, j0), (i1 - i0, j1 - j0)).gemm(
                1.0,
                &wt,
                &w.view((i0, j0), (n - i0, j1 - j0)),
                0.0,
            );
        }
    }
    for j in 0..n {
        for i in j + 1..n {
            p[(j, i)] = p[(i, j)];
        }
    }
    p
}

/// Distinct users per video among the events `keep` accepts.
fn distinct_users_per_video(
    train: &[Watch],
    keep: impl Fn(&Watch) -> bool,
) -> HashMap<&str, usize> {
    let mut pairs: Vec<(&str, &str)> = train
        .iter()
        .filter(|w| keep(w))
        .map(|w| (w.video.as_str(), w.user.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (v, _) in pairs {
        *counts.entry(v).or_default() += 1;
    }
    counts
}

fn item_index(items: &[String]) -> HashMap<String, u32> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| (v.clone(), i as u32))
        .collect()
}

/// Each user's distinct model items (ascending indices), one list per user
/// with at least one.
fn user_item_lists(train: &[Watch], index: &HashMap<String, u32>) -> Vec<Vec<u32>> {
    let mut by_user: HashMap<&str, Vec<u32>> = HashMap::new();
    for w in train {
        if let Some(&i) = index.get(w.video.as_str()) {
            by_user.entry(w.user.as_str()).or_default().push(i);
        }
    }
    let mut users: Vec<(&str, Vec<u32>)> = by_user.into_iter().collect();
    users.sort_unstable_by(|a, b| a.0.cmp(b.0));
    users
        .into_iter()
        .map(|(_, mut items)| {
            items.sort_unstable();
            items.dedup();
            items
        })
        .collect()
}

/// The history as a set of ids, and its distinct model items in ascending
/// index order (so scores are summed in the same order whatever the
/// history's order).
fn history_indices<'a>(
    history: &[&'a str],
    index: &HashMap<String, u32>,
) -> (HashSet<&'a str>, Vec<u32>) {
    let seen: HashSet<&str> = history.iter().copied().collect();
    let mut hist: Vec<u32> = seen.iter().filter_map(|v| index.get(*v).copied()).collect();
    hist.sort_unstable();
    (seen, hist)
}

/// The top `k` of `ranked`, skipping `seen` and `exclude`: the model items
/// (`ranked[..scores.len()]`) by score, ties by popularity rank, then the
/// rest of `ranked` in popularity order.
fn rank_scored(
    scores: &[f64],
    ranked: &[String],
    seen: &HashSet<&str>,
    exclude: &HashSet<&str>,
    k: usize,
) -> Vec<String> {
    if k == 0 {
        return Vec::new();
    }
    let allowed = |v: &str| !seen.contains(v) && !exclude.contains(v);
    let mut cand: Vec<(f64, u32)> = scores
        .iter()
        .enumerate()
        .filter(|(i, _)| allowed(&ranked[*i]))
        .map(|(i, &s)| (s, i as u32))
        .collect();
    let order = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if cand.len() > k {
        cand.select_nth_unstable_by(k - 1, order);
        cand.truncate(k);
    }
    cand.sort_unstable_by(order);
    let mut out: Vec<String> = cand
        .into_iter()
        .map(|(_, i)| ranked[i as usize].clone())
        .collect();
    out.extend(
        ranked[scores.len()..]
            .iter()
            .filter(|v| allowed(v))
            .take(k - out.len())
            .cloned(),
    );
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn watch(user: &str, video: &str, ts: i64) -> Watch {
        Watch {
            user: user.to_owned(),
            video: video.to_owned(),
            watch_ms: 1_000,
            duration_ms: 10_000,
            completed: false,
            liked: false,
            shared: false,
            ts,
        }
    }

    fn log(events: &[(&str, &str)]) -> Vec<Watch> {
        events
            .iter()
            .enumerate()
            .map(|(t, (u, v))| watch(u, v, t as i64))
            .collect()
    }

    /// a and b are always watched together; c is the most popular video
    /// but never with a; d, e are filler.
    fn co_watch_log() -> Vec<Watch> {
        log(&[
            ("u1", "a"),
            ("u1", "b"),
            ("u2", "a"),
            ("u2", "b"),
            ("u3", "a"),
            ("u3", "b"),
            ("u4", "c"),
            ("u4", "d"),
            ("u5", "c"),
            ("u5", "e"),
            ("u6", "c"),
            ("u6", "d"),
            ("u7", "c"),
            ("u7", "e"),
            ("u8", "b"),
            ("u8", "c"),
        ])
    }

    /// A skewed random log: `users` users with `per_user` events each over
    /// `videos` videos, plus some taste (users prefer one block of videos).
    fn synthetic(users: usize, per_user: usize, videos: usize, seed: u64) -> Vec<Watch> {
        let mut rng = StdRng::seed_from_u64(seed);
        let blocks = 20;
        let mut out = Vec::with_capacity(users * per_user);
        for u in 0..users {
            let taste = rng.random_range(0..blocks);
            for e in 0..per_user {
                let x: f64 = rng.random();
                let v = if rng.random_bool(0.5) {
                    let width = videos / blocks;
                    taste * width + (x * x * width as f64) as usize
                } else {
                    (x * x * x * videos as f64) as usize
                };
                out.push(watch(&format!("u{u}"), &format!("v{v}"), e as i64));
            }
        }
        out
    }

    fn baselines(train: &[Watch]) -> Vec<Box<dyn Baseline>> {
        vec![
            Box::new(Popularity::all_time(train)),
            Box::new(Popularity::recent(train, 10, 40)),
            Box::new(ItemKnn::fit(train, 50, 10)),
            Box::new(Ease::fit(train, 50, 10.0).unwrap()),
        ]
    }

    #[test]
    fn popularity_counts_distinct_users() {
        // v1: one user three times; v2: two users once each.
        let train = log(&[
            ("u1", "v1"),
            ("u1", "v1"),
            ("u1", "v1"),
            ("u1", "v2"),
            ("u2", "v2"),
        ]);
        let pop = Popularity::all_time(&train);
        assert_eq!(pop.count("v1"), 1);
        assert_eq!(pop.count("v2"), 2);
        assert_eq!(pop.count("nope"), 0);
        assert_eq!(pop.ranked(), ["v2", "v1"]);
        let none = HashSet::new();
        assert_eq!(pop.recommend(&[], &none, 10), ["v2", "v1"]);
        assert_eq!(pop.recommend(&["v2"], &none, 10), ["v1"]);
        assert_eq!(pop.name(), "popularity");
    }

    #[test]
    fn popularity_ties_by_id() {
        let train = log(&[("u1", "b"), ("u2", "a"), ("u3", "c"), ("u4", "c")]);
        assert_eq!(Popularity::all_time(&train).ranked(), ["c", "a", "b"]);
    }

    #[test]
    fn recent_popularity_respects_the_window() {
        // All time: old (3 users) > mid (2) > new (1) = edge (1).
        let train = vec![
            watch("u1", "old", 10),
            watch("u2", "old", 20),
            watch("u3", "old", 30),
            watch("u1", "mid", 50),
            watch("u2", "mid", 95),
            watch("u1", "new", 99),
            watch("u4", "new", 100),
            watch("u5", "new", 100),
            watch("u6", "edge", 90),    // exactly now - window: outside
            watch("u7", "future", 101), // after now: outside
        ];
        let pop = Popularity::recent(&train, 10, 100);
        assert_eq!(pop.count("new"), 3);
        assert_eq!(pop.count("mid"), 1);
        assert_eq!(pop.count("old"), 0);
        assert_eq!(pop.count("edge"), 0);
        assert_eq!(pop.count("future"), 0);
        // Outside the window, ties by all-time count, then id.
        assert_eq!(pop.ranked(), ["new", "mid", "old", "edge", "future"]);
        assert_eq!(pop.name(), "popularity-recent");
    }

    #[test]
    fn item_knn_recommends_the_co_watched_item() {
        let train = co_watch_log();
        let knn = ItemKnn::fit(&train, 100, 10);
        let none = HashSet::new();
        // Popularity alone would say c first.
        assert_eq!(Popularity::all_time(&train).ranked()[0], "c");
        let recs = knn.recommend(&["a"], &none, 3);
        assert_eq!(recs[0], "b");
        assert!(!recs.iter().any(|v| v == "a"));
        // Excluded and history items never come back; popularity fills.
        let exclude: HashSet<&str> = ["b"].into_iter().collect();
        let recs = knn.recommend(&["a"], &exclude, 10);
        assert_eq!(recs, ["c", "d", "e"]);
        // Cosine of a and b: 3 / sqrt(3 * 4).
        let a = knn.index["a"] as usize;
        let b = knn.index["b"];
        let s = knn.neighbours[a].iter().find(|(j, _)| *j == b).unwrap().1;
        assert!((f64::from(s) - 3.0 / 12f64.sqrt()).abs() < 1e-6);
        assert_eq!(knn.name(), "item-knn");
    }

    #[test]
    fn item_knn_keeps_only_top_neighbours() {
        let train = synthetic(200, 20, 300, 3);
        let knn = ItemKnn::fit(&train, 100, 5);
        assert_eq!(knn.neighbours.len(), 100);
        for (i, list) in knn.neighbours.iter().enumerate() {
            assert!(list.len() <= 5);
            assert!(list.iter().all(|&(j, _)| j as usize != i));
            assert!(list.windows(2).all(|w| w[0].1 >= w[1].1));
        }
        assert!(ItemKnn::fit(&train, 100, 0)
            .neighbours
            .iter()
            .all(Vec::is_empty));
    }

    #[test]
    fn ease_has_zero_diagonal_and_recommends_the_co_occurring_item() {
        let train = co_watch_log();
        let ease = Ease::fit(&train, 100, 1.0).unwrap();
        let n = ease.n;
        assert_eq!(n, 5);
        for i in 0..n {
            assert_eq!(ease.b[i * n + i], 0.0);
        }
        let none = HashSet::new();
        let recs = ease.recommend(&["a"], &none, 3);
        assert_eq!(recs[0], "b");
        assert!(!recs.iter().any(|v| v == "a"));
        let exclude: HashSet<&str> = ["b", "d"].into_iter().collect();
        let recs = ease.recommend(&["a"], &exclude, 10);
        assert!(!recs
            .iter()
            .any(|v| exclude.contains(v.as_str()) || v == "a"));
        assert_eq!(recs.len(), 2);
        assert_eq!(ease.name(), "ease");
    }

    #[test]
    fn ease_rejects_bad_lambda() {
        let train = co_watch_log();
        assert!(Ease::fit(&train, 10, -1.0).is_err());
        assert!(Ease::fit(&train, 10, f64::NAN).is_err());
        assert!(Ease::fit(&train, 10, f64::INFINITY).is_err());
        // λ = 0 with a rank-deficient Gram matrix (two identical columns).
        let twins = log(&[("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")]);
        assert!(Ease::fit(&twins, 10, 0.0).is_err());
    }

    #[test]
    fn ease_matches_the_closed_form() {
        // B against a direct computation on a small log with n = 5.
        let train = co_watch_log();
        let lambda = 2.0;
        let ease = Ease::fit(&train, 100, lambda).unwrap();
        let n = ease.n;
        let users = user_item_lists(&train, &ease.index);
        let mut x = DMatrix::<f64>::zeros(users.len(), n);
        for (u, items) in users.iter().enumerate() {
            for &i in items {
                x[(u, i as usize)] = 1.0;
            }
        }
        let g = x.transpose() * &x + DMatrix::<f64>::identity(n, n) * lambda;
        let p = g.clone().try_inverse().unwrap();
        for j in 0..n {
            for i in 0..n {
                let want = if i == j { 0.0 } else { -p[(j, i)] / p[(i, i)] };
                assert!((f64::from(ease.b[j * n + i]) - want).abs() < 1e-6);
            }
        }
    }

    fn random_spd(n: usize, seed: u64) -> DMatrix<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let a = DMatrix::<f64>::from_fn(n, n, |_, _| rng.random_range(-1.0..1.0));
        a.transpose() * &a + DMatrix::<f64>::identity(n, n) * 0.5
    }

    #[test]
    fn spd_inverse_is_accurate() {
        let n = 50;
        let g = random_spd(n, 7);
        let p = spd_inverse(g.clone()).unwrap();
        let err = (&g * &p - DMatrix::<f64>::identity(n, n)).amax();
        assert!(err < 1e-6, "max |G·P − I| = {err}");
        assert_eq!(p, p.transpose());
    }

    #[test]
    fn spd_inverse_across_blocks() {
        // Sizes around and across the block size, and the tiny ones that
        // take nalgebra's small-matrix product path.
        for n in [1, 2, 5, 6, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 37] {
            let g = random_spd(n, n as u64);
            let p = spd_inverse(g.clone()).unwrap();
            let err = (&g * &p - DMatrix::<f64>::identity(n, n)).amax();
            assert!(err < 1e-6, "n = {n}: max |G·P − I| = {err}");
            let reference = g.cholesky().unwrap().inverse();
            let diff = (&p - &reference).amax() / reference.amax();
            assert!(diff < 1e-9, "n = {n}: relative difference {diff}");
        }
    }

    #[test]
    fn spd_inverse_rejects_what_is_not_positive_definite() {
        let indefinite = DMatrix::<f64>::from_row_slice(2, 2, &[1.0, 2.0, 2.0, 1.0]);
        assert!(spd_inverse(indefinite).is_err());
        // Singular, with the lost pivot in a later block than its cause.
        let n = BLOCK + 10;
        let mut rng = StdRng::seed_from_u64(5);
        let mut x = DMatrix::<f64>::from_fn(n + 5, n, |_, _| rng.random_range(-1.0..1.0));
        assert!(spd_inverse(x.transpose() * &x).is_ok());
        let first = x.column(0).clone_owned();
        x.set_column(n - 1, &first);
        assert!(spd_inverse(x.transpose() * &x).is_err());
        assert!(spd_inverse(DMatrix::zeros(2, 3)).is_err());
        assert_eq!(spd_inverse(DMatrix::zeros(0, 0)).unwrap().nrows(), 0);
    }

    #[test]
    fn every_baseline_respects_k_and_exclude_and_is_deterministic() {
        let train = synthetic(150, 15, 120, 11);
        let first = baselines(&train);
        let second = baselines(&train);
        let exclude: HashSet<&str> = ["v0", "v1", "v2", "v7"].into_iter().collect();
        let histories: Vec<Vec<&str>> = vec![
            vec![],
            vec!["v3"],
            vec!["v5", "v9", "v3", "v40"],
            vec!["v40", "v3", "v9", "v5", "not-in-train"],
        ];
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a.name(), b.name());
            for history in &histories {
                for k in [0, 1, 10, 500] {
                    let recs = a.recommend(history, &exclude, k);
                    assert!(recs.len() <= k, "{}", a.name());
                    let distinct: HashSet<&String> = recs.iter().collect();
                    assert_eq!(distinct.len(), recs.len(), "{}", a.name());
                    for v in &recs {
                        assert!(!exclude.contains(v.as_str()), "{}", a.name());
                        assert!(!history.contains(&v.as_str()), "{}", a.name());
                    }
                    if k == 10 {
                        assert_eq!(recs.len(), 10, "{}", a.name());
                    }
                    assert_eq!(recs, b.recommend(history, &exclude, k), "{}", a.name());
                }
            }
            // History order does not matter.
            assert_eq!(
                a.recommend(&histories[2], &exclude, 10),
                a.recommend(&histories[3], &exclude, 10),
                "{}",
                a.name()
            );
        }
    }

    #[test]
    fn empty_training_log() {
        let none = HashSet::new();
        for b in baselines(&[]) {
            assert!(b.recommend(&["x"], &none, 10).is_empty());
        }
    }

    /// Fit time of EASE on 2000 items from a ~100k-interaction log:
    /// `cargo test --release -p inference baselines::tests::ease_fit_time -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, run by hand"]
    fn ease_fit_time() {
        let train = synthetic(2_000, 50, 5_000, 1);
        for max_items in [500, 1_000, 2_000] {
            let start = Instant::now();
            let ease = Ease::fit(&train, max_items, 100.0).unwrap();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "EASE fit: {} items, {} interactions, {secs:.3} s",
                ease.n,
                train.len()
            );
        }
        // The same inverse through nalgebra's unblocked Cholesky.
        let g = random_spd(2_000, 2);
        let start = Instant::now();
        let ours = spd_inverse(g.clone()).unwrap();
        let blocked = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let reference = g.cholesky().unwrap().inverse();
        let unblocked = start.elapsed().as_secs_f64();
        println!(
            "2000×2000 SPD inverse: blocked {blocked:.3} s, nalgebra cholesky().inverse() \
             {unblocked:.3} s, max relative difference {:.1e}",
            (&ours - &reference).amax() / reference.amax()
        );
        let start = Instant::now();
        let knn = ItemKnn::fit(&train, 2_000, 100);
        println!(
            "item-kNN fit: {} items, {} interactions, {:.3} s",
            knn.neighbours.len(),
            train.len(),
            start.elapsed().as_secs_f64()
        );
    }
}
