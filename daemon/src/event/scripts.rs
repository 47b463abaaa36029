//! Component directories and their scripts: which files count as scripts,
//! in which order they run, which are enabled, and enabling/disabling by
//! the executable bit.
//!
//! Rules (upstream `event_script.c`): in the modern layout a script is a
//! directory entry matching `[0-9][0-9].*.script`, its name is the file
//! name without `.script`, scripts run in byte order of their file names,
//! and a script is enabled when `stat` (following symlinks) shows the
//! owner-execute bit. A dangling symlink is a disabled script. Enabling
//! sets `u+x,g+x,o+x`, disabling clears them, on the file itself (never
//! through a symlink). Errors are errno values because that is what the
//! protocol carries.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How a component directory names its scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `NN.name.script` (CTDB 4.9 and later).
    Modern,
    /// `events.d/NN.name` (before 4.9); the name is the file name.
    EventsD,
}

/// One script of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// `NN.name`.
    pub name: String,
    /// Full path of the directory entry.
    pub path: PathBuf,
    /// Owner-execute bit set on what the entry resolves to.
    pub enabled: bool,
}

/// Where a component's scripts live and how they are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentDir {
    pub path: PathBuf,
    pub layout: Layout,
}

impl ComponentDir {
    /// Resolves `component` under `events_dir` (`etcdir/events`). For
    /// `legacy`, falls back to `etcdir/events.d` (the sibling of
    /// `events_dir`) when `events/legacy` does not exist and `events.d`
    /// does.
    pub fn resolve(events_dir: &Path, component: &str) -> ComponentDir {
        let path = events_dir.join(component);
        if component == "legacy" && fs::symlink_metadata(&path).is_err() {
            if let Some(parent) = events_dir.parent() {
                let old = parent.join("events.d");
                if old.is_dir() {
                    return ComponentDir {
                        path: old,
                        layout: Layout::EventsD,
                    };
                }
            }
        }
        ComponentDir {
            path,
            layout: Layout::Modern,
        }
    }

    /// Fails with an errno unless the directory exists (ENOENT) and is a
    /// directory (ENOTDIR).
    pub fn check(&self) -> Result<(), i32> {
        match fs::metadata(&self.path) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(libc::ENOTDIR),
            Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    /// The scripts, sorted, with their enabled state.
    pub fn list(&self) -> Result<Vec<Script>, i32> {
        let rd = fs::read_dir(&self.path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
            let file = ent.file_name();
            let Some(file) = file.to_str() else { continue };
            let Some(name) = script_name(file, self.layout) else {
                continue;
            };
            let path = self.path.join(file);
            let enabled = fs::metadata(&path)
                .map(|m| m.mode() & 0o100 != 0)
                .unwrap_or(false);
            out.push((
                file.to_string(),
                Script {
                    name: name.to_string(),
                    path,
                    enabled,
                },
            ));
        }
        out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(out.into_iter().map(|(_, s)| s).collect())
    }

    /// Path that runs for script `name`.
    pub fn script_path(&self, name: &str) -> PathBuf {
        match self.layout {
            Layout::Modern => self.path.join(format!("{name}.script")),
            Layout::EventsD => self.path.join(name),
        }
    }

    /// Enables or disables `script` (`NN.name`, `.script` suffix allowed)
    /// by its execute bits, as upstream `event_script_chmod`: EINVAL for a
    /// name that is not a script or for a symlink, ENOENT if absent.
    pub fn set_enabled(&self, script: &str, enable: bool) -> Result<(), i32> {
        let file = match self.layout {
            Layout::Modern if script.len() > 7 && script.ends_with(".script") => script.to_string(),
            Layout::Modern => format!("{script}.script"),
            Layout::EventsD => script.to_string(),
        };
        if file.contains('/') || file.is_empty() {
            return Err(libc::ENOENT);
        }
        let rd = fs::read_dir(&self.path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let mut found = false;
        for ent in rd.flatten() {
            if ent.file_name().to_str() == Some(file.as_str()) {
                found = true;
                break;
            }
        }
        if !found {
            return Err(libc::ENOENT);
        }
        if script_name(&file, self.layout).is_none() {
            return Err(libc::EINVAL);
        }
        let path = self.path.join(&file);
        let lmeta =
            fs::symlink_metadata(&path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        // Upstream opens the file O_RDWR first (so a dangling link gives
        // ENOENT), then refuses anything whose inode differs from the
        // directory entry's, i.e. a symlink.
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let meta = f
            .metadata()
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        if meta.ino() != lmeta.ino() {
            return Err(libc::EINVAL);
        }
        let mode = meta.mode() & 0o7777;
        let new = if enable { mode | 0o111 } else { mode & !0o111 };
        f.set_permissions(fs::Permissions::from_mode(new))
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// The script name for directory entry `file`, or `None` if the entry is
/// not a script in this layout.
pub fn script_name(file: &str, layout: Layout) -> Option<&str> {
    let b = file.as_bytes();
    if b.len() < 3 || !b[0].is_ascii_digit() || !b[1].is_ascii_digit() || b[2] != b'.' {
        return None;
    }
    match layout {
        Layout::Modern => {
            // fnmatch("[0-9][0-9].*.script"): "NN." then anything then ".script"
            if b.len() >= 3 + 7 && file.ends_with(".script") {
                Some(&file[..file.len() - 7])
            } else {
                None
            }
        }
        Layout::EventsD => {
            const SKIP: [&str; 6] = [
                ".rpmnew",
                ".rpmsave",
                ".rpmorig",
                ".dpkg-old",
                ".dpkg-new",
                ".swp",
            ];
            if file.len() == 3
                || file.ends_with('~')
                || SKIP.iter().any(|s| file.ends_with(s))
                || !file
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
            {
                None
            } else {
                Some(file)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modern_names_follow_the_fnmatch_pattern() {
        let m = Layout::Modern;
        assert_eq!(script_name("01.foo.script", m), Some("01.foo"));
        assert_eq!(script_name("01..script", m), Some("01."));
        assert_eq!(script_name("01.a.b.script", m), Some("01.a.b"));
        assert_eq!(script_name("01.script", m), None);
        assert_eq!(script_name("1.foo.script", m), None);
        assert_eq!(script_name("a.script", m), None);
        assert_eq!(script_name("README.script", m), None);
        assert_eq!(script_name("01.foo.scripts", m), None);
        assert_eq!(script_name("01.foo", m), None);
    }

    #[test]
    fn events_d_names() {
        let e = Layout::EventsD;
        assert_eq!(script_name("00.ctdb", e), Some("00.ctdb"));
        assert_eq!(script_name("00.ctdb~", e), None);
        assert_eq!(script_name("00.ctdb.rpmnew", e), None);
        assert_eq!(script_name("00.", e), None);
        assert_eq!(script_name("README", e), None);
        assert_eq!(script_name("10.a b", e), None);
    }
}
