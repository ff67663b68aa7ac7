//! indexing-service integration tests (one binary): the storage engine and
//! the vector index, through the collection API.

mod filter_numbers;
mod recall;
mod storage;
