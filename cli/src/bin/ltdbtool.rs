//! `ltdbtool`: dump and convert CTDB local databases (TDB files whose
//! values start with a `struct ctdb_ltdb_header`), compatible with Samba
//! 4.17's tool: the same options (`-s/-S` input header size, `-o/-O` output
//! header size, `-e` keep empty records, `-p` print headers, `-h`), the same
//! tdbdump-style output, messages and exit codes (255 for usage and open
//! errors). Records are read and written with `ctdb-engine`.
//!
//! Converting writes a fresh TDB with libtdb's defaults (131 chains, the
//! old hash), storing records in traversal order, so the output file is the
//! one upstream's tool produces.
#![deny(unsafe_code)]

#[path = "../tools/mod.rs"]
mod tools;

use std::ffi::OsString;
use std::fs::OpenOptions as FsOpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use ctdb_engine::{Database, OpenOptions, StoreFlag, Walk};
use tools::error::ToolError;
use tools::getopt::{self, Item, Style};

/// Largest header the tool handles (`sizeof(struct ctdb_ltdb_header)` on
/// 64-bit systems).
const MAX_HEADER: usize = 24;

fn help(prog: &str) -> u8 {
    let text = format!(
        "Usage: {prog} [options] <command>\n\
\n\
Options:\n\
\x20  -s {{0|32|64}}    specify how to determine the ctdb record header size\n\
\x20                  for the input database:\n\
\x20                  0: no ctdb header\n\
\x20                  32: ctdb header size of a 32 bit system (20 bytes)\n\
\x20                  64: ctdb header size of a 64 bit system (24 bytes)\n\
\x20                  default: 32 or 64 depending on the system architecture\n\
\n\
\x20  -S <num>        the number of bytes to interpret as ctdb record header\n\
\x20                  for the input database (beware!)\n\
\n\
\x20  -o {{0|32|64}}    specify how to determine the ctdb record header size\n\
\x20                  for the output database\n\
\x20                  0: no ctdb header\n\
\x20                  32: ctdb header size of a 32 bit system (20 bytes)\n\
\x20                  64: ctdb header size of a 64 bit system (24 bytes)\n\
\x20                  default: 32 or 64 depending on the system architecture\n\
\n\
\x20  -O <num>        the number of bytes to interpret as ctdb record header\n\
\x20                  for the output database (beware!)\n\
\n\
\x20  -e              Include empty records, defaults to off\n\
\n\
\x20  -p              print header (for the dump command), defaults to off\n\
\n\
\x20  -h              print this help\n\
\n\
Commands:\n\
\x20 help                         print this help\n\
\x20 dump <db>                    dump the db to stdout\n\
\x20 convert <in_db> <out_db>     convert the db\n\n"
    );
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    0
}

fn usage(prog: &str) -> u8 {
    eprint!(
        "Usage: {prog} dump [-e] [-p] [-s{{0|32|64}}] <idb>\n\
\x20      {prog} convert [-e] [-s{{0|32|64}}] [-o{{0|32|64}}] <idb> <odb>\n\
\x20      {prog} {{help|-h}}\n"
    );
    255
}

/// C `strtol(s, NULL, 10)`: leading blanks, optional sign, digits, rest
/// ignored; no digits gives 0. `None` on overflow (ERANGE).
fn strtol(s: &str) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        let d = (b - b'0') as i64;
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(d)?
        } else {
            v.checked_add(d)?
        };
    }
    Some(v)
}

/// `-s/-o` (`raw == false`: 0, 32 or 64 meaning 0, 20 or 24 bytes) and
/// `-S/-O` (`raw`: a byte count, capped at 24). Negative byte counts, which
/// upstream turns into a huge size and then reads out of bounds with, are
/// rejected.
fn parse_size(arg: &str, raw: bool) -> Option<usize> {
    let v = strtol(arg)?;
    let v = if raw {
        v
    } else {
        match v {
            0 => 0,
            32 => 20,
            64 => 24,
            _ => return None,
        }
    };
    if v < 0 {
        return None;
    }
    Some((v as u64).min(MAX_HEADER as u64) as usize)
}

/// tdbdump's quoting: printable ASCII except `"` and `\` as is, every
/// other byte as `\XX` (upper-case hex).
fn quote(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'"');
    for &b in data {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b);
        } else {
            let _ = write!(out, "\\{b:02X}");
        }
    }
    out.push(b'"');
}

/// The header as the C tool sees it: 24 bytes initialised to the default
/// (`dmaster = -1`, all else 0) overlaid with the first `hsize` bytes of
/// the value.
fn header_image(value: &[u8], hsize: usize) -> [u8; MAX_HEADER] {
    let mut h = [0u8; MAX_HEADER];
    h[8..12].copy_from_slice(&u32::MAX.to_ne_bytes());
    h[..hsize].copy_from_slice(&value[..hsize]);
    h
}

struct Reporter {
    out: io::BufWriter<io::Stdout>,
}

