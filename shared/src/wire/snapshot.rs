//! Wire types of snapshots (Qdrant's shape): create, list, download,
//! delete and recover, for one collection (`/collections/{name}/snapshots`)
//! or for the whole storage (`/snapshots`).
//!
//! A snapshot is one tar file on the server (format in `docs/SNAPSHOTS.md`):
//! a `snapshot.json` manifest with the format version, the collection
//! config, the last operation number it holds and the SHA-256 of every file,
//! then the files. Its description carries the SHA-256 of the whole tar
//! file, which a download also sends in the [`CHECKSUM_HEADER`] header.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Response header of a snapshot download: the SHA-256 of the file, as 64
/// lowercase hex digits (the same as [`SnapshotDescription::checksum`]).
pub const CHECKSUM_HEADER: &str = "x-checksum-sha256";

/// Media type of a snapshot file (a POSIX tar archive).
pub const SNAPSHOT_MEDIA_TYPE: &str = "application/x-tar";

/// What a snapshot name must match: 1 to 200 of `A-Z a-z 0-9 _ - .`, not
/// starting with a dot, ending in `.snapshot`. Names come from the server;
/// a name outside this pattern is never a snapshot (404).
pub const SNAPSHOT_NAME_PATTERN: &str = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,190}\.snapshot$";

/// One snapshot file on the server. `POST /collections/{name}/snapshots`
/// and `POST /snapshots` answer with it; listings hold one per file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "name": "docs-2026-12-01-07-30-00-1.snapshot",
    "creation_time": "2026-12-01T07:30:00.123Z",
    "size": 1048576,
    "checksum": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
}))]
pub struct SnapshotDescription {
    /// File name; the `{snapshot}` of the download and delete routes.
    pub name: String,
    /// When the snapshot was made, RFC 3339 in UTC (`2026-12-01T07:30:00.123Z`).
    pub creation_time: String,
    /// Size of the file in bytes.
    pub size: u64,
    /// SHA-256 of the whole file, 64 lowercase hex digits.
    pub checksum: String,
}

/// `GET /collections/{name}/snapshots`, `GET /snapshots`: every complete
/// snapshot, oldest first (snapshots being written are never listed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListSnapshotsResponse {
    pub snapshots: Vec<SnapshotDescription>,
}

/// `POST /collections/{name}/snapshots/recover`: replace the collection
/// (create it if absent) with the contents of a snapshot file that is
/// already on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "location": "file:///var/lib/indexing/snapshots/docs/docs-2026-12-01-07-30-00-1.snapshot"
}))]
pub struct RecoverSnapshotRequest {
    /// Where the file is: an absolute path on the server, a `file://` URL,
    /// or the bare name of one of this collection's snapshots.
    pub location: String,
    /// Expected SHA-256 of the whole file (64 hex digits); when given and
    /// the file differs, nothing is restored (422 `snapshot_invalid`).
    #[serde(default)]
    pub checksum: Option<String>,
}

/// `?checksum=` of `POST /collections/{name}/snapshots/upload`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadSnapshotQuery {
    /// Expected SHA-256 of the uploaded file (64 hex digits); when given
    /// and the body differs, nothing is restored.
    #[serde(default)]
    pub checksum: Option<String>,
}

/// Answer of a restore: the collection now holds exactly the snapshot's
/// points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecoverSnapshotResponse {
    /// The collection restored (the `{name}` of the route).
    pub collection: String,
    /// The collection the snapshot was made of.
    pub source_collection: String,
    /// The last operation number the snapshot holds; the restored
    /// collection's next write gets a higher one.
    pub operation: u64,
    /// Live points in the restored collection.
    pub points: u64,
}

/// Answer of `DELETE .../snapshots/{snapshot}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeleteSnapshotResponse {
    /// The snapshot's file name, now gone.
    pub deleted: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_round_trip_with_qdrant_field_names() {
        let d = SnapshotDescription {
            name: "c-2026-12-01-07-30-00-1.snapshot".into(),
            creation_time: "2026-12-01T07:30:00.123Z".into(),
            size: 10,
            checksum: "ab".repeat(32),
        };
        let v = serde_json::to_value(&d).unwrap();
        for k in ["name", "creation_time", "size", "checksum"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(serde_json::from_value::<SnapshotDescription>(v).unwrap(), d);
    }

    #[test]
    fn recover_requests_refuse_unknown_fields() {
        let r: RecoverSnapshotRequest =
            serde_json::from_str(r#"{"location": "file:///x.snapshot"}"#).unwrap();
        assert_eq!(r.checksum, None);
        assert!(serde_json::from_str::<RecoverSnapshotRequest>(
            r#"{"location": "x", "priority": "snapshot"}"#
        )
        .is_err());
    }
}
