//! Helpers for the cross-service end-to-end tests: find the built binaries,
//! start them on free ports with their own config, wait for health, and
//! stop them (SIGTERM or SIGKILL) when done.
//!
//! The binaries are the ones `cargo build --workspace` made (the README's
//! test command builds them before `cargo test`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of a workspace binary in the debug (or `E2E_PROFILE`) target dir.
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let profile = std::env::var("E2E_PROFILE").unwrap_or_else(|_| "debug".into());
    let p = target.join(profile).join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace` first",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A started service; killed on drop.
pub struct Proc {
    pub child: Child,
    pub url: String,
}

impl Proc {
    pub fn spawn(name: &str, port: u16, env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(bin(name));
        cmd.current_dir(workspace_root())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn service");
        Proc {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Polls `/health` until 200 or the deadline.
    pub fn wait_healthy(&mut self, within: Duration) {
        let http = reqwest::blocking::Client::new();
        let t0 = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/health", self.url)).send() {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "service exited with {st} before becoming healthy: {}",
                    self.stderr()
                );
            }
            assert!(t0.elapsed() < within, "not healthy within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit, up to `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn stderr(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(e) = self.child.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends every operation of `spec` as Swagger UI's "Try it out" would with
/// nothing edited: path parameters and request body from the spec's
/// examples. `order` lists every operation once, as `(method, path)`, in
/// the order to send them; `skip` lists the operations whose examples name
/// things that exist only at run time (a snapshot file), which are not sent.
/// `order` and `skip` together must be exactly the spec's operations.
/// Returns one line per operation that did not answer 2xx (empty when all
/// did).
pub fn send_examples(
    base: &str,
    spec: &serde_json::Value,
    order: &[(&str, &str)],
    skip: &[(&str, &str)],
) -> Vec<String> {
    use shared::openapi::json::{example_path, operations, request_example};
    let ops = operations(spec);
    let mut listed: Vec<(String, String)> = order
        .iter()
        .chain(skip)
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    listed.sort();
    let mut in_spec: Vec<(String, String)> = ops
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.clone()))
        .collect();
    in_spec.sort();
    assert_eq!(
        listed, in_spec,
        "the order must list every operation of the spec"
    );
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let mut failures = Vec::new();
    for (method, path) in order {
        let (_, _, op) = ops
            .iter()
            .find(|(m, p, _)| m == method && p == path)
            .unwrap();
        let url = format!(
            "{base}{}",
            example_path(path, op).unwrap_or_else(|| panic!("{method} {path}: no path example"))
        );
        let mut req = http.request(method.to_uppercase().parse().unwrap(), &url);
        if op.get("requestBody").is_some() {
            let body = request_example(spec, op)
                .unwrap_or_else(|| panic!("{method} {path}: no request example"));
            req = req.json(&body);
        }
        let resp = req.send().unwrap();
        let status = resp.status();
        if !status.is_success() {
            failures.push(format!(
                "{method} {path} ({url}): {status} {}",
                resp.text().unwrap_or_default()
            ));
        }
    }
    failures
}
