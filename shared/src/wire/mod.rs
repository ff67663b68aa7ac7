//! Request and response bodies, with OpenAPI schemas.

pub mod embedding;
pub mod indexing;
pub mod limits;
pub mod query;
pub mod snapshot;
pub mod vector;
