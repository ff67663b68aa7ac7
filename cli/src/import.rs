//! `vdb import`: a file of texts or vectors into a collection, in
//! concurrent batches, with a progress bar, resumable.
//!
//! Flow: a reader thread parses the file into chunks of `--batch-size`
//! points (bounded channel) → for each chunk a task asks the server which
//! of its ids are already stored (`POST /collections/{name}/points` without
//! payloads), drops those, splits the rest by count and bytes, and upserts
//! them; at most `--parallel` chunks are in flight.
//!
//! Resume: upserts are keyed by id and every acknowledged batch is durable
//! on the server (WAL before acknowledgement), so after an interruption a
//! rerun of the same command skips what is stored and sends the rest; the
//! collection ends with exactly one point per id. Rows without an id get
//! their row number as id, so this holds for them too.
//!
//! Ctrl-C (SIGINT): no new batch starts; batches in flight finish (they are
//! acknowledged or fail) and the summary says what was imported; exit code
//! 130. A second Ctrl-C abandons the batches in flight at once (they may or
//! may not be stored; a rerun checks).

use crate::exit::{Failure, INTERRUPTED};
use crate::source::{self, Format, Mapping};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use vdb_client::{BatchLimits, Client, ClientError, CreateCollection, PointId, PointInput};

/// What `vdb import` was asked to do.
#[derive(Debug, Clone)]
pub struct ImportJob {
    pub file: PathBuf,
    pub format: Format,
    pub collection: String,
    pub mapping: Mapping,
    /// Points per chunk read and checked together (1 to 10,000).
    pub batch_size: usize,
    /// Bytes of JSON per upsert request at most.
    pub max_batch_bytes: usize,
    /// Chunks in flight at once.
    pub parallel: usize,
    /// Create the collection when it does not exist.
    pub create: bool,
    /// Skip ids already stored (the resume check).
    pub skip_existing: bool,
    /// Draw the progress bar (on a terminal only).
    pub progress: bool,
}

/// Counters of one run, shared by the tasks.
#[derive(Default)]
struct Counters {
    imported: AtomicU64,
    skipped: AtomicU64,
    vectors_sent: AtomicU64,
}

/// Runs the import; returns the exit status (0, or 130 after Ctrl-C).
pub async fn run(client: &Client, job: ImportJob) -> Result<i32, Failure> {
    let t0 = Instant::now();
    let total = {
        let (f, fmt) = (job.file.clone(), job.format);
        tokio::task::spawn_blocking(move || source::count_rows(&f, fmt))
            .await
            .map_err(|e| Failure::other(anyhow::anyhow!(e)))?
            .map_err(Failure::input)?
    };

    // Reader thread → bounded channel of chunks (or the read error).
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<anyhow::Result<Vec<PointInput>>>(job.parallel * 2);
    let reader = {
        let (f, fmt, map, n) = (
            job.file.clone(),
            job.format,
            job.mapping.clone(),
            job.batch_size,
        );
        let tx = tx.clone();
        std::thread::spawn(move || {
            let r = source::read(&f, fmt, &map, n, |chunk| {
                tx.blocking_send(Ok(chunk)).is_ok()
            });
            if let Err(e) = r {
                let _ = tx.blocking_send(Err(e));
            }
        })
    };
    drop(tx);

    let bar = if job.progress {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{wide_bar}] {human_pos}/{human_len} docs  {per_sec}  ETA {eta}  {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));

    let counters = Arc::new(Counters::default());
    let limits = BatchLimits {
        max_points: job.batch_size,
        max_bytes: job.max_batch_bytes,
    };
    let mut tasks: JoinSet<Result<(), ClientError>> = JoinSet::new();
    let mut first_error: Option<Failure> = None;
    let mut interrupted = false;
    let mut collection_checked = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    loop {
        // Room for one more chunk?
        while tasks.len() >= job.parallel {
            tokio::select! {
                r = tasks.join_next() => note(r, &mut first_error),
                _ = &mut ctrl_c => { interrupted = true; break; }
            }
        }
        if interrupted || first_error.is_some() {
            break;
        }
        let next = tokio::select! {
            c = rx.recv() => c,
            _ = &mut ctrl_c => { interrupted = true; break; }
            Some(r) = tasks.join_next(), if !tasks.is_empty() => { note(Some(r), &mut first_error); continue; }
        };
        let Some(chunk) = next else { break };
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                first_error = Some(Failure::input(
                    e.context(format!("in {}", job.file.display())),
                ));
                break;
            }
        };
        if !collection_checked {
            if let Err(f) = ensure_collection(client, &job, &chunk).await {
                first_error = Some(f);
                break;
            }
            collection_checked = true;
        }
        let (c, name, counters, bar) = (
            client.clone(),
            job.collection.clone(),
            counters.clone(),
            bar.clone(),
        );
        let skip = job.skip_existing;
        tasks.spawn(
            async move { send_chunk(&c, &name, chunk, skip, limits, &counters, &bar).await },
        );
    }
    // Stop the reader: no more chunks are taken.
    drop(rx);

    if interrupted {
        bar.set_message(
            "interrupted: finishing the batches in flight (Ctrl-C again to abandon them)",
        );
        let second = tokio::signal::ctrl_c();
        tokio::pin!(second);
        loop {
            tokio::select! {
                r = tasks.join_next() => match r { Some(r) => note(Some(r), &mut first_error), None => break },
                _ = &mut second => { tasks.abort_all(); break; }
            }
        }
    } else {
        while let Some(r) = tasks.join_next().await {
            note(Some(r), &mut first_error);
        }
    }
    let _ = reader.join();
    bar.abandon();

    let secs = t0.elapsed().as_secs_f64();
    let imported = counters.imported.load(Ordering::Relaxed);
    let skipped = counters.skipped.load(Ordering::Relaxed);
    let vectors = counters.vectors_sent.load(Ordering::Relaxed);
    let stored = client
        .collection(&job.collection)
        .await
        .map(|c| c.points)
        .ok();
    let status = if interrupted {
        "interrupted"
    } else if first_error.is_some() {
        "stopped by an error"
    } else {
        "done"
    };
    println!(
        "import {status}: {imported} points written, {skipped} already present and skipped, \
         of {total} rows, in {secs:.1} s ({:.1} docs/s, {:.1} vectors/s){}",
        imported as f64 / secs.max(1e-9),
        vectors as f64 / secs.max(1e-9),
        match stored {
            Some(n) => format!("; `{}` now holds {n} points", job.collection),
            None => String::new(),
        }
    );
    if let Some(f) = first_error {
        eprintln!("what was written stays; run the same command again to resume");
        return Err(f);
    }
    if interrupted {
        eprintln!("interrupted: run the same command again to resume (stored ids are skipped)");
        return Ok(INTERRUPTED);
    }
    Ok(0)
}

