//! indexing-service integration tests (one binary): the storage engine and
//! the vector index, through the collection API.

mod recall;
mod storage;
