//! Values as exporter-toolkit's Go reads them from `web.yml` (go-yaml v2 into Go types), so that
//! a file means the same here.
//!
//! - A string field takes any scalar as its text: `X-XSS-Protection: 1` is the header value
//!   `1`, as go-yaml gives a string field the scalar's source text. yaml-rust2 resolves plain
//!   scalars first; integers are written back in decimal, which is their text unless it was
//!   written `0x1F`, `+1` or `0755` (go-yaml keeps those as written; nobody writes them here).
//! - An empty string is a field left out: Go's zero value, which exporter-toolkit tests for.
//! - A boolean takes YAML 1.1's words (`yes`, `on`, ...), as go-yaml does, and Go's
//!   `strconv.ParseBool`'s too: the one dialect of [`crate::dialect`].
//! - A `time.Duration` is an integer of nanoseconds or Go's duration text (`1s`, `1m30s`,
//!   `1.5h`, `300ms`, `-1s`), parsed as Go's `time.ParseDuration` does
//!   ([`crate::dialect::parse_duration`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use serde_json::Value;

use crate::dialect::{parse_bool, parse_duration};

/// Any scalar's text; null is empty. A sequence or map is an error.
fn text<E: serde::de::Error>(value: Value) -> Result<String, E> {
    match value {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Array(_) => Err(E::custom("a sequence where text was expected")),
        Value::Object(_) => Err(E::custom("a map where text was expected")),
    }
}

/// `deserialize_with` for a Go string field.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    text(Value::deserialize(d)?)
}

/// `deserialize_with` for a Go `[]string` field whose nil and empty differ (null is nil).
pub fn optional_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .into_iter()
            .map(text)
            .collect::<Result<_, _>>()
            .map(Some),
        _ => Err(D::Error::custom("a scalar where a sequence was expected")),
    }
}

/// `deserialize_with` for a Go `map[string]string` field (null is empty).
pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => map.into_iter().map(|(k, v)| Ok((k, text(v)?))).collect(),
        _ => Err(D::Error::custom(
            "a scalar or sequence where a map was expected",
        )),
    }
}

/// `deserialize_with` for a Go bool field: YAML 1.1's words, as go-yaml v2 reads them, and
/// the rest of [`parse_bool`]'s (a YAML `1` is its text, `"1"`).
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(b),
        Value::String(s) => parse_bool(&s).map_err(D::Error::custom),
        Value::Number(n) => parse_bool(&n.to_string()).map_err(D::Error::custom),
        other => Err(D::Error::custom(format!("{other} is not a boolean"))),
    }
}

/// `deserialize_with` for a Go int field.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number"))),
        other => Err(D::Error::custom(format!("{other} is not a whole number"))),
    }
}

/// `deserialize_with` for a Go `time.Duration` field, in nanoseconds (negative allowed).
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| D::Error::custom(format!("{n} is not a duration"))),
        Value::String(s) => parse_duration(&s).map_err(D::Error::custom),
        other => Err(D::Error::custom(format!("{other} is not a duration"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_text_to_a_string_field() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "string_map")]
            m: BTreeMap<String, String>,
        }
        let v = serde_json::json!({"m": {"a": 1, "b": true, "c": null, "d": "x", "e": 1.5}});
        let t: T = serde_json::from_value(v).unwrap();
        let got: Vec<(&str, &str)> = t.m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("a", "1"),
                ("b", "true"),
                ("c", ""),
                ("d", "x"),
                ("e", "1.5")
            ]
        );
    }
}
