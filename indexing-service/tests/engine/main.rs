//! indexing-service integration tests (one binary): the storage engine and
//! the vector index, through the collection API; the bounds on client
//! sizes, through the HTTP router driven in-process.

mod limits;
mod recall;
mod storage;
