//! Global options, parsed the way upstream's popt table parses them.
//!
//! Why not clap: the tool must be a drop-in for scripts written against
//! Samba's `ctdb`, whose option handling is popt's — options may appear
//! anywhere among the arguments (`ctdb pnn -n 0`), `--` ends options,
//! numbers are read with `strtoll(…, 0)` (so `0x10` and `010` work), and
//! every error is `Invalid option <arg>: <reason>` with exit code 1. clap's
//! grammar and messages differ in all of these, so the small popt subset the
//! tool uses is reproduced here, with popt's exact help and usage text.

/// The parsed global options (upstream's `options` struct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub debuglevel: Option<String>,
    pub timelimit: i32,
    pub pnn: i32,
    pub machinereadable: bool,
    pub sep: String,
    pub machineparsable: bool,
    pub verbose: bool,
    pub maxruntime: i32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            debuglevel: None,
            timelimit: 10,
            pnn: -1,
            machinereadable: false,
            sep: "|".to_string(),
            machineparsable: false,
            verbose: false,
            maxruntime: 0,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run with these options; `args` are the non-option arguments
    /// (command first).
    Run { opts: Options, args: Vec<String> },
    /// `-?`/`--help`: print [`HELP`] to stdout, exit 0.
    Help,
    /// `--usage`: print [`USAGE`] to stdout, exit 0.
    Usage,
    /// A bad option: print this line to stderr, exit 1.
    Error(String),
}

/// popt's option table help, as `ctdb --help` prints it.
pub const HELP: &str = "Usage: [OPTION...]
  -d, --debug=STRING       debug level
  -t, --timelimit=INT      timelimit (in seconds)
  -n, --node=INT           node specification - integer
  -Y                       enable machine readable output
  -x, --separator=CHAR     specify separator for machine readable output
  -X                       enable machine parsable output with separator |
  -v, --verbose            enable verbose output
  -T, --maxruntime=INT     die if runtime exceeds this limit (in seconds)

Help options:
  -?, --help               Show this help message
      --usage              Display brief usage message
";

/// popt's brief usage, as `ctdb --usage` prints it.
pub const USAGE: &str = "Usage: [-?YXv] [-?|--help] [--usage] [-d|--debug=STRING]
        [-t|--timelimit=INT] [-n|--node=INT] [-Y] [-x|--separator=CHAR]
        [-X] [-v|--verbose] [-T|--maxruntime=INT]
";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Help,
    Usage,
    Debug,
    Timelimit,
    Node,
    MachineReadable,
    Separator,
    MachineParsable,
    Verbose,
    MaxRuntime,
}

impl Kind {
    fn takes_arg(self) -> bool {
        matches!(
            self,
            Kind::Debug | Kind::Timelimit | Kind::Node | Kind::Separator | Kind::MaxRuntime
        )
    }

    fn short(c: char) -> Option<Kind> {
        Some(match c {
            '?' => Kind::Help,
            'd' => Kind::Debug,
            't' => Kind::Timelimit,
            'n' => Kind::Node,
            'Y' => Kind::MachineReadable,
            'x' => Kind::Separator,
            'X' => Kind::MachineParsable,
            'v' => Kind::Verbose,
            'T' => Kind::MaxRuntime,
            _ => return None,
        })
    }

    fn long(name: &str) -> Option<Kind> {
        Some(match name {
            "help" => Kind::Help,
            "usage" => Kind::Usage,
            "debug" => Kind::Debug,
            "timelimit" => Kind::Timelimit,
            "node" => Kind::Node,
            "separator" => Kind::Separator,
            "verbose" => Kind::Verbose,
            "maxruntime" => Kind::MaxRuntime,
            _ => return None,
        })
    }
}

/// `strtoll(s, &end, 0)` accepted only if it consumed everything, then
/// checked against the `int` range — popt's POPT_ARG_INT.
pub fn popt_int(s: &str) -> Result<i32, &'static str> {
    const BAD: &str = "invalid numeric value";
    const RANGE: &str = "number too large or too small";
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    if t.is_empty() {
        // strtoll consumed nothing; `end` points at the (empty) rest.
        return if s.is_empty() { Ok(0) } else { Err(BAD) };
    }
    let (neg, rest) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if (rest.starts_with("0x") || rest.starts_with("0X"))
        && rest[2..].starts_with(|c: char| c.is_ascii_hexdigit())
    {
        (16, &rest[2..])
    } else if rest.starts_with('0') {
        (8, rest)
    } else {
        (10, rest)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(BAD);
    }
    let mut v: i128 = 0;
    for c in digits.chars() {
        v = v * radix as i128 + c.to_digit(radix).unwrap_or(0) as i128;
        if v > i64::MAX as i128 + 1 {
            return Err(RANGE);
        }
    }
    if neg {
        v = -v;
    }
    if v > i32::MAX as i128 || v < i32::MIN as i128 {
        return Err(RANGE);
    }
    Ok(v as i32)
}

