//! Types both services share: configuration, wire types (with OpenAPI schemas),
//! the JSON error body with its stable codes, and the HTTP client for the
//! embedding service.
//!
//! Invariant: this crate holds no model code and no storage code; both services
//! depend on it and never on each other.

pub mod client;
pub mod config;
pub mod error;
pub mod http;
pub mod logging;
pub mod openapi;
pub mod wire;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