/// Records a finished task's outcome (the first error wins).
fn note(
    r: Option<Result<Result<(), ClientError>, tokio::task::JoinError>>,
    first: &mut Option<Failure>,
) {
    let err = match r {
        Some(Ok(Ok(()))) | None => return,
        Some(Ok(Err(e))) => Failure::client(e),
        Some(Err(e)) if e.is_cancelled() => return,
        Some(Err(e)) => Failure::other(anyhow::anyhow!("a batch task failed: {e}")),
    };
    first.get_or_insert(err);
}

/// Creates the collection when asked and it is absent (dimension: the
/// first point's vector length, else the embedding model's).
async fn ensure_collection(
    client: &Client,
    job: &ImportJob,
    first: &[PointInput],
) -> Result<(), Failure> {
    match client.collection(&job.collection).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == vdb_client::ErrorKind::NotFound && job.create => {
            let req = CreateCollection {
                name: job.collection.clone(),
                dimension: first.iter().find_map(|p| p.vector.as_ref().map(Vec::len)),
                ..Default::default()
            };
            match client.create_collection(&req).await {
                Ok(_) => Ok(()),
                // Created meanwhile by someone else: fine.
                Err(e) if e.kind() == vdb_client::ErrorKind::Conflict => Ok(()),
                Err(e) => Err(Failure::client(e)),
            }
        }
        Err(e) if e.kind() == vdb_client::ErrorKind::NotFound => Err(Failure::client(e)
            .with_hint("create it first (`vdb collections create`) or pass --create")),
        Err(e) => Err(Failure::client(e)),
    }
}

/// One chunk: drop stored ids (when asked), upsert the rest in requests
/// within `limits`, count.
async fn send_chunk(
    c: &Client,
    name: &str,
    mut chunk: Vec<PointInput>,
    skip_existing: bool,
    limits: BatchLimits,
    counters: &Counters,
    bar: &ProgressBar,
) -> Result<(), ClientError> {
    if skip_existing {
        let ids: Vec<PointId> = chunk.iter().filter_map(|p| p.id.clone()).collect();
        let present = c.existing_ids(name, &ids).await?;
        if !present.is_empty() {
            let before = chunk.len();
            chunk.retain(|p| p.id.as_ref().is_none_or(|id| !present.contains(id)));
            let n = (before - chunk.len()) as u64;
            counters.skipped.fetch_add(n, Ordering::Relaxed);
            bar.inc(n);
            bar.set_message(format!(
                "{} skipped (already stored)",
                counters.skipped.load(Ordering::Relaxed)
            ));
        }
    }
    for batch in vdb_client::split_batches(chunk, limits) {
        let n = batch.len() as u64;
        c.upsert(name, batch).await?;
        counters.imported.fetch_add(n, Ordering::Relaxed);
        counters.vectors_sent.fetch_add(n, Ordering::Relaxed);
        bar.inc(n);
    }
    Ok(())
}

/// Checks the options that clap cannot.
pub fn check(job: &ImportJob) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=vdb_client::batch::MAX_POINTS_PER_REQUEST).contains(&job.batch_size),
        "--batch-size must be 1 to {}, got {}",
        vdb_client::batch::MAX_POINTS_PER_REQUEST,
        job.batch_size
    );
    anyhow::ensure!(
        (1..=256).contains(&job.parallel),
        "--parallel must be 1 to 256, got {}",
        job.parallel
    );
    anyhow::ensure!(
        job.max_batch_bytes >= 1024,
        "--max-batch-bytes must be at least 1024"
    );
    std::fs::metadata(&job.file).with_context(|| format!("cannot open {}", job.file.display()))?;
    Ok(())
}
