//! Payload indexes of a collection: the schema (which fields are indexed,
//! as what) kept in the manifest, and changes to it. The indexes
//! themselves are files of each sealed segment (`index::payload_index`),
//! written when a segment is sealed or rewritten and, for segments that
//! predate a field, by the worker's reindex job. The appendable segment
//! has none: its payloads are in memory, already parsed, and it is always
//! scanned exactly.

use super::*;
use crate::index::payload_index::PayloadFieldType;
use shared::wire::indexing::MAX_FILTER_KEY_BYTES;

/// Most indexed fields of one collection.
pub const MAX_INDEXED_FIELDS: usize = 64;

/// One indexed field as described.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldIndexInfo {
    pub data_type: PayloadFieldType,
    /// Points (slots of sealed segments, deleted ones until a vacuum
    /// included) holding at least one value the index holds.
    pub points: u64,
}

impl Collection {
    /// Indexes payload field `field` (a dotted key, as in filters) as
    /// `ty`: the schema in the manifest changes at once (durably), and the
    /// worker builds the index of every sealed segment in the background;
    /// filters use each segment's index as soon as it exists. Returns the
    /// worker's ticket (see [`Collection::wait_field_indexes`]). Indexing a
    /// field again with another type replaces its index.
    ///
    /// Errors: `InvalidFieldIndex` for an empty or too long key, or past
    /// [`MAX_INDEXED_FIELDS`]; `ReadOnly` on a follower; `Storage` when
    /// the manifest cannot be written.
    pub fn create_field_index(&self, field: &str, ty: PayloadFieldType) -> Result<u64> {
        self.writable()?;
        if field.is_empty() || field.len() > MAX_FILTER_KEY_BYTES {
            return Err(CollectionError::InvalidFieldIndex(format!(
                "`field_name` must be 1 to {MAX_FILTER_KEY_BYTES} bytes, got {}",
                field.len()
            )));
        }
        self.change_schema(|schema| {
            if !schema.contains_key(field) && schema.len() >= MAX_INDEXED_FIELDS {
                return Err(CollectionError::InvalidFieldIndex(format!(
                    "a collection indexes at most {MAX_INDEXED_FIELDS} payload fields"
                )));
            }
            schema.insert(field.to_string(), ty);
            Ok(())
        })
    }

    /// Drops the index of `field` (nothing happens when it has none):
    /// filters stop using it at once; the worker removes its files from
    /// the segments. Returns the worker's ticket. Errors: `ReadOnly`,
    /// `Storage`.
    pub fn delete_field_index(&self, field: &str) -> Result<u64> {
        self.writable()?;
        self.change_schema(|schema| {
            schema.remove(field);
            Ok(())
        })
    }

    /// Changes the schema under `checkpoint` (then `state`), persists the
    /// manifest, and queues the reindex job.
    fn change_schema(
        &self,
        edit: impl FnOnce(&mut BTreeMap<String, PayloadFieldType>) -> Result<()>,
    ) -> Result<u64> {
        {
            let mut m = self.inner.checkpoint.lock();
            let mut schema = m.payload_schema.clone();
            edit(&mut schema)?;
            m.payload_schema = schema.clone();
            self.inner.state.write().payload_schema = schema;
            let p = m.persisted_op;
            self.inner.checkpoint(&mut m, p)?;
        }
        Ok(self.send(Job::Reindex))
    }

    /// Waits until the worker has finished the job of `ticket` (from
    /// [`Collection::create_field_index`] or `delete_field_index`): then
    /// every sealed segment has the schema's indexes.
    pub fn wait_field_indexes(&self, ticket: u64) {
        self.wait_for(ticket);
    }

    /// The indexed fields, with the points their indexes hold.
    pub fn payload_schema(&self) -> BTreeMap<String, FieldIndexInfo> {
        let st = self.inner.state.read();
        st.payload_schema
            .iter()
            .map(|(f, ty)| {
                let points = st
                    .segments
                    .values()
                    .filter_map(|s| match s {
                        Seg::Sealed(_, ix) => ix.payload.by_field.get(f),
                        Seg::Mutable(_) => None,
                    })
                    .filter(|i| i.ty == *ty)
                    .map(|i| i.covered())
                    .sum();
                (
                    f.clone(),
                    FieldIndexInfo {
                        data_type: *ty,
                        points,
                    },
                )
            })
            .collect()
    }
}
