//! The one encoder: every family, whether its samples come from the store or from the per-scan
//! view, is written here in the Prometheus text format 0.0.4, byte for byte as the `prometheus`
//! crate's `TextEncoder` wrote it from a registry (families in name order, empty ones left out,
//! samples sorted by label values in the order of the sorted label names, values by `f64`'s
//! `Display`), so that the exposition did not change when that crate left.

use std::io::Write;
use std::ops::Range;

use super::families::{Family, Id, Kind, Part, WrittenBy};
use super::store::{Observed, Store};

/// Where the text format is written: a buffer to append to, and after each sample a point
/// where what was appended may be taken away (compressed), so that a family of thousands of
/// samples is never held whole. A `Vec` keeps all of it.
pub trait TextOut {
    /// The buffer to append to.
    fn buf(&mut self) -> &mut Vec<u8>;
    /// The bytes written so far, those taken away included.
    fn written(&self) -> usize;
    /// A sample, or a family, is whole.
    fn whole(&mut self) {}
}

impl TextOut for Vec<u8> {
    fn buf(&mut self) -> &mut Vec<u8> {
        self
    }

    fn written(&self) -> usize {
        self.len()
    }
}

/// One series' value.
#[derive(Clone, Copy, Debug)]
pub enum Sample<'a> {
    /// A counter's or a gauge's.
    Number(f64),
    /// A histogram's: a count per bucket of the family's bounds, not cumulated.
    Histogram(&'a Observed),
}

/// `\`, newline and (in label values) `"` escaped, as the text format wants them.
fn write_escaped(out: &mut Vec<u8>, value: &str, quote: bool) {
    for b in value.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if quote => out.extend_from_slice(b"\\\""),
            _ => out.push(b),
        }
    }
}

/// Writes `family`'s samples: one series per row where `sample` gives a value, labelled with
/// `value(row, label)` for each of the family's labels, HELP and TYPE first; nothing where no
/// row has a value. The rows are sorted by index, with no list of label pairs per sample: at
/// 10,000 processes such lists were most of the encode's peak.
pub fn write_samples<'a, 's>(
    out: &mut impl TextOut,
    family: &Family,
    rows: usize,
    value: impl Fn(usize, usize) -> &'a str,
    sample: impl Fn(usize) -> Option<Sample<'s>>,
) {
    let labels = family.labels;
    let mut by_name: Vec<usize> = (0..labels.len()).collect();
    by_name.sort_unstable_by_key(|&k| labels[k]);
    let mut order: Vec<usize> = (0..rows).filter(|&r| sample(r).is_some()).collect();
    if order.is_empty() {
        return;
    }
    let (value, by_name) = (&value, &by_name);
    let key = |r: usize| by_name.iter().map(move |&k| value(r, k));
    order.sort_unstable_by(|&a, &b| key(a).cmp(key(b)));
    let head = out.buf();
    head.extend_from_slice(b"# HELP ");
    head.extend_from_slice(family.name.as_bytes());
    head.push(b' ');
    write_escaped(head, family.help, false);
    head.extend_from_slice(b"\n# TYPE ");
    head.extend_from_slice(family.name.as_bytes());
    head.push(b' ');
    head.extend_from_slice(family.kind.as_str().as_bytes());
    head.push(b'\n');
    for r in order {
        let labelled = |out: &mut Vec<u8>, suffix: &str, le: Option<&str>, v: f64| {
            out.extend_from_slice(family.name.as_bytes());
            out.extend_from_slice(suffix.as_bytes());
            let extra = le.map(|le| ("le", le));
            let pairs = by_name
                .iter()
                .map(|&k| (labels[k], value(r, k)))
                .chain(extra);
            for (i, (name, v)) in pairs.enumerate() {
                out.push(if i == 0 { b'{' } else { b',' });
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"=\"");
                write_escaped(out, v, true);
                out.push(b'"');
            }
            if !by_name.is_empty() || le.is_some() {
                out.push(b'}');
            }
            let _ = writeln!(out, " {v}");
        };
        match (sample(r), family.kind) {
            (Some(Sample::Histogram(h)), Kind::Histogram(bounds)) => {
                let mut cumulated = 0;
                for (bound, n) in bounds.iter().zip(&h.buckets) {
                    cumulated += n;
                    let le = bound.to_string();
                    labelled(out.buf(), "_bucket", Some(&le), cumulated as f64);
                }
                labelled(out.buf(), "_bucket", Some("+Inf"), h.count as f64);
                labelled(out.buf(), "_sum", None, h.sum);
                labelled(out.buf(), "_count", None, h.count as f64);
            }
            (Some(Sample::Number(v)), _) => labelled(out.buf(), "", None, v),
            (s, kind) => unreachable!("{}: a {s:?} for a {kind:?}", family.name),
        }
        out.whole();
    }
}

/// Writes family `id` from the store.
pub fn write_recorded(store: &Store, id: Id, out: &mut impl TextOut) {
    let family = id.family();
    if let Kind::Histogram(_) = family.kind {
        let rows: Vec<_> = store.histograms(id).collect();
        let value = |r: usize, k: usize| rows[r].0[k];
        write_samples(out, family, rows.len(), value, |r| {
            Some(Sample::Histogram(rows[r].1))
        });
    } else {
        let rows: Vec<_> = store.numbers(id).collect();
        let value = |r: usize, k: usize| rows[r].0[k];
        write_samples(out, family, rows.len(), value, |r| {
            Some(Sample::Number(rows[r].1))
        });
    }
}

