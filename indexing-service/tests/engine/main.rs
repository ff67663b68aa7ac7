//! indexing-service integration tests (one binary): the storage engine and
//! the vector index, through the collection API; the HTTP connection limits
//! through the real router.

mod http_limits;
mod recall;
mod storage;
