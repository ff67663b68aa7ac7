//! indexing-service integration tests (one binary): the storage engine and
//! the vector index, through the collection API and the in-process router.

mod faults;
mod filter_numbers;
mod filtered;
mod http;
mod integrity;
mod limits;
mod recall;
mod storage;
