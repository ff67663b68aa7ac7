//! `vdb`: the command line of the indexing service. Thin: parses the
//! command line (clap), calls the client crate, prints, and exits with a
//! code by kind of failure (see `exit.rs` and `vdb --help`).

mod commands;
mod exit;
mod export;
mod import;
mod source;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The command line of the vector database's indexing service: collections,
/// bulk import with progress and resume, export, search, get, snapshots.
#[derive(Parser, Debug)]
#[command(name = "vdb", version, after_help = exit::HELP)]
struct Cli {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the service is and how to talk to it.
#[derive(Args, Debug)]
struct Conn {
    /// Base URL of the indexing service.
    #[arg(
        long,
        global = true,
        env = "VDB_URL",
        default_value = "http://localhost:8000"
    )]
    url: String,
    /// The service's API key (sent as `Authorization: Bearer`).
    #[arg(long, global = true, env = "VDB_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Seconds one request attempt may take.
    #[arg(long, global = true, default_value_t = 120)]
    timeout: u64,
    /// Retries on 429, 503 and connection errors (exponential backoff with
    /// jitter, honouring Retry-After).
    #[arg(long, global = true, default_value_t = 5)]
    retries: usize,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List, create, describe and delete collections.
    #[command(subcommand)]
    Collections(CollectionsCmd),
    /// Load a JSONL, CSV or Parquet file of texts (embedded by the server)
    /// or vectors into a collection; rerun after an interruption to resume.
    Import(ImportArgs),
    /// Write every point of a collection to JSONL or Parquet.
    Export {
        /// The collection.
        #[arg(short, long)]
        collection: String,
        /// Output file (`.jsonl` or `.parquet`).
        #[arg(short, long)]
        output: PathBuf,
        /// Output format; default: from the extension.
        #[arg(long, value_enum)]
        format: Option<source::Format>,
        /// Leave the vectors out.
        #[arg(long)]
        no_vectors: bool,
        /// Points per scroll page (1 to 10000).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10000))]
        page_size: u64,
    },
    /// Search a collection by text (embedded by the server).
    Search {
        /// The query text.
        query: String,
        #[arg(short, long)]
        collection: String,
        /// How many results (1 to 1000).
        #[arg(short = 'k', long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
        top_k: u64,
        /// A payload filter as JSON, e.g. '{"must":[{"key":"pos","match":"n"}]}'.
        #[arg(long)]
        filter: Option<String>,
        /// Include each hit's vector.
        #[arg(long)]
        with_vector: bool,
    },
    /// Print points by id (JSON, one per line).
    Get {
        #[arg(short, long)]
        collection: String,
        /// Point ids: unsigned integers or strings (`--string-ids` reads
        /// all-digit ids as strings).
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long)]
        string_ids: bool,
        /// Include the vectors.
        #[arg(long)]
        with_vector: bool,
    },
    /// Create, list, download, restore and delete snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
}

#[derive(Subcommand, Debug)]
enum CollectionsCmd {
    /// Every collection: name, dimension, metric, points.
    List,
    /// Create a collection.
    Create {
        name: String,
        /// Vector dimension; default: the embedding model's.
        #[arg(long)]
        dimension: Option<usize>,
        /// cosine, dot or euclidean.
        #[arg(long)]
        metric: Option<String>,
        /// hnsw, ivf_pq or flat.
        #[arg(long)]
        index: Option<String>,
    },
    /// A collection's settings and statistics (JSON).
    Info { name: String },
    /// Delete a collection and its data.
    Delete { name: String },
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// The input file.
    file: PathBuf,
    /// The collection.
    #[arg(short, long)]
    collection: String,
    /// Input format; default: from the extension (.jsonl, .csv, .parquet).
    #[arg(long, value_enum)]
    format: Option<source::Format>,
    /// Field holding the point id (absent: the row number).
    #[arg(long, default_value = "id")]
    id_field: String,
    /// Field holding the text to embed.
    #[arg(long, default_value = "content")]
    text_field: String,
    /// Field holding a vector.
    #[arg(long, default_value = "vector")]
    vector_field: String,
    /// Only these fields become payload (comma-separated); default: every
    /// other field.
    #[arg(long, value_delimiter = ',')]
    payload_fields: Option<Vec<String>>,
    /// Points per request (1 to 10000).
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Most bytes of JSON per request (stay under the server's
    /// body_limit_bytes, 32 MiB by default).
    #[arg(long, default_value_t = vdb_client::batch::DEFAULT_MAX_BATCH_BYTES)]
    max_batch_bytes: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Create the collection when it does not exist.
    #[arg(long)]
    create: bool,
    /// Send every row even when its id is stored (no resume check).
    #[arg(long)]
    no_skip_existing: bool,
    /// No progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Subcommand, Debug)]
enum SnapshotCmd {
    /// Make a snapshot of a collection (or, with --all, of every
    /// collection) on the server.
    Create {
        #[arg(short, long, required_unless_present = "all")]
        collection: Option<String>,
        #[arg(long, conflicts_with = "collection")]
        all: bool,
    },
    /// List the snapshots of a collection (or, with --all, the full ones).
    List {
        #[arg(short, long, required_unless_present = "all")]
        collection: Option<String>,
        #[arg(long, conflicts_with = "collection")]
        all: bool,
    },
    /// Download a snapshot (checked against the server's SHA-256).
    Download {
        /// The snapshot's name (from `vdb snapshot list`).
        snapshot: String,
        #[arg(short, long, required_unless_present = "all")]
        collection: Option<String>,
        #[arg(long, conflicts_with = "collection")]
        all: bool,
        /// Where to write it; default: the snapshot's name.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Restore a collection from a local snapshot file (uploaded) or from
    /// a file on the server (--location).
    Restore {
        #[arg(short, long)]
        collection: String,
        /// A local snapshot file to upload.
        #[arg(required_unless_present = "location", conflicts_with = "location")]
        file: Option<PathBuf>,
        /// A path (or file:// URL) of a snapshot on the server.
        #[arg(long)]
        location: Option<String>,
    },
    /// Delete a snapshot.
    Delete {
        snapshot: String,
        #[arg(short, long)]
        collection: String,
    },
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(async move {
        let mut cfg = vdb_client::ClientConfig::new(cli.conn.url.clone());
        cfg.api_key = cli.conn.api_key.clone();
        cfg.timeout = Duration::from_secs(cli.conn.timeout.max(1));
        cfg.retries = cli.conn.retries;
        let client = match vdb_client::Client::new(cfg) {
            Ok(c) => c,
            Err(e) => return report(exit::Failure::client(e)),
        };
        match commands::run(&client, cli.cmd).await {
            Ok(code) => code,
            Err(f) => report(f),
        }
    });
    // Leave at once: tasks abandoned by a second Ctrl-C are not awaited.
    rt.shutdown_background();
    std::process::exit(code);
}

/// Prints a failure in the server's words and returns its exit code.
fn report(f: exit::Failure) -> i32 {
    eprintln!("error: {}", f.message);
    f.code
}
