//! Pooling of token states into one vector, per sentence-transformers'
//! `1_Pooling/config.json`, in its old boolean form
//! (`pooling_mode_mean_tokens: true`) and its newer `"pooling_mode": "mean"`.

use super::ModelError;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Cls,
    Mean,
    Max,
    MeanSqrtLen,
    LastToken,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
            Pooling::Max => "max",
            Pooling::MeanSqrtLen => "mean_sqrt_len_tokens",
            Pooling::LastToken => "lasttoken",
        }
    }

    /// Parses a pooling config in either form. Combined modes (several
    /// booleans true, which sentence-transformers concatenates) are refused.
    pub fn from_config(v: &Value) -> Result<Self, ModelError> {
        if let Some(mode) = v.get("pooling_mode").and_then(Value::as_str) {
            return match mode {
                "cls" | "cls_token" => Ok(Pooling::Cls),
                "mean" | "mean_tokens" => Ok(Pooling::Mean),
                "max" | "max_tokens" => Ok(Pooling::Max),
                "mean_sqrt_len_tokens" | "mean_sqrt_len" => Ok(Pooling::MeanSqrtLen),
                "lasttoken" | "last_token" => Ok(Pooling::LastToken),
                other => Err(ModelError::Config(format!(
                    "unsupported pooling_mode `{other}`"
                ))),
            };
        }
        let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        let modes: Vec<Pooling> = [
            ("pooling_mode_cls_token", Pooling::Cls),
            ("pooling_mode_mean_tokens", Pooling::Mean),
            ("pooling_mode_max_tokens", Pooling::Max),
            ("pooling_mode_mean_sqrt_len_tokens", Pooling::MeanSqrtLen),
            ("pooling_mode_lasttoken", Pooling::LastToken),
        ]
        .into_iter()
        .filter(|(k, _)| flag(k))
        .map(|(_, p)| p)
        .collect();
        if flag("pooling_mode_weightedmean_tokens") {
            return Err(ModelError::Config(
                "weighted-mean pooling is not supported".into(),
            ));
        }
        match modes.as_slice() {
            [one] => Ok(*one),
            [] => Err(ModelError::Config("pooling config selects no mode".into())),
            _ => Err(ModelError::Config(format!(
                "combined pooling modes {:?} are not supported",
                modes.iter().map(|m| m.name()).collect::<Vec<_>>()
            ))),
        }
    }

    /// Pools `len` rows of `h` floats (one sequence's token states, no padding).
    pub fn pool(self, rows: &[f32], h: usize, out: &mut [f32]) {
        let len = rows.len() / h;
        debug_assert!(len > 0 && out.len() == h);
        match self {
            Pooling::Cls => out.copy_from_slice(&rows[..h]),
            Pooling::LastToken => out.copy_from_slice(&rows[(len - 1) * h..]),
            Pooling::Mean | Pooling::MeanSqrtLen => {
                out.fill(0.0);
                for r in rows.chunks_exact(h) {
                    for (o, v) in out.iter_mut().zip(r) {
                        *o += v;
                    }
                }
                let div = if self == Pooling::Mean {
                    len as f32
                } else {
                    (len as f32).sqrt()
                };
                out.iter_mut().for_each(|o| *o /= div);
            }
            Pooling::Max => {
                out.fill(f32::NEG_INFINITY);
                for r in rows.chunks_exact(h) {
                    for (o, v) in out.iter_mut().zip(r) {
                        *o = o.max(*v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_config_forms() {
        let old = json!({"word_embedding_dimension": 384, "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false});
        assert_eq!(Pooling::from_config(&old).unwrap(), Pooling::Mean);
        assert_eq!(
            Pooling::from_config(&json!({"pooling_mode": "cls"})).unwrap(),
            Pooling::Cls
        );
        assert_eq!(
            Pooling::from_config(&json!({"pooling_mode": "lasttoken"})).unwrap(),
            Pooling::LastToken
        );
        assert!(Pooling::from_config(
            &json!({"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true})
        )
        .is_err());
    }

    #[test]
    fn pool_values() {
        let rows = [1.0, 2.0, 3.0, -4.0, 5.0, 0.0];
        let mut out = [0.0; 2];
        Pooling::Mean.pool(&rows, 2, &mut out);
        assert_eq!(out, [3.0, -2.0 / 3.0]);
        Pooling::Max.pool(&rows, 2, &mut out);
        assert_eq!(out, [5.0, 2.0]);
        Pooling::Cls.pool(&rows, 2, &mut out);
        assert_eq!(out, [1.0, 2.0]);
        Pooling::LastToken.pool(&rows, 2, &mut out);
        assert_eq!(out, [5.0, 0.0]);
    }
}
