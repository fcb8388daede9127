//! The one way nsexporter reads a boolean and a duration, in `config.yaml`, its flags and
//! environment variables, and `web.yml`.
//!
//! `web.yml` files are copied from node_exporter setups, so they must mean here what they mean
//! to exporter-toolkit; every config key is also a flag, written as node_exporter's flags are.
//! Hence:
//! - A duration is Go's (`time.ParseDuration`: `15s`, `1m30s`, `1.5h`, `300ms`), as both
//!   node_exporter's flags and exporter-toolkit's `web.yml` read it.
//! - A boolean is any word of Go's `strconv.ParseBool` (node_exporter's flags: `true`, `t`,
//!   `1`, ...) or of YAML 1.1 (go-yaml's, in `web.yml`: `yes`, `on`, `y`, ...), and the same
//!   for false: no two of them disagree, so whatever either Go reader takes means the same here.

/// A boolean: Go's `strconv.ParseBool` words and YAML 1.1's, as written (no other case).
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "true" | "True" | "TRUE" | "t" | "T" | "1" | "yes" | "Yes" | "YES" | "y" | "Y" | "on"
        | "On" | "ON" => Ok(true),
        "false" | "False" | "FALSE" | "f" | "F" | "0" | "no" | "No" | "NO" | "n" | "N" | "off"
        | "Off" | "OFF" => Ok(false),
        _ => Err(format!(
            "{text:?} is not one of true, false (or t, 1, yes, y, on; f, 0, no, n, off)"
        )),
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
    fn booleans_are_go_parse_bools_and_yaml_1_1s() {
        for t in [
            "true", "True", "TRUE", "t", "T", "1", "yes", "Yes", "YES", "y", "Y", "on",
        ] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in [
            "false", "False", "FALSE", "f", "F", "0", "no", "No", "NO", "n", "N", "off",
        ] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in [
            "", "tRUE", "maybe", "2", " true", "true ", "yES", "nil", "~",
        ] {
            let e = parse_bool(bad).unwrap_err();
            assert!(
                e.starts_with(&format!("{bad:?} is not one of true, false")),
                "{e}"
            );
        }
    }

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
}
