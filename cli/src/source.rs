//! Input files of `vdb import`: JSON Lines, CSV and Parquet, read into
//! points (`id`, `content` to embed and/or `vector`, payload).
//!
//! Field mapping (names configurable, see [`Mapping`]):
//! - the id field (default `id`): an unsigned integer or a string; absent,
//!   the row number (0-based, counting data rows) is the id, so a rerun on
//!   the same file finds the same ids;
//! - the text field (default `content`): text the server embeds;
//! - the vector field (default `vector`): a list of numbers (in CSV, a JSON
//!   array in the cell; in Parquet, a list column of floats);
//! - every other field becomes payload; a field named `metadata` or
//!   `payload` holding a JSON object (in CSV and Parquet: JSON text) is
//!   merged into the payload, which is how `vdb export` writes it.
//!
//! Rows are read on a plain thread (file reads and parsing are blocking
//! work) and handed over in chunks.

use anyhow::{anyhow, bail, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use serde_json::{Map, Value};
use std::io::BufRead;
use std::path::Path;
use vdb_client::{PointId, PointInput};

/// File formats `vdb import` reads and `vdb export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The format named by the file's extension (`.jsonl`, `.ndjson`,
    /// `.json`, `.csv`, `.parquet`, `.pq`). Errors when it names none.
    pub fn from_path(p: &Path) -> Result<Format> {
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        Ok(match ext.as_str() {
            "jsonl" | "ndjson" | "json" => Format::Jsonl,
            "csv" => Format::Csv,
            "parquet" | "pq" => Format::Parquet,
            _ => bail!(
                "cannot tell the format of {} from its extension: pass --format jsonl|csv|parquet",
                p.display()
            ),
        })
    }
}

/// Which fields of a row are the id, the text and the vector; the rest is
/// payload (all of it, or only `payload_fields` when given).
#[derive(Debug, Clone)]
pub struct Mapping {
    pub id: String,
    pub text: String,
    pub vector: String,
    pub payload_fields: Option<Vec<String>>,
}

/// Error in an input row: names the row (1-based, data rows) and the field.
fn row_err(row: u64, msg: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("row {}: {msg}", row + 1)
}

