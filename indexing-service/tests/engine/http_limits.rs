//! Connection limits of the real router, served through the shared serving
//! loop (`shared::http::serve`) on 127.0.0.1:0: slow and stalled request
//! heads, slow and stalled bodies, idle keep-alive connections, the
//! connection cap, and ordinary keep-alive traffic. The limits are set
//! through the config tree (`INDEXING__HTTP__*`, as an operator would) and are
//! small, so each case takes about a second. Clients are plain blocking
//! sockets, so the bytes on the wire are exactly the ones written here.

use shared::config::Config;
use shared::http::{serve, ServerLimits};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Slack on top of a limit for the server to act on it, on a busy machine.
const MARGIN: Duration = Duration::from_millis(1500);

/// The indexing service's router on its own runtime; stopped on drop.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts it with these `INDEXING__...` overrides.
    fn start(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = vec![
            (
                "INDEXING__DATA_DIR".to_string(),
                dir.path().display().to_string(),
            ),
            // Never called: these tests embed nothing.
            (
                "EMBEDDING_SERVICE_URL".to_string(),
                "http://127.0.0.1:9".to_string(),
            ),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::load_from(None, vars).unwrap().indexing;
        let limits = ServerLimits::from(&config.http);
        let state = indexing_service::state(config).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = rt.spawn(serve(
            listener,
            indexing_service::app(state),
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            stop: Some(stop),
            done: Some(done),
            rt,
            _dir: dir,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), done).await });
        }
    }
}

/// Reads until the server closes the connection (EOF or reset) or `within`
/// passes. Returns what arrived and whether it was closed.
fn read_to_close(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return (String::from_utf8_lossy(&got).into_owned(), false);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (String::from_utf8_lossy(&got).into_owned(), false)
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
}

/// Reads one response (head, then a `Content-Length` body) within `within`;
/// `None` when it does not arrive in time or the connection closes first.
fn read_response(s: &mut TcpStream, within: Duration) -> Option<(u16, String)> {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                let body = String::from_utf8_lossy(&got[end + 4..end + 4 + len]).into_owned();
                return Some((status, body));
            }
        }
        let left = within.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

fn assert_closed_between(s: &mut TcpStream, t0: Instant, limit: Duration, what: &str) -> String {
    let (got, closed) = read_to_close(s, limit + MARGIN);
    let took = t0.elapsed();
    assert!(
        closed,
        "{what}: still open after {took:?} (limit {limit:?})"
    );
    assert!(
        took >= limit.mul_f64(0.8),
        "{what}: closed after {took:?}, before the limit {limit:?}: something else closed it"
    );
    got
}

// -------------------------------------------------------------- request head

#[test]
fn stalled_partial_head_is_closed_after_the_header_timeout() {
    let limit = Duration::from_millis(400);
    let srv = Server::start(&[
        ("INDEXING__HTTP__HEADER_READ_TIMEOUT_MS", "400"),
        ("INDEXING__HTTP__IDLE_TIMEOUT_MS", "60000"),
    ]);
    let mut s = srv.connect();
    let t0 = Instant::now();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .unwrap();
    let got = assert_closed_between(&mut s, t0, limit, "partial head");
    assert!(!got.contains(" 200 "), "a partial head was answered: {got}");

    // A connection that sends nothing at all is closed the same way.
    let mut s = srv.connect();
    let t0 = Instant::now();
    let got = assert_closed_between(&mut s, t0, limit, "silent connection");
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
}

#[test]
fn head_sent_a_byte_at_a_time_does_not_extend_the_header_timeout() {
    let limit = Duration::from_millis(500);
    let srv = Server::start(&[
        ("INDEXING__HTTP__HEADER_READ_TIMEOUT_MS", "500"),
        ("INDEXING__HTTP__IDLE_TIMEOUT_MS", "60000"),
    ]);
    let mut s = srv.connect();
    let t0 = Instant::now();
    // A head that never ends, one byte every 50 ms.
    let drip = b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_at = None;
    for b in drip {
        if s.write_all(&[*b]).is_err() {
            closed_at = Some(t0.elapsed());
            break;
        }
        let (_, closed) = read_to_close(&mut s, Duration::from_millis(50));
        if closed {
            closed_at = Some(t0.elapsed());
            break;
        }
    }
    let took = closed_at.expect("the dripping head kept its connection open");
    assert!(
        took >= limit.mul_f64(0.8) && took <= limit + MARGIN,
        "closed after {took:?}, limit {limit:?}"
    );
}

// -------------------------------------------------------------- request body

