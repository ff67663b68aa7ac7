//! indexing-service integration tests (one binary): the storage engine and
//! the vector index, through the collection API and the in-process router.

mod api_rules;
mod bm25;
mod contract;
mod faults;
mod filter_numbers;
mod filtered;
mod http;
mod http_limits;
mod idle;
mod integrity;
mod limits;
mod magnitudes;
mod payload_index;
mod query;
mod recall;
mod replicas;
mod snapshots;
mod storage;
mod surface;
