//! Ranking: the spec's (user, video, context) features, the hand-set formula
//! used until a model is trained, and a small candle network trained on the
//! box's own watch events to predict completion.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{linear, Linear, Module, Optimizer, VarBuilder, VarMap};

use crate::error::{InferenceError, Result};

/// Feature vector width; the order is [`FEATURE_NAMES`].
pub const FEATURES: usize = 19;

pub const FEATURE_NAMES: [&str; FEATURES] = [
    "similarity",
    "completion_rate",
    "like_rate",
    "share_rate",
    "comment_rate",
    "creator_completion",
    "freshness",
    "is_following",
    "hashtag_affinity",
    "hour_sin",
    "hour_cos",
    "popularity",
    "enjoyed_views",
    "likes",
    "recent_views",
    "velocity",
    "collaborative",
    "user_activity",
    "age_hours",
];

pub type Features = [f32; FEATURES];

/// The seeds' weights: similarity 0.4, completion 0.3, engagement 0.2,
/// freshness 0.1.
pub fn formula(f: &Features) -> f32 {
    let engagement = ((f[2] + 2.0 * f[3] + f[4]) * 5.0).min(1.0);
    0.4 * f[0] + 0.3 * f[1] + 0.2 * engagement + 0.1 * f[6]
}

const HIDDEN: usize = 32;

/// A trained ranker: standardised features → 32 ReLU units → logit of
/// P(completion). Trained as a weighted logistic regression where a
/// positive counts by its watch time (YouTube's expected-watch-time trick).
pub struct RankModel {
    mean: Tensor,
    std: Tensor,
    l1: Linear,
    l2: Linear,
    device: Device,
}

impl RankModel {
    fn new(vb: VarBuilder, mean: Tensor, std: Tensor) -> Result<Self> {
        Ok(Self {
            l1: linear(FEATURES, HIDDEN, vb.pp("l1"))?,
            l2: linear(HIDDEN, 1, vb.pp("l2"))?,
            device: mean.device().clone(),
            mean,
            std,
        })
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?;
        Ok(self
            .l2
            .forward(&self.l1.forward(&x)?.relu()?)?
            .squeeze(D::Minus1)?)
    }

    /// Scores every candidate in one forward pass.
    pub fn score(&self, batch: &[Features]) -> Result<Vec<f32>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let flat: Vec<f32> = batch.iter().flatten().copied().collect();
        let x = Tensor::from_vec(flat, (batch.len(), FEATURES), &self.device)?;
        let scores = candle_nn::ops::sigmoid(&self.logits(&x)?)?.to_vec1::<f32>()?;
        if scores.iter().any(|s| !s.is_finite()) {
            return Err(InferenceError::Ranker(
                "model produced a non-finite score".into(),
            ));
        }
        Ok(scores)
    }

    /// Loads weights written by [`train`]; any missing or misshapen tensor is
    /// an error, so a truncated file is refused rather than half-used.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_on(path, &crate::device::models())
    }

    /// [`load`](Self::load) onto a given device (benchmarks compare CPU and
    /// GPU side by side in one process).
    pub fn load_on(path: &Path, device: &Device) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, device)
            .map_err(|e| InferenceError::Ranker(format!("{}: {e}", path.display())))?;
        let get = |name: &str| {
            tensors.get(name).cloned().ok_or_else(|| {
                InferenceError::Ranker(format!("{}: tensor {name} missing", path.display()))
            })
        };
        let (mean, std) = (get("norm.mean")?, get("norm.std")?);
        for t in [&mean, &std] {
            match t.dims() {
                [n] if *n == FEATURES => {}
                [n] => {
                    return Err(InferenceError::RankerOutdated {
                        path: path.to_path_buf(),
                        found: *n,
                        expected: FEATURES,
                    })
                }
                _ => {
                    return Err(InferenceError::Ranker(format!(
                        "{}: feature statistics are not a vector",
                        path.display()
                    )))
                }
            }
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::new(vb, mean, std)
            .map_err(|e| InferenceError::Ranker(format!("{}: {e}", path.display())))
    }
}

/// What ranks candidates right now: the trained model, or the formula
/// before one exists.
pub enum Ranker {
    Formula,
    Model(RankModel),
}

impl Ranker {
    pub fn score(&self, batch: &[Features]) -> Result<Vec<f32>> {
        match self {
            Self::Formula => Ok(batch.iter().map(formula).collect()),
            Self::Model(m) => m.score(batch),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Formula => "formula",
            Self::Model(_) => "model",
        }
    }
}

/// One training example: features as they were before the event, whether
/// the viewer went on to enjoy the video, and the example's weight.
pub struct Example {
    pub features: Features,
    pub positive: bool,
    pub weight: f32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    pub examples: usize,
    pub positives: usize,
    pub epochs: usize,
    pub final_loss: f32,
    /// Ranking quality on the held-out last 10 % of examples.
    pub holdout_auc: f32,
    pub formula_holdout_auc: f32,
}

/// Re-initialises every variable from a seeded generator (uniform within
/// ±1/√fan-in, as candle's own linear init, whose CPU generator cannot be
/// seeded): the same examples train the same model, so evaluations rerun.
fn seed_weights(vars: &VarMap, seed: u64) -> Result<()> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let data = vars
        .data()
        .lock()
        .map_err(|_| InferenceError::Ranker("weights lock poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let fan_in = if dims.len() == 2 {
            dims[1]
        } else {
            dims.iter().product::<usize>()
        }
        .max(1);
        let bound = 1.0 / (fan_in as f32).sqrt();
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        var.set(&Tensor::from_vec(values, dims.as_slice(), var.device())?)?;
    }
    Ok(())
}

