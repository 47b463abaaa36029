//! `onnode`: run a command on CTDB nodes, compatible with Samba 4.17's
//! shell script (Debian's build, whose default `CTDB_BASE` is `/etc/ctdb`).
//!
//! `onnode [-c] [-f FILE] [-i] [-n] [-p] [-P] [-q] [-v] NODES COMMAND...`
//! where NODES is a comma-separated list of `all`, `any`, `ok`/`healthy`,
//! `con`/`connected`, node numbers (0-based lines of the nodes file) and
//! ranges `A-B`, or host names with `-n`. Each node gets
//! `$ONNODE_SSH [-n] NODE "COMMAND"` (default `ssh`; `$CTDB_BASE/onnode.conf`
//! may set `ONNODE_SSH`), which is also how it is tested without ssh: point
//! `ONNODE_SSH` at a program that runs the command locally, as upstream's
//! `local_daemons.sh ssh` does. Output matches the script: serial runs put
//! `\n>> NODE: ADDR <<` on stderr before each node when more than one node
//! is selected (or `-v`), parallel runs prefix every line of a node's
//! merged stdout/stderr with `[ADDR] `; `-q` suppresses both. The exit
//! status is the last failing node's. `ok`/`con` read `ctdb -X status`;
//! `any` asks every node for `ctdb pnn` and takes the first answer.
//! `-P` copies the named files to the nodes with rsync.
//!
//! Known difference: for `any`, upstream re-runs itself without `-f`, so
//! it asks the nodes of the default nodes file; this asks the nodes of the
//! file in use.
#![deny(unsafe_code)]

#[path = "../tools/mod.rs"]
mod tools;

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};

use tools::error::ToolError;
use tools::getopt::{self, Item, Style};
use tools::sys;

const DEFAULT_CTDB_BASE: &str = "/etc/ctdb";

const USAGE: &str = "\
Usage: onnode [OPTION] ... <NODES> <COMMAND> ...
  options:
    -c          Run in current working directory on specified nodes.
    -f          Specify nodes file, overriding default.
    -i          Keep standard input open - the default is to close it.
    -n          Allow nodes to be specified by name.
    -p          Run command in parallel on specified nodes.
    -P          Push given files to nodes instead of running commands.
    -q          Do not print node addresses (overrides -v).
    -v          Print node address even for a single node.
  <NODES>       \"all\", \"any\", \"ok\" (or \"healthy\"), \"con\" (or \"connected\") ; or
                a node number (0 base); or
                a hostname (if -n is specified); or
                list (comma separated) of <NODES>; or
                range (hyphen separated) of node numbers.
";

/// Control flow out of the script's `exit`: messages are already printed,
/// the value is the exit status.
struct Exit(u8);

type R<T> = Result<T, Exit>;

fn usage() -> Exit {
    eprint!("{USAGE}");
    Exit(1)
}

fn invalid_nodespec() -> Exit {
    eprint!("Invalid <nodespec>\n\n");
    usage()
}

#[derive(Debug, Default)]
struct Opts {
    current: bool,
    nodes_file: Option<OsString>,
    names_ok: bool,
    parallel: bool,
    quiet: bool,
    verbose: bool,
    push: bool,
    stdin: bool,
}

/// Field splitting with a shell `IFS`: runs of IFS white space separate
/// fields, each other IFS character ends a field (so `|a||b|` gives
/// `"", "a", "", "b"`), leading/trailing white space is dropped.
fn ifs_split(s: &str, ifs: &str) -> Vec<String> {
    let is_ws = |c: char| matches!(c, ' ' | '\t' | '\n') && ifs.contains(c);
    let is_other = |c: char| !matches!(c, ' ' | '\t' | '\n') && ifs.contains(c);
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut open = false;
    let mut it = s.chars().peekable();
    while it.peek().is_some_and(|&c| is_ws(c)) {
        it.next();
    }
    while let Some(c) = it.next() {
        if is_other(c) {
            fields.push(std::mem::take(&mut cur));
            open = false;
            while it.peek().is_some_and(|&c| is_ws(c)) {
                it.next();
            }
        } else if is_ws(c) {
            while it.peek().is_some_and(|&c| is_ws(c)) {
                it.next();
            }
            match it.peek() {
                Some(&n) if is_other(n) => {}
                Some(_) => {
                    fields.push(std::mem::take(&mut cur));
                    open = false;
                }
                None => break,
            }
        } else {
            cur.push(c);
            open = true;
        }
    }
    if open {
        fields.push(cur);
    }
    fields
}

