//! FAISS indexes over unit vectors (inner product = cosine), with the
//! concurrency FAISS CPU indexes allow: any number of searches at once
//! (read lock, `ConcurrentIndex`), adds and removes one at a time (write
//! lock).

use std::path::Path;

use faiss::index::flat::FlatIndexImpl;
use faiss::index::id_map::IdMap;
use faiss::index::ivf_flat::IVFFlatIndexImpl;
use faiss::selector::IdSelector;
use faiss::{ConcurrentIndex, Idx, Index};
use parking_lot::RwLock;

use crate::error::{InferenceError, Result};

/// Which FAISS structure an index uses. Chosen from the catalog size by
/// [`IndexKind::for_size`], whose thresholds come from `appliance bench
/// retrieval` (recall@100 against exact search and queries per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum IndexKind {
    /// Exact search; fastest to keep up to date, linear in the catalog.
    Flat,
    /// Inverted lists over k-means cells; `nprobe` cells are scanned.
    Ivf { nlist: u32, nprobe: u32 },
}

/// Below this many vectors exact search answers in about 2 ms on two cores
/// (1.1 ms p99 at 10k; 18 ms at 100k, where IVF needs 0.8 ms at recall 1.0:
/// benches/results/retrieval-cpu.json), so there is nothing to trade.
pub const FLAT_LIMIT: usize = 20_000;

impl IndexKind {
    pub fn for_size(n: usize) -> Self {
        if n < FLAT_LIMIT {
            return Self::Flat;
        }
        // ~√n cells (capped so k-means training stays in seconds on two
        // cores); nprobe from benches/results/retrieval-cpu.json, where it
        // keeps recall@100 ≥ 0.95.
        let nlist = ((n as f64).sqrt() as u32).clamp(256, 1024);
        Self::Ivf {
            nlist,
            nprobe: (nlist / 32).max(16),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Flat => "Flat".into(),
            Self::Ivf { nlist, nprobe } => format!("IVF{nlist},Flat nprobe={nprobe}"),
        }
    }
}

enum Ann {
    Flat(IdMap<FlatIndexImpl>),
    Ivf(IVFFlatIndexImpl),
}

impl Ann {
    fn build(kind: IndexKind, dim: usize, ids: &[u64], vectors: &[f32]) -> Result<Self> {
        let labels: Vec<Idx> = ids.iter().map(|&i| Idx::new(i)).collect();
        let mut ann = match kind {
            IndexKind::Flat => Self::Flat(IdMap::new(FlatIndexImpl::new_ip(dim as u32)?)?),
            IndexKind::Ivf { nlist, nprobe } => {
                let quantizer = FlatIndexImpl::new_ip(dim as u32)?;
                let mut ivf = IVFFlatIndexImpl::new_ip(quantizer, dim as u32, nlist)?;
                // FAISS wants ~39 points per cell; more only slows training.
                let sample = (nlist as usize * 40).min(ids.len()) * dim;
                ivf.train(&vectors[..sample])?;
                ivf.set_nprobe(nprobe);
                Self::Ivf(ivf)
            }
        };
        if !ids.is_empty() {
            ann.add(&labels, vectors)?;
        }
        Ok(ann)
    }

    fn add(&mut self, ids: &[Idx], vectors: &[f32]) -> Result<()> {
        match self {
            Self::Flat(i) => i.add_with_ids(vectors, ids)?,
            Self::Ivf(i) => i.add_with_ids(vectors, ids)?,
        }
        Ok(())
    }

    fn remove(&mut self, ids: &[Idx]) -> Result<usize> {
        let sel = IdSelector::batch(ids)?;
        Ok(match self {
            Self::Flat(i) => i.remove_ids(&sel)?,
            Self::Ivf(i) => i.remove_ids(&sel)?,
        })
    }

    fn search(&self, query: &[f32], k: usize) -> Result<faiss::index::SearchResult> {
        Ok(match self {
            Self::Flat(i) => ConcurrentIndex::search(i, query, k)?,
            Self::Ivf(i) => ConcurrentIndex::search(i, query, k)?,
        })
    }

    fn len(&self) -> usize {
        match self {
            Self::Flat(i) => i.ntotal() as usize,
            Self::Ivf(i) => i.ntotal() as usize,
        }
    }

    fn kind(&self) -> IndexKind {
        match self {
            Self::Flat(_) => IndexKind::Flat,
            Self::Ivf(i) => IndexKind::Ivf {
                nlist: i.nlist(),
                nprobe: i.nprobe(),
            },
        }
    }
}

struct Loaded {
    ann: Ann,
    /// Size the structure was chosen (and an IVF trained) for.
    built_for: usize,
}

/// One named FAISS index whose ids are the caller's dense slots.
pub struct VectorIndex {
    name: &'static str,
    dim: usize,
    inner: RwLock<Option<Loaded>>,
}

