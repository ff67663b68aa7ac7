//! The real embedding-service binary driven by the third-party clients
//! people already use: `openai`, `langchain-openai` (`OpenAIEmbeddings` with
//! its defaults) and `huggingface_hub.InferenceClient`, pinned in
//! `scripts/test.sh`, through `tests/python/third_party_clients.py`.
//!
//! The service serves the test model from a directory that links its files
//! and adds a `config_sentence_transformers.json` with prompts, so
//! `prompt_name` is exercised on real weights.

use e2e_tests::{bin, free_port, workspace_root, Proc};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where `embedding-service fetch-model` keeps the model (it prints the
/// directory; offline it finds the cache).
fn model_dir() -> PathBuf {
    let out = std::process::Command::new(bin("embedding-service"))
        .arg("fetch-model")
        .current_dir(workspace_root())
        .output()
        .expect("run embedding-service fetch-model");
    assert!(
        out.status.success(),
        "fetch-model failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A model directory at `dir`: links to every file of `src` but its
/// `config_sentence_transformers.json`, which is written with `prompts`.
fn model_with_prompts(src: &Path, dir: &Path, prompts: &str) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_name() == "config_sentence_transformers.json" {
            continue;
        }
        let target = std::fs::canonicalize(e.path()).unwrap();
        std::os::unix::fs::symlink(target, dir.join(e.file_name())).unwrap();
    }
    std::fs::write(dir.join("config_sentence_transformers.json"), prompts).unwrap();
}

#[test]
fn openai_langchain_and_huggingface_hub_clients_work() {
    let Ok(py) = std::env::var("E2E_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this through scripts/test.sh"
        );
        eprintln!("skipped: run through scripts/test.sh, which installs the Python clients");
        return;
    };
    let dir = std::env::temp_dir().join(format!("all-MiniLM-L6-v2-prompts-{}", std::process::id()));
    model_with_prompts(
        &model_dir(),
        &dir,
        r#"{"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": null}"#,
    );
    let port = free_port();
    let p = port.to_string();
    let d = dir.to_string_lossy().to_string();
    let mut svc = Proc::spawn(
        "embedding-service",
        port,
        &[
            ("EMBEDDING__PORT", &p),
            ("EMBEDDING__HOST", "127.0.0.1"),
            ("EMBEDDING__MODEL__PATH", &d),
        ],
    );
    svc.wait_healthy(Duration::from_secs(120));
    let out = std::process::Command::new(py)
        .arg(workspace_root().join("tests/python/third_party_clients.py"))
        .arg(&svc.url)
        .arg(workspace_root().join("tests/fixtures/wordnet-3000.tsv"))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(svc);
    std::fs::remove_dir_all(&dir).ok();
    assert!(out.status.success(), "third-party clients failed:\n{text}");
    assert!(text.contains("all checks passed"), "{text}");
    eprintln!("{text}");
}
