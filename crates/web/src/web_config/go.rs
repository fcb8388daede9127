//! Values as exporter-toolkit's Go reads them from `web.yml` (go-yaml v2 into Go types), so that
//! a file means the same here.
//!
//! - A string field takes any scalar as its text: `X-XSS-Protection: 1` is the header value
//!   `1`, as go-yaml gives a string field the scalar's source text. yaml-rust2 resolves plain
//!   scalars first; integers are written back in decimal, which is their text unless it was
//!   written `0x1F`, `+1` or `0755` (go-yaml keeps those as written; nobody writes them here).
//! - An empty string is a field left out: Go's zero value, which exporter-toolkit tests for.
//! - A boolean takes YAML 1.1's words (`yes`, `on`, ...), as go-yaml does.
//! - A `time.Duration` is an integer of nanoseconds or Go's duration text (`1s`, `1m30s`,
//!   `1.5h`, `300ms`, `-1s`), parsed as Go's `time.ParseDuration` does.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use serde_json::Value;

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

/// `deserialize_with` for a Go bool field: YAML 1.1's words, as go-yaml v2 reads them.
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(b),
        Value::String(s) => match s.as_str() {
            "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
                Ok(true)
            }
            "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off"
            | "OFF" => Ok(false),
            _ => Err(D::Error::custom(format!("{s:?} is not a boolean"))),
        },
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

/// Go's `time.ParseDuration`: a signed sequence of decimal numbers, each with an optional
/// fraction and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), or `0`; in nanoseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a duration (Go's syntax: 1s, 1m30s, 300ms)");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => {
                return Err(format!(
                    "{text:?}: a unit is needed (Go's syntax: 1s, 300ms)"
                ));
            }
            _ => return Err(bad()),
        };
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let mut part = whole.checked_mul(scale).ok_or_else(bad)?;
        // The fraction's digits past what the unit can hold do not count, as in Go.
        let mut place = scale;
        for digit in frac.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            part += u128::from(digit - b'0') * place;
        }
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = after;
    }
    let limit = if negative {
        1u128 << 63
    } else {
        (1u128 << 63) - 1
    };
    if total > limit {
        return Err(format!("{text:?}: out of range"));
    }
    Ok(if negative {
        (total as i128).wrapping_neg() as i64
    } else {
        total as i64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_parses_them() {
        let s = 1_000_000_000;
        for (text, want) in [
            ("0", 0),
            ("1s", s),
            ("-1s", -s),
            ("+5m", 300 * s),
            ("1m30s", 90 * s),
            ("1.5h", 5400 * s),
            ("300ms", 300_000_000),
            ("1us", 1_000),
            ("1\u{b5}s", 1_000),
            ("1\u{3bc}s", 1_000),
            ("7ns", 7),
            (".5s", 500_000_000),
            ("1.s", s),
            ("2h45m0.5s", 9900 * s + 500_000_000),
            ("9223372036854775807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for text in [
            "",
            "1",
            "s",
            "-",
            ".s",
            "1x",
            "1 s",
            "1s ",
            "1S",
            "1d",
            "0s0",
            "9223372036854775808ns",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
    }

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