fn post_head(path: &str, content_length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

fn assert_request_timeout(got: &str) {
    assert!(got.starts_with("HTTP/1.1 408"), "expected 408, got {got:?}");
    let body = got.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON error body");
    assert_eq!(v["error"]["code"], "request_timeout", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request body"),
        "{v}"
    );
}

#[test]
fn stalled_body_gets_408_and_is_closed_after_the_body_timeout() {
    let limit = Duration::from_millis(500);
    let srv = Server::start(&[
        ("INDEXING__HTTP__BODY_READ_TIMEOUT_MS", "500"),
        ("INDEXING__HTTP__IDLE_TIMEOUT_MS", "60000"),
    ]);
    // Content-Length 1000, 10 bytes sent, then nothing: on every body route.
    for path in ["/collections", "/search", "/collections/docs/points/scroll"] {
        let mut s = srv.connect();
        let t0 = Instant::now();
        s.write_all(post_head(path, 1000).as_bytes()).unwrap();
        s.write_all(br#"{"name": ""#).unwrap();
        let got = assert_closed_between(&mut s, t0, limit, path);
        assert_request_timeout(&got);
    }
}

#[test]
fn body_sent_a_byte_at_a_time_does_not_extend_the_body_timeout() {
    let limit = Duration::from_millis(500);
    let srv = Server::start(&[
        ("INDEXING__HTTP__BODY_READ_TIMEOUT_MS", "500"),
        ("INDEXING__HTTP__IDLE_TIMEOUT_MS", "60000"),
    ]);
    let mut s = srv.connect();
    let t0 = Instant::now();
    s.write_all(post_head("/collections", 1000).as_bytes())
        .unwrap();
    let mut got = String::new();
    let mut closed = false;
    while t0.elapsed() < limit + MARGIN {
        if s.write_all(b" ").is_err() {
            closed = true;
            break;
        }
        let (more, c) = read_to_close(&mut s, Duration::from_millis(50));
        got.push_str(&more);
        if c {
            closed = true;
            break;
        }
    }
    let took = t0.elapsed();
    assert!(closed, "a dripping body kept its connection for {took:?}");
    assert!(took >= limit.mul_f64(0.8), "closed after {took:?}");
    assert_request_timeout(&got);
}

#[test]
fn unread_body_does_not_keep_the_connection() {
    // A route that ignores its body answers, and the rest of the body is not
    // waited for: the connection closes at once, not after any timeout.
    let srv = Server::start(&[
        ("INDEXING__HTTP__BODY_READ_TIMEOUT_MS", "30000"),
        ("INDEXING__HTTP__HEADER_READ_TIMEOUT_MS", "30000"),
        ("INDEXING__HTTP__IDLE_TIMEOUT_MS", "30000"),
    ]);
    let mut s = srv.connect();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n0123456789")
        .unwrap();
    let (got, closed) = read_to_close(&mut s, MARGIN);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(closed, "the connection waited for the unread body");
}

#[test]
fn complete_body_within_the_limit_is_served() {
    let srv = Server::start(&[("INDEXING__HTTP__BODY_READ_TIMEOUT_MS", "800")]);
    let mut s = srv.connect();
    let body = br#"{"name": "docs", "dimension": 3}"#;
    s.write_all(post_head("/collections", body.len()).as_bytes())
        .unwrap();
    // Two halves with a pause well inside the limit.
    s.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(&body[10..]).unwrap();
    let (status, body) = read_response(&mut s, MARGIN).expect("an answer");
    assert!(status == 200 || status == 201, "{status} {body}");
}

// ------------------------------------------------------------- idle and alive

#[test]
fn keep_alive_connection_serves_requests_in_turn() {
    let srv = Server::start(&[
        ("INDEXING__HTTP__HEADER_READ_TIMEOUT_MS", "2000"),
        ("INDEXING__HTTP__BODY_READ_TIMEOUT_MS", "2000"),
        ("INDEXING__HTTP__IDLE_TIMEOUT_MS", "2000"),
    ]);
    let mut s = srv.connect();
    for _ in 0..3 {
        s.write_all(get("/health").as_bytes()).unwrap();
        let (status, body) = read_response(&mut s, MARGIN).expect("an answer");
        assert_eq!(status, 200, "{body}");
    }
    // A request with a body, then one after it, on the same connection.
    let body = br#"{"name": "docs", "dimension": 3}"#;
    s.write_all(post_head("/collections", body.len()).as_bytes())
        .unwrap();
    s.write_all(body).unwrap();
    let (status, text) = read_response(&mut s, MARGIN).expect("an answer");
    assert!(status == 200 || status == 201, "{status} {text}");
    s.write_all(get("/collections/docs").as_bytes()).unwrap();
    let (status, text) = read_response(&mut s, MARGIN).expect("an answer");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("docs"), "{text}");
    // A pause shorter than every limit keeps the connection.
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(get("/health").as_bytes()).unwrap();
    assert_eq!(read_response(&mut s, MARGIN).expect("an answer").0, 200);
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    // The header clock starts when the server waits for the next request.
    let limit = Duration::from_millis(500);
    let srv = Server::start(&[
        ("INDEXING__HTTP__HEADER_READ_TIMEOUT_MS", "500"),
        ("INDEXING__HTTP__IDLE_TIMEOUT_MS", "60000"),
    ]);
    let mut s = srv.connect();
    s.write_all(get("/health").as_bytes()).unwrap();
    assert_eq!(read_response(&mut s, MARGIN).expect("an answer").0, 200);
    let t0 = Instant::now();
    let rest = assert_closed_between(&mut s, t0, limit, "idle keep-alive");
    assert!(!rest.contains(" 200 "), "{rest}");
}

#[test]
fn idle_timeout_closes_a_quiet_connection_sooner() {
    let limit = Duration::from_millis(400);
    let srv = Server::start(&[
        ("INDEXING__HTTP__HEADER_READ_TIMEOUT_MS", "30000"),
        ("INDEXING__HTTP__IDLE_TIMEOUT_MS", "400"),
    ]);
    // After a response...
    let mut s = srv.connect();
    s.write_all(get("/health").as_bytes()).unwrap();
    assert_eq!(read_response(&mut s, MARGIN).expect("an answer").0, 200);
    let t0 = Instant::now();
    assert_closed_between(&mut s, t0, limit, "idle after a response");
    // ...and in the middle of a head that stopped.
    let mut s = srv.connect();
    let t0 = Instant::now();
    s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    assert_closed_between(&mut s, t0, limit, "stalled head");
}

// ---------------------------------------------------------- connection cap

#[test]
fn connections_past_the_cap_wait_until_stalled_ones_are_closed() {
    let header = Duration::from_millis(800);
    let srv = Server::start(&[
        ("INDEXING__HTTP__MAX_CONNECTIONS", "4"),
        ("INDEXING__HTTP__HEADER_READ_TIMEOUT_MS", "800"),
        ("INDEXING__HTTP__IDLE_TIMEOUT_MS", "60000"),
    ]);
    let t0 = Instant::now();
    // Four stalled connections take every slot...
    let mut stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = srv.connect();
            s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // ...so two more, with complete requests, are not served meanwhile.
    let mut waiting: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = srv.connect();
            s.write_all(get("/health").as_bytes()).unwrap();
            s
        })
        .collect();
    for s in &mut waiting {
        assert_eq!(
            read_response(s, Duration::from_millis(300)),
            None,
            "a connection past the cap was served while the cap was full"
        );
    }
    // Once the header timeout closes the stalled ones, the waiting ones are
    // served, and so is a new one.
    for s in &mut waiting {
        let (status, body) =
            read_response(s, header + MARGIN).expect("served once slots were free");
        assert_eq!(status, 200, "{body}");
    }
    assert!(t0.elapsed() >= header.mul_f64(0.8));
    for s in &mut stalled {
        let (_, closed) = read_to_close(s, MARGIN);
        assert!(closed, "a stalled connection outlived the header timeout");
    }
    let mut s = srv.connect();
    s.write_all(get("/health").as_bytes()).unwrap();
    assert_eq!(read_response(&mut s, MARGIN).expect("an answer").0, 200);
}

#[test]
fn a_slot_frees_as_soon_as_its_client_leaves() {
    let srv = Server::start(&[
        ("INDEXING__HTTP__MAX_CONNECTIONS", "2"),
        ("INDEXING__HTTP__HEADER_READ_TIMEOUT_MS", "30000"),
        ("INDEXING__HTTP__IDLE_TIMEOUT_MS", "30000"),
    ]);
    let held: Vec<TcpStream> = (0..2).map(|_| srv.connect()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut extra = srv.connect();
    extra.write_all(get("/health").as_bytes()).unwrap();
    assert_eq!(read_response(&mut extra, Duration::from_millis(300)), None);
    drop(held);
    let (status, _) = read_response(&mut extra, MARGIN).expect("served after the others left");
    assert_eq!(status, 200);
}
