//! The macro that turns the key table in [`super::keys`] into everything that names a key, so
//! that the table is the only place a key is written down.
//!
//! Every entry is
//!
//! ```text
//! key as field: Type {
//!     flag: "section.flag-name" <VALUE>,
//!     default: "text",
//!     parse: function,
//!     help: "Help text",
//! }
//! ```
//!
//! inside `section: RawSection { .. }`. From it come: the YAML section struct (`key:` in
//! `section:`, which also names the variable `NSEXPORTER_SECTION__KEY`); the clap flag
//! (`Flags::field`, whose help gets ` [default: ...]` appended); the key's [`super::keys::Key`]
//! (`KEY.field`, in the list `KEYS` in the table's order, which is `--help`'s); and the
//! [`super::keys::Settings`] field `field: Type`, documented by the help. The default is text and
//! goes through `parse` as a value from any other source does. `parse` is a function from the
//! key's text to `Type`, `Err` a problem said after the key's name: one of [`super::value`]'s or,
//! for a key with more to check than its type, [`super::check`]'s. A key whose value is `<BOOL>`
//! is a switch, as kingpin's boolean flags are: `--flag` is true, `--no-flag` false,
//! `--flag=VALUE` any boolean ([`super::cli::Cli::command_with_switches`]).
//!
//! The names it uses (`Key`, `Flags`, `Policy`, ...) are those in scope where it is invoked.

macro_rules! config_keys {
    ($(
        $section:ident: $Section:ident {$(
            $key:ident as $field:ident: $ty:ty {
                flag: $flag:literal <$value:ident>,
                default: $default:expr,
                parse: $parse:expr,
                help: $help:literal $(,)?
            }
        ),+ $(,)?}
    )+) => {
        /// The configuration as written, before validation: each key's value as `config`
        /// merged it, text or a YAML node that is no text.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawConfig {
            $(pub $section: $Section,)+
            /// File only: a list of rules is no flag.
            #[serde(default)]
            pub policy: RawPolicy,
        }

        $(
            #[doc = concat!("The `", stringify!($section), ":` section, every key defaulted.")]
            #[derive(Debug, Deserialize)]
            #[serde(deny_unknown_fields)]
            pub struct $Section {$(
                #[doc = concat!($help, ".")]
                pub $key: config::Value,
            )+}
        )+

        /// Flags shared by every command. Unset flags leave the key to the environment, file or
        /// default. A value is text here: it is parsed with the other sources' values, so that
        /// a bad one gets the same message wherever it came from.
        #[derive(Clone, Debug, Default, Args)]
        pub struct Flags {
            /// YAML configuration file.
            #[arg(long = "config.file", global = true, value_name = "FILE")]
            pub config_file: Option<PathBuf>,
            $($(
                #[arg(
                    long = $flag,
                    global = true,
                    value_name = stringify!($value),
                    help = format!("{} [default: {}]", $help, shown($default)),
                )]
                pub $field: Option<String>,
            )+)+
        }

        /// Every key, each under the name of the [`Settings`] field it fills.
        pub struct Keys {$($(
            #[doc = concat!("`", stringify!($section), ".", stringify!($key), "`.")]
            pub $field: Key,
        )+)+}

        /// The key table.
        pub static KEY: Keys = Keys {$($(
            $field: Key {
                name: concat!(stringify!($section), ".", stringify!($key)),
                long: $flag,
                id: stringify!($field),
                default: $default,
                switch: matches!(stringify!($value).as_bytes(), b"BOOL"),
                flag: |flags: &Flags| flags.$field.as_deref(),
                set_flag: |flags: &mut Flags, value: &str| flags.$field = Some(value.to_owned()),
            },
        )+)+};

        /// Every key but the policy's, in the order of the table and of `--help`.
        pub static KEYS: &[&Key] = &[$($(&KEY.$field,)+)+];

        /// Validated settings: a field for each key, and the policy.
        #[derive(Clone, Debug)]
        pub struct Settings {
            $($(
                #[doc = concat!(
                    "`", stringify!($section), ".", stringify!($key), "`: ", $help, "."
                )]
                pub $field: $ty,
            )+)+
            /// The `policy:` section of the config file.
            pub policy: Policy,
        }

        impl Settings {
            /// Each key's value parsed and checked, in the table's order, with the default
            /// policy; and the policy as written, left for the checks across keys to go first.
            pub(super) fn of_keys(raw: RawConfig) -> Result<(Settings, RawPolicy), ConfigError> {
                let RawConfig { $($section,)+ policy } = raw;
                let settings = Settings {
                    $($($field: KEY.$field.parse($section.$key, $parse)?,)+)+
                    policy: Policy::default(),
                };
                Ok((settings, policy))
            }
        }
    };
}

pub(super) use config_keys;
