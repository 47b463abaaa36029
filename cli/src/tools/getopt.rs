//! Short-option parsing with the two behaviours the upstream tools get from
//! their environment: glibc `getopt()` (the C tools: options and operands
//! may be mixed, operands keep their order) and bash `getopts` (onnode:
//! parsing stops at the first operand). Both stop at `--`, treat a lone `-`
//! as an operand, allow grouped flags (`-pq`) and attached or separate
//! option arguments (`-s64`, `-s 64`).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// One parsed item, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A flag, or an option with its argument.
    Opt(char, Option<OsString>),
    /// A character not in the option string.
    Unknown(char),
    /// An option that needs an argument was last on the line.
    MissingArg(char),
}

/// How operands and options may be interleaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// glibc: operands are collected and parsing continues after them
    /// (unless `POSIXLY_CORRECT` is set).
    Gnu,
    /// POSIX / bash getopts: the first operand ends the options.
    Posix,
}

/// Parse `args` (without argv[0]) against an optstring such as `"s:o:ph"`.
/// Returns the items and the operands. Callers act on the items in order
/// and stop at the first one they reject, exactly like a getopt loop.
pub fn parse(args: &[OsString], optstring: &str, style: Style) -> (Vec<Item>, Vec<OsString>) {
    let permute = style == Style::Gnu && std::env::var_os("POSIXLY_CORRECT").is_none();
    let spec: Vec<(u8, bool)> = {
        let b = optstring.as_bytes();
        let mut v = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let takes = b.get(i + 1) == Some(&b':');
            if b[i] != b':' {
                v.push((b[i], takes));
            }
            i += if takes { 2 } else { 1 };
        }
        v
    };
    let lookup = |c: u8| spec.iter().find(|(o, _)| *o == c).map(|(_, t)| *t);
    let mut items = Vec::new();
    let mut operands = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_bytes();
        if a == b"--" {
            operands.extend(args[i + 1..].iter().cloned());
            break;
        }
        if a.len() < 2 || a[0] != b'-' {
            if !permute {
                operands.extend(args[i..].iter().cloned());
                break;
            }
            operands.push(args[i].clone());
            i += 1;
            continue;
        }
        let mut j = 1;
        while j < a.len() {
            let c = a[j];
            match lookup(c) {
                None => items.push(Item::Unknown(c as char)),
                Some(false) => items.push(Item::Opt(c as char, None)),
                Some(true) => {
                    if j + 1 < a.len() {
                        items.push(Item::Opt(
                            c as char,
                            Some(OsStr::from_bytes(&a[j + 1..]).to_os_string()),
                        ));
                    } else if i + 1 < args.len() {
                        i += 1;
                        items.push(Item::Opt(c as char, Some(args[i].clone())));
                    } else {
                        items.push(Item::MissingArg(c as char));
                    }
                    break;
                }
            }
            j += 1;
        }
        i += 1;
    }
    (items, operands)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn gnu_permutes_and_takes_arguments() {
        let (items, ops) = parse(
            &v(&["dump", "-p", "-s64", "f", "-e", "-S", "3"]),
            "s:o:S:O:phe",
            Style::Gnu,
        );
        assert_eq!(ops, v(&["dump", "f"]));
        assert_eq!(
            items,
            vec![
                Item::Opt('p', None),
                Item::Opt('s', Some("64".into())),
                Item::Opt('e', None),
                Item::Opt('S', Some("3".into())),
            ]
        );
    }

    #[test]
    fn posix_stops_at_first_operand_and_double_dash() {
        let (items, ops) = parse(&v(&["-pq", "all", "-v", "x"]), "cf:hnpqvPi?", Style::Posix);
        assert_eq!(items, vec![Item::Opt('p', None), Item::Opt('q', None)]);
        assert_eq!(ops, v(&["all", "-v", "x"]));
        let (items, ops) = parse(&v(&["-f", "n", "--", "-1", "x"]), "cf:", Style::Posix);
        assert_eq!(items, vec![Item::Opt('f', Some("n".into()))]);
        assert_eq!(ops, v(&["-1", "x"]));
    }

    #[test]
    fn errors_are_reported_in_order() {
        let (items, ops) = parse(&v(&["-x", "-", "-s"]), "s:", Style::Gnu);
        assert_eq!(items, vec![Item::Unknown('x'), Item::MissingArg('s')]);
        assert_eq!(ops, v(&["-"]));
    }
}