pub struct Hit {
    pub id: u64,
    pub score: f32,
}

impl VectorIndex {
    /// An index that is not loaded: searches fail with `IndexUnavailable`
    /// until [`VectorIndex::rebuild`] or [`VectorIndex::load`] succeeds.
    pub fn unloaded(name: &'static str, dim: usize) -> Self {
        Self {
            name,
            dim,
            inner: RwLock::new(None),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.inner.read().is_some()
    }

    pub fn len(&self) -> usize {
        self.inner.read().as_ref().map_or(0, |l| l.ann.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn kind(&self) -> Option<IndexKind> {
        self.inner.read().as_ref().map(|l| l.ann.kind())
    }

    /// Builds a new structure for `ids`/`vectors` (row-major) off the lock and
    /// swaps it in; searches keep using the old one meanwhile.
    pub fn rebuild(&self, ids: &[u64], vectors: &[f32], kind: Option<IndexKind>) -> Result<()> {
        self.check(ids.len(), vectors.len())?;
        let kind = kind.unwrap_or_else(|| IndexKind::for_size(ids.len()));
        let ann = Ann::build(kind, self.dim, ids, vectors)?;
        *self.inner.write() = Some(Loaded {
            ann,
            built_for: ids.len().max(1),
        });
        Ok(())
    }

    /// Changes how many IVF cells a search scans (no-op on a flat index).
    pub fn set_nprobe(&self, kind: IndexKind) {
        if let (
            IndexKind::Ivf { nprobe, .. },
            Some(Loaded {
                ann: Ann::Ivf(i), ..
            }),
        ) = (kind, self.inner.write().as_mut())
        {
            i.set_nprobe(nprobe);
        }
    }

    /// Whether the catalog has outgrown the structure: crossed the flat
    /// limit, or doubled since the IVF cells were trained.
    pub fn wants_rebuild(&self) -> bool {
        let guard = self.inner.read();
        let Some(l) = guard.as_ref() else {
            return false;
        };
        let n = l.ann.len();
        IndexKind::for_size(n) != IndexKind::for_size(l.built_for)
            && n > 2 * l.built_for.min(FLAT_LIMIT)
            || matches!(l.ann, Ann::Ivf(_)) && n > 2 * l.built_for
    }

    /// Adds or replaces vectors by id.
    pub fn upsert(&self, ids: &[u64], vectors: &[f32]) -> Result<()> {
        self.check(ids.len(), vectors.len())?;
        let labels: Vec<Idx> = ids.iter().map(|&i| Idx::new(i)).collect();
        let mut guard = self.inner.write();
        let l = guard
            .as_mut()
            .ok_or(InferenceError::IndexUnavailable(self.name))?;
        l.ann.remove(&labels)?;
        l.ann.add(&labels, vectors)
    }

    pub fn remove(&self, ids: &[u64]) -> Result<usize> {
        let labels: Vec<Idx> = ids.iter().map(|&i| Idx::new(i)).collect();
        let mut guard = self.inner.write();
        let l = guard
            .as_mut()
            .ok_or(InferenceError::IndexUnavailable(self.name))?;
        l.ann.remove(&labels)
    }

    /// The `k` nearest ids by cosine, best first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        if query.len() != self.dim {
            return Err(InferenceError::Invalid(format!(
                "{} index query has {} dimensions, expected {}",
                self.name,
                query.len(),
                self.dim
            )));
        }
        let guard = self.inner.read();
        let l = guard
            .as_ref()
            .ok_or(InferenceError::IndexUnavailable(self.name))?;
        if k == 0 || l.ann.len() == 0 {
            return Ok(Vec::new());
        }
        let res = l.ann.search(query, k)?;
        Ok(res
            .labels
            .iter()
            .zip(&res.distances)
            .filter_map(|(label, &score)| label.get().map(|id| Hit { id, score }))
            .collect())
    }

    /// Writes the index atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let guard = self.inner.read();
        let l = guard
            .as_ref()
            .ok_or(InferenceError::IndexUnavailable(self.name))?;
        let tmp = path.with_extension("tmp");
        let kind = match &l.ann {
            Ann::Flat(i) => {
                faiss::write_index(i, tmp.to_string_lossy().as_ref())?;
                "flat"
            }
            Ann::Ivf(i) => {
                faiss::write_index(i, tmp.to_string_lossy().as_ref())?;
                "ivf"
            }
        };
        let marker = kind_marker(path);
        std::fs::write(&marker, kind).map_err(|e| InferenceError::io(&marker, e))?;
        std::fs::rename(&tmp, path).map_err(|e| InferenceError::io(path, e))
    }

