//! Binary encoding of WAL operations and point ids (little-endian).
//!
//! Every operation in the WAL is a *blind* write: an upsert carries the
//! whole point (vector, payload, content) and a delete names ids. A payload
//! update is logged as the upsert of the resulting point, a delete by filter
//! as the ids it matched. So replaying an operation never depends on the
//! state before it, which is what makes replay idempotent and lets sealed
//! segments' deleted bitmaps be persisted ahead of the WAL checkpoint.
//!
//! | item | encoding |
//! |---|---|
//! | op | `u8` tag (1 upsert, 2 delete), `u32` count, then items |
//! | id | `u8` 0 + `u64`, or `u8` 1 + `u32` len + UTF-8 bytes |
//! | upsert item | id, `u32` dim + dim × `f32`, `u32` len + payload JSON (len 0: none), `u8` has-content + `u32` len + UTF-8 |

use shared::wire::indexing::PointId;

pub type Payload = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, PartialEq)]
pub struct PointRecord {
    pub id: PointId,
    pub vector: Vec<f32>,
    pub payload: Option<Payload>,
    pub content: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Upsert(Vec<PointRecord>),
    Delete(Vec<PointId>),
}

pub fn put_id(out: &mut Vec<u8>, id: &PointId) {
    match id {
        PointId::Num(n) => {
            out.push(0);
            out.extend_from_slice(&n.to_le_bytes());
        }
        PointId::Str(s) => {
            out.push(1);
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

pub fn encode_op(op: &Op, out: &mut Vec<u8>) {
    match op {
        Op::Upsert(points) => {
            out.push(1);
            out.extend_from_slice(&(points.len() as u32).to_le_bytes());
            for p in points {
                put_id(out, &p.id);
                out.extend_from_slice(&(p.vector.len() as u32).to_le_bytes());
                for x in &p.vector {
                    out.extend_from_slice(&x.to_le_bytes());
                }
                match &p.payload {
                    Some(pl) => {
                        put_bytes(out, &serde_json::to_vec(pl).expect("JSON map serialises"))
                    }
                    None => put_bytes(out, &[]),
                }
                match &p.content {
                    Some(c) => {
                        out.push(1);
                        put_bytes(out, c.as_bytes());
                    }
                    None => out.push(0),
                }
            }
        }
        Op::Delete(ids) => {
            out.push(2);
            out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
            for id in ids {
                put_id(out, id);
            }
        }
    }
}

/// A cursor over bytes that fails instead of panicking.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        if end > self.buf.len() {
            return Err(format!("truncated: need {n} bytes at {}", self.pos));
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn id(&mut self) -> Result<PointId, String> {
        match self.u8()? {
            0 => Ok(PointId::Num(self.u64()?)),
            1 => Ok(PointId::Str(
                std::str::from_utf8(self.bytes()?)
                    .map_err(|e| e.to_string())?
                    .to_string(),
            )),
            t => Err(format!("bad id tag {t}")),
        }
    }
    pub fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

pub fn decode_op(buf: &[u8]) -> Result<Op, String> {
    let mut r = Reader::new(buf);
    let op = match r.u8()? {
        1 => {
            let n = r.u32()? as usize;
            let mut points = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let id = r.id()?;
                let dim = r.u32()? as usize;
                let raw = r.take(dim.checked_mul(4).ok_or("dim overflow")?)?;
                let vector = raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                let pl = r.bytes()?;
                let payload = if pl.is_empty() {
                    None
                } else {
                    Some(serde_json::from_slice(pl).map_err(|e| e.to_string())?)
                };
                let content = match r.u8()? {
                    0 => None,
                    _ => Some(
                        std::str::from_utf8(r.bytes()?)
                            .map_err(|e| e.to_string())?
                            .to_string(),
                    ),
                };
                points.push(PointRecord {
                    id,
                    vector,
                    payload,
                    content,
                });
            }
            Op::Upsert(points)
        }
        2 => {
            let n = r.u32()? as usize;
            let mut ids = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                ids.push(r.id()?);
            }
            Op::Delete(ids)
        }
        t => return Err(format!("unknown op tag {t}")),
    };
    if !r.done() {
        return Err("trailing bytes after op".into());
    }
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ops_round_trip() {
        let ops = vec![
            Op::Upsert(vec![
                PointRecord {
                    id: PointId::Num(7),
                    vector: vec![1.0, -2.5, 3.25],
                    payload: Some(
                        json!({"a": 1, "b": {"c": "x"}})
                            .as_object()
                            .unwrap()
                            .clone(),
                    ),
                    content: Some("héllo".into()),
                },
                PointRecord {
                    id: PointId::Str("u-1".into()),
                    vector: vec![],
                    payload: None,
                    content: None,
                },
            ]),
            Op::Delete(vec![PointId::Num(1), PointId::Str("z".into())]),
        ];
        for op in ops {
            let mut b = Vec::new();
            encode_op(&op, &mut b);
            assert_eq!(decode_op(&b).unwrap(), op);
            for cut in 0..b.len() {
                assert!(decode_op(&b[..cut]).is_err(), "prefix {cut} decoded");
            }
        }
    }
}
