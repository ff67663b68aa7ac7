//! Exit codes by kind of failure, and the one place errors are printed.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | unexpected failure |
//! | 2 | wrong command line (clap's usage errors) |
//! | 3 | the service cannot be reached (refused, timed out) after retries |
//! | 4 | the API key is missing or wrong (401/403) |
//! | 5 | not found (404: no such collection, point or snapshot) |
//! | 6 | already exists (409) |
//! | 7 | invalid input: the server refused the request (400/413/422...) or the input file is malformed |
//! | 8 | the server failed or stayed unavailable after retries (5xx, 429) |
//! | 9 | a local file could not be read or written |
//! | 130 | interrupted by Ctrl-C (an import can be resumed by running it again) |

use vdb_client::{ClientError, ErrorKind};

pub const UNEXPECTED: i32 = 1;
pub const UNREACHABLE: i32 = 3;
pub const UNAUTHORIZED: i32 = 4;
pub const NOT_FOUND: i32 = 5;
pub const CONFLICT: i32 = 6;
pub const INVALID: i32 = 7;
pub const SERVER: i32 = 8;
pub const IO: i32 = 9;
pub const INTERRUPTED: i32 = 130;

/// The exit-code table as printed at the end of `vdb --help`.
pub const HELP: &str = "Exit codes: 0 success; 1 unexpected failure; 2 wrong command line; \
3 service unreachable (after retries); 4 API key missing or wrong (401/403); \
5 not found (404); 6 already exists (409); 7 invalid input (a 4xx refusal, or a malformed input file); \
8 server error or still unavailable after retries (5xx, 429); 9 local file error; \
130 interrupted (Ctrl-C; rerun an import to resume).";

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    /// From a client error: the server's words and its kind's code.
    pub fn client(e: ClientError) -> Self {
        let code = match e.kind() {
            ErrorKind::Unreachable => UNREACHABLE,
            ErrorKind::Unauthorized => UNAUTHORIZED,
            ErrorKind::NotFound => NOT_FOUND,
            ErrorKind::Conflict => CONFLICT,
            ErrorKind::InvalidRequest => INVALID,
            ErrorKind::Unavailable | ErrorKind::Server => SERVER,
            ErrorKind::Io => IO,
        };
        Self {
            code,
            message: e.to_string(),
        }
    }

    /// A malformed input file or option (exit 7).
    pub fn input(e: anyhow::Error) -> Self {
        Self {
            code: INVALID,
            message: format!("{e:#}"),
        }
    }

    /// A local file that cannot be read or written (exit 9).
    pub fn io(e: anyhow::Error) -> Self {
        Self {
            code: IO,
            message: format!("{e:#}"),
        }
    }

    /// Anything else (exit 1).
    pub fn other(e: anyhow::Error) -> Self {
        Self {
            code: UNEXPECTED,
            message: format!("{e:#}"),
        }
    }

    /// Adds advice after the message.
    pub fn with_hint(mut self, hint: &str) -> Self {
        self.message = format!("{}: {hint}", self.message);
        self
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::client(e)
    }
}
