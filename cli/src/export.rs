//! `vdb export`: every point of a collection (scrolled in id order, pages
//! of `--page-size`) into JSON Lines or Parquet, in the shape `vdb import`
//! reads back.
//!
//! - JSONL: `{"id", "content", "metadata", "vector"}` per line.
//! - Parquet: columns `id` (UInt64 when every id is an integer, Utf8 when
//!   every id is a string; a mix is refused: use JSONL), `content` (Utf8),
//!   `vector` (List<Float32>), `metadata` (Utf8: the payload as JSON text).
//!
//! The file is written to `<output>.part` and renamed when complete.

use crate::exit::Failure;
use crate::source::Format;
use anyhow::{anyhow, Context};
use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use vdb_client::{Client, PointId, PointOutput, ScrollRequest};

/// Writes the collection `name` to `out`; returns the number of points.
pub async fn run(
    client: &Client,
    name: &str,
    out: &Path,
    format: Format,
    with_vectors: bool,
    page_size: usize,
) -> Result<u64, Failure> {
    let part = out.with_extension("part");
    let file = std::fs::File::create(&part)
        .with_context(|| format!("cannot create {}", part.display()))
        .map_err(Failure::io)?;
    let mut sink = match format {
        Format::Jsonl => Sink::Jsonl(std::io::BufWriter::new(file)),
        Format::Parquet => Sink::Parquet(None, Some(file)),
        Format::Csv => {
            return Err(Failure::input(anyhow!(
                "export writes jsonl or parquet, not csv"
            )))
        }
    };
    let mut cursor: Option<PointId> = None;
    let mut n = 0u64;
    loop {
        let page = client
            .scroll(
                name,
                &ScrollRequest {
                    limit: Some(page_size),
                    cursor: cursor.clone(),
                    with_vector: Some(with_vectors),
                    with_payload: Some(true),
                    ..Default::default()
                },
            )
            .await?;
        n += page.points.len() as u64;
        sink.write(&page.points).map_err(Failure::io)?;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    sink.finish().map_err(Failure::io)?;
    std::fs::rename(&part, out)
        .with_context(|| format!("cannot rename {} to {}", part.display(), out.display()))
        .map_err(Failure::io)?;
    Ok(n)
}

/// The open output file.
enum Sink {
    Jsonl(std::io::BufWriter<std::fs::File>),
    /// The Parquet writer (boxed: it is large) with the id column's type,
    /// made at the first page (the type comes from it); the file until then.
    Parquet(
        Option<Box<(parquet::arrow::ArrowWriter<std::fs::File>, DataType)>>,
        Option<std::fs::File>,
    ),
}

impl Sink {
    fn write(&mut self, points: &[PointOutput]) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(w) => {
                for p in points {
                    serde_json::to_writer(&mut *w, p)?;
                    w.write_all(b"\n")?;
                }
                Ok(())
            }
            Sink::Parquet(writer, file) => {
                if points.is_empty() {
                    return Ok(());
                }
                let batch = to_batch(points)?;
                let id_type = batch.schema().field(0).data_type().clone();
                match writer {
                    None => {
                        let f = file.take().expect("file until the writer exists");
                        let w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None)?;
                        *writer = Some(Box::new((w, id_type)));
                    }
                    Some(b) if b.1 != id_type => anyhow::bail!(
                        "the collection mixes integer and string ids; Parquet needs one id \
                         type per column: export to JSONL instead"
                    ),
                    Some(_) => {}
                }
                writer
                    .as_mut()
                    .expect("writer made above")
                    .0
                    .write(&batch)?;
                Ok(())
            }
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(mut w) => {
                w.flush()?;
                w.get_ref().sync_all()?;
            }
            Sink::Parquet(Some(b), _) => {
                let f = b.0.into_inner()?;
                f.sync_all()?;
            }
            // No point at all: an empty file with the schema of integer ids.
            Sink::Parquet(None, Some(f)) => {
                let schema = schema(DataType::UInt64);
                let w = parquet::arrow::ArrowWriter::try_new(f, schema, None)?;
                w.into_inner()?.sync_all()?;
            }
            Sink::Parquet(None, None) => {}
        }
        Ok(())
    }
}

fn schema(id: DataType) -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", id, false),
        Field::new("content", DataType::Utf8, true),
        Field::new(
            "vector",
            DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            true,
        ),
        Field::new("metadata", DataType::Utf8, true),
    ]))
}

/// One page as an Arrow batch (the id column's type: see the module doc).
fn to_batch(points: &[PointOutput]) -> anyhow::Result<RecordBatch> {
    let all_num = points.iter().all(|p| matches!(p.id, PointId::Num(_)));
    let all_str = points.iter().all(|p| matches!(p.id, PointId::Str(_)));
    let id: ArrayRef = if all_num {
        let mut b = UInt64Builder::with_capacity(points.len());
        for p in points {
            if let PointId::Num(n) = p.id {
                b.append_value(n);
            }
        }
        Arc::new(b.finish())
    } else if all_str {
        let mut b = StringBuilder::new();
        for p in points {
            if let PointId::Str(s) = &p.id {
                b.append_value(s);
            }
        }
        Arc::new(b.finish())
    } else {
        anyhow::bail!(
            "the collection mixes integer and string ids; Parquet needs one id type per \
             column: export to JSONL instead"
        );
    };
    let mut content = StringBuilder::new();
    let mut metadata = StringBuilder::new();
    let mut vector = ListBuilder::new(Float32Builder::new());
    for p in points {
        content.append_option(p.content.as_deref());
        metadata.append_option(p.metadata.as_ref().map(|m| m.to_string()));
        match &p.vector {
            Some(v) => {
                vector.values().append_slice(v);
                vector.append(true);
            }
            None => vector.append(false),
        }
    }
    let id_type = id.data_type().clone();
    Ok(RecordBatch::try_new(
        schema(id_type),
        vec![
            id,
            Arc::new(content.finish()),
            Arc::new(vector.finish()),
            Arc::new(metadata.finish()),
        ],
    )?)
}
