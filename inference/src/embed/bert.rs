//! BERT's forward pass for the CPU, written for sentence embeddings.
//!
//! candle_transformers' `BertModel` (kept for CUDA) pads every sentence to
//! the batch's longest, runs attention as one small matmul per head after
//! four contiguous copies per layer, and applies biases, GELU, the mask and
//! softmax as separate single-threaded passes. Here the batch is packed: the
//! embeddings, every projection, GELU and LayerNorm run on the real tokens
//! only (one row each), and only attention needs to know where a sentence
//! ends. Q, K and V come out of one fused projection; biases and residuals
//! are written into the output before the product accumulates onto them.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};

use super::kernels;
use crate::error::{InferenceError, Result};

/// Projection weights are stored transposed (`in × out`), as
/// [`kernels::matmul_acc`] wants them.
struct Layer {
    /// Query, key and value weights side by side: `hidden × 3·hidden`.
    qkv_w: Vec<f32>,
    qkv_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    attn_norm: (Vec<f32>, Vec<f32>),
    up_w: Vec<f32>,
    up_b: Vec<f32>,
    down_w: Vec<f32>,
    down_b: Vec<f32>,
    ffn_norm: (Vec<f32>, Vec<f32>),
}

pub struct Bert {
    word: Vec<f32>,
    position: Vec<f32>,
    /// Token type 0's row: sentence embeddings never use a second segment.
    segment: Vec<f32>,
    embed_norm: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    max_positions: usize,
    eps: f32,
}

fn flat(t: Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

impl Bert {
    /// Reads the weights of a BERT checkpoint with `config`'s shapes.
    pub fn load(weights: &Path, config: &Config) -> Result<Self> {
        let bad = |reason: String| InferenceError::Model {
            dir: weights.to_path_buf(),
            reason,
        };
        if config.hidden_act != HiddenAct::Gelu {
            return Err(bad(format!(
                "hidden_act {:?}: only BERT's erf GELU is implemented",
                config.hidden_act
            )));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(bad(
                "hidden_size is not a multiple of num_attention_heads".into()
            ));
        }
        let (h, i) = (config.hidden_size, config.intermediate_size);
        // SAFETY: the weights file is mapped read-only and is not modified
        // while the process runs (set-up writes it once); everything is
        // copied out before the map is dropped.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)? };
        let get = |vb: &VarBuilder, shape: &[usize], name: &str| -> Result<Vec<f32>> {
            let t = vb
                .get(shape, name)
                .map_err(|e| bad(format!("{name}: {e}")))?;
            flat(t)
        };
        let norm = |vb: VarBuilder| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((get(&vb, &[h], "weight")?, get(&vb, &[h], "bias")?))
        };
        let e = vb.pp("embeddings");
        let segments = get(
            &e,
            &[config.type_vocab_size, h],
            "token_type_embeddings.weight",
        )?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for n in 0..config.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{n}"));
            let a = l.pp("attention");
            let mut qkv_w = Vec::with_capacity(3 * h * h);
            let mut qkv_b = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                qkv_w.extend(get(&a, &[h, h], &format!("self.{part}.weight"))?);
                qkv_b.extend(get(&a, &[h], &format!("self.{part}.bias"))?);
            }
            layers.push(Layer {
                qkv_w: kernels::transpose(&qkv_w, 3 * h, h),
                qkv_b,
                out_w: kernels::transpose(&get(&a, &[h, h], "output.dense.weight")?, h, h),
                out_b: get(&a, &[h], "output.dense.bias")?,
                attn_norm: norm(a.pp("output.LayerNorm"))?,
                up_w: kernels::transpose(&get(&l, &[i, h], "intermediate.dense.weight")?, i, h),
                up_b: get(&l, &[i], "intermediate.dense.bias")?,
                down_w: kernels::transpose(&get(&l, &[h, i], "output.dense.weight")?, h, i),
                down_b: get(&l, &[h], "output.dense.bias")?,
                ffn_norm: norm(l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Self {
            word: get(&e, &[config.vocab_size, h], "word_embeddings.weight")?,
            position: get(
                &e,
                &[config.max_position_embeddings, h],
                "position_embeddings.weight",
            )?,
            segment: segments[..h].to_vec(),
            embed_norm: norm(e.pp("LayerNorm"))?,
            layers,
            hidden: h,
            heads: config.num_attention_heads,
            intermediate: i,
            max_positions: config.max_position_embeddings,
            eps: config.layer_norm_eps as f32,
        })
    }

    /// Mean-pooled, L2-normalised embeddings of tokenised sentences (ids
    /// with the special tokens, no padding).
    pub fn embed(&self, sentences: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let h = self.hidden;
        let vocab = self.word.len() / h;
        let lens: Vec<usize> = sentences.iter().map(|s| s.len()).collect();
        let tokens: usize = lens.iter().sum();
        let mut x = vec![0f32; tokens * h];
        let mut rows = x.chunks_exact_mut(h);
        for sentence in sentences {
            if sentence.len() > self.max_positions {
                return Err(InferenceError::Tokenizer(format!(
                    "{} tokens exceed the model's {} positions",
                    sentence.len(),
                    self.max_positions
                )));
            }
            for (pos, (&id, row)) in sentence.iter().zip(&mut rows).enumerate() {
                let id = id as usize;
                if id >= vocab {
                    return Err(InferenceError::Tokenizer(format!(
                        "token id {id} is outside the vocabulary"
                    )));
                }
                let word = &self.word[id * h..][..h];
                let position = &self.position[pos * h..][..h];
                for (((o, w), p), s) in row.iter_mut().zip(word).zip(position).zip(&self.segment) {
                    *o = w + p + s;
                }
            }
        }
        kernels::layer_norm(&mut x, &self.embed_norm.0, &self.embed_norm.1, self.eps);

        let mut qkv = vec![0f32; tokens * 3 * h];
        let mut ctx = vec![0f32; tokens * h];
        let mut up = vec![0f32; tokens * self.intermediate];
        let mut y = vec![0f32; tokens * h];
        for layer in &self.layers {
            kernels::fill_rows(&mut qkv, &layer.qkv_b);
            kernels::matmul_acc(&mut qkv, &x, &layer.qkv_w, tokens, 3 * h, h);
            kernels::attention(&qkv, &mut ctx, &lens, self.heads, h / self.heads);
            kernels::residual_rows(&mut y, &x, &layer.out_b);
            kernels::matmul_acc(&mut y, &ctx, &layer.out_w, tokens, h, h);
            kernels::layer_norm(&mut y, &layer.attn_norm.0, &layer.attn_norm.1, self.eps);

            kernels::fill_rows(&mut up, &layer.up_b);
            kernels::matmul_acc(&mut up, &y, &layer.up_w, tokens, self.intermediate, h);
            kernels::gelu(&mut up, self.intermediate);
            kernels::residual_rows(&mut x, &y, &layer.down_b);
            kernels::matmul_acc(&mut x, &up, &layer.down_w, tokens, h, self.intermediate);
            kernels::layer_norm(&mut x, &layer.ffn_norm.0, &layer.ffn_norm.1, self.eps);
        }

        let mut out = Vec::with_capacity(sentences.len());
        let mut rows = x.chunks_exact(h);
        for &len in &lens {
            let mut mean = vec![0f32; h];
            for row in rows.by_ref().take(len) {
                mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
            }
            // The pooled mean's scale cancels in the normalisation.
            super::normalize(&mut mean);
            out.push(mean);
        }
        Ok(out)
    }
}
