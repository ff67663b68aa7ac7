//! indexing-service: collections of vectors with payloads on disk and
//! filtered top-k search.
//!
//! Layers, depending one way: `storage` (files: WAL, segments, atomic
//! writes) → `index` (distance kernels, filters, scans) → `collection`
//! (write path, read path, flush, vacuum, restart). The HTTP API is the
//! next layer up (issue 5).

pub mod collection;
pub mod index;
pub mod storage;
