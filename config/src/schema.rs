//! Every key the config file takes, read from the serde structures of `raw`
//! themselves, so that a list of keys (the reference example's test, the
//! coffer.toml(5) page) cannot fall behind when a field is added.
//!
//! `raw` only derives `Deserialize`; this module deserializes each structure from
//! a tracing deserializer that offers every field the structure asks for and
//! records its path (`jobs.*.sources[].url`), recursing into nested tables, maps
//! (`*`: a name the operator chooses) and arrays (`[]`). Enums (the `type` keys)
//! record their choices. Nothing here reads a file.

use crate::raw::RawConfig;
use crate::source_types::SourceType;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};
use std::cell::RefCell;

/// One key of the config file, at its place in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigKey {
    /// Dotted from the top: `agent.listen`, `targets.*.bucket` (`*`: the name the
    /// operator gives), `jobs.*.sources[].url` (`[]`: an element of an array of
    /// tables), `jobs.*.retention.keep_daily` (a table written inline or not).
    pub path: String,
    /// The values a key of fixed choices takes (`type`): empty for every other key.
    pub choices: Vec<&'static str>,
}

impl ConfigKey {
    /// The last part of the path: the word written in the file.
    pub fn name(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or(&self.path)
    }
}

/// Every key of the config file, tables before the keys inside them, in the
/// order the structures declare them.
pub fn config_keys() -> Vec<ConfigKey> {
    let trace = RefCell::new(Vec::new());
    let tracer = Tracer {
        path: "",
        trace: &trace,
    };
    // The tracer offers each field one value of the type the field asks for, so
    // the derived code accepts it; an error here is a type this tracer does not
    // know, which the unit test below catches.
    if let Err(e) = <RawConfig as serde::Deserialize>::deserialize(tracer) {
        trace.borrow_mut().push(ConfigKey {
            path: format!("(schema tracing failed: {e})"),
            choices: Vec::new(),
        });
    }
    trace.into_inner()
}

/// The keys a source of this type takes (`name` and `type` included); the other
/// types' keys are refused in it.
pub fn source_keys(kind: SourceType) -> Vec<&'static str> {
    crate::load::sources::keys_of(kind)
}

/// Every source type, as `type = "..."` names it.
pub fn source_types() -> Vec<SourceType> {
    config_keys()
        .into_iter()
        .find(|k| k.path == "jobs.*.sources[].type")
        .map(|k| k.choices)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| {
            let d: de::value::StrDeserializer<'_, TraceError> = c.into_deserializer();
            <SourceType as serde::Deserialize>::deserialize(d).ok()
        })
        .collect()
}

#[derive(Debug)]
struct TraceError(String);

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TraceError {}

impl de::Error for TraceError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        TraceError(msg.to_string())
    }
}

#[derive(Clone, Copy)]
struct Tracer<'a> {
    path: &'a str,
    trace: &'a RefCell<Vec<ConfigKey>>,
}

// `path` borrows from the caller's String; each nested level owns its own.
impl<'a> Tracer<'a> {
    fn at(path: &'a str, trace: &'a RefCell<Vec<ConfigKey>>) -> Self {
        Tracer { path, trace }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'de> Deserializer<'de> for Tracer<'_> {
    type Error = TraceError;

    // A value that takes any form (`SizeOrText`): a string, which every such
    // value of the config accepts.
    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_str("")
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_bool(false)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_i64(0)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_i64(0)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_i64(0)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_i64(0)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_u64(0)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_u64(0)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_u64(0)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_u64(0)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_f64(0.0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_f64(0.0)
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_char(' ')
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_str("")
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_str("")
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_bytes(&[])
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_bytes(&[])
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_some(self)
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, TraceError> {
        v.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, TraceError> {
        v.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        let path = format!("{}[]", self.path);
        v.visit_seq(One {
            tracer: Some(Tracer::at(&path, self.trace)),
        })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_seq(v)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_seq(v)
    }
    // A map of names the operator chooses (`[targets.NAME]`): one entry, `*`.
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        let path = join(self.path, "*");
        v.visit_map(Fields {
            names: vec!["name"],
            paths: vec![path],
            next: 0,
            trace: self.trace,
        })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, TraceError> {
        let paths: Vec<String> = fields.iter().map(|f| join(self.path, f)).collect();
        v.visit_map(Fields {
            names: fields.to_vec(),
            paths,
            next: 0,
            trace: self.trace,
        })
    }
    // A key of fixed choices: recorded with them, then the first is taken.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, TraceError> {
        if let Some(key) = self
            .trace
            .borrow_mut()
            .iter_mut()
            .rev()
            .find(|k| k.path == self.path)
        {
            key.choices = variants.to_vec();
        }
        let first = variants
            .first()
            .ok_or_else(|| TraceError(format!("{}: an enum without variants", self.path)))?;
        v.visit_enum((*first).into_deserializer())
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_str("")
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_unit()
    }
}

/// The fields of one table, each offered once; a field is recorded when offered,
/// so a table comes before the keys inside it.
struct Fields<'a> {
    names: Vec<&'static str>,
    paths: Vec<String>,
    next: usize,
    trace: &'a RefCell<Vec<ConfigKey>>,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        let Some(name) = self.names.get(self.next) else {
            return Ok(None);
        };
        let path = &self.paths[self.next];
        // The map of names (`*`) is not a key; its entries' keys are.
        if !path.ends_with('*') {
            self.trace.borrow_mut().push(ConfigKey {
                path: path.clone(),
                choices: Vec::new(),
            });
        }
        seed.deserialize((*name).into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        let i = self.next;
        self.next += 1;
        let path = self
            .paths
            .get(i)
            .ok_or_else(|| TraceError("a value asked before its key".into()))?;
        seed.deserialize(Tracer::at(path, self.trace))
    }
}

/// An array with one element, traced at `path[]`.
struct One<'a> {
    tracer: Option<Tracer<'a>>,
}

impl<'de> de::SeqAccess<'de> for One<'_> {
    type Error = TraceError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TraceError> {
        match self.tracer.take() {
            Some(t) => seed.deserialize(t).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_reaches_every_level_of_the_schema() {
        let keys = config_keys();
        let paths: Vec<&str> = keys.iter().map(|k| k.path.as_str()).collect();
        assert!(
            !paths.iter().any(|p| p.starts_with('(')),
            "tracing failed: {paths:?}"
        );
        for p in [
            "agent",
            "agent.listen",
            "encryption.trusted_signers",
            "targets.*.type",
            "targets.*.bucket",
            "jobs.*.compression.level",
            "jobs.*.sources",
            "jobs.*.sources[].restore.owner",
            "jobs.*.retention.keep_within",
            "jobs.*.check.orphans",
            "jobs.*.notify.failure",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        let ty = keys.iter().find(|k| k.path == "targets.*.type");
        assert_eq!(
            ty.map(|k| k.choices.clone()),
            Some(vec!["local", "s3", "azure", "gcs", "webdav", "sftp"])
        );
        assert_eq!(source_types().len(), 6);
        assert_eq!(
            keys.iter().find(|k| k.path == "agent").map(|k| k.name()),
            Some("agent")
        );
    }
}
