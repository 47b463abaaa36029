//! `script.options`: shell variable assignments for the event scripts.
//!
//! The scripts `.` (source) this file themselves, so the shell is the
//! real parser. We read the simple `[export] NAME=VALUE` lines for our own
//! use (e.g. showing the effective options) and leave everything else
//! alone: lines we do not understand are returned in
//! [`ScriptOptions::skipped`], not treated as errors.
//!
//! Values may be unquoted, `'single'` or `"double"` quoted (in double
//! quotes `\"`, `\\`, `\$` and `` \` `` are unescaped; `$` expansion is not
//! performed). An unquoted `#` after a blank starts a comment.

use std::path::Path;

use crate::error::ConfigError;

/// Parsed assignments of a script.options file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScriptOptions {
    /// `(NAME, value, line)` in file order (later ones win in the shell).
    pub vars: Vec<(String, String, usize)>,
    /// `(line, text)` of non-comment lines that are not simple assignments.
    pub skipped: Vec<(usize, String)>,
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f == '_' || f.is_ascii_alphabetic())
        && c.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Parse a shell word (the value part); `None` if it is not a plain
/// word/quoted string followed only by blanks or a comment.
fn parse_value(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    ch => out.push(ch),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.peek().copied() {
                        Some(e @ ('"' | '\\' | '$' | '`')) => {
                            chars.next();
                            out.push(e);
                        }
                        _ => out.push('\\'),
                    },
                    '`' => return None,
                    ch => out.push(ch),
                }
            },
            '\\' => out.push(chars.next()?),
            ' ' | '\t' => {
                let rest: String = chars.collect();
                let rest = rest.trim_start();
                return (rest.is_empty() || rest.starts_with('#')).then_some(out);
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '`' => return None,
            ch => out.push(ch),
        }
    }
    Some(out)
}

impl ScriptOptions {
    /// Read a script.options file; a missing file gives no variables.
    pub fn load(path: &Path) -> Result<ScriptOptions, ConfigError> {
        match std::fs::read(path) {
            Ok(d) => Ok(ScriptOptions::parse(&String::from_utf8_lossy(&d))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ScriptOptions::default()),
            Err(e) => Err(ConfigError::io(path, e)),
        }
    }

    /// Parse file contents.
    pub fn parse(text: &str) -> ScriptOptions {
        let mut out = ScriptOptions::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let t2 = t.strip_prefix("export ").map(str::trim_start).unwrap_or(t);
            let parsed = t2.split_once('=').and_then(|(name, value)| {
                if !valid_name(name) {
                    return None;
                }
                parse_value(value).map(|v| (name.to_string(), v))
            });
            match parsed {
                Some((n, v)) => out.vars.push((n, v, line)),
                None => out.skipped.push((line, raw.to_string())),
            }
        }
        out
    }

    /// The last value assigned to `name`, as the shell would see it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
    }
}
