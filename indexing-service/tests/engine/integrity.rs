//! Sealed segments carry checksums: damage to any file of a sealed segment
//! (its own files and the index layer's, for every index kind) makes
//! opening the segment, and so the collection, fail with an error naming
//! the file; undamaged segments open and serve exactly what was written.

use indexing_service::collection::{Collection, CollectionConfig, FlushThreshold, NewPoint};
use indexing_service::index::segment_index::{IndexKind, IndexSettings, Quantization};
use indexing_service::storage::segment::SealedSegment;
use indexing_service::storage::StorageError;
use serde_json::json;
use shared::wire::indexing::{Metric, PointId};
use std::path::{Path, PathBuf};

const DIM: usize = 16;
const POINTS: u64 = 300;

fn vector(i: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|d| ((i * 7 + d * 13) % 29) as f32 - 14.0 + 0.25)
        .collect()
}

/// A collection with one sealed, indexed segment (some points deleted
/// before sealing); returns the segment directory.
fn build(dir: &Path, index: IndexSettings) -> PathBuf {
    let mut cfg = CollectionConfig::new("c", DIM, Metric::Cosine);
    cfg.flush_threshold = FlushThreshold {
        vectors: 100_000,
        bytes: 1 << 30,
    };
    cfg.index = index;
    let c = Collection::create(dir, cfg).unwrap();
    c.upsert(
        (0..POINTS)
            .map(|i| NewPoint {
                id: Some(PointId::Num(i)),
                vector: vector(i),
                payload: Some(json!({"i": i})),
                content: (i % 2 == 0).then(|| format!("text {i}")),
            })
            .collect(),
    )
    .unwrap();
    c.delete(vec![PointId::Num(5), PointId::Num(77)]).unwrap();
    c.flush().unwrap();
    c.wait_idle();
    assert_eq!(c.info().indexed_segments, 1, "the segment was indexed");
    c.close();
    drop(c);
    let segs: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs.into_iter().next().unwrap()
}

/// What a reader sees: every point (vector, payload, content) and a search.
fn observe(dir: &Path) -> String {
    let c = Collection::open(dir).unwrap();
    let ids: Vec<PointId> = (0..POINTS).map(PointId::Num).collect();
    let pts = c.get(&ids).unwrap();
    let hits = c.search(&vector(3), 5, None).unwrap();
    let seen = format!("{pts:?}\n{hits:?}\n{}", c.count(None).unwrap());
    c.close();
    seen
}

fn check_every_file(index: IndexSettings, want_files: &[&str]) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    let seg = build(&dir, index);
    let mut files: Vec<String> = std::fs::read_dir(&seg)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected: Vec<String> = [
        "deleted.bin",
        "ids.bin",
        "meta.json",
        "content.dat",
        "content.idx",
        "payload.dat",
        "payload.idx",
        "text.bin",
        "vectors.f32",
    ]
    .iter()
    .chain(want_files)
    .map(|s| s.to_string())
    .collect();
    expected.sort();
    assert_eq!(files, expected, "files of the sealed segment");
    let before = observe(&dir);
    assert!(
        before.ends_with(&format!("\n{}", POINTS - 2)),
        "two points deleted"
    );
    for file in &files {
        let path = seg.join(file);
        let orig = std::fs::read(&path).unwrap();
        let mid = orig.len() / 2;
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        for at in [0, mid, orig.len() - 1] {
            let mut b = orig.clone();
            b[at] ^= 0x01;
            cases.push((format!("byte {at} flipped"), b));
        }
        cases.push((
            "truncated by one byte".into(),
            orig[..orig.len() - 1].to_vec(),
        ));
        let mut longer = orig.clone();
        longer.push(b' ');
        cases.push(("one byte appended".into(), longer));
        for (what, bytes) in cases {
            std::fs::write(&path, &bytes).unwrap();
            match SealedSegment::open(&seg) {
                Err(StorageError::Corrupt { path: p, message }) => {
                    assert_eq!(p, path, "{file} {what}: {message}")
                }
                Err(e) => panic!("{file} {what}: expected a corrupt-data error, got {e}"),
                Ok(_) => panic!("{file} {what}: the damaged segment opened"),
            }
            match Collection::open(&dir) {
                Err(e) => assert!(e.to_string().contains(file.as_str()), "{file} {what}: {e}"),
                Ok(_) => panic!("{file} {what}: the collection opened"),
            }
        }
        std::fs::write(&path, &orig).unwrap();
    }
    assert_eq!(observe(&dir), before, "restored files serve the same data");
}

fn settings(kind: IndexKind, quantization: Quantization) -> IndexSettings {
    IndexSettings {
        kind,
        quantization,
        min_points: 50,
        ..IndexSettings::default()
    }
}

#[test]
fn hnsw_sq8_segment_files_are_all_verified() {
    check_every_file(
        settings(IndexKind::Hnsw, Quantization::default()),
        &["hnsw.bin", "sq8.bin"],
    );
}

#[test]
fn hnsw_f32_segment_files_are_all_verified() {
    check_every_file(settings(IndexKind::Hnsw, Quantization::None), &["hnsw.bin"]);
}

#[test]
fn hnsw_pq_segment_files_are_all_verified() {
    check_every_file(
        settings(
            IndexKind::Hnsw,
            Quantization::Pq {
                subvectors: 4,
                oversampling: 4.0,
            },
        ),
        &["hnsw.bin", "pq.bin"],
    );
}

#[test]
fn ivf_pq_segment_files_are_all_verified() {
    check_every_file(
        settings(IndexKind::IvfPq, Quantization::default()),
        &["ivf.bin"],
    );
}