/// Unquoted `$var` expansion with the default IFS.
fn words(s: &str) -> Vec<String> {
    ifs_split(s, " \t\n")
}

/// An integer as bash's `[ A -gt B ]` reads it: optional blanks, sign,
/// decimal digits, optional blanks.
fn bash_int(s: &str) -> Option<i64> {
    let t = s.trim_matches([' ', '\t', '\n']);
    let (neg, d) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = d.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// One element of a parsed node specification.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Spec {
    Word(String),
    Range(i64, i64),
}

/// `parse_nodespec`: split on commas and validate every element before
/// anything is resolved (an invalid element fails the whole command).
fn parse_nodespec(spec: &str, names_ok: bool) -> R<Vec<Spec>> {
    let mut out = Vec::new();
    for i in ifs_split(spec, ",") {
        if i.contains('-') {
            let lo = &i[..i.rfind('-').unwrap_or(0)];
            let hi = &i[i.find('-').map_or(0, |p| p + 1)..];
            match (bash_int(lo), bash_int(hi)) {
                (Some(a), Some(b)) if !lo.trim().is_empty() && !hi.trim().is_empty() => {
                    out.push(Spec::Range(a, b))
                }
                _ => return Err(invalid_nodespec()),
            }
        } else if matches!(
            i.as_str(),
            "all" | "any" | "ok" | "healthy" | "con" | "connected"
        ) || bash_int(&i).is_some_and(|v| v > -1)
            || names_ok
        {
            out.push(Spec::Word(i));
        } else {
            return Err(invalid_nodespec());
        }
    }
    Ok(out)
}

/// The nodes file as the script holds it: comments and spaces removed,
/// empty lines as `#DEAD` placeholders, trailing newlines dropped.
fn read_nodes_file(path: &Path, prog: &str) -> R<String> {
    let mut bytes = Vec::new();
    if let Err(_e) = std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)) {
        eprintln!("{prog}: unable to open nodes file  \"{}\"", path.display());
        return Err(Exit(1));
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = Vec::new();
    let body = text.strip_suffix('\n').unwrap_or(&text);
    if !text.is_empty() {
        for line in body.split('\n') {
            let l = line.split('#').next().unwrap_or("").replace(' ', "");
            lines.push(if l.is_empty() { "#DEAD".into() } else { l });
        }
    }
    let mut all = lines.join("\n");
    while all.ends_with('\n') {
        all.pop();
    }
    Ok(all)
}

/// `echo_nth`: the node with 0-based number `n` (as written), or the
/// script's "does not exist" failure.
fn echo_nth(n: &str, all: &[String], prog: &str) -> R<String> {
    let node = match bash_int(n) {
        Some(i) if i >= 0 && (i as u64) < all.len() as u64 => all[i as usize].clone(),
        _ => String::new(),
    };
    if !node.is_empty() && node != "#DEAD" {
        Ok(node)
    } else {
        eprintln!("{prog}: \"node {n}\" does not exist");
        Err(Exit(1))
    }
}

/// Exit status as the shell reports it.
fn status_code(st: ExitStatus) -> i32 {
    match (st.code(), st.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 1,
    }
}

struct Ctx {
    prog: String,
    opts: Opts,
    base: PathBuf,
    nodes_path: PathBuf,
    all_nodes: Option<String>,
    status_cache: Option<String>,
    ssh: Option<Vec<String>>,
}

impl Ctx {
    fn all_nodes(&mut self) -> R<String> {
        if self.all_nodes.is_none() {
            self.all_nodes = Some(read_nodes_file(&self.nodes_path, &self.prog)?);
        }
        Ok(self.all_nodes.clone().unwrap_or_default())
    }