impl Reporter {
    /// Write a message to stderr after flushing what stdout has so far, so
    /// a terminal shows both streams in order.
    fn err(&mut self, msg: &[u8]) {
        let _ = self.out.flush();
        let mut e = io::stderr().lock();
        let _ = e.write_all(msg);
    }
}

enum Action<'a> {
    Dump {
        print_header: bool,
    },
    Convert {
        out: &'a mut ctdb_engine::CoreStore,
        osize: usize,
    },
}

/// Open the input like `tdb_open(name, 0, TDB_DEFAULT, O_RDONLY, 0)`;
/// failures are reported like upstream's `perror("tdbopen in")`.
fn open_input(path: &Path) -> Result<Database, String> {
    if let Err(e) = std::fs::File::open(path) {
        return Err(tools::strerror(&e));
    }
    // Opened read-write when permitted (nothing is written) so the walk
    // takes libtdb's record and chain locks against concurrent writers,
    // as upstream's read-only open does; the engine's read-only mode takes
    // no locks, so it is only the fallback for files we may not write.
    // Files with the mutex feature (ctdbd's volatile databases) are opened
    // with mutex locking, as libtdb does for them.
    let rw = OpenOptions::new().create(false);
    let first = match Database::open(path, &rw) {
        Err(ctdb_engine::Error::BadHeader { .. }) => Database::open(
            path,
            &OpenOptions::new()
                .create(false)
                .tdb_flags(ctdb_engine::flags::MUTEX_LOCKING),
        ),
        r => r,
    };
    let r = match first {
        Err(ctdb_engine::Error::Io { source, .. })
            if matches!(
                source.raw_os_error(),
                Some(libc::EACCES | libc::EROFS | libc::EPERM)
            ) =>
        {
            Database::open(path, &OpenOptions::new().read_only(true).create(false))
        }
        r => r,
    };
    r.map_err(|e| match e {
        ctdb_engine::Error::Io { source, .. } => tools::strerror(&source),
        // libtdb: EINVAL when the hash table does not fit in the file, EIO
        // for other files it cannot use.
        ctdb_engine::Error::BadHeader { what, .. } if what.contains("hash table needs") => {
            "Invalid argument".to_string()
        }
        _ => "Input/output error".to_string(),
    })
}

