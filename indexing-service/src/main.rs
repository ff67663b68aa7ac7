//! indexing-service: collections of vectors on disk, HNSW/PQ and filtered
//! search (port 8000). The storage engine, index and HTTP API are being built
//! (issues 3, 4 and 5); until then this binary validates the shared config
//! and says so.

fn main() {
    match shared::config::Config::load() {
        Ok(c) => {
            eprintln!(
                "indexing-service: config valid (data_dir {}, embedding service {}); \
                 the service itself is not built yet",
                c.indexing.data_dir.display(),
                c.indexing.embedding_service_url
            );
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("indexing-service: {e}");
            std::process::exit(2);
        }
    }
}