    /// Reads an index written by [`VectorIndex::save`].
    pub fn load(&self, path: &Path) -> Result<()> {
        if !path.is_file() {
            return Err(InferenceError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no saved index"),
            ));
        }
        // The structure is recorded beside the index: FAISS casts consume the
        // index on failure, so probing by trial would mean a full copy.
        let marker = kind_marker(path);
        let kind = std::fs::read_to_string(&marker).map_err(|e| InferenceError::io(&marker, e))?;
        let raw = faiss::read_index(path.to_string_lossy().as_ref())?;
        if raw.d() as usize != self.dim {
            return Err(InferenceError::Invalid(format!(
                "{}: {} dimensions, expected {}",
                path.display(),
                raw.d(),
                self.dim
            )));
        }
        let ann = match kind.trim() {
            "ivf" => Ann::Ivf(raw.into_ivf_flat()?),
            "flat" => Ann::Flat(raw.into_id_map()?.try_cast_inner_index::<FlatIndexImpl>()?),
            other => {
                return Err(InferenceError::Invalid(format!(
                    "{}: unknown index structure {other:?}",
                    marker.display()
                )))
            }
        };
        let n = ann.len();
        *self.inner.write() = Some(Loaded {
            ann,
            built_for: n.max(1),
        });
        Ok(())
    }

    fn check(&self, ids: usize, floats: usize) -> Result<()> {
        if ids * self.dim != floats {
            return Err(InferenceError::Invalid(format!(
                "{} index: {ids} ids but {floats} floats (dimension {})",
                self.name, self.dim
            )));
        }
        Ok(())
    }
}

fn kind_marker(path: &Path) -> std::path::PathBuf {
    path.with_extension("kind")
}

/// Exact top-k by brute force, the ground truth for recall measurements.
pub fn exact_top_k(vectors: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<u64> {
    let mut scored: Vec<(f32, u64)> = vectors
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (crate::embed::dot(v, query), i as u64))
        .collect();
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
    scored.truncate(k);
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_unit(rng: &mut impl Rng, n: usize, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n * dim).map(|_| rng.random::<f32>() - 0.5).collect();
        v.chunks_exact_mut(dim).for_each(crate::embed::normalize);
        v
    }

    #[test]
    fn flat_index_is_exact_and_supports_upsert_and_remove() {
        let dim = 16;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let vecs = random_unit(&mut rng, 200, dim);
        let ids: Vec<u64> = (0..200).collect();
        let idx = VectorIndex::unloaded("test", dim);
        assert!(matches!(
            idx.search(&vecs[..dim], 5),
            Err(InferenceError::IndexUnavailable(_))
        ));
        idx.rebuild(&ids, &vecs, None).unwrap();
        let q = &vecs[dim * 3..dim * 4];
        let hits: Vec<u64> = idx.search(q, 10).unwrap().iter().map(|h| h.id).collect();
        assert_eq!(hits, exact_top_k(&vecs, dim, q, 10));
        assert_eq!(hits[0], 3);
        idx.remove(&[3]).unwrap();
        assert!(idx.search(q, 10).unwrap().iter().all(|h| h.id != 3));
        idx.upsert(&[999], q).unwrap();
        assert_eq!(idx.search(q, 1).unwrap()[0].id, 999);
        assert_eq!(idx.len(), 200);
    }

    #[test]
    fn ivf_round_trips_through_a_file_and_keeps_recall() {
        let dim = 32;
        let n = 4000;
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let vecs = random_unit(&mut rng, n, dim);
        let ids: Vec<u64> = (0..n as u64).collect();
        let idx = VectorIndex::unloaded("test", dim);
        let kind = IndexKind::Ivf {
            nlist: 32,
            nprobe: 32,
        };
        idx.rebuild(&ids, &vecs, Some(kind)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.faiss");
        idx.save(&path).unwrap();
        let back = VectorIndex::unloaded("test", dim);
        back.load(&path).unwrap();
        assert_eq!(back.kind(), Some(kind));
        let q = &vecs[dim * 10..dim * 11];
        // nprobe = nlist scans every cell: the IVF answer must be exact.
        let got: Vec<u64> = back.search(q, 20).unwrap().iter().map(|h| h.id).collect();
        assert_eq!(got, exact_top_k(&vecs, dim, q, 20));
        let flat = VectorIndex::unloaded("test", dim);
        flat.rebuild(&ids[..10], &vecs[..10 * dim], Some(IndexKind::Flat))
            .unwrap();
        flat.save(&path).unwrap();
        back.load(&path).unwrap();
        assert_eq!(back.kind(), Some(IndexKind::Flat));
        assert_eq!(back.len(), 10);
    }

    #[test]
    fn concurrent_searches_share_the_index() {
        let dim = 16;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let vecs = random_unit(&mut rng, 500, dim);
        let idx = std::sync::Arc::new(VectorIndex::unloaded("test", dim));
        idx.rebuild(&(0..500).collect::<Vec<_>>(), &vecs, None)
            .unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let idx = idx.clone();
                let q = vecs[dim * t..dim * (t + 1)].to_vec();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        assert_eq!(idx.search(&q, 1).unwrap()[0].id, t as u64);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
