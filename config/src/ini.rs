//! The ini dialect of `ctdb.conf` and `ctdb.tunables` (Samba's "tini").
//!
//! Both files go through the same tokenizer upstream, so both go through
//! this one. Its rules, which are subtle enough to be worth stating:
//!
//! * leading white space of a line is skipped; a line whose first other
//!   character is `#` or `;` is a comment; blank lines are skipped;
//! * there are no trailing comments: `key = value # x` has the value
//!   `value # x`;
//! * runs of white space inside a line collapse to their first character;
//! * a line ending in `\` (or `\` and one blank) continues on the next line;
//! * `[name]` starts a section; the name is the text between `[` and the
//!   first `]`, not trimmed; anything after the `]` is ignored;
//! * otherwise the text before the first `=` is the key and the rest the
//!   value, each with one surrounding blank removed (after collapsing, that
//!   is all of them);
//! * a line without `=` is ignored (ctdb.conf) or is a key with an empty
//!   value (ctdb.tunables, where it is then reported as an error).
//!
//! Upstream silently stops reading the file and keeps all defaults when it
//! meets an unterminated `[section` or a line starting with `=`; we report
//! those as [`Item::Malformed`] so the caller can raise a syntax error.

/// One logical line of an ini file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// `[name]`
    Section(String),
    /// `key = value`
    Param { name: String, value: String },
    /// A line without `=` (only produced when empty values are not allowed).
    NoEquals(String),
    /// A line that cannot be tokenized.
    Malformed(String),
}

/// C locale `isspace()` for the bytes tini looks at; bytes >= 0x80 are
/// never space (tini checks the signed char first).
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// 1-based line number of the byte at `pos`.
    line: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = *self.data.get(self.pos)?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_to_eol(&mut self) {
        while let Some(c) = self.next() {
            if c == b'\n' {
                break;
            }
        }
    }

    /// One logical line: `(first line number, bytes)`, or `None` at EOF.
    fn logical_line(&mut self) -> Option<(usize, Vec<u8>)> {
        loop {
            // Skip leading blanks (but not the newline).
            let mut c;
            loop {
                c = self.next()?;
                if !is_space(c) || c == b'\n' {
                    break;
                }
            }
            let start = if c == b'\n' { self.line - 1 } else { self.line };
            if c == b'#' || c == b';' {
                self.skip_to_eol();
                continue;
            }
            if c == b'\n' {
                continue;
            }
            let mut buf: Vec<u8> = Vec::new();
            let mut cur = Some(c);
            while let Some(c) = cur {
                if c == b'\n' {
                    let n = buf.len();
                    if n > 0 && buf[n - 1] == b'\\' {
                        buf.pop();
                        cur = self.next();
                        continue;
                    }
                    if n > 1 && buf[n - 2] == b'\\' && is_space(buf[n - 1]) {
                        buf.truncate(n - 2);
                        cur = self.next();
                        continue;
                    }
                    break;
                }
                let collapse = buf.last().is_some_and(|&l| is_space(l)) && is_space(c);
                if !collapse {
                    buf.push(c);
                }
                cur = self.next();
            }
            // The C code works on NUL-terminated strings.
            if let Some(nul) = buf.iter().position(|&b| b == 0) {
                buf.truncate(nul);
            }
            return Some((start, buf));
        }
    }
}

fn trim_one(s: &[u8]) -> &[u8] {
    let mut s = s;
    if let Some(&c) = s.first() {
        if is_space(c) {
            s = &s[1..];
        }
    }
    if let Some(&c) = s.last() {
        if is_space(c) {
            s = &s[..s.len() - 1];
        }
    }
    s
}

fn text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "line is not valid UTF-8".to_string())
}

/// Tokenize a whole file. `allow_empty_value` is tini's flag of the same
/// name: when set, a line without `=` is a key with an empty value.
pub(crate) fn parse(data: &[u8], allow_empty_value: bool) -> Vec<(usize, Item)> {
    let mut r = Reader {
        data,
        pos: 0,
        line: 1,
    };
    let mut out = Vec::new();
    while let Some((line, buf)) = r.logical_line() {
        if buf.is_empty() {
            continue;
        }
        let item = if buf[0] == b'[' {
            match buf[1..].iter().position(|&b| b == b']') {
                None => Item::Malformed(format!(
                    "section header without closing ']': {}",
                    String::from_utf8_lossy(&buf)
                )),
                Some(end) => match text(&buf[1..1 + end]) {
                    Ok(s) => Item::Section(s),
                    Err(e) => Item::Malformed(e),
                },
            }
        } else {
            let (name, value) = match buf.iter().position(|&b| b == b'=') {
                Some(eq) => (trim_one(&buf[..eq]), Some(trim_one(&buf[eq + 1..]))),
                None => (trim_one(&buf), None),
            };
            match (value, allow_empty_value) {
                (None, false) => match text(&buf) {
                    Ok(s) => Item::NoEquals(s),
                    Err(e) => Item::Malformed(e),
                },
                _ if name.is_empty() => Item::Malformed(format!(
                    "missing key name before '=': {}",
                    String::from_utf8_lossy(&buf)
                )),
                (value, _) => match (text(name), text(value.unwrap_or(b""))) {
                    (Ok(name), Ok(value)) => Item::Param { name, value },
                    (Err(e), _) | (_, Err(e)) => Item::Malformed(e),
                },
            }
        };
        out.push((line, item));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<(usize, Item)> {
        parse(s.as_bytes(), false)
    }

    fn param(n: &str, v: &str) -> Item {
        Item::Param {
            name: n.into(),
            value: v.into(),
        }
    }

    #[test]
    fn basic_rules() {
        let got = p("# c\n ; c\n\n[cluster]  junk\n\tnode   address =  10.0.0.1  \nfoo\n");
        assert_eq!(
            got,
            vec![
                (4, Item::Section("cluster".into())),
                (5, param("node address", "10.0.0.1")),
                (6, Item::NoEquals("foo".into())),
            ]
        );
    }

    #[test]
    fn continuation_and_inline_hash() {
        let got = p("a = b \\\n  c\nd = e # f\r\n");
        assert_eq!(got, vec![(1, param("a", "b c")), (3, param("d", "e # f"))]);
    }

    #[test]
    fn malformed() {
        let got = p("[x\n= y\n");
        assert!(matches!(got[0], (1, Item::Malformed(_))));
        assert!(matches!(got[1], (2, Item::Malformed(_))));
    }

    #[test]
    fn empty_values_allowed() {
        let got = parse(b"Foo\nBar=\n", true);
        assert_eq!(got, vec![(1, param("Foo", "")), (2, param("Bar", ""))]);
    }

    #[test]
    fn section_name_kept_verbatim() {
        assert_eq!(p("[ a b ]")[0].1, Item::Section(" a b ".into()));
    }
}