    /// The remote shell command: `$ONNODE_SSH` after sourcing
    /// `$CTDB_BASE/onnode.conf`, else `ssh`.
    fn ssh_command(&mut self) -> Vec<String> {
        if let Some(s) = &self.ssh {
            return s.clone();
        }
        let mut val = std::env::var("ONNODE_SSH").unwrap_or_default();
        let conf = self.base.join("onnode.conf");
        if std::fs::File::open(&conf).is_ok() {
            let shell = if Path::new("/bin/bash").exists() {
                "/bin/bash"
            } else {
                "/bin/sh"
            };
            match Command::new(shell)
                .arg("-c")
                .arg(". \"$1\" >&2; printf '%s' \"${ONNODE_SSH:-}\"")
                .arg(&self.prog)
                .arg(&conf)
                .env("CTDB_BASE", &self.base)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
            {
                Ok(o) => val = String::from_utf8_lossy(&o.stdout).into_owned(),
                Err(e) => eprintln!(
                    "{}",
                    ToolError::io(format!("{}: reading {}", self.prog, conf.display()), e)
                ),
            }
        }
        let mut w = words(&val);
        if w.is_empty() {
            w = vec!["ssh".to_string()];
        }
        self.ssh = Some(w.clone());
        w
    }

    /// `ctdb -X status` (stdout and stderr), header line removed; cached.
    fn ctdb_status(&mut self) -> R<String> {
        if let Some(s) = &self.status_cache {
            return Ok(s.clone());
        }
        let (out, code) = match run_merged(Command::new("ctdb").args(["-X", "status"])) {
            Ok(x) => x,
            Err(e) => (format!("ctdb: {}", tools::strerror(&e)), 127),
        };
        let mut out = out;
        while out.ends_with('\n') {
            out.pop();
        }
        if code != 0 {
            eprintln!("{}: unable to get status of CTDB nodes", self.prog);
            eprintln!("{out}");
            return Err(Exit(1));
        }
        let rest = match out.find('\n') {
            Some(p) => out[p + 1..].to_string(),
            None => out,
        };
        self.status_cache = Some(rest.clone());
        Ok(rest)
    }

    fn nodes_with_status(&mut self, healthy: bool, text: &mut String) -> R<()> {
        let all = words(&self.all_nodes()?);
        let status = self.ctdb_status()?;
        for line in status.split('\n') {
            let mut f: std::collections::VecDeque<String> = ifs_split(line, " \t\n|").into();
            f.pop_front();
            let pnn = f.pop_front().unwrap_or_default();
            f.pop_front();
            let keep = if healthy {
                !f.iter().any(|s| s == "1")
            } else {
                f.front().map(String::as_str) == Some("0")
            };
            if keep {
                text.push_str(&echo_nth(&pnn, &all, &self.prog)?);
                text.push('\n');
            }
        }
        Ok(())
    }

    /// `any`: ask every node for `ctdb pnn` in parallel; the first
    /// all-digits output line names the node.
    fn any_available(&mut self, text: &mut String) -> R<()> {
        let all_text = self.all_nodes()?;
        let all = words(&all_text);
        let live = words(&all_text.replace("#DEAD", ""));
        let ssh = self.ssh_command();
        let (r, w) = match sys::pipe() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{}", ToolError::io(format!("{}: pipe", self.prog), e));
                return Err(Exit(1));
            }
        };
        let mut children = Vec::new();
        let mut out = String::new();
        for n in &live {
            let mut cmd = Command::new(&ssh[0]);
            cmd.args(&ssh[1..])
                .args(["-n", n, "ctdb pnn"])
                .stdin(Stdio::null());
            let spawned = w
                .try_clone()
                .and_then(|a| Ok((a, w.try_clone()?)))
                .and_then(|(a, b)| cmd.stdout(a).stderr(b).spawn());
            match spawned {
                Ok(c) => children.push(c),
                Err(e) => out.push_str(&format!(
                    "{}: {}: {}\n",
                    self.prog,
                    ssh[0],
                    tools::strerror(&e)
                )),
            }
        }
        drop(w);
        let mut buf = Vec::new();
        let _ = std::fs::File::from(r).read_to_end(&mut buf);
        for mut c in children {
            let _ = c.wait();
        }
        out.push_str(&String::from_utf8_lossy(&buf));
        for line in out.lines() {
            let l = line.trim_matches([' ', '\t']);
            if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) {
                text.push_str(&echo_nth(l, &all, &self.prog)?);
                text.push('\n');
                return Ok(());
            }
        }
        Err(Exit(1))
    }

    /// `get_nodes`: the selected nodes as the script's text (one per line,
    /// trailing newlines removed).
    fn get_nodes(&mut self, spec: &str) -> R<String> {
        let all_text = self.all_nodes()?;
        let all = words(&all_text);
        let items = parse_nodespec(spec, self.opts.names_ok)?;
        let mut text = String::new();
        let one = |n: &str, ctx: &mut Ctx, text: &mut String| -> R<()> {
            match n {
                "all" => {
                    text.push_str(&all_text.replace("#DEAD", ""));
                    text.push('\n');
                }
                "any" => ctx.any_available(text)?,
                "ok" | "healthy" => ctx.nodes_with_status(true, text)?,
                "con" | "connected" => ctx.nodes_with_status(false, text)?,
                _ if (1..=3).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()) => {
                    text.push_str(&echo_nth(n, &all, &ctx.prog)?);
                    text.push('\n');
                }
                _ => {
                    if !ctx.opts.names_ok {
                        return Err(invalid_nodespec());
                    }
                    text.push_str(n);
                    text.push('\n');
                }
            }
            Ok(())
        };
        for item in items {
            match item {
                Spec::Word(w) => {
                    for n in words(&w) {
                        one(&n, self, &mut text)?;
                    }
                }
                Spec::Range(a, b) => {
                    let mut i = a;
                    while i <= b {
                        one(&i.to_string(), self, &mut text)?;
                        i += 1;
                    }
                }
            }
        }
        while text.ends_with('\n') {
            text.pop();
        }
        Ok(text)
    }
}

