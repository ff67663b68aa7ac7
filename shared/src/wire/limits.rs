//! Bounds of every size a client of the indexing service controls: beam
//! widths, list lengths, page sizes, batch sizes and collection settings.
//!
//! Invariant: no allocation in the service is sized by a client value that
//! has not passed one of these bounds. The handlers check them (a 422 whose
//! message names the field and the bound, built by [`check_range`] and
//! [`check_len`]); the OpenAPI schema states the same numbers through
//! `#[schema(minimum = .., maximum = .., max_items = ..)]` (utoipa takes
//! literals there, so a test compares the generated document with these
//! constants); the index layer clamps values read back from older
//! `collection.json` files to them at search and build time.

/// `top_k` of a search: results per query, 1..=1000.
pub const MIN_TOP_K: usize = 1;
pub const MAX_TOP_K: usize = 1_000;

/// HNSW beam width at query time (`ef` per query and `hnsw.ef`), 1..=4096.
pub const MIN_EF: usize = 1;
pub const MAX_EF: usize = 4_096;

/// HNSW beam width while building (`hnsw.ef_construction`), 1..=4096.
pub const MIN_EF_CONSTRUCTION: usize = 1;
pub const MAX_EF_CONSTRUCTION: usize = 4_096;

/// HNSW links per node on upper levels (`hnsw.m`), 2..=256; level 0 keeps
/// `2·m`, and the graph file holds at most 512 level-0 links per node.
pub const MIN_M: usize = 2;
pub const MAX_M: usize = 256;
// The graph file refuses more than 512 level-0 links (2·m) per node.
const _: () = assert!(2 * MAX_M <= 512);

/// IVF coarse lists (`ivf.nlist`), 0..=65536; 0 picks about 4·√n per
/// segment (and never more lists than points).
pub const MIN_NLIST: usize = 0;
pub const MAX_NLIST: usize = 65_536;

/// IVF lists scanned per query (`nprobe` per query and `ivf.nprobe`),
/// 1..=65536 (and never more than the segment's lists).
pub const MIN_NPROBE: usize = 1;
pub const MAX_NPROBE: usize = 65_536;

/// Re-scoring factor of SQ8 and PQ (`quantization.oversampling`), 1..=100.
pub const MIN_OVERSAMPLING: f32 = 1.0;
pub const MAX_OVERSAMPLING: f32 = 100.0;

/// Vector dimension of a collection (`dimension`), 1..=65536.
pub const MIN_DIMENSION: usize = 1;
pub const MAX_DIMENSION: usize = 65_536;

/// PQ bytes per vector (`quantization.subvectors`), 0..=65536 (0 =
/// the largest divisor of the dimension up to dimension / 8); it must also
/// divide the dimension.
pub const MIN_SUBVECTORS: usize = 0;
pub const MAX_SUBVECTORS: usize = MAX_DIMENSION;

/// Page size of a scroll (`limit`), 1..=10000.
pub const MIN_SCROLL_LIMIT: usize = 1;
pub const MAX_SCROLL_LIMIT: usize = 10_000;

/// Ids in one `POST /collections/{name}/points/delete` (`ids`), at most 10000.
pub const MAX_DELETE_IDS: usize = 10_000;

/// Points in one upsert (`points`), at most 10000.
pub const MAX_UPSERT_POINTS: usize = 10_000;

/// Ids in one `POST /collections/{name}/points` (retrieve by `ids`), at
/// most 10000 (the same bound as a delete by ids).
pub const MAX_GET_IDS: usize = MAX_DELETE_IDS;

/// Longest string point id, in bytes (UTF-8); string ids are 1..=256 bytes.
pub const MAX_STRING_ID_BYTES: usize = 256;

/// Documents in one `POST /embed` (`documents`), 1..=10000. The indexing
/// service splits them into calls that fit the embedding service's
/// `max_client_batch_size` and body limit, so that service's limits do not
/// bound this one.
pub const MAX_EMBED_DOCUMENTS: usize = 10_000;

/// Searches in one batch (`searches`), at most 100.
pub const MAX_BATCH_SEARCHES: usize = 100;

/// Vectors after which the appendable segment is sealed
/// (`flush_threshold.vectors`), 1..=10,000,000.
pub const MIN_FLUSH_VECTORS: usize = 1;
pub const MAX_FLUSH_VECTORS: usize = 10_000_000;
/// Bounds of a collection's `max_segment_size`, in KiB of vectors (one
/// KiB up to 1 TiB).
pub const MIN_MAX_SEGMENT_SIZE_KB: usize = 1;
pub const MAX_MAX_SEGMENT_SIZE_KB: usize = 1 << 30;
/// Default `max_segment_size`: 2,000,000 KiB of vectors (about 1.3
/// million 384-dimension points, 333,000 of 1,536 dimensions).
pub const DEFAULT_MAX_SEGMENT_SIZE_KB: usize = 2_000_000;

/// Bytes after which the appendable segment is sealed
/// (`flush_threshold.bytes`), 1..=16 GiB.
pub const MIN_FLUSH_BYTES: usize = 1;
pub const MAX_FLUSH_BYTES: usize = 16 << 30;

/// Checks `min <= value <= max`. Returns `Err` with a message that names
/// `field` and the bound, e.g. "`ef` must be between 1 and 4096, got
/// 10000000000".
pub fn check_range<T>(field: &str, value: T, min: T, max: T) -> Result<(), String>
where
    T: PartialOrd + std::fmt::Display,
{
    // Written so that NaN fails too.
    if value >= min && value <= max {
        Ok(())
    } else {
        Err(format!(
            "`{field}` must be between {min} and {max}, got {value}"
        ))
    }
}

/// Checks that a list holds at most `max` items. Returns `Err` with a
/// message that names `field` and the bound, e.g. "`points` may hold at
/// most 10000 items, got 10001".
pub fn check_len(field: &str, len: usize, max: usize) -> Result<(), String> {
    if len <= max {
        Ok(())
    } else {
        Err(format!("`{field}` may hold at most {max} items, got {len}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_messages_name_the_field_and_the_bound() {
        assert!(check_range("ef", 1usize, MIN_EF, MAX_EF).is_ok());
        assert!(check_range("ef", MAX_EF, MIN_EF, MAX_EF).is_ok());
        assert_eq!(
            check_range("ef", 10_000_000_000usize, MIN_EF, MAX_EF).unwrap_err(),
            "`ef` must be between 1 and 4096, got 10000000000"
        );
        assert!(check_range("ef", 0usize, MIN_EF, MAX_EF).is_err());
        let e = check_range("quantization.oversampling", f32::NAN, 1.0, 100.0).unwrap_err();
        assert!(e.contains("`quantization.oversampling`"), "{e}");
        assert!(check_range("o", 100.5f32, MIN_OVERSAMPLING, MAX_OVERSAMPLING).is_err());
    }

    #[test]
    fn length_messages_name_the_field_and_the_bound() {
        assert!(check_len("points", MAX_UPSERT_POINTS, MAX_UPSERT_POINTS).is_ok());
        assert_eq!(
            check_len("points", MAX_UPSERT_POINTS + 1, MAX_UPSERT_POINTS).unwrap_err(),
            "`points` may hold at most 10000 items, got 10001"
        );
    }
}