/// Parses `argv[1..]` as popt would with upstream's option table.
pub fn parse(args: &[String]) -> Parsed {
    let mut opts = Options::default();
    let mut rest = Vec::new();
    let mut i = 0;
    let mut only_args = false;

    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if only_args || arg == "-" || !arg.starts_with('-') {
            rest.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_args = true;
            continue;
        }

        if let Some(long) = arg.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let kind = match Kind::long(name) {
                Some(k) => k,
                None => return bad(arg, "unknown option"),
            };
            if !kind.takes_arg() {
                if value.is_some() {
                    return bad(arg, "option does not take an argument");
                }
                match apply_flag(&mut opts, kind) {
                    Some(p) => return p,
                    None => continue,
                }
            }
            let (value, shown) = match value {
                Some(v) => (v, arg.clone()),
                None => {
                    if i >= args.len() {
                        return bad(arg, "missing argument");
                    }
                    i += 1;
                    (args[i - 1].clone(), args[i - 1].clone())
                }
            };
            if let Err(e) = apply_value(&mut opts, kind, &value) {
                return bad(&shown, e);
            }
            continue;
        }

        // A cluster of short options, e.g. "-Yn0" or "-x|".
        let chars: Vec<char> = arg[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let kind = match Kind::short(chars[j]) {
                Some(k) => k,
                None => return bad(arg, "unknown option"),
            };
            j += 1;
            if !kind.takes_arg() {
                if let Some(p) = apply_flag(&mut opts, kind) {
                    return p;
                }
                continue;
            }
            let attached: String = chars[j..].iter().collect();
            let (value, shown) = if !attached.is_empty() {
                let v = attached.strip_prefix('=').unwrap_or(&attached).to_string();
                (v, arg.clone())
            } else {
                if i >= args.len() {
                    return bad(arg, "missing argument");
                }
                i += 1;
                (args[i - 1].clone(), args[i - 1].clone())
            };
            if let Err(e) = apply_value(&mut opts, kind, &value) {
                return bad(&shown, e);
            }
            break;
        }
    }

    Parsed::Run { opts, args: rest }
}

fn bad(arg: &str, why: &str) -> Parsed {
    Parsed::Error(format!("Invalid option {arg}: {why}"))
}

fn apply_flag(opts: &mut Options, kind: Kind) -> Option<Parsed> {
    match kind {
        Kind::Help => return Some(Parsed::Help),
        Kind::Usage => return Some(Parsed::Usage),
        Kind::MachineReadable => opts.machinereadable = true,
        Kind::MachineParsable => opts.machineparsable = true,
        Kind::Verbose => opts.verbose = true,
        _ => {}
    }
    None
}

fn apply_value(opts: &mut Options, kind: Kind, value: &str) -> Result<(), &'static str> {
    match kind {
        Kind::Debug => opts.debuglevel = Some(value.to_string()),
        Kind::Separator => opts.sep = value.to_string(),
        Kind::Timelimit => opts.timelimit = popt_int(value)?,
        Kind::Node => opts.pnn = popt_int(value)?,
        Kind::MaxRuntime => opts.maxruntime = popt_int(value)?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Parsed {
        let v: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        parse(&v)
    }

    fn run(s: &str) -> (Options, Vec<String>) {
        match p(s) {
            Parsed::Run { opts, args } => (opts, args),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn options_anywhere() {
        let (o, a) = run("pnn -n 0");
        assert_eq!((o.pnn, a), (0, vec!["pnn".to_string()]));
        let (o, _) = run("-Yn0 -x: pnn");
        assert_eq!(o.sep, ":");
        assert!(o.machinereadable);
        assert_eq!(o.pnn, 0);
        let (o, a) = run("-x -Y getcapabilities");
        assert_eq!(o.sep, "-Y");
        assert_eq!(a, vec!["getcapabilities".to_string()]);
        let (_, a) = run("getvar -- -x");
        assert_eq!(a, vec!["getvar".to_string(), "-x".to_string()]);
    }

    #[test]
    fn popt_errors() {
        assert_eq!(
            p("-q pnn"),
            Parsed::Error("Invalid option -q: unknown option".into())
        );
        assert_eq!(
            p("-n x pnn"),
            Parsed::Error("Invalid option x: invalid numeric value".into())
        );
        assert_eq!(
            p("-nn pnn"),
            Parsed::Error("Invalid option -nn: invalid numeric value".into())
        );
        assert_eq!(
            p("-Yx"),
            Parsed::Error("Invalid option -Yx: missing argument".into())
        );
        assert_eq!(
            p("--help=x"),
            Parsed::Error("Invalid option --help=x: option does not take an argument".into())
        );
        assert_eq!(
            p("--nod=0 pnn"),
            Parsed::Error("Invalid option --nod=0: unknown option".into())
        );
        assert_eq!(p("-? -q"), Parsed::Help);
        assert_eq!(p("pnn --usage"), Parsed::Usage);
    }

    #[test]
    fn popt_numbers() {
        assert_eq!(popt_int("010"), Ok(8));
        assert_eq!(popt_int("0x10"), Ok(16));
        assert_eq!(popt_int(""), Ok(0));
        assert_eq!(popt_int(" 0"), Ok(0));
        assert_eq!(popt_int("+0"), Ok(0));
        assert_eq!(popt_int("-2147483648"), Ok(i32::MIN));
        assert_eq!(popt_int("2147483648"), Err("number too large or too small"));
        assert_eq!(
            popt_int("99999999999999999999999"),
            Err("number too large or too small")
        );
        assert_eq!(popt_int("1e2"), Err("invalid numeric value"));
        assert_eq!(popt_int("0junk"), Err("invalid numeric value"));
        assert_eq!(popt_int(" "), Err("invalid numeric value"));
    }
}