/// Run a command with stdout and stderr into one pipe (`2>&1`), returning
/// the output and the shell exit status.
fn run_merged(cmd: &mut Command) -> io::Result<(String, i32)> {
    let (r, w) = sys::pipe()?;
    cmd.stdin(Stdio::null()).stdout(w.try_clone()?).stderr(w);
    let mut child = cmd.spawn()?;
    // The Command still holds the write end; replace it so EOF arrives.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut buf = Vec::new();
    let _ = std::fs::File::from(r).read_to_end(&mut buf);
    let st = child.wait()?;
    Ok((String::from_utf8_lossy(&buf).into_owned(), status_code(st)))
}

/// What a node job runs: the remote shell, or rsync per file for `-P`.
#[derive(Clone)]
enum Job {
    Ssh {
        argv: Vec<String>,
        command: String,
    },
    Push {
        files: Vec<String>,
        pwd: String,
        verbose: bool,
    },
}

/// Where a job's output goes.
enum Sink {
    Inherit,
    /// Both streams into this pipe (parallel, verbose), stdin /dev/null.
    Pipe(std::os::fd::OwnedFd),
    /// Parallel, not verbose: inherit output, stdin /dev/null.
    NullIn,
}

/// Run a command to completion. Background (parallel) commands are
/// registered for the INT/TERM trap; a foreground (serial) one is not, as
/// upstream's `$pids` holds only background jobs.
fn spawn_tracked(prog: &str, cmd: &mut Command, background: bool) -> i32 {
    match cmd.spawn() {
        Ok(mut c) => wait_tracked(&mut c, background),
        Err(e) => {
            // bash's wording: a bare name is looked up in PATH.
            let name = cmd.get_program().to_string_lossy().into_owned();
            let code = if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            if code == 127 && !name.contains('/') {
                eprintln!("{prog}: {name}: command not found");
            } else {
                eprintln!("{prog}: {name}: {}", tools::strerror(&e));
            }
            code
        }
    }
}

fn wait_tracked(c: &mut Child, background: bool) -> i32 {
    let slot = if background {
        sys::track_child(c.id())
    } else {
        None
    };
    let st = c.wait();
    sys::untrack_child(slot);
    match st {
        Ok(st) => status_code(st),
        Err(_) => 1,
    }
}

fn apply_sink(cmd: &mut Command, sink: &Sink) -> io::Result<()> {
    match sink {
        Sink::Inherit => {}
        Sink::NullIn => {
            cmd.stdin(Stdio::null());
        }
        Sink::Pipe(w) => {
            cmd.stdin(Stdio::null())
                .stdout(w.try_clone()?)
                .stderr(w.try_clone()?);
        }
    }
    Ok(())
}

