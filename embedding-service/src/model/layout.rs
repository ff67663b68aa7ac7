//! Where each post-layer-norm encoder family stores its tensors, and
//! MPNet's relative-position buckets: what the fused CPU encoder
//! (`fused.rs`) and the candle graph (`encoder_graph.rs`) share.
//!
//! Every family here computes, per layer, `x = LN(x + O·attn(Q·x, K·x, V·x))`
//! then `x = LN(x + W2·act(W1·x))`; they differ in tensor names, in the
//! embeddings (token types or not), in position ids (see
//! [`super::fused::Positions`]) and in MPNet's attention-score bias.

use super::spec::Architecture;

/// Tensor names of one family, relative to the encoder's prefix (`bert.`,
/// `roberta.`, `mpnet.`, `distilbert.` or none; see `with_prefix`).
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Folder of the layers: `{layers}.{i}.` prefixes layer `i`'s tensors.
    pub layers: &'static str,
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    /// Attention output projection.
    pub attn_out: &'static str,
    /// Layer norm after attention.
    pub attn_norm: &'static str,
    /// Feed-forward up projection (hidden → intermediate).
    pub ffn_in: &'static str,
    /// Feed-forward down projection (intermediate → hidden).
    pub ffn_out: &'static str,
    /// Layer norm after the feed-forward block.
    pub ffn_norm: &'static str,
}

impl Layout {
    /// The layout of `arch`.
    pub fn of(arch: Architecture) -> Self {
        match arch {
            // Not a post-layer-norm encoder; `ModelSpec::shape` refuses it
            // before any layout is read.
            Architecture::Bert
            | Architecture::XlmRoberta
            | Architecture::Qwen3
            | Architecture::ModernBert => Layout {
                layers: "encoder.layer",
                query: "attention.self.query",
                key: "attention.self.key",
                value: "attention.self.value",
                attn_out: "attention.output.dense",
                attn_norm: "attention.output.LayerNorm",
                ffn_in: "intermediate.dense",
                ffn_out: "output.dense",
                ffn_norm: "output.LayerNorm",
            },
            Architecture::MpNet => Layout {
                layers: "encoder.layer",
                query: "attention.attn.q",
                key: "attention.attn.k",
                value: "attention.attn.v",
                attn_out: "attention.attn.o",
                attn_norm: "attention.LayerNorm",
                ffn_in: "intermediate.dense",
                ffn_out: "output.dense",
                ffn_norm: "output.LayerNorm",
            },
            Architecture::DistilBert => Layout {
                layers: "transformer.layer",
                query: "attention.q_lin",
                key: "attention.k_lin",
                value: "attention.v_lin",
                attn_out: "attention.out_lin",
                attn_norm: "sa_layer_norm",
                ffn_in: "ffn.lin1",
                ffn_out: "ffn.lin2",
                ffn_norm: "output_layer_norm",
            },
        }
    }

    /// `{layers}.{i}`.
    pub fn layer(&self, i: usize) -> String {
        format!("{}.{i}", self.layers)
    }
}

/// MPNet's table of relative-position biases: `encoder.relative_attention_bias.weight`.
pub const MPNET_RELATIVE_BIAS: &str = "encoder.relative_attention_bias.weight";

/// MPNet's bucket (transformers `MPNetAttention.relative_position_bucket`,
/// `max_distance` 128) for a key `offset = key_position − query_position`:
/// half the buckets for keys before the query, half for keys after; within a
/// half, distances below a quarter of the buckets get their own bucket, longer
/// ones share logarithmically sized buckets up to `max_distance`.
///
/// The logarithm is taken in f32, as transformers takes it (`n.float()`),
/// and truncated toward zero, so bucket edges fall where transformers puts
/// them.
pub fn mpnet_bucket(offset: i64, num_buckets: usize) -> usize {
    const MAX_DISTANCE: f64 = 128.0;
    let half = (num_buckets / 2) as i64;
    let n = -offset;
    let mut ret = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        ret += n;
    } else {
        let ratio = (n as f32 / max_exact as f32).ln();
        let scale = (MAX_DISTANCE / max_exact as f64).ln() as f32;
        let large = max_exact + (ratio / scale * (half - max_exact) as f32) as i64;
        ret += large.min(half - 1);
    }
    ret as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buckets of transformers' MPNet (32 buckets) at hand-checked offsets.
    #[test]
    fn mpnet_buckets() {
        // Keys after the query (offset > 0): n < 0, upper half.
        assert_eq!(mpnet_bucket(1, 32), 17);
        assert_eq!(mpnet_bucket(0, 32), 0);
        assert_eq!(mpnet_bucket(-1, 32), 1);
        assert_eq!(mpnet_bucket(-7, 32), 7);
        assert_eq!(mpnet_bucket(-8, 32), 8);
        // 8 + trunc(ln(16/8)/ln(16)·8) = 8 + 2.
        assert_eq!(mpnet_bucket(-16, 32), 10);
        assert_eq!(mpnet_bucket(-32, 32), 12);
        assert_eq!(mpnet_bucket(-127, 32), 15);
        assert_eq!(mpnet_bucket(-1000, 32), 15);
        assert_eq!(mpnet_bucket(1000, 32), 31);
    }
}