/// Walk the input database, strip `hsize` header bytes from every value and
/// hand the record to `action`. Mirrors upstream: a value shorter than the
/// header stops the walk (with a message) but is not an error, empty
/// records are skipped unless `keep_empty`.
fn ltdb_walk(
    rep: &mut Reporter,
    input: &Database,
    hsize: usize,
    keep_empty: bool,
    mut action: Action<'_>,
) -> Result<(), ToolError> {
    let mut h = input
        .handle()
        .map_err(|e| ToolError::engine(format!("{}", input.path().display()), e))?;
    let mut failure: Option<ToolError> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    h.traverse_read(|key, val| {
        if val.len() < hsize {
            let mut m = b"Value too short to contain a ctdb header: ".to_vec();
            quote(&mut m, key);
            m.extend_from_slice(b" = ");
            quote(&mut m, val);
            m.push(b'\n');
            rep.err(&m);
            return Walk::Stop;
        }
        if val.len() == hsize && !keep_empty {
            return Walk::Continue;
        }
        let hdr = header_image(val, hsize);
        if hdr[20..24] != [0, 0, 0, 0] {
            rep.err(b"Warning: header padding isn't zero! Wrong header size?\n");
        }
        let data = &val[hsize..];
        match &mut action {
            Action::Dump { print_header } => {
                buf.clear();
                let _ = write!(buf, "{{\nkey({}) = ", key.len());
                quote(&mut buf, key);
                buf.push(b'\n');
                if *print_header {
                    let rsn = u64::from_ne_bytes(hdr[0..8].try_into().unwrap_or_default());
                    let dmaster = i32::from_ne_bytes(hdr[8..12].try_into().unwrap_or_default());
                    let flags = u32::from_ne_bytes(hdr[16..20].try_into().unwrap_or_default());
                    let _ = write!(buf, "dmaster: {dmaster}\nrsn: {rsn}\nflags: 0x{flags:X}\n");
                }
                let _ = write!(buf, "data({}) = ", data.len());
                quote(&mut buf, data);
                buf.extend_from_slice(b"\n}\n");
                if let Err(e) = rep.out.write_all(&buf) {
                    failure = Some(ToolError::io("writing to stdout", e));
                    return Walk::Stop;
                }
                Walk::Continue
            }
            Action::Convert { out, osize } => {
                let mut rec = Vec::with_capacity(*osize + data.len());
                rec.extend_from_slice(&hdr[..*osize]);
                rec.extend_from_slice(data);
                if let Err(e) = out.store(key, &rec, StoreFlag::Replace) {
                    rep.err(format!("tdb_store: {e}\n").as_bytes());
                    return Walk::Stop;
                }
                Walk::Continue
            }
        }
    })
    .map_err(|e| ToolError::engine("traversing the input database", e))?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn dump(rep: &mut Reporter, name: &Path, hsize: usize, print_header: bool, keep_empty: bool) -> u8 {
    let db = match open_input(name) {
        Ok(db) => db,
        Err(msg) => {
            rep.err(format!("tdbopen in: {msg}\n").as_bytes());
            return 255;
        }
    };
    match ltdb_walk(rep, &db, hsize, keep_empty, Action::Dump { print_header }) {
        Ok(()) => 0,
        Err(e) => {
            rep.err(format!("ltdbtool: {}: {e}\n", name.display()).as_bytes());
            255
        }
    }
}

fn convert(
    rep: &mut Reporter,
    iname: &Path,
    oname: &Path,
    isize: usize,
    osize: usize,
    keep_empty: bool,
) -> u8 {
    let input = match open_input(iname) {
        Ok(db) => db,
        Err(msg) => {
            rep.err(format!("tdbopen in: {msg}\n").as_bytes());
            return 255;
        }
    };
    // O_EXCL|O_CREAT like upstream: never overwrite an existing file.
    if let Err(e) = FsOpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(oname)
    {
        rep.err(format!("tdbopen out: {}\n", tools::strerror(&e)).as_bytes());
        return 255;
    }
    let out = Database::open(
        oname,
        &OpenOptions::new().hash_size(131).create(true).mode(0o600),
    );
    let out = match out {
        Ok(db) => db,
        Err(e) => {
            rep.err(format!("tdbopen out: {e}\n").as_bytes());
            return 255;
        }
    };
    let mut oh = match out.handle() {
        Ok(h) => h,
        Err(e) => {
            rep.err(format!("tdbopen out: {e}\n").as_bytes());
            return 255;
        }
    };
    match ltdb_walk(
        rep,
        &input,
        isize,
        keep_empty,
        Action::Convert {
            out: &mut oh,
            osize,
        },
    ) {
        Ok(()) => 0,
        Err(e) => {
            rep.err(format!("ltdbtool: {}: {e}\n", iname.display()).as_bytes());
            255
        }
    }
}

fn run(args: &[OsString]) -> u8 {
    let prog = tools::argv0(args, "ltdbtool");
    let mut isize = MAX_HEADER;
    let mut osize = MAX_HEADER;
    let mut print_header = false;
    let mut keep_empty = false;
    let (items, operands) = getopt::parse(args.get(1..).unwrap_or(&[]), "s:o:S:O:phe", Style::Gnu);
    for item in items {
        match item {
            Item::Opt(c @ ('s' | 'S' | 'o' | 'O'), Some(arg)) => {
                let Some(v) = parse_size(&arg.to_string_lossy(), c.is_ascii_uppercase()) else {
                    return usage(&prog);
                };
                if c.eq_ignore_ascii_case(&'s') {
                    isize = v;
                } else {
                    osize = v;
                }
            }
            Item::Opt('p', _) => print_header = true,
            Item::Opt('e', _) => keep_empty = true,
            Item::Opt('h', _) => return help(&prog),
            Item::Unknown(c) => {
                eprintln!("{prog}: invalid option -- '{c}'");
                return usage(&prog);
            }
            Item::MissingArg(c) => {
                eprintln!("{prog}: option requires an argument -- '{c}'");
                return usage(&prog);
            }
            Item::Opt(..) => return usage(&prog),
        }
    }
    let Some(cmd) = operands.first() else {
        return usage(&prog);
    };
    let mut rep = Reporter {
        out: io::BufWriter::new(io::stdout()),
    };
    let code = match cmd.to_str() {
        Some("help") => return help(&prog),
        Some("dump") if operands.len() == 2 => dump(
            &mut rep,
            Path::new(&operands[1]),
            isize,
            print_header,
            keep_empty,
        ),
        Some("convert") if operands.len() == 3 => convert(
            &mut rep,
            Path::new(&operands[1]),
            Path::new(&operands[2]),
            isize,
            osize,
            keep_empty,
        ),
        _ => return usage(&prog),
    };
    let _ = rep.out.flush();
    code
}

fn main() -> ExitCode {
    tools::sys::default_sigpipe();
    let args: Vec<OsString> = std::env::args_os().collect();
    ExitCode::from(run(&args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_strtol_and_the_32_64_aliases() {
        assert_eq!(parse_size("64", false), Some(24));
        assert_eq!(parse_size("32", false), Some(20));
        assert_eq!(parse_size("0", false), Some(0));
        assert_eq!(parse_size("abc", false), Some(0));
        assert_eq!(parse_size("64x", false), Some(24));
        assert_eq!(parse_size("16", false), None);
        assert_eq!(parse_size("7", true), Some(7));
        assert_eq!(parse_size("100", true), Some(24));
        assert_eq!(parse_size("-5", true), None);
        assert_eq!(parse_size("99999999999999999999", true), None);
    }

    #[test]
    fn quoting_matches_tdbdump() {
        let mut v = Vec::new();
        quote(&mut v, b"a\"b\\c\x00\x7f~ ");
        assert_eq!(v, b"\"a\\22b\\5Cc\\00\\7F~ \"".to_vec());
    }
}
