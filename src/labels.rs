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
    };
}
