//! indexing-service integration tests (one binary): the storage engine and
//! the vector index, through the collection API; sealed-segment integrity.

mod integrity;
mod recall;
mod storage;
