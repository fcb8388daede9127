//! A family's typed handle, which the families table hands out: its kind ([`Counter`],
//! [`Gauge`], [`Histogram`]) and its label types as types, so that the store takes a series
//! only of the kind and with the labels of its row. Below the table, so that the table and the
//! store each import it and not each other.

use std::marker::PhantomData;

use super::{Id, Kind};

/// A label's value as the exposition writes it: the label enums, and text fixed at build time.
pub trait LabelValue: Copy {
    fn label(self) -> &'static str;
}

/// Implements [`LabelValue`] by the type's `as_str`.
macro_rules! label_values {
    ($($t:ty),+ $(,)?) => {
        $(impl LabelValue for $t {
            fn label(self) -> &'static str {
                self.as_str()
            }
        })+
    };
}

label_values!(
    crate::model::NsType,
    crate::model::HeldBy,
    crate::model::CgroupLayout,
    crate::model::Identity,
    crate::model::HostSource,
    crate::model::ChangeSyscall,
    crate::model::SocketProtocol,
    crate::policy::Rule,
    crate::privilege::Level,
    crate::scan::pins::SocketSkip,
    crate::scan::FailureReason,
    crate::scan::ErrorReason,
    crate::attribution::NameSource,
    crate::attribution::NameErrorReason,
    crate::events::DropReason,
    crate::events::LostReason,
    crate::events::TaskKind,
    crate::scan::refresh::WalkReason,
    crate::scan::refresh::ScanMode,
);

impl LabelValue for &'static str {
    fn label(self) -> &'static str {
        self
    }
}

/// The label values of one series, in the order of the family's labels.
pub trait LabelSet: Copy {
    /// How many labels.
    const LEN: usize;
    type Values: AsRef<[&'static str]>;
    fn values(self) -> Self::Values;
}

impl LabelSet for () {
    const LEN: usize = 0;
    type Values = [&'static str; 0];
    fn values(self) -> Self::Values {
        []
    }
}

impl<A: LabelValue> LabelSet for (A,) {
    const LEN: usize = 1;
    type Values = [&'static str; 1];
    fn values(self) -> Self::Values {
        [self.0.label()]
    }
}

impl<A: LabelValue, B: LabelValue> LabelSet for (A, B) {
    const LEN: usize = 2;
    type Values = [&'static str; 2];
    fn values(self) -> Self::Values {
        [self.0.label(), self.1.label()]
    }
}

/// A family's kind, as a type.
pub trait KindOf {
    /// The table's kind it stands for (a histogram's buckets are the row's).
    const KIND: Kind;
}

/// A counter: only goes up.
pub struct Counter;
/// A gauge: set to a value.
pub struct Gauge;
/// A histogram with the bucket bounds of its row.
pub struct Histogram;

impl KindOf for Counter {
    const KIND: Kind = Kind::Counter;
}

impl KindOf for Gauge {
    const KIND: Kind = Kind::Gauge;
}

impl KindOf for Histogram {
    const KIND: Kind = Kind::Histogram(&[]);
}

/// A family that a record sets, of kind `K` with labels `L`; made only by the families table,
/// which checks both against its row.
///
/// ```
/// use nsexporter::metrics::families::handles as h;
/// use nsexporter::metrics::store::Store;
/// use nsexporter::model::NsType;
/// let mut store = Store::default();
/// store.counter(h::Created, (NsType::Net,)).inc();
/// store.gauge(h::Namespaces, (NsType::Net,)).set(3.0);
/// ```
///
/// A counter recorded as a gauge does not compile:
///
/// ```compile_fail
/// # use nsexporter::metrics::{families::handles as h, store::Store};
/// # use nsexporter::model::NsType;
/// Store::default().gauge(h::Created, (NsType::Net,)).set(1.0);
/// ```
///
/// Nor does a series given the wrong labels:
///
/// ```compile_fail
/// # use nsexporter::metrics::{families::handles as h, store::Store};
/// # use nsexporter::policy::Rule;
/// Store::default().counter(h::Created, (Rule::HostNamespace,)).inc();
/// ```
pub struct Handle<K, L> {
    id: Id,
    kind: PhantomData<fn() -> (K, L)>,
}

impl<K, L> Clone for Handle<K, L> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, L> Copy for Handle<K, L> {}

impl<K: KindOf, L: LabelSet> Handle<K, L> {
    /// For the families table only, which checks the kind and the labels against the row.
    pub(super) const fn new(id: Id) -> Self {
        Handle {
            id,
            kind: PhantomData,
        }
    }

    pub fn id(self) -> Id {
        self.id
    }
}
