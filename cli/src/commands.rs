//! One function per command: call the client, print the answer. JSON
//! answers are printed as JSON (one document per line where there are
//! many) so they can be piped into `jq`.

use crate::exit::Failure;
use crate::source::{Format, Mapping};
use crate::{import, Cmd, CollectionsCmd, SnapshotCmd};
use anyhow::anyhow;
use std::path::PathBuf;
use vdb_client::{Client, CreateCollection, GetPointsRequest, Metric, PointId, SearchRequest};

/// Runs one command; returns the exit status.
pub async fn run(c: &Client, cmd: Cmd) -> Result<i32, Failure> {
    match cmd {
        Cmd::Collections(cmd) => collections(c, cmd).await?,
        Cmd::Import(a) => {
            let format = match a.format {
                Some(f) => f,
                None => Format::from_path(&a.file).map_err(Failure::input)?,
            };
            let job = import::ImportJob {
                file: a.file,
                format,
                collection: a.collection,
                mapping: Mapping {
                    id: a.id_field,
                    text: a.text_field,
                    vector: a.vector_field,
                    payload_fields: a.payload_fields,
                },
                batch_size: a.batch_size,
                max_batch_bytes: a.max_batch_bytes,
                parallel: a.parallel,
                create: a.create,
                skip_existing: !a.no_skip_existing,
                progress: !a.no_progress,
            };
            import::check(&job).map_err(Failure::input)?;
            return import::run(c, job).await;
        }
        Cmd::Export {
            collection,
            output,
            format,
            no_vectors,
            page_size,
        } => {
            let format = match format {
                Some(f) => f,
                None => Format::from_path(&output).map_err(Failure::input)?,
            };
            let n = crate::export::run(
                c,
                &collection,
                &output,
                format,
                !no_vectors,
                page_size as usize,
            )
            .await?;
            println!("exported {n} points to {}", output.display());
        }
        Cmd::Search {
            query,
            collection,
            top_k,
            filter,
            with_vector,
        } => {
            let filter = match filter {
                Some(f) => Some(
                    serde_json::from_str(&f)
                        .map_err(|e| Failure::input(anyhow!("--filter is not a filter: {e}")))?,
                ),
                None => None,
            };
            let req = SearchRequest {
                query: Some(query),
                top_k: Some(top_k as usize),
                filter,
                with_vector: Some(with_vector),
                ..Default::default()
            };
            let r = c.search(&collection, &req).await?;
            for hit in r.results {
                println!("{}", json(&hit));
            }
        }
        Cmd::Get {
            collection,
            ids,
            string_ids,
            with_vector,
        } => {
            let ids: Vec<PointId> = ids
                .into_iter()
                .map(|s| match (string_ids, s.parse::<u64>()) {
                    (false, Ok(n)) if n.to_string() == s => PointId::Num(n),
                    _ => PointId::Str(s),
                })
                .collect();
            let req = GetPointsRequest {
                ids: ids.clone(),
                with_vector: Some(with_vector),
                with_payload: Some(true),
                consistency: None,
            };
            let points = c.get_points(&collection, &req).await?;
            for p in &points {
                println!("{}", json(p));
            }
            let missing: Vec<String> = ids
                .iter()
                .filter(|id| !points.iter().any(|p| &p.id == *id))
                .map(|id| id.to_string())
                .collect();
            if !missing.is_empty() {
                return Err(Failure {
                    code: crate::exit::NOT_FOUND,
                    message: format!("no point with id {} in `{collection}`", missing.join(", ")),
                });
            }
        }
        Cmd::Snapshot(cmd) => snapshot(c, cmd).await?,
    }
    Ok(0)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

async fn collections(c: &Client, cmd: CollectionsCmd) -> Result<(), Failure> {
    match cmd {
        CollectionsCmd::List => {
            let list = c.list_collections().await?;
            println!(
                "{:<32} {:>9} {:>9} {:>12}",
                "NAME", "DIMENSION", "METRIC", "POINTS"
            );
            for col in list {
                println!(
                    "{:<32} {:>9} {:>9} {:>12}",
                    col.name,
                    col.dimension,
                    format!("{:?}", col.metric).to_lowercase(),
                    col.points
                );
            }
        }
        CollectionsCmd::Create {
            name,
            dimension,
            metric,
            index,
        } => {
            let metric: Option<Metric> = match metric {
                Some(m) => Some(
                    serde_json::from_value(serde_json::Value::String(m.clone())).map_err(|_| {
                        Failure::input(anyhow!(
                            "--metric must be cosine, dot or euclidean, got `{m}`"
                        ))
                    })?,
                ),
                None => None,
            };
            let d = c
                .create_collection(&CreateCollection {
                    name,
                    dimension,
                    metric,
                    index,
                    ..Default::default()
                })
                .await?;
            println!("{}", json(&d));
        }
        CollectionsCmd::Info { name } => {
            let d = c.collection(&name).await?;
            println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
        }
        CollectionsCmd::Delete { name } => {
            c.delete_collection(&name).await?;
            println!("deleted collection `{name}`");
        }
    }
    Ok(())
}

async fn snapshot(c: &Client, cmd: SnapshotCmd) -> Result<(), Failure> {
    match cmd {
        SnapshotCmd::Create { collection, all } => {
            let d = match (collection, all) {
                (Some(name), _) => c.create_snapshot(&name).await?,
                (None, _) => c.create_full_snapshot().await?,
            };
            println!("{}", json(&d));
        }
        SnapshotCmd::List { collection, all } => {
            let list = match (collection, all) {
                (Some(name), _) => c.list_snapshots(&name).await?,
                (None, _) => c.list_full_snapshots().await?,
            };
            for s in list {
                println!("{}", json(&s));
            }
        }
        SnapshotCmd::Download {
            snapshot,
            collection,
            all: _,
            output,
        } => {
            let dest = output.unwrap_or_else(|| PathBuf::from(&snapshot));
            let (n, sha) = match collection {
                Some(name) => c.download_snapshot(&name, &snapshot, &dest).await?,
                None => c.download_full_snapshot(&snapshot, &dest).await?,
            };
            println!("{} ({n} bytes, sha256 {sha})", dest.display());
        }
        SnapshotCmd::Restore {
            collection,
            file,
            location,
        } => {
            let r = match (file, location) {
                (Some(f), _) => c.upload_snapshot(&collection, &f).await?,
                (None, Some(l)) => {
                    let req = vdb_client::RecoverSnapshotRequest {
                        location: l,
                        checksum: None,
                    };
                    c.recover_snapshot(&collection, &req).await?
                }
                (None, None) => unreachable!("clap requires one of them"),
            };
            println!(
                "restored `{collection}` from a snapshot of `{}`: {} points, up to operation {}",
                r.source_collection, r.points, r.operation
            );
        }
        SnapshotCmd::Delete {
            snapshot,
            collection,
        } => {
            c.delete_snapshot(&collection, &snapshot).await?;
            println!("deleted snapshot `{snapshot}` of `{collection}`");
        }
    }
    Ok(())
}
