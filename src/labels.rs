//! Enums whose variants are Prometheus label values, declared once: the variants, their label
//! text, the list of all of them and each one's position come from one declaration, so a new
//! variant cannot be left out of `ALL` or of a per-variant table.

/// Declares a fieldless enum with `ALL` (every variant, in declaration order), `as_str` (its
/// label value) and `index` (its position in `ALL`, for per-variant arrays).
///
/// ```ignore
/// label_enum! {
///     /// Doc.
///     #[derive(Clone, Copy, Debug, PartialEq, Eq)]
///     pub enum Colour { Red = "red", Green = "green" }
/// }
/// ```
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $label:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$( $name::$variant ),+].len()] = [$( $name::$variant ),+];

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $label, )+
                }
            }

            /// Position in [`Self::ALL`], to index per-variant arrays.
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        impl $crate::labels::Label for $name {
            const COUNT: usize = $name::ALL.len();

            fn position(self) -> usize {
                self.index()
            }
        }
    };
}

/// A label enum, or a pair of them: how many values there are, and each one's position.
pub trait Label: Copy {
    const COUNT: usize;
    fn position(self) -> usize;
}

impl<A: Label, B: Label> Label for (A, B) {
    const COUNT: usize = A::COUNT * B::COUNT;

    fn position(self) -> usize {
        self.0.position() * B::COUNT + self.1.position()
    }
}

/// Which label values (reasons, sources, …) have been said: each is logged once, then only
/// counted, so that nothing a process can repeat floods the log.
#[derive(Clone, Copy, Debug)]
pub struct SaidOnce<K> {
    said: u64,
    key: std::marker::PhantomData<K>,
}

impl<K: Label> Default for SaidOnce<K> {
    fn default() -> Self {
        SaidOnce {
            said: 0,
            key: std::marker::PhantomData,
        }
    }
}

impl<K: Label> SaidOnce<K> {
    /// One bit a value: a key type of more than 64 values fails to build.
    const FITS: () = assert!(K::COUNT <= 64, "SaidOnce holds at most 64 values");

    /// Whether `key` is said for the first time now: true once, false ever after.
    pub fn first(&mut self, key: K) -> bool {
        let () = Self::FITS;
        let bit = 1u64 << key.position();
        let first = self.said & bit == 0;
        self.said |= bit;
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    label_enum! {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Colour { Red = "red", Green = "green", Blue = "blue" }
    }

    #[test]
    fn each_value_is_said_once_and_pairs_apart() {
        let mut said = SaidOnce::default();
        assert!(said.first(Colour::Green));
        assert!(!said.first(Colour::Green));
        assert!(said.first(Colour::Red));
        assert_eq!(Colour::Blue.as_str(), "blue");
        assert!(said.first(Colour::Blue));
        let mut pairs = SaidOnce::default();
        let all: Vec<_> = Colour::ALL
            .into_iter()
            .flat_map(|a| Colour::ALL.map(|b| (a, b)))
            .collect();
        assert!(all.iter().all(|&k| pairs.first(k)), "nine pairs, nine bits");
        assert!(all.iter().all(|&k| !pairs.first(k)));
    }
}