/// Trains a ranker on chronologically ordered examples, holding out the
/// last tenth for an AUC comparison with the formula, and writes it as
/// safetensors to `out` (atomically, so a running server never reads half a
/// file).
pub fn train(examples: &[Example], epochs: usize, out: &Path) -> Result<TrainReport> {
    if examples.len() < 50 {
        return Err(InferenceError::Invalid(format!(
            "{} examples are too few to train a ranker (need at least 50 watch events)",
            examples.len()
        )));
    }
    let split = examples.len() * 9 / 10;
    let (fit, hold) = examples.split_at(split);
    let device = Device::Cpu;
    let x = features_tensor(fit, &device)?;
    let y = Tensor::from_vec(
        fit.iter()
            .map(|e| f32::from(u8::from(e.positive)))
            .collect::<Vec<_>>(),
        fit.len(),
        &device,
    )?;
    let w = Tensor::from_vec(
        fit.iter().map(|e| e.weight).collect::<Vec<_>>(),
        fit.len(),
        &device,
    )?;
    let mean = x.mean(0)?;
    let std = x
        .broadcast_sub(&mean)?
        .sqr()?
        .mean(0)?
        .sqrt()?
        .clamp(1e-3, f64::MAX)?;
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &device);
    let model = RankModel::new(vb, mean.clone(), std.clone())?;
    seed_weights(&vars, 7)?;
    let mut opt = candle_nn::AdamW::new(
        vars.all_vars(),
        candle_nn::ParamsAdamW {
            lr: 0.01,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )?;
    let wsum = w.sum_all()?;
    let mut final_loss = f32::NAN;
    for _ in 0..epochs {
        let logits = model.logits(&x)?;
        // Numerically stable weighted BCE with logits.
        let per = (logits.relu()? - logits.mul(&y)?
            + logits.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
        let loss = per.mul(&w)?.sum_all()?.div(&wsum)?;
        opt.backward_step(&loss)?;
        final_loss = loss.to_scalar::<f32>()?;
    }
    let mut tensors: HashMap<String, Tensor> = vars
        .data()
        .lock()
        .map_err(|_| InferenceError::Ranker("poisoned".into()))?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    tensors.insert("norm.mean".into(), mean);
    tensors.insert("norm.std".into(), std);
    let tmp = out.with_extension("tmp");
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, out).map_err(|e| InferenceError::io(out, e))?;
    let labels: Vec<bool> = hold.iter().map(|e| e.positive).collect();
    let feats: Vec<Features> = hold.iter().map(|e| e.features).collect();
    Ok(TrainReport {
        examples: examples.len(),
        positives: examples.iter().filter(|e| e.positive).count(),
        epochs,
        final_loss,
        holdout_auc: auc(&model.score(&feats)?, &labels),
        formula_holdout_auc: auc(&feats.iter().map(formula).collect::<Vec<_>>(), &labels),
    })
}

fn features_tensor(examples: &[Example], device: &Device) -> Result<Tensor> {
    let flat: Vec<f32> = examples.iter().flat_map(|e| e.features).collect();
    Ok(Tensor::from_vec(flat, (examples.len(), FEATURES), device)?)
}

/// Area under the ROC curve (probability a positive outranks a negative).
pub fn auc(scores: &[f32], labels: &[bool]) -> f32 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut pos) = (0.0f64, 0usize);
    for (rank, &i) in order.iter().enumerate() {
        if labels[i] {
            rank_sum += rank as f64 + 1.0;
            pos += 1;
        }
    }
    let neg = scores.len() - pos;
    if pos == 0 || neg == 0 {
        return 0.5;
    }
    ((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn formula_uses_the_seed_weights() {
        let mut f = [0.0; FEATURES];
        f[0] = 1.0;
        assert!((formula(&f) - 0.4).abs() < 1e-6);
        f[6] = 1.0;
        assert!((formula(&f) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn trained_model_learns_a_planted_rule_and_round_trips() {
        // Completion depends on similarity and creator quality; the trained
        // model must recover that better than chance and survive a reload.
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let examples: Vec<Example> = (0..3000)
            .map(|_| {
                let mut f = [0.0f32; FEATURES];
                f.iter_mut().for_each(|x| *x = rng.random());
                let p = 1.0 / (1.0 + (-(6.0 * f[0] + 3.0 * f[5] - 4.5)).exp());
                Example {
                    features: f,
                    positive: rng.random::<f32>() < p,
                    weight: 1.0,
                }
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ranker.safetensors");
        let report = train(&examples, 200, &path).unwrap();
        assert!(report.holdout_auc > 0.75, "{report:?}");
        let model = RankModel::load(&path).unwrap();
        let mut hi = [0.5f32; FEATURES];
        hi[0] = 0.95;
        let mut lo = hi;
        lo[0] = 0.05;
        let s = model.score(&[hi, lo]).unwrap();
        assert!(s[0] > s[1], "{s:?}");
        std::fs::write(&path, b"not safetensors").unwrap();
        assert!(matches!(
            RankModel::load(&path),
            Err(InferenceError::Ranker(_))
        ));
        // A model of an older feature set is out of date, not broken.
        let old: HashMap<String, Tensor> = [
            (
                "norm.mean",
                Tensor::zeros(12, DType::F32, &Device::Cpu).unwrap(),
            ),
            (
                "norm.std",
                Tensor::ones(12, DType::F32, &Device::Cpu).unwrap(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        candle_core::safetensors::save(&old, &path).unwrap();
        assert!(matches!(
            RankModel::load(&path),
            Err(InferenceError::RankerOutdated { found: 12, .. })
        ));
    }

    #[test]
    fn auc_of_perfect_and_reversed_orders() {
        assert_eq!(auc(&[0.1, 0.9], &[false, true]), 1.0);
        assert_eq!(auc(&[0.9, 0.1], &[false, true]), 0.0);
    }
}
