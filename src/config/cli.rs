//! The command line: the key table's flags, kingpin's switches for its booleans, and the
//! subcommands.

use clap::{Parser, Subcommand, ValueEnum};

use super::keys::{Flags, KEYS, Key};

/// nsexporter: a Prometheus exporter that makes Linux kernel namespaces visible.
#[derive(Debug, Parser)]
#[command(name = "nsexporter", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub flags: Flags,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The command line, with kingpin's switches for every boolean key (node_exporter's
    /// users type `--collector.x` and `--no-collector.x`): `--flag` alone means true
    /// (`--flag=VALUE` still takes a value, and only with `=`, so that the next argument is
    /// never taken for one), and `--no-flag` means false; of the two, the last one given wins.
    pub fn command_with_switches() -> clap::Command {
        use clap::{Arg, ArgAction, CommandFactory};
        let mut command = <Cli as CommandFactory>::command();
        // Each `--no-` flag right after its flag in `--help`: every flag's place, in steps of 2.
        let ids: Vec<clap::Id> = command
            .get_arguments()
            .map(|a| a.get_id().clone())
            .collect();
        for (i, id) in ids.iter().enumerate() {
            command = command.mut_arg(id, |arg| arg.display_order(2 * i));
        }
        for key in KEYS.iter().filter(|k| k.switch) {
            let place = ids.iter().position(|id| id == key.id).unwrap_or(ids.len());
            let no = no_id(key);
            command = command
                .mut_arg(key.id, |arg| {
                    arg.num_args(0..=1)
                        .require_equals(true)
                        .default_missing_value("true")
                        .overrides_with(no.clone())
                })
                .arg(
                    Arg::new(no.clone())
                        .long(format!("no-{}", key.long))
                        .global(true)
                        .action(ArgAction::SetTrue)
                        .overrides_with(key.id)
                        .display_order(2 * place + 1)
                        .help(format!(
                            "{}: false (the same as --{}=false)",
                            key.name, key.long
                        )),
                );
        }
        command
    }

    /// Parses `args` (the program's name first) with [`Cli::command_with_switches`].
    pub fn try_parse_with_switches<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches;
        let matches = Cli::command_with_switches().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        for key in KEYS.iter().filter(|k| k.switch) {
            // A switch given after a subcommand is in that subcommand's matches.
            let given = |m: &clap::ArgMatches| m.get_flag(&no_id(key));
            let after = matches.subcommand().is_some_and(|(_, m)| given(m));
            if given(&matches) || after {
                (key.set_flag)(&mut cli.flags, "false");
            }
        }
        Ok(cli)
    }
}

/// The clap id of a switch's `--no-` flag.
fn no_id(key: &Key) -> String {
    format!("no_{}", key.id)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan once and list namespaces, like lsns.
    List {
        /// Only namespaces of this type.
        #[arg(long = "type", value_name = "TYPE")]
        ns_type: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Draw the table as a tree of this relation, like `lsns --tree`.
        #[arg(long, value_enum, value_name = "RELATION", conflicts_with = "output")]
        tree: Option<crate::list::Tree>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}
