//! The series of the families that a record sets or adds to (counters, histograms, and gauges
//! set from a scan's counts), kept by label values, and the typed handles that name them.
//!
//! A handle carries its family's kind and label types ([`Handle<Counter, (NsType,)>`]), and the
//! families table checks each handle against its row when it compiles: a counter recorded as
//! a gauge, or given the wrong labels, is a type error, not a panic at run time.

use std::collections::BTreeMap;

pub use super::families::handle::{
    Counter, Gauge, Handle, Histogram, KindOf, LabelSet, LabelValue,
};
use super::families::{FAMILIES, Id, Kind};

/// One family's series, by label values.
type Series<V> = BTreeMap<Box<[&'static str]>, V>;

/// A histogram's series: a count per bucket (not cumulated), the sum and the count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub buckets: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

/// The series of every family that a record sets, by [`Id`]; the others' stay empty.
pub struct Store {
    numbers: Vec<Series<f64>>,
    histograms: Vec<Series<Observed>>,
}

impl Default for Store {
    /// Every family with its preset series at 0: those without labels, and every combination
    /// of listed values for those whose labels are all listed.
    fn default() -> Self {
        let mut store = Store {
            numbers: FAMILIES.iter().map(|_| Series::new()).collect(),
            histograms: FAMILIES.iter().map(|_| Series::new()).collect(),
        };
        for (id, f) in Id::ALL.into_iter().map(|id| (id, id.family())) {
            if f.preset.len() != f.labels.len() {
                continue;
            }
            let lists: Vec<Vec<&'static str>> = f.preset.iter().map(|values| values()).collect();
            for values in combinations(&lists) {
                match f.kind {
                    Kind::Histogram(bounds) => drop(store.observed(id, &values, bounds)),
                    _ => drop(store.number(id, &values)),
                }
            }
        }
        store
    }
}

/// Every combination of one value from each list, in order; one empty combination of none.
fn combinations(lists: &[Vec<&'static str>]) -> Vec<Vec<&'static str>> {
    lists.iter().fold(vec![Vec::new()], |done, list| {
        done.iter()
            .flat_map(|head| {
                list.iter().map(move |v| {
                    let mut c = head.clone();
                    c.push(*v);
                    c
                })
            })
            .collect()
    })
}

impl Store {
    fn number(&mut self, id: Id, values: &[&'static str]) -> &mut f64 {
        let series = &mut self.numbers[id.index()];
        if !series.contains_key(values) {
            series.insert(values.into(), 0.0);
        }
        series.get_mut(values).expect("inserted above")
    }

    fn observed(&mut self, id: Id, values: &[&'static str], bounds: &[f64]) -> &mut Observed {
        self.histograms[id.index()]
            .entry(values.into())
            .or_insert_with(|| Observed {
                buckets: vec![0; bounds.len()],
                ..Observed::default()
            })
    }

    /// The counter of `labels`, made at 0 where it was not.
    pub fn counter<L: LabelSet>(&mut self, h: Handle<Counter, L>, labels: L) -> CounterMut<'_> {
        CounterMut(self.number(h.id(), labels.values().as_ref()))
    }

    /// The gauge of `labels`, made at 0 where it was not.
    pub fn gauge<L: LabelSet>(&mut self, h: Handle<Gauge, L>, labels: L) -> GaugeMut<'_> {
        GaugeMut(self.number(h.id(), labels.values().as_ref()))
    }

    /// The histogram of `labels`, made empty where it was not.
    pub fn histogram<L: LabelSet>(
        &mut self,
        h: Handle<Histogram, L>,
        labels: L,
    ) -> HistogramMut<'_> {
        let Kind::Histogram(bounds) = h.id().family().kind else {
            unreachable!("the families table checks a histogram's handle against its row")
        };
        HistogramMut {
            observed: self.observed(h.id(), labels.values().as_ref(), bounds),
            bounds,
        }
    }

    /// Removes every series of a gauge: those set again are there, the rest go.
    pub fn reset<L: LabelSet>(&mut self, h: Handle<Gauge, L>) {
        self.numbers[h.id().index()].clear();
    }

    /// The series of a counter or gauge family, by label values, in no particular order.
    pub fn numbers(&self, id: Id) -> impl ExactSizeIterator<Item = (&[&'static str], f64)> {
        self.numbers[id.index()].iter().map(|(k, v)| (&**k, *v))
    }

    /// The series of a histogram family, by label values, in no particular order.
    pub fn histograms(
        &self,
        id: Id,
    ) -> impl ExactSizeIterator<Item = (&[&'static str], &Observed)> {
        self.histograms[id.index()].iter().map(|(k, v)| (&**k, v))
    }
}

/// A counter's series.
pub struct CounterMut<'a>(&'a mut f64);

impl CounterMut<'_> {
    pub fn inc(self) {
        self.inc_by(1);
    }

    pub fn inc_by(self, n: u64) {
        *self.0 += n as f64;
    }

    /// Brought up to `total`, counted elsewhere; never down.
    pub fn raise_to(self, total: f64) {
        let delta = total - *self.0;
        if delta > 0.0 {
            *self.0 += delta;
        }
    }
}

/// A gauge's series.
pub struct GaugeMut<'a>(&'a mut f64);

impl GaugeMut<'_> {
    pub fn set(self, value: f64) {
        *self.0 = value;
    }
}