impl Mapping {
    /// Builds a point from one row's fields (`row`: 0-based data row).
    pub fn point(&self, row: u64, fields: Map<String, Value>) -> Result<PointInput> {
        let mut id = None;
        let mut content = None;
        let mut vector = None;
        let mut payload = Map::new();
        for (k, v) in fields {
            if k == self.id {
                id = Some(match v {
                    Value::Number(n) => match n.as_u64() {
                        Some(u) => PointId::Num(u),
                        None => {
                            return Err(row_err(
                                row,
                                format!(
                                "`{k}` must be an unsigned integer or a string, got the number {n}"
                            ),
                            ))
                        }
                    },
                    Value::String(s) if !s.is_empty() => PointId::Str(s),
                    Value::Null => continue,
                    other => {
                        return Err(row_err(
                            row,
                            format!("`{k}` must be an unsigned integer or a string, got {other}"),
                        ))
                    }
                });
            } else if k == self.text {
                match v {
                    Value::String(s) => content = Some(s),
                    Value::Null => {}
                    other => {
                        return Err(row_err(
                            row,
                            format!("`{k}` must be text, got {}", kind(&other)),
                        ))
                    }
                }
            } else if k == self.vector {
                match v {
                    Value::Array(a) => {
                        let mut out = Vec::with_capacity(a.len());
                        for x in a {
                            match x.as_f64() {
                                Some(f) => out.push(f as f32),
                                None => {
                                    return Err(row_err(
                                        row,
                                        format!("`{k}` must be a list of numbers, found {x}"),
                                    ))
                                }
                            }
                        }
                        vector = Some(out);
                    }
                    Value::Null => {}
                    other => {
                        return Err(row_err(
                            row,
                            format!("`{k}` must be a list of numbers, got {}", kind(&other)),
                        ))
                    }
                }
            } else if k == "metadata" || k == "payload" {
                match v {
                    Value::Object(m) => payload.extend(m),
                    Value::Null => {}
                    // CSV and Parquet carry it as JSON text.
                    Value::String(s) if s.trim_start().starts_with('{') => {
                        match serde_json::from_str::<Value>(&s) {
                            Ok(Value::Object(m)) => payload.extend(m),
                            _ => {
                                return Err(row_err(
                                    row,
                                    format!("`{k}` is not a JSON object: {s}"),
                                ))
                            }
                        }
                    }
                    other => {
                        payload.insert(k, other);
                    }
                }
            } else if self.payload_fields.as_ref().is_none_or(|f| f.contains(&k)) {
                payload.insert(k, v);
            }
        }
        if content.is_none() && vector.is_none() {
            return Err(row_err(
                row,
                format!(
                    "no `{}` (text to embed) and no `{}` (vector): name the fields with \
                     --text-field / --vector-field",
                    self.text, self.vector
                ),
            ));
        }
        Ok(PointInput {
            id: Some(id.unwrap_or(PointId::Num(row))),
            vector,
            content,
            metadata: (!payload.is_empty()).then_some(Value::Object(payload)),
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Counts the data rows of `path` (the progress bar's total): lines that
/// are not blank for JSONL, records for CSV, the footer's row count for
/// Parquet.
pub fn count_rows(path: &Path, format: Format) -> Result<u64> {
    let open =
        || std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()));
    Ok(match format {
        Format::Jsonl => {
            let mut n = 0;
            for line in std::io::BufReader::with_capacity(1 << 20, open()?).split(b'\n') {
                if line?.iter().any(|b| !b.is_ascii_whitespace()) {
                    n += 1;
                }
            }
            n
        }
        Format::Csv => {
            let mut r = csv::Reader::from_reader(std::io::BufReader::new(open()?));
            let mut rec = csv::ByteRecord::new();
            let mut n = 0;
            while r.read_byte_record(&mut rec)? {
                n += 1;
            }
            n
        }
        Format::Parquet => {
            let b =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(open()?)?;
            b.metadata().file_metadata().num_rows() as u64
        }
    })
}

/// Reads `path` row by row, calling `sink` with chunks of at most `chunk`
/// points; stops early (Ok) when `sink` returns false. Errors name the row
/// (and, for JSONL, the line).
pub fn read(
    path: &Path,
    format: Format,
    map: &Mapping,
    chunk: usize,
    mut sink: impl FnMut(Vec<PointInput>) -> bool,
) -> Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = Vec::with_capacity(chunk);
    let mut row = 0u64;
    let mut push = |p: PointInput, buf: &mut Vec<PointInput>| -> bool {
        buf.push(p);
        if buf.len() >= chunk {
            return sink(std::mem::take(buf));
        }
        true
    };
    match format {
        Format::Jsonl => {
            let r = std::io::BufReader::with_capacity(1 << 20, file);
            for (lineno, line) in r.lines().enumerate() {
                let line = line.with_context(|| format!("cannot read {}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let fields = match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(m)) => m,
                    Ok(other) => bail!(
                        "line {}: expected a JSON object, got {}",
                        lineno + 1,
                        kind(&other)
                    ),
                    Err(e) => bail!("line {}: not valid JSON: {e}", lineno + 1),
                };
                let p = map
                    .point(row, fields)
                    .map_err(|e| anyhow!("line {}: {e}", lineno + 1))?;
                row += 1;
                if !push(p, &mut buf) {
                    return Ok(());
                }
            }
        }
        Format::Csv => {
            let mut r = csv::Reader::from_reader(std::io::BufReader::with_capacity(1 << 20, file));
            let headers = r.headers()?.clone();
            for rec in r.records() {
                let rec =
                    rec.with_context(|| format!("row {}: cannot read the CSV record", row + 1))?;
                let mut fields = Map::new();
                for (h, v) in headers.iter().zip(rec.iter()) {
                    if let Some(v) = csv_value(h, v, map) {
                        fields.insert(h.to_string(), v);
                    }
                }
                let p = map.point(row, fields)?;
                row += 1;
                if !push(p, &mut buf) {
                    return Ok(());
                }
            }
        }
        Format::Parquet => {
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
                    .with_batch_size(chunk.max(1))
                    .build()?;
            for batch in reader {
                let batch = batch?;
                for fields in batch_rows(&batch)? {
                    let p = map.point(row, fields)?;
                    row += 1;
                    if !push(p, &mut buf) {
                        return Ok(());
                    }
                }
            }
        }
    }
    if !buf.is_empty() {
        sink(buf);
    }
    Ok(())
}

/// One CSV cell as JSON: the vector cell is parsed as a JSON array; other
/// cells are integers, floats, `true`/`false` or text; empty cells are
/// left out.
fn csv_value(header: &str, cell: &str, map: &Mapping) -> Option<Value> {
    if cell.is_empty() {
        return None;
    }
    if header == map.vector {
        return Some(serde_json::from_str(cell).unwrap_or(Value::String(cell.into())));
    }
    if header == map.text || header == "metadata" || header == "payload" {
        return Some(Value::String(cell.into()));
    }
    if header == map.id {
        return Some(match cell.parse::<u64>() {
            Ok(n) if n.to_string() == cell => Value::from(n),
            _ => Value::String(cell.into()),
        });
    }
    if let Ok(i) = cell.parse::<i64>() {
        return Some(Value::from(i));
    }
    if let Ok(f) = cell.parse::<f64>() {
        if f.is_finite() {
            return Some(Value::from(f));
        }
    }
    Some(match cell {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(cell.into()),
    })
}

/// The rows of one Arrow record batch as JSON objects (null cells left
/// out). Columns: integers, floats, booleans, strings, and lists of
/// numbers; other types are refused naming the column.
fn batch_rows(batch: &RecordBatch) -> Result<Vec<Map<String, Value>>> {
    let schema = batch.schema();
    let mut rows = vec![Map::new(); batch.num_rows()];
    for (field, col) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        for (i, row) in rows.iter_mut().enumerate() {
            if col.is_null(i) {
                continue;
            }
            let v = cell(col, i).with_context(|| format!("column `{name}`"))?;
            row.insert(name.clone(), v);
        }
    }
    Ok(rows)
}

/// One non-null Arrow cell as JSON.
fn cell(col: &ArrayRef, i: usize) -> Result<Value> {
    Ok(match col.data_type() {
        DataType::Boolean => Value::Bool(col.as_boolean().value(i)),
        DataType::Int8 => col.as_primitive::<Int8Type>().value(i).into(),
        DataType::Int16 => col.as_primitive::<Int16Type>().value(i).into(),
        DataType::Int32 => col.as_primitive::<Int32Type>().value(i).into(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(i).into(),
        DataType::UInt8 => col.as_primitive::<UInt8Type>().value(i).into(),
        DataType::UInt16 => col.as_primitive::<UInt16Type>().value(i).into(),
        DataType::UInt32 => col.as_primitive::<UInt32Type>().value(i).into(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(i).into(),
        DataType::Float32 => float(col.as_primitive::<Float32Type>().value(i) as f64),
        DataType::Float64 => float(col.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Value::String(col.as_string::<i32>().value(i).into()),
        DataType::LargeUtf8 => Value::String(col.as_string::<i64>().value(i).into()),
        DataType::Utf8View => Value::String(col.as_string_view().value(i).into()),
        DataType::List(_) => list(&col.as_list::<i32>().value(i))?,
        DataType::LargeList(_) => list(&col.as_list::<i64>().value(i))?,
        DataType::FixedSizeList(_, _) => list(&col.as_fixed_size_list().value(i))?,
        other => {
            bail!("type {other} is not supported (use numbers, booleans, text or lists of numbers)")
        }
    })
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A list cell as a JSON array (its items read as cells).
fn list(values: &ArrayRef) -> Result<Value> {
    let mut out = Vec::with_capacity(values.len());
    for j in 0..values.len() {
        out.push(if values.is_null(j) {
            Value::Null
        } else {
            cell(values, j)?
        });
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        Mapping {
            id: "id".into(),
            text: "content".into(),
            vector: "vector".into(),
            payload_fields: None,
        }
    }

    #[test]
    fn rows_map_to_points_with_payload_and_row_ids() {
        let m = mapping();
        let row = |v: Value| v.as_object().unwrap().clone();
        let p = m
            .point(
                4,
                row(serde_json::json!({"content": "a dog", "pos": "n", "metadata": {"lemma": "dog"}})),
            )
            .unwrap();
        assert_eq!(p.id, Some(PointId::Num(4)));
        assert_eq!(p.content.as_deref(), Some("a dog"));
        assert_eq!(
            p.metadata,
            Some(serde_json::json!({"pos": "n", "lemma": "dog"}))
        );
        let p = m
            .point(0, row(serde_json::json!({"id": "a-1", "vector": [1, 0.5]})))
            .unwrap();
        assert_eq!(p.id, Some(PointId::Str("a-1".into())));
        assert_eq!(p.vector, Some(vec![1.0, 0.5]));
        let e = m
            .point(2, row(serde_json::json!({"pos": "n"})))
            .unwrap_err();
        assert!(e.to_string().starts_with("row 3:"), "{e}");
        let e = m
            .point(0, row(serde_json::json!({"id": -3, "content": "x"})))
            .unwrap_err();
        assert!(e.to_string().contains("unsigned integer"), "{e}");
    }

    #[test]
    fn csv_cells_are_typed() {
        let m = mapping();
        assert_eq!(csv_value("n", "12", &m), Some(Value::from(12)));
        assert_eq!(csv_value("n", "1.5", &m), Some(Value::from(1.5)));
        assert_eq!(csv_value("n", "true", &m), Some(Value::Bool(true)));
        assert_eq!(csv_value("n", "", &m), None);
        assert_eq!(csv_value("content", "12", &m), Some(Value::from("12")));
        assert_eq!(csv_value("id", "007", &m), Some(Value::from("007")));
        assert_eq!(
            csv_value("vector", "[1,2]", &m),
            Some(serde_json::json!([1, 2]))
        );
    }
}
