//! Everything ctdbd 4.17 reads from its configuration directory, with
//! upstream's names, defaults and validation rules.
//!
//! A drop-in replacement must accept exactly the files an existing cluster
//! already has, reject what upstream rejects, and print what upstream
//! prints; this crate is where those rules live so the daemon and the
//! tools share one reading of them.
//!
//! # Files
//!
//! | file | type | where |
//! |---|---|---|
//! | `ctdb.conf` (or `ctdb.toml`) | [`Config`] | [`Paths::config_file`] (etcdir) |
//! | `ctdb.tunables` | [`Tunables`] | [`Paths::tunables_file`] (etcdir) |
//! | `nodes` | [`Nodes`] | [`Paths::nodes_file`] (`$CTDB_BASE`) |
//! | `public_addresses` | [`PublicAddresses`] | [`Paths::public_addresses_file`] |
//! | `script.options` | [`ScriptOptions`] | [`Paths::script_options_file`] |
//! | `notify.sh` | [`NotifyScript`] | [`Paths::notification_script`] |
//!
//! # API in brief
//!
//! ```no_run
//! use ctdb_config::*;
//! # fn main() -> Result<(), ConfigError> {
//! let mut paths = Paths::from_env()?;              // CTDB_BASE, CTDB_TEST_MODE, CTDB_SOCKET
//! let mut config = Config::load(&paths.etcdir)?;  // ctdb.conf or ctdb.toml, strict
//! // or Config::load_with(&paths.etcdir, LoadOptions::ctdbd()) to ignore unknown keys as ctdbd does
//! ConfigOverrides { nosetsched: true, ..Default::default() }.apply(&mut config, &mut paths)?;
//! let _timeout: u32 = config.leader_timeout();
//! let _lock: Option<&str> = config.cluster_lock();
//! print!("{}", config.dump());                    // same text as `ctdb-config dump`
//!
//! let mut tunables = Tunables::load(&paths.tunables_file())?;
//! assert_eq!(tunables.set("recovertimeout", 60)?, SetOutcome::Set);
//! let _v: Option<u32> = tunables.get("RecoverTimeout");
//! for (_name, _value) in tunables.list() {}       // `ctdb listvars` order
//! let _wire: [u32; 62] = tunables.to_wire();      // GET_ALL_TUNABLES order
//!
//! let nodes = Nodes::load(&paths.nodes_file())?;  // deleted ('#') nodes keep their PNN
//! let ips = PublicAddresses::load(&paths.public_addresses_file())?;
//! # let _ = (nodes, ips); Ok(()) }
//! ```
//!
//! # ctdb.conf
//!
//! The ini dialect and its quirks are described in the `ini` module's
//! source and in [`conf`]; options are listed by [`options`]. In short:
//! sections `[logging] [cluster] [database] [event] [failover] [legacy]`,
//! case-insensitive; keys with spaces, case-sensitive; no trailing
//! comments; booleans `true/yes/false/no`.
//!
//! [`Config::load`] is strict: an unknown section or key is an error, as in
//! `ctdb-config validate`. ctdbd itself ignores them;
//! [`LoadOptions::ctdbd`] does that (and records a [`Warning`]). Empty
//! values, values of the wrong type and values the option's validator
//! rejects (non-existent database directory, transport other than `tcp`,
//! malformed node address, unknown log level ...) are errors in every mode.
//!
//! # ctdb.toml
//!
//! The same options as TOML, for those who prefer it: each section is a
//! table, each key is quoted because of its spaces, values are TOML
//! strings, integers and booleans:
//!
//! ```toml
//! [cluster]
//! "node address" = "10.0.0.1"
//! "leader timeout" = 10
//! [legacy]
//! "realtime scheduling" = false
//! ```
//!
//! Precedence: `ctdb.toml` is read only if `ctdb.conf` does not exist. If
//! both exist, loading fails with [`ConfigError::BothConfigFiles`] naming
//! both, rather than silently preferring one. Everything after parsing
//! (validation, "equal to default stays default", dump) is shared, so a
//! `ctdb.toml` and a `ctdb.conf` with the same settings dump identically.
//! [`Config::dump_toml`] writes a `ctdb.toml` from any configuration.
//!
//! # Errors
//!
//! One type, [`ConfigError`]; line errors display as
//! `path:line: reason`, e.g.
//! `/etc/ctdb/ctdb.conf:12: unknown key "foo" in section [cluster]`, and
//! carry an [`ErrorKind`]. Files with several problems report all of them
//! ([`ConfigError::Several`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod conf;
mod error;
mod ini;
pub mod logging;
pub mod nodes;
mod overrides;
pub mod paths;
pub mod public_addresses;
pub mod script_options;
pub mod tunables;

pub use conf::{options, Config, Defaults, LoadOptions, OptionInfo, OptionType, Value, Warning};
pub use error::{ConfigError, ErrorKind};
pub use logging::{DebugLevel, LogLocation, SyslogMethod};
pub use nodes::{NodeEntry, Nodes};
pub use overrides::ConfigOverrides;
pub use paths::{NotifyScript, Paths};
pub use public_addresses::{PublicAddress, PublicAddresses};
pub use script_options::ScriptOptions;
pub use tunables::{SetOutcome, TunableInfo, Tunables};