/// A histogram's series.
pub struct HistogramMut<'a> {
    observed: &'a mut Observed,
    bounds: &'static [f64],
}

impl HistogramMut<'_> {
    /// Counts `value` in the first bucket whose bound is at or above it (none: only in
    /// `+Inf`, which is the count), and adds it to the sum.
    pub fn observe(self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.observed.buckets[i] += 1;
        }
        self.observed.sum += value;
        self.observed.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::families::handles as h;
    use super::*;
    use crate::model::NsType;
    use crate::policy::Rule;

    /// Presets are there at 0; a record adds to its own series only; a reset gauge loses the
    /// series not set again.
    #[test]
    fn records_go_to_their_series() {
        let mut s = Store::default();
        let created = |s: &Store| -> Vec<(Vec<&str>, f64)> {
            let mut v: Vec<_> = s
                .numbers(Id::Created)
                .map(|(k, v)| (k.to_vec(), v))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(created(&s).len(), NsType::ALL.len());
        assert!(created(&s).iter().all(|(_, v)| *v == 0.0));
        s.counter(h::Created, (NsType::Net,)).inc();
        s.counter(h::Created, (NsType::Net,)).inc_by(2);
        assert_eq!(
            created(&s).iter().find(|(k, _)| k == &["net"]).unwrap().1,
            3.0
        );
        assert_eq!(created(&s).iter().map(|(_, v)| v).sum::<f64>(), 3.0);
        s.counter(h::FindingsTotal, (Rule::HostNamespace, NsType::Pid))
            .raise_to(5.0);
        s.counter(h::FindingsTotal, (Rule::HostNamespace, NsType::Pid))
            .raise_to(4.0);
        let findings: Vec<_> = s
            .numbers(Id::FindingsTotal)
            .filter(|(_, v)| *v > 0.0)
            .collect();
        assert_eq!(findings, [(&["host_namespace", "pid"][..], 5.0)]);

        s.gauge(
            h::OrphanMaxAge,
            (NsType::Net, crate::model::HeldBy::default()),
        )
        .set(2.0);
        assert_eq!(s.numbers(Id::OrphanMaxAge).len(), 1);
        s.reset(h::OrphanMaxAge);
        assert_eq!(s.numbers(Id::OrphanMaxAge).len(), 0);
    }

    /// A value counts in the first bucket at or above it, a value above every bound in none
    /// (the count has it), and the sum adds them in order.
    #[test]
    fn a_histogram_counts_in_its_bucket() {
        let mut s = Store::default();
        for v in [0.0005, 0.001, 0.3, 100.0] {
            s.histogram(h::ScanDuration, ()).observe(v);
        }
        let (labels, o) = s.histograms(Id::ScanDuration).next().unwrap();
        assert!(labels.is_empty());
        assert_eq!(o.buckets, [2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(o.count, 4);
        assert_eq!(o.sum, 0.0005 + 0.001 + 0.3 + 100.0);
    }
}