fn run_job(prog: &str, node: &str, job: &Job, sink: &Sink) -> i32 {
    match job {
        Job::Ssh { argv, command } => {
            // `$ssh_cmd "$n" "$command"`
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]).arg(node).arg(command);
            if let Err(e) = apply_sink(&mut cmd, sink) {
                eprintln!("{prog}: {}", tools::strerror(&e));
                return 1;
            }
            spawn_tracked(prog, &mut cmd, !matches!(sink, Sink::Inherit))
        }
        Job::Push {
            files,
            pwd,
            verbose,
        } => {
            let mut last = 0;
            for f in files {
                if *verbose {
                    let line = format!("Pushing {f}\n");
                    match sink {
                        Sink::Pipe(w) => {
                            let _ = w
                                .try_clone()
                                .map(|w| std::fs::File::from(w).write_all(line.as_bytes()));
                        }
                        _ => {
                            let mut o = io::stdout().lock();
                            let _ = o.write_all(line.as_bytes());
                            let _ = o.flush();
                        }
                    }
                }
                let (src, dst) = if f.starts_with('/') {
                    (f.clone(), format!("[{node}]:{f}"))
                } else {
                    (format!("{pwd}/{f}"), format!("[{node}]:{pwd}/{f}"))
                };
                let mut cmd = Command::new("rsync");
                cmd.arg(src).arg(dst);
                if let Err(e) = apply_sink(&mut cmd, sink) {
                    eprintln!("{prog}: {}", tools::strerror(&e));
                    return 1;
                }
                last = spawn_tracked(prog, &mut cmd, !matches!(sink, Sink::Inherit));
            }
            last
        }
    }
}

/// Copy a node's merged output to stdout with `[NODE] ` before each line.
fn prefix_lines(node: &str, r: std::os::fd::OwnedFd) {
    let mut rd = BufReader::new(std::fs::File::from(r));
    let mut line = Vec::new();
    loop {
        line.clear();
        match rd.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let mut o = io::stdout().lock();
                let _ = write!(o, "[{node}] ");
                let _ = o.write_all(&line);
                let _ = o.flush();
            }
        }
    }
}

/// The directory `-c` changes to: `$PWD` when it names the current
/// directory (as bash keeps it), else the real path.
fn current_dir_text() -> String {
    let real = std::env::current_dir().ok();
    if let Some(pwd) = std::env::var_os("PWD") {
        let p = PathBuf::from(&pwd);
        if p.is_absolute()
            && p.canonicalize().ok() == real.as_ref().and_then(|r| r.canonicalize().ok())
        {
            return pwd.to_string_lossy().into_owned();
        }
    }
    real.map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into())
}