/// Where a family the view writes went in an exposition's text.
pub type ViewRanges = Vec<(Id, Range<usize>)>;

/// Writes the families of `part` that `exported` takes, in name order: those of the store
/// from `store`, those of the view by `write_view(id, out)`. Where each of the latter went.
pub fn write_part<O: TextOut>(
    store: &Store,
    part: Part,
    exported: impl Fn(&Family) -> bool,
    out: &mut O,
    mut write_view: impl FnMut(Id, &mut O),
) -> ViewRanges {
    let mut ids: Vec<Id> = Id::ALL
        .into_iter()
        .filter(|id| {
            let f = id.family();
            f.part == part && exported(f)
        })
        .collect();
    ids.sort_unstable_by_key(|id| id.family().name);
    let mut ranges = ViewRanges::new();
    for id in ids {
        match id.family().written_by {
            WrittenBy::View => {
                let start = out.written();
                write_view(id, out);
                ranges.push((id, start..out.written()));
            }
            WrittenBy::Recorded | WrittenBy::OwnProcess => write_recorded(store, id, out),
        }
        out.whole();
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::super::families::handles as h;
    use super::*;
    use crate::model::NsType;

    fn written(store: &Store, id: Id) -> String {
        let mut out = Vec::new();
        write_recorded(store, id, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// A histogram as the text format has it: cumulated buckets with `le` after the other
    /// labels, `+Inf`, the sum and the count; values by `f64`'s `Display`.
    #[test]
    fn a_histogram_is_written_cumulated() {
        let mut store = Store::default();
        for v in [0.5, 3.0, 3.0, 1e7] {
            store.histogram(h::Lifetime, (NsType::Net,)).observe(v);
        }
        let text = written(&store, Id::Lifetime);
        let net: Vec<&str> = text.lines().filter(|l| l.contains("\"net\"")).collect();
        assert_eq!(
            net,
            [
                r#"nsexporter_namespace_lifetime_seconds_bucket{type="net",le="1"} 1"#,
                r#"nsexporter_namespace_lifetime_seconds_bucket{type="net",le="2.5"} 1"#,
                r#"nsexporter_namespace_lifetime_seconds_bucket{type="net",le="5"} 3"#,
                r#"nsexporter_namespace_lifetime_seconds_bucket{type="net",le="10"} 3"#,
                r#"nsexporter_namespace_lifetime_seconds_bucket{type="net",le="60"} 3"#,
                r#"nsexporter_namespace_lifetime_seconds_bucket{type="net",le="300"} 3"#,
                r#"nsexporter_namespace_lifetime_seconds_bucket{type="net",le="1800"} 3"#,
                r#"nsexporter_namespace_lifetime_seconds_bucket{type="net",le="3600"} 3"#,
                r#"nsexporter_namespace_lifetime_seconds_bucket{type="net",le="21600"} 3"#,
                r#"nsexporter_namespace_lifetime_seconds_bucket{type="net",le="86400"} 3"#,
                r#"nsexporter_namespace_lifetime_seconds_bucket{type="net",le="604800"} 3"#,
                r#"nsexporter_namespace_lifetime_seconds_bucket{type="net",le="2592000"} 3"#,
                r#"nsexporter_namespace_lifetime_seconds_bucket{type="net",le="+Inf"} 4"#,
                r#"nsexporter_namespace_lifetime_seconds_sum{type="net"} 10000006.5"#,
                r#"nsexporter_namespace_lifetime_seconds_count{type="net"} 4"#,
            ]
        );
        assert!(text.starts_with(
            "# HELP nsexporter_namespace_lifetime_seconds Lifetimes of destroyed namespaces"
        ));
        let mut store = Store::default();
        store.histogram(h::ScanDuration, ()).observe(0.002);
        let text = written(&store, Id::ScanDuration);
        assert!(
            text.contains("nsexporter_scan_duration_seconds_bucket{le=\"0.0025\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("nsexporter_scan_duration_seconds_sum 0.002\n"));
    }

    /// Counters and gauges: sorted by label values in label-name order, no braces without
    /// labels, and a family with no series not written at all.
    #[test]
    fn numbers_are_sorted_and_empty_families_left_out() {
        let mut store = Store::default();
        store.gauge(h::ScanInterval, ()).set(15.0);
        assert_eq!(
            written(&store, Id::ScanInterval).lines().last(),
            Some("nsexporter_scan_interval_seconds 15")
        );
        assert_eq!(written(&store, Id::OrphanMaxAge), "");
        store
            .gauge(
                h::OrphanMaxAge,
                (NsType::Uts, crate::model::HeldBy::default()),
            )
            .set(1.5);
        store
            .gauge(
                h::OrphanMaxAge,
                (NsType::Cgroup, crate::model::HeldBy::default()),
            )
            .set(2.0);
        let text = written(&store, Id::OrphanMaxAge);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        // held_by sorts before type: the equal held_by values leave the order to the type.
        assert_eq!(
            samples,
            [
                r#"nsexporter_orphaned_namespace_max_age_seconds{held_by="none",type="cgroup"} 2"#,
                r#"nsexporter_orphaned_namespace_max_age_seconds{held_by="none",type="uts"} 1.5"#,
            ]
        );
    }
}
