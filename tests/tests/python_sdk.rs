//! The Python SDK (`clients/python`, installed into the test venv by
//! `scripts/test.sh`) against the real binaries: LangChain's own standard
//! suites (`langchain-tests`: `VectorStoreIntegrationTests`,
//! `EmbeddingsIntegrationTests`) through `tests/python/test_langchain_standard.py`,
//! and the SDK's tests (sync and async clients, errors, API key, retries,
//! bulk upload, the LangChain store on the real model) through
//! `tests/python/test_sdk.py`. Each test starts its own embedding service
//! and indexing service (with an API key) on free ports and a fresh data
//! directory, and runs pytest with the services' addresses in `VECDB_URL`,
//! `VECDB_EMBEDDING_URL` and the key in `VECDB_API_KEY`.

use e2e_tests::{free_port, workspace_root, Proc};
use std::path::PathBuf;
use std::time::Duration;

const API_KEY: &str = "sdk-test-key";

/// Both services, started; the data directory is removed on drop.
struct Stack {
    emb: Proc,
    idx: Proc,
    data: PathBuf,
}

impl Stack {
    fn start(tag: &str) -> Stack {
        let data = std::env::temp_dir().join(format!("e2e-py-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let (ep, ip) = (free_port(), free_port());
        let (eps, ips) = (ep.to_string(), ip.to_string());
        let mut emb = Proc::spawn(
            "embedding-service",
            ep,
            &[("EMBEDDING__PORT", &eps), ("EMBEDDING__HOST", "127.0.0.1")],
        );
        emb.wait_healthy(Duration::from_secs(120));
        let d = data.to_string_lossy().to_string();
        let mut idx = Proc::spawn(
            "indexing-service",
            ip,
            &[
                ("INDEXING__PORT", &ips),
                ("INDEXING__HOST", "127.0.0.1"),
                ("INDEXING__DATA_DIR", &d),
                ("EMBEDDING_SERVICE_URL", &emb.url),
                ("INDEXING__API_KEY", API_KEY),
                ("INDEXING__EMBEDDING_TIMEOUT_MS", "60000"),
            ],
        );
        idx.wait_healthy(Duration::from_secs(60));
        Stack { emb, idx, data }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.idx.child.kill();
        let _ = self.emb.child.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Runs pytest on `module` (under `tests/python/`) against a fresh stack;
/// returns pytest's summary line, after asserting that it passed with
/// nothing failed or errored, and nothing skipped unless `allow_skips`
/// (pytest's `-rs` lists each skip with its reason in the output).
fn pytest(module: &str, allow_skips: bool) -> Option<String> {
    let Ok(py) = std::env::var("E2E_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this through scripts/test.sh"
        );
        eprintln!("skipped: run through scripts/test.sh, which installs the Python SDK");
        return None;
    };
    let stack = Stack::start(module.trim_end_matches(".py"));
    let out = std::process::Command::new(py)
        .args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"])
        .args([
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
        ])
        .arg(workspace_root().join("tests/python").join(module))
        .current_dir(workspace_root())
        .env("VECDB_URL", &stack.idx.url)
        .env("VECDB_EMBEDDING_URL", &stack.emb.url)
        .env("VECDB_API_KEY", API_KEY)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .expect("run pytest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(stack);
    assert!(out.status.success(), "pytest {module} failed:\n{text}");
    let summary = text
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_else(|| panic!("no pytest summary:\n{text}"));
    for bad in ["skipped", "failed", "error", "xfail"] {
        if bad == "skipped" && allow_skips {
            continue;
        }
        assert!(!summary.contains(bad), "pytest {module}: {summary}\n{text}");
    }
    eprintln!("{text}");
    Some(summary.to_string())
}

#[test]
fn langchain_standard_suites_pass() {
    let Some(summary) = pytest("test_langchain_standard.py", false) else {
        return;
    };
    // Two vector-store suites and the embeddings suite, every test run.
    let passed: usize = summary
        .split_whitespace()
        .zip(summary.split_whitespace().skip(1))
        .find(|(_, w)| w.starts_with("passed"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap();
    assert!(passed >= 55, "{summary}");
}

#[test]
fn python_sdk_tests_pass() {
    pytest("test_sdk.py", false);
}