fn run(args: &[OsString]) -> R<u8> {
    let argv0 = tools::argv0(args, "onnode");
    let prog = Path::new(&argv0)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "onnode".into());
    let (items, operands) =
        getopt::parse(args.get(1..).unwrap_or(&[]), "cf:hnpqvPi?", Style::Posix);
    let mut opts = Opts::default();
    for item in items {
        match item {
            Item::Opt('c', _) => opts.current = true,
            Item::Opt('f', a) => opts.nodes_file = a,
            Item::Opt('n', _) => opts.names_ok = true,
            Item::Opt('p', _) => opts.parallel = true,
            Item::Opt('q', _) => opts.quiet = true,
            Item::Opt('v', _) => opts.verbose = true,
            Item::Opt('P', _) => opts.push = true,
            Item::Opt('i', _) => opts.stdin = true,
            Item::Unknown(c) => {
                eprintln!("{argv0}: illegal option -- {c}");
                return Err(usage());
            }
            Item::MissingArg(c) => {
                eprintln!("{argv0}: option requires an argument -- {c}");
                return Err(usage());
            }
            Item::Opt(..) => return Err(usage()),
        }
    }
    if operands.len() < 2 {
        return Err(usage());
    }
    let nodespec = operands[0].to_string_lossy().into_owned();
    let mut command = operands[1..]
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");

    let base = match std::env::var_os("CTDB_BASE") {
        Some(b) if !b.is_empty() => PathBuf::from(b),
        _ => PathBuf::from(DEFAULT_CTDB_BASE),
    };
    let nodes_path = match &opts.nodes_file {
        Some(f) if !f.is_empty() => {
            let p = PathBuf::from(f);
            if !p.exists() && p.is_relative() {
                base.join(p)
            } else {
                p
            }
        }
        _ => base.join("nodes"),
    };
    let mut ctx = Ctx {
        prog: prog.clone(),
        opts,
        base,
        nodes_path,
        all_nodes: None,
        status_cache: None,
        ssh: None,
    };

    let pwd = current_dir_text();
    let job = if ctx.opts.push {
        Job::Push {
            files: words(&command),
            pwd: pwd.clone(),
            verbose: false,
        }
    } else {
        if ctx.opts.current {
            command = format!("cd {pwd} && {command}");
        }
        let mut argv = ctx.ssh_command();
        if ctx.opts.parallel || !ctx.opts.stdin {
            argv.push("-n".into());
        }
        Job::Ssh {
            argv,
            command: command.clone(),
        }
    };
    if ctx.opts.push {
        if let Ok(s) = std::env::var("ONNODE_SSH") {
            if !s.is_empty() {
                std::env::set_var("RSYNC_RSH", s);
            }
        }
    }

    let nodes = ctx.get_nodes(&nodespec)?;
    let verbose = if ctx.opts.quiet {
        false
    } else {
        ctx.opts.verbose || nodes.contains([' ', '\n'])
    };
    let job = match job {
        Job::Push { files, pwd, .. } => Job::Push {
            files,
            pwd,
            verbose,
        },
        j @ Job::Ssh { .. } => j,
    };

    sys::trap_int_term();
    let mut retcode = 0;
    if ctx.opts.parallel {
        let mut handles = Vec::new();
        for n in words(&nodes) {
            let job = job.clone();
            let prog = prog.clone();
            let h = std::thread::spawn(move || -> i32 {
                if verbose {
                    let Ok((r, w)) = sys::pipe() else {
                        eprintln!("{prog}: cannot create a pipe");
                        return 1;
                    };
                    let node = n.clone();
                    let reader = std::thread::spawn(move || prefix_lines(&node, r));
                    let sink = Sink::Pipe(w);
                    let st = run_job(&prog, &n, &job, &sink);
                    drop(sink);
                    let _ = reader.join();
                    st
                } else {
                    run_job(&prog, &n, &job, &Sink::NullIn)
                }
            });
            handles.push(h);
        }
        for h in handles {
            let st = h.join().unwrap_or(1);
            if st != 0 {
                retcode = st;
            }
        }
    } else {
        for n in words(&nodes) {
            if verbose {
                eprint!("\n>> NODE: {n} <<\n");
            }
            let st = run_job(&prog, &n, &job, &Sink::Inherit);
            if st != 0 {
                retcode = st;
            }
        }
    }
    Ok((retcode & 0xff) as u8)
}

fn main() -> ExitCode {
    sys::default_sigpipe();
    let args: Vec<OsString> = std::env::args_os().collect();
    match run(&args) {
        Ok(c) => ExitCode::from(c),
        Err(Exit(c)) => ExitCode::from(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifs_splitting_like_bash() {
        assert_eq!(
            ifs_split("|0|1.2.3.4|0|1|", " \t\n|"),
            vec!["", "0", "1.2.3.4", "0", "1"]
        );
        assert_eq!(ifs_split("a||b", "|"), vec!["a", "", "b"]);
        assert_eq!(ifs_split("  a  b \n", " \t\n"), vec!["a", "b"]);
        assert_eq!(ifs_split("a | b", " |"), vec!["a", "b"]);
        assert_eq!(ifs_split("1,,2,", ","), vec!["1", "", "2"]);
        assert!(ifs_split("", ",").is_empty());
    }

    #[test]
    fn nodespecs_parse_and_validate() {
        assert_eq!(
            parse_nodespec("0,2-3,all", false).ok(),
            Some(vec![
                Spec::Word("0".into()),
                Spec::Range(2, 3),
                Spec::Word("all".into())
            ])
        );
        assert!(parse_nodespec("x", false).is_err());
        assert!(parse_nodespec("1-", false).is_err());
        assert_eq!(
            parse_nodespec("host", true).ok(),
            Some(vec![Spec::Word("host".into())])
        );
    }
}
