//! The `ctdb` tool: command table, start-up (socket, node selection, leader
//! tracking), and the commands themselves with upstream 4.17's output,
//! messages and exit codes.
//!
//! Exit codes follow upstream: a command's return value becomes the exit
//! status (so a failed control exits with its errno or status byte), -1
//! becomes 1, and usage errors exit 1 after printing the usage text.

use std::time::{Duration, Instant};

use ctdb_protocol::types::{
    AddrInfo, BanState, PidSrvid, PullDbExt, StringN, TransDb, TraverseStartExt, Tunable,
};
use ctdb_protocol::{DbIdPad, Reader};

use crate::client::{Client, EPROTO};
use crate::format::{self, MachineSep};
use crate::local::{self, LocalDb, Transaction};
use crate::options::{self, Options, Parsed};
use crate::wire::{
    self, ControlData, ControlRequest, CtdbString, LtdbHeader, NodeMap, RecBufferBuilder, RecData,
    SockAddr, Wire,
};

/// A control whose input is one `u32` (a db id, a flag), as its variant constructor.
type U32Control = fn(u32) -> ControlData<'static>;

/// Upstream's `SAMBA_VERSION_STRING` for the release we mirror.
pub const VERSION_STRING: &str = "4.17.12-Debian";

type DaemonFn = fn(&mut Ctx, &[String]) -> i32;
type LocalFn = fn(&Options, &[String]) -> i32;

#[derive(Clone, Copy)]
enum Func {
    Daemon(DaemonFn),
    Local(LocalFn),
}

pub struct Cmd {
    pub name: &'static str,
    func: Func,
    pub remote: bool,
    pub msg: &'static str,
    pub args: Option<&'static str>,
}

macro_rules! cmd {
    ($name:expr, daemon $f:expr, $remote:expr, $msg:expr, $args:expr) => {
        Cmd {
            name: $name,
            func: Func::Daemon($f),
            remote: $remote,
            msg: $msg,
            args: $args,
        }
    };
    ($name:expr, local $f:expr, $remote:expr, $msg:expr, $args:expr) => {
        Cmd {
            name: $name,
            func: Func::Local($f),
            remote: $remote,
            msg: $msg,
            args: $args,
        }
    };
}

/// Upstream's command table, in upstream's order (the help lists it so).
pub static COMMANDS: &[Cmd] = &[
    cmd!("version", local control_version, false, "show version of ctdb", None),
    cmd!("status", daemon control_status, true, "show node status", None),
    cmd!("uptime", daemon control_uptime, true, "show node uptime", None),
    cmd!("ping", daemon control_ping, true, "ping a node", None),
    cmd!("runstate", daemon control_runstate, true, "get/check runstate of a node", Some("[setup|first_recovery|startup|running]")),
    cmd!("getvar", daemon control_getvar, true, "get a tunable variable", Some("<name>")),
    cmd!("setvar", daemon control_setvar, true, "set a tunable variable", Some("<name> <value>")),
    cmd!("listvars", daemon control_listvars, true, "list tunable variables", None),
    cmd!("statistics", daemon control_statistics, true, "show ctdb statistics", None),
    cmd!("statisticsreset", daemon control_statistics_reset, true, "reset ctdb statistics", None),
    cmd!("stats", daemon control_stats, true, "show rolling statistics", Some("[count]")),
    cmd!("ip", daemon control_ip, true, "show public ips", Some("[all]")),
    cmd!("ipinfo", daemon control_ipinfo, true, "show public ip details", Some("<ip>")),
    cmd!("ifaces", daemon control_ifaces, true, "show interfaces", None),
    cmd!("setifacelink", daemon control_setifacelink, true, "set interface link status", Some("<iface> up|down")),
    cmd!("process-exists", daemon control_process_exists, true, "check if a process exists on a node", Some("<pid> [<srvid>]")),
    cmd!("getdbmap", daemon control_getdbmap, true, "show attached databases", None),
    cmd!("getdbstatus", daemon control_getdbstatus, true, "show database status", Some("<dbname|dbid>")),
    cmd!("catdb", daemon control_catdb, false, "dump cluster-wide ctdb database", Some("<dbname|dbid>")),
    cmd!("cattdb", daemon control_cattdb, false, "dump local ctdb database", Some("<dbname|dbid>")),
    cmd!("getcapabilities", daemon control_getcapabilities, true, "show node capabilities", None),
    cmd!("pnn", daemon control_pnn, false, "show the pnn of the currnet node", None),
    cmd!("lvs", daemon control_lvs, false, "show lvs configuration", Some("leader|list|status")),
    cmd!("setdebug", daemon control_setdebug, true, "set debug level", Some("ERROR|WARNING|NOTICE|INFO|DEBUG")),
    cmd!("getdebug", daemon control_getdebug, true, "get debug level", None),
    cmd!("attach", daemon control_attach, false, "attach a database", Some("<dbname> [persistent|replicated]")),
    cmd!("detach", daemon control_detach, false, "detach database(s)", Some("<dbname|dbid> ...")),
    cmd!("dumpmemory", daemon control_dumpmemory, true, "dump ctdbd memory map", None),
    cmd!("rddumpmemory", daemon control_rddumpmemory, true, "dump recoverd memory map", None),
    cmd!("getpid", daemon control_getpid, true, "get ctdbd process ID", None),
    cmd!("disable", daemon control_disable, true, "disable a node", None),
    cmd!("enable", daemon control_enable, true, "enable a node", None),
    cmd!("stop", daemon control_stop, true, "stop a node", None),
    cmd!("continue", daemon control_continue, true, "continue a stopped node", None),
    cmd!("ban", daemon control_ban, true, "ban a node", Some("<bantime>")),
    cmd!("unban", daemon control_unban, true, "unban a node", None),
    cmd!("shutdown", daemon control_shutdown, true, "shutdown ctdb daemon", None),
    cmd!("recover", daemon control_recover, true, "force recovery", None),
    cmd!("sync", daemon control_ipreallocate, true, "run ip reallocation (deprecated)", None),
    cmd!("ipreallocate", daemon control_ipreallocate, true, "run ip reallocation", None),
    cmd!("gratarp", daemon control_gratarp, true, "send a gratuitous arp", Some("<ip> <interface>")),
    cmd!("tickle", local control_tickle, false, "send a tcp tickle ack", Some("<srcip:port> <dstip:port>")),
    cmd!("gettickles", daemon control_gettickles, true, "get the list of tickles", Some("<ip> [<port>]")),
    cmd!("addtickle", daemon control_addtickle, true, "add a tickle", Some("<ip>:<port> <ip>:<port>")),
    cmd!("deltickle", daemon control_deltickle, true, "delete a tickle", Some("<ip>:<port> <ip>:<port>")),
    cmd!("listnodes", local control_listnodes, true, "list nodes in the cluster", None),
    cmd!("reloadnodes", daemon control_reloadnodes, false, "reload the nodes file all nodes", None),
    cmd!("moveip", daemon control_moveip, false, "move an ip address to another node", Some("<ip> <node>")),
    cmd!("addip", daemon control_addip, true, "add an ip address to a node", Some("<ip/mask> <iface>")),
    cmd!("delip", daemon control_delip, true, "delete an ip address from a node", Some("<ip>")),
    cmd!("backupdb", daemon control_backupdb, false, "backup a database into a file", Some("<dbname|dbid> <file>")),
    cmd!("restoredb", daemon control_restoredb, false, "restore a database from a file", Some("<file> [dbname]")),
    cmd!("dumpdbbackup", local control_dumpdbbackup, false, "dump database from a backup file", Some("<file>")),
    cmd!("wipedb", daemon control_wipedb, false, "wipe the contents of a database.", Some("<dbname|dbid>")),
    cmd!("leader", daemon control_leader, true, "show the pnn of the leader", None),
    cmd!("event", local control_event, false, "event and event script commands", None),
    cmd!("scriptstatus", local control_scriptstatus, false, "show event script status", Some("[init|setup|startup|monitor|takeip|releaseip|ipreallocated]")),
    cmd!("natgw", daemon control_natgw, false, "show natgw configuration", Some("leader|list|status")),
    cmd!("getreclock", daemon control_getreclock, true, "get recovery lock file", None),
    cmd!("setlmasterrole", daemon control_setlmasterrole, true, "set LMASTER role", Some("on|off")),
    cmd!("setleaderrole", daemon control_setleaderrole, true, "set LEADER role", Some("on|off")),
    cmd!("setdbreadonly", daemon control_setdbreadonly, true, "enable readonly records", Some("<dbname|dbid>")),
    cmd!("setdbsticky", daemon control_setdbsticky, true, "enable sticky records", Some("<dbname|dbid>")),
    cmd!("pfetch", daemon control_pfetch, false, "fetch record from persistent database", Some("<dbname|dbid> <key>")),
    cmd!("pstore", daemon control_pstore, false, "write record to persistent database", Some("<dbname|dbid> <key> <value>")),
    cmd!("pdelete", daemon control_pdelete, false, "delete record from persistent database", Some("<dbname|dbid> <key>")),
    cmd!("ptrans", daemon control_ptrans, false, "update a persistent database (from file or stdin)", Some("<dbname|dbid> [<file>]")),
    cmd!("tfetch", daemon control_tfetch, true, "fetch a record", Some("<tdb-file> <key> [<file>]")),
    cmd!("tstore", daemon control_tstore, true, "store a record", Some("<tdb-file> <key> <data> [<rsn> <dmaster> <flags>]")),
    cmd!("readkey", daemon control_readkey, false, "read value of a database key", Some("<dbname|dbid> <key> [readonly]")),
    cmd!("writekey", daemon control_writekey, false, "write value for a database key", Some("<dbname|dbid> <key> <value>")),
    cmd!("deletekey", daemon control_deletekey, false, "delete a database key", Some("<dbname|dbid> <key>")),
    cmd!("checktcpport", local control_checktcpport, false, "check if a service is bound to a specific tcp port or not", Some("<port>")),
    cmd!("getdbseqnum", daemon control_getdbseqnum, false, "get database sequence number", Some("<dbname|dbid>")),
    cmd!("nodestatus", daemon control_nodestatus, true, "show and return node status", Some("[all|<pnn-list>]")),
    cmd!("dbstatistics", daemon control_dbstatistics, true, "show database statistics", Some("<dbname|dbid>")),
    cmd!("reloadips", daemon control_reloadips, false, "reload the public addresses file", Some("[all|<pnn-list>]")),
];

pub fn match_command(name: &str) -> Option<&'static Cmd> {
    COMMANDS.iter().find(|c| c.name == name)
}

fn command_line(c: &Cmd) -> String {
    format!("  {:<15} {:<27}  {}\n", c.name, c.args.unwrap_or(""), c.msg)
}

/// The full help: popt's option help then every command.
pub fn usage_full_text() -> String {
    let mut s = String::from(options::HELP);
    s.push_str("\nCommands:\n");
    for c in COMMANDS {
        s.push_str(&command_line(c));
    }
    s
}

/// Upstream's `usage()`: prints and exits 1.
pub fn usage(command: Option<&str>) -> ! {
    let text = match command.and_then(match_command) {
        Some(c) => format!("{}\nCommands:\n{}", options::USAGE, command_line(c)),
        None => usage_full_text(),
    };
    print!("{text}");
    std::process::exit(1);
}

/// Runs the tool on `argv[1..]`; returns the process exit status.
pub fn main_with_args(args: &[String]) -> i32 {
    let mut opts = match options::parse(args) {
        Parsed::Run { opts, args: _ } => opts,
        Parsed::Help => {
            print!("{}", options::HELP);
            return 0;
        }
        Parsed::Usage => {
            print!("{}", options::USAGE);
            return 0;
        }
        Parsed::Error(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let rest = match options::parse(args) {
        Parsed::Run { args, .. } => args,
        _ => Vec::new(),
    };

    if opts.maxruntime == 0 {
        match std::env::var("CTDB_TIMEOUT") {
            Ok(t) => match format::smb_strtoul(&t, 0, false) {
                Some(v) => opts.maxruntime = v as i32,
                None => {
                    eprintln!("Invalid value CTDB_TIMEOUT");
                    return 1;
                }
            },
            Err(_) => opts.maxruntime = 120,
        }
    }
    if opts.machineparsable {
        opts.machinereadable = true;
    }

    if rest.is_empty() {
        usage(None);
    }
    let cmd = match match_command(&rest[0]) {
        Some(c) => c,
        None => {
            eprintln!("Unknown command '{}'", rest[0]);
            return 1;
        }
    };

    if opts.maxruntime > 0 {
        let secs = opts.maxruntime as u64;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            eprintln!("Maximum runtime exceeded - exiting");
            std::process::exit(1);
        });
    }

    let ret = process_command(cmd, opts, &rest[1..]);
    if ret == -1 {
        1
    } else {
        ret
    }
}

/// Upstream's `path_socket("ctdbd")`.
pub fn socket_path() -> String {
    if let Ok(s) = std::env::var("CTDB_SOCKET") {
        return s;
    }
    format!("{}/ctdbd.socket", rundir())
}

fn rundir() -> String {
    if std::env::var_os("CTDB_TEST_MODE").is_some() {
        if let Ok(base) = std::env::var("CTDB_BASE") {
            return format!("{base}/run");
        }
    }
    "/run/ctdb".to_string()
}

fn process_command(cmd: &Cmd, opts: Options, args: &[String]) -> i32 {
    let f = match cmd.func {
        Func::Local(f) => {
            if opts.pnn != -1 {
                eprintln!("Cannot specify node for command {}", cmd.name);
                return 1;
            }
            return f(&opts, args);
        }
        Func::Daemon(f) => f,
    };

    let path = socket_path();
    let client = match Client::connect(&path) {
        Ok(c) => c,
        Err(_) => {
            eprintln!("Failed to connect to CTDB daemon ({path})");
            if !find_node_xpnn() {
                eprintln!("Is this node part of CTDB cluster?");
            }
            return 1;
        }
    };

    let pnn = client.pnn();
    let mut ctx = Ctx {
        srvid: wire::SRVID_CTDB_TOOL | (((std::process::id() & 0xFFFF) as u64) << 16),
        opts,
        client,
        pnn,
        cmd_pnn: pnn,
        nodemap: None,
    };

    if ctx.opts.pnn != -1 {
        if !ctx.verify_pnn(ctx.opts.pnn) {
            return 1;
        }
        ctx.cmd_pnn = ctx.opts.pnn as u32;
    }

    if !cmd.remote && ctx.pnn != ctx.cmd_pnn {
        eprintln!("Node cannot be specified for command {}", cmd.name);
        return 1;
    }

    if ctx.client.register_srvid(wire::CTDB_SRVID_LEADER).is_err() {
        eprintln!("Failed to setup leader handler");
        return 1;
    }

    f(&mut ctx, args)
}

/// `find_node_xpnn()`: is any address of the nodes file local?
fn find_node_xpnn() -> bool {
    let nodes = match read_nodes_file() {
        Some(n) => n,
        None => return false,
    };
    for n in &nodes.nodes {
        if n.flags & wire::NODE_FLAGS_DELETED != 0 {
            continue;
        }
        if let Some(ip) = n.addr.ip() {
            if std::net::TcpListener::bind((ip, 0)).is_ok() {
                return true;
            }
        }
    }
    eprintln!("Failed to detect PNN of the current node.");
    false
}

fn nodes_file_path() -> String {
    let base = std::env::var("CTDB_BASE").unwrap_or_else(|_| "/etc/ctdb".to_string());
    format!("{base}/nodes")
}

/// Reads `$CTDB_BASE/nodes` as upstream's tool does (commented lines are
/// deleted nodes); prints upstream's errors.
pub fn read_nodes_file() -> Option<NodeMap> {
    let path = nodes_file_path();
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(_) => {
            eprintln!("Failed to read nodes file \"{path}\"");
            return None;
        }
    };
    match format::parse_nodes_file(&String::from_utf8_lossy(&text)) {
        Ok(m) => Some(m),
        Err(bad) => {
            eprintln!("Invalid IP address {bad}");
            eprintln!("Failed to read nodes file \"{path}\"");
            None
        }
    }
}

/// State shared by the commands that talk to a daemon.
pub struct Ctx {
    pub opts: Options,
    pub client: Client,
    pub pnn: u32,
    pub cmd_pnn: u32,
    pub srvid: u64,
    nodemap: Option<NodeMap>,
}

impl Ctx {
    pub fn timeout(&self) -> Option<Duration> {
        let t = self.opts.timelimit.max(0) as u64;
        Some(Duration::from_secs(t).max(Duration::from_millis(100)))
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout().unwrap_or(Duration::from_secs(10))
    }

    fn sep(&self) -> MachineSep<'_> {
        MachineSep(&self.opts.sep)
    }

    fn next_srvid(&mut self) -> u64 {
        self.srvid += 1;
        self.srvid
    }

    /// A control with upstream's sync-wrapper error reporting: transport
    /// failures print "failed to node", non-zero status prints "failed".
    fn ctrl_timeout(
        &mut self,
        name: &str,
        dest: u32,
        timeout: Option<Duration>,
        req: ControlRequest,
    ) -> Result<Vec<u8>, i32> {
        match self.client.control(dest, timeout, &req) {
            Err(e) => {
                eprintln!("Control {name} failed to node {dest}, ret={e}");
                Err(e)
            }
            Ok(r) if r.status != 0 => {
                eprintln!("Control {name} failed, ret={}", r.status);
                Err(r.status)
            }
            Ok(r) => Ok(r.data),
        }
    }

    fn ctrl(&mut self, name: &str, dest: u32, input: ControlData<'_>) -> Result<Vec<u8>, i32> {
        let t = self.timeout();
        self.ctrl_timeout(name, dest, t, ControlRequest::new(input))
    }

    /// A control whose result is the status itself (PING, GET_RECMODE...).
    fn ctrl_status(&mut self, name: &str, dest: u32, input: ControlData<'_>) -> Result<i32, i32> {
        let t = self.timeout();
        match self.client.control(dest, t, &ControlRequest::new(input)) {
            Err(e) => {
                eprintln!("Control {name} failed to node {dest}, ret={e}");
                Err(e)
            }
            Ok(r) => Ok(r.status),
        }
    }

    /// Decodes a reply's data as the control's output type.
    fn decode<'a, T: Wire<'a>>(name: &str, data: &'a [u8]) -> Result<T, i32> {
        T::from_bytes(data).map_err(|_| {
            eprintln!("Control {name} failed, ret={}", libc::EMSGSIZE);
            libc::EMSGSIZE
        })
    }

    fn get_nodemap_from(&mut self, dest: u32) -> Result<NodeMap, i32> {
        let d = self.ctrl("GET_NODEMAP", dest, ControlData::GetNodemap)?;
        Self::decode::<NodeMap>("GET_NODEMAP", &d)
    }

    /// Upstream's `get_nodemap()`: cached; asks another node if this one is
    /// banned.
    pub fn get_nodemap(&mut self, force: bool) -> Option<NodeMap> {
        if force {
            self.nodemap = None;
        }
        if let Some(m) = &self.nodemap {
            return Some(m.clone());
        }
        let mut current = self.pnn;
        loop {
            let map = match self.get_nodemap_from(current) {
                Ok(m) => m,
                Err(_) => {
                    eprintln!("Failed to get nodemap from node {current}");
                    return None;
                }
            };
            let banned = wire::find_node(&map, current)
                .map(|n| n.flags & wire::NODE_FLAGS_BANNED != 0)
                .unwrap_or(false);
            if banned && !map.nodes.is_empty() {
                loop {
                    current = (current + 1) % map.nodes.len() as u32;
                    let ok = wire::find_node(&map, current)
                        .map(|n| {
                            n.flags & (wire::NODE_FLAGS_DELETED | wire::NODE_FLAGS_DISCONNECTED)
                                == 0
                        })
                        .unwrap_or(false);
                    if ok || current == self.pnn {
                        break;
                    }
                }
                if current == self.pnn {
                    eprintln!("Warning: All nodes are banned.");
                    return None;
                }
                continue;
            }
            self.nodemap = Some(map.clone());
            return Some(map);
        }
    }

    fn verify_pnn(&mut self, pnn: i32) -> bool {
        if pnn == -1 {
            return false;
        }
        let map = match self.get_nodemap(false) {
            Some(m) => m,
            None => return false,
        };
        let node = match wire::find_node(&map, pnn as u32) {
            Some(n) => *n,
            None => {
                eprintln!("Node {} does not exist", pnn as u32);
                return false;
            }
        };
        if node.flags & (wire::NODE_FLAGS_DISCONNECTED | wire::NODE_FLAGS_DELETED) != 0 {
            eprintln!(
                "Node {} has status {}",
                pnn as u32,
                format::pretty_print_flags(node.flags)
            );
            return false;
        }
        true
    }

    fn get_runstate(&mut self, dest: u32) -> Result<u32, i32> {
        let d = self.ctrl("GET_RUNSTATE", dest, ControlData::GetRunstate)?;
        Self::decode::<u32>("GET_RUNSTATE", &d)
    }

    /// Upstream's `get_nodemap_unknown()`: other nodes show as UNKNOWN until
    /// the queried node is past FIRST_RECOVERY.
    fn nodemap_unknown(&mut self, map: &NodeMap) -> Option<NodeMap> {
        let runstate = match self.get_runstate(self.cmd_pnn) {
            Ok(r) => r,
            Err(_) => {
                print!("Unable to get runstate");
                return None;
            }
        };
        let mut out = map.clone();
        for n in out.nodes.iter_mut() {
            if n.flags & wire::NODE_FLAGS_DELETED != 0 {
                continue;
            }
            if runstate <= 3
                && n.flags & wire::NODE_FLAGS_DISCONNECTED == 0
                && n.pnn != self.cmd_pnn
            {
                n.flags = wire::NODE_FLAGS_UNKNOWN;
            }
        }
        Some(out)
    }

    fn get_ifaces(&mut self, dest: u32) -> Result<Vec<wire::Iface>, i32> {
        let d = self.ctrl("GET_IFACES", dest, ControlData::GetIfaces)?;
        Self::decode::<wire::IfaceList>("GET_IFACES", &d).map(|l| l.ifaces)
    }

    /// PARTIALLYONLINE: a healthy node with a link-down interface.
    fn partially_online(&mut self, node: &wire::NodeAndFlags) -> bool {
        if node.flags != 0 {
            return false;
        }
        match self.get_ifaces(node.pnn) {
            Ok(list) => list.iter().any(|i| i.link_state == 0),
            Err(_) => false,
        }
    }

    fn print_nodemap_machine(&mut self, map: &NodeMap, mypnn: u32) {
        let s = self.opts.sep.clone();
        let names = [
            "Node",
            "IP",
            "Disconnected",
            "Unknown",
            "Banned",
            "Disabled",
            "Unhealthy",
            "Stopped",
            "Inactive",
            "PartiallyOnline",
            "ThisNode",
        ];
        println!("{}", format::machine_row(&s, &names));
        for n in &map.nodes {
            if n.flags & wire::NODE_FLAGS_DELETED != 0 {
                continue;
            }
            let b = |f: u32| if n.flags & f != 0 { "1" } else { "0" };
            let po = if self.partially_online(n) { "1" } else { "0" };
            let row = [
                n.pnn.to_string(),
                wire::addr_text(&n.addr, false),
                b(wire::NODE_FLAGS_DISCONNECTED).into(),
                b(wire::NODE_FLAGS_UNKNOWN).into(),
                b(wire::NODE_FLAGS_BANNED).into(),
                b(wire::NODE_FLAGS_PERMANENTLY_DISABLED).into(),
                b(wire::NODE_FLAGS_UNHEALTHY).into(),
                b(wire::NODE_FLAGS_STOPPED).into(),
                b(wire::NODE_FLAGS_INACTIVE).into(),
                po.into(),
                if n.pnn == mypnn { "Y" } else { "N" }.into(),
            ];
            println!("{}", format::machine_row(&s, &row));
        }
    }

    fn print_nodemap(&mut self, map: &NodeMap, mypnn: u32, header: bool) {
        let deleted = map
            .nodes
            .iter()
            .filter(|n| n.flags & wire::NODE_FLAGS_DELETED != 0)
            .count();
        if header {
            if deleted == 0 {
                println!("Number of nodes:{}", map.nodes.len());
            } else {
                println!(
                    "Number of nodes:{} (including {} deleted nodes)",
                    map.nodes.len(),
                    deleted
                );
            }
        }
        for n in &map.nodes {
            if n.flags & wire::NODE_FLAGS_DELETED != 0 {
                continue;
            }
            let state = if self.partially_online(n) {
                "PARTIALLYONLINE".to_string()
            } else {
                format::pretty_print_flags(n.flags)
            };
            println!(
                "pnn:{} {:<16} {}{}",
                n.pnn,
                wire::addr_text(&n.addr, false),
                state,
                if n.pnn == mypnn { " (THIS NODE)" } else { "" }
            );
        }
    }

    fn get_leader(&mut self) -> Result<u32, i32> {
        let deadline = self.deadline();
        match self.client.wait_leader(deadline) {
            Ok(l) => Ok(l),
            Err(e) => {
                eprintln!("Error getting leader");
                Err(e)
            }
        }
    }

    fn get_dbmap(&mut self, dest: u32) -> Result<Vec<wire::DbId>, i32> {
        let d = self.ctrl("GET_DBMAP", dest, ControlData::GetDbmap)?;
        Self::decode::<wire::DbIdMap>("GET_DBMAP", &d).map(|m| m.dbs)
    }

    fn get_dbname(&mut self, dest: u32, db_id: u32) -> Result<String, i32> {
        let d = self.ctrl("GET_DBNAME", dest, ControlData::GetDbname(db_id))?;
        Ok(wire::parse_string(&d).unwrap_or_default())
    }

    fn getdbpath(&mut self, dest: u32, db_id: u32) -> Result<String, i32> {
        let d = self.ctrl("GETDBPATH", dest, ControlData::Getdbpath(db_id))?;
        Ok(wire::parse_string(&d).unwrap_or_default())
    }

    fn db_get_health(&mut self, dest: u32, db_id: u32) -> Result<Option<String>, i32> {
        let d = self.ctrl("DB_GET_HEALTH", dest, ControlData::DbGetHealth(db_id))?;
        Ok(wire::parse_string(&d))
    }

    /// Upstream's `db_exists()`: by name or by `0x` id; returns
    /// (db_id, name, flags).
    fn db_exists(&mut self, arg: &str) -> Option<(u32, String, u8)> {
        let pnn = self.pnn;
        let dbmap = self.get_dbmap(pnn).ok()?;
        let mut found: Option<wire::DbId> = None;
        let mut name: Option<String> = None;
        if arg.starts_with("0x") {
            let id = format::smb_strtoul(arg, 0, false)? as u32;
            found = dbmap.iter().copied().find(|d| d.db_id == id);
        } else {
            for d in &dbmap {
                let n = self.get_dbname(pnn, d.db_id).ok()?;
                if n == arg {
                    found = Some(*d);
                    name = Some(n);
                    break;
                }
            }
        }
        let db = match found {
            Some(d) => d,
            None => {
                eprintln!("No database matching '{arg}' found");
                return None;
            }
        };
        let name = match name {
            Some(n) => n,
            None => self.get_dbname(pnn, db.db_id).ok()?,
        };
        Some((db.db_id, name, db.flags))
    }

    /// Upstream's `ctdb_attach()`: attach, check health, set flags, open the
    /// local TDB file with the daemon's open flags.
    pub(crate) fn attach(&mut self, name: &str, flags: u8) -> Result<LocalDb, i32> {
        let pnn = self.pnn;
        let name_data = CtdbString::new(name);
        let (input, cname) = if flags & wire::CTDB_DB_FLAGS_PERSISTENT != 0 {
            (
                ControlData::DbAttachPersistent(name_data),
                "DB_ATTACH_PERSISTENT",
            )
        } else if flags & wire::CTDB_DB_FLAGS_REPLICATED != 0 {
            (
                ControlData::DbAttachReplicated(name_data),
                "DB_ATTACH_REPLICATED",
            )
        } else {
            (ControlData::DbAttach(name_data), "DB_ATTACH")
        };
        let t = self.timeout();
        let r = self.client.control(pnn, t, &ControlRequest::new(input));
        let db_id = match r {
            Ok(r) if r.status == 0 && r.data.len() >= 4 => {
                u32::from_ne_bytes([r.data[0], r.data[1], r.data[2], r.data[3]])
            }
            Ok(r) => {
                let e = if r.status != 0 { r.status } else { EPROTO };
                eprintln!("attach: {name} {cname} failed, ret={e}");
                return Err(e);
            }
            Err(e) => {
                eprintln!("attach: {name} {cname} failed, ret={e}");
                return Err(e);
            }
        };
        let path =
            match self
                .client
                .control(pnn, t, &ControlRequest::new(ControlData::Getdbpath(db_id)))
            {
                Ok(r) if r.status == 0 => wire::parse_string(&r.data).unwrap_or_default(),
                Ok(r) => {
                    eprintln!("attach: {name} GETDBPATH failed, ret={}", r.status);
                    return Err(r.status);
                }
                Err(e) => {
                    eprintln!("attach: {name} GETDBPATH failed, ret={e}");
                    return Err(e);
                }
            };
        match self.client.control(
            pnn,
            t,
            &ControlRequest::new(ControlData::DbGetHealth(db_id)),
        ) {
            Ok(r) if r.status == 0 => {
                if let Some(reason) = wire::parse_string(&r.data) {
                    eprintln!("attach: {name} database unhealthy ({reason})");
                    return Err(libc::EIO);
                }
            }
            Ok(r) => {
                eprintln!("attach: {name} DB_GET_HEALTH failed, ret={}", r.status);
                return Err(r.status);
            }
            Err(e) => {
                eprintln!("attach: {name} DB_GET_HEALTH failed, ret={e}");
                return Err(e);
            }
        }
        if flags & (wire::CTDB_DB_FLAGS_READONLY | wire::CTDB_DB_FLAGS_STICKY) != 0 {
            if let Err(e) = self.set_db_flags(db_id, flags) {
                eprintln!("attach: {name} set db flags 0x{flags:08x} failed");
                return Err(e);
            }
        }
        match self.client.control(
            pnn,
            t,
            &ControlRequest::new(ControlData::DbOpenFlags(db_id)),
        ) {
            Ok(r) if r.status == 0 && r.data.len() >= 4 => {
                let tdb_flags = u32::from_ne_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]);
                match crate::local::open_tdb(&path, tdb_flags) {
                    Ok(store) => Ok(LocalDb {
                        name: name.to_string(),
                        db_id,
                        flags,
                        store,
                    }),
                    Err(_) => {
                        eprintln!("attach: {name} tdb_wrap_open failed");
                        Err(libc::ENOMEM)
                    }
                }
            }
            Ok(r) => {
                let e = if r.status != 0 { r.status } else { EPROTO };
                eprintln!("attach: {name} DB_OPEN_FLAGS failed, ret={e}");
                Err(e)
            }
            Err(e) => {
                eprintln!("attach: {name} DB_OPEN_FLAGS failed, ret={e}");
                Err(e)
            }
        }
    }

    fn set_db_flags(&mut self, db_id: u32, flags: u8) -> Result<(), i32> {
        let pnn = self.pnn;
        let t = self.timeout();
        let map = match self
            .client
            .control(pnn, t, &ControlRequest::new(ControlData::GetNodemap))
        {
            Ok(r) if r.status == 0 => NodeMap::from_bytes(&r.data).map_err(|_| EPROTO)?,
            Ok(r) => {
                eprintln!(
                    "set_db_flags: 0x{db_id:08x} GET_NODEMAP failed, ret={}",
                    r.status
                );
                return Err(r.status);
            }
            Err(e) => {
                eprintln!("set_db_flags: 0x{db_id:08x} GET_NODEMAP failed, ret={e}");
                return Err(e);
            }
        };
        let nodes = list_of_nodes(&map, wire::NODE_FLAGS_DISCONNECTED, wire::CTDB_UNKNOWN_PNN);
        let setters: [(u8, U32Control, &str); 2] = [
            (
                wire::CTDB_DB_FLAGS_READONLY,
                ControlData::SetDbReadonly,
                "SET_DB_READONLY",
            ),
            (
                wire::CTDB_DB_FLAGS_STICKY,
                ControlData::SetDbSticky,
                "SET_DB_STICKY",
            ),
        ];
        for (bit, input, cname) in setters {
            if flags & bit == 0 {
                continue;
            }
            let req = ControlRequest::new(input(db_id));
            for r in self.client.control_multi(&nodes, t, &req) {
                let e = match r {
                    Ok(r) if r.status == 0 => continue,
                    Ok(r) => r.status,
                    Err(e) => e,
                };
                eprintln!("set_db_flags: 0x{db_id:08x} {cname} failed, ret={e}");
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sends `req` to every node in `nodes`; Err with the first failure.
    fn multi(&mut self, nodes: &[u32], req: ControlRequest) -> Result<Vec<Vec<u8>>, i32> {
        let t = self.timeout();
        let mut out = Vec::new();
        let mut err = 0;
        for r in self.client.control_multi(nodes, t, &req) {
            match r {
                Ok(r) if r.status == 0 => out.push(r.data),
                Ok(r) => {
                    if err == 0 {
                        err = r.status;
                    }
                    out.push(Vec::new());
                }
                Err(e) => {
                    if err == 0 {
                        err = e;
                    }
                    out.push(Vec::new());
                }
            }
        }
        if err != 0 {
            Err(err)
        } else {
            Ok(out)
        }
    }

    /// Broadcasts a takeover run and waits for the leader's answer,
    /// re-sending after each timeout (upstream's `ipreallocate()`).
    fn ipreallocate(&mut self) -> i32 {
        let srvid = self.next_srvid();
        if let Err(e) = self.client.register_srvid(srvid) {
            return e;
        }
        let mut msg = Vec::new();
        msg.extend_from_slice(&self.pnn.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&srvid.to_ne_bytes());
        let ret = loop {
            if let Err(e) = self.client.send_message(
                wire::CTDB_BROADCAST_CONNECTED,
                wire::CTDB_SRVID_TAKEOVER_RUN,
                &msg,
            ) {
                break e;
            }
            let deadline = self.deadline();
            let mut got: Option<i32> = None;
            loop {
                match self.client.wait_message(srvid, Some(deadline)) {
                    Ok(d) if d.len() == 4 => {
                        got = Some(i32::from_ne_bytes([d[0], d[1], d[2], d[3]]));
                        break;
                    }
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
            match got {
                Some(s) if s >= 0 => break 0,
                Some(s) => break s,
                None => continue,
            }
        };
        let _ = self.client.deregister_srvid(srvid);
        ret
    }

    /// `check_flags()`: 0 if nothing to do (already in the wanted state).
    fn check_flags(&mut self, desc: &str, flag: u32, set: bool) -> i32 {
        let map = match self.get_nodemap(false) {
            Some(m) => m,
            None => return 1,
        };
        let is_set = map
            .nodes
            .get(self.cmd_pnn as usize)
            .map(|n| n.flags & flag != 0)
            .unwrap_or(false);
        if set == is_set {
            if set {
                eprintln!("Node {} is already {}", self.cmd_pnn, desc);
            } else {
                eprintln!("Node {} is not {}", self.cmd_pnn, desc);
            }
            return 0;
        }
        1
    }

    fn wait_for_flags(&mut self, flag: u32, set: bool) {
        loop {
            match self.get_nodemap(true) {
                None => {
                    eprintln!("Failed to get nodemap, trying again");
                }
                Some(m) => {
                    let is_set = m
                        .nodes
                        .get(self.cmd_pnn as usize)
                        .map(|n| n.flags & flag != 0)
                        .unwrap_or(false);
                    if is_set == set {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// `get_generation()`: waits for a normal recovery mode and a valid
    /// generation on the leader.
    fn get_generation(&mut self) -> Result<u32, i32> {
        loop {
            let leader = match self.get_leader() {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("Failed to find leader");
                    return Err(e);
                }
            };
            let recmode = match self.ctrl_status("GET_RECMODE", leader, ControlData::GetRecmode) {
                Ok(s) if s >= 0 => s,
                Ok(s) => {
                    eprintln!("Control GET_RECMODE failed, ret={s}");
                    eprintln!("Failed to get recovery mode from node {leader}");
                    return Err(s);
                }
                Err(e) => {
                    eprintln!("Failed to get recovery mode from node {leader}");
                    return Err(e);
                }
            };
            if recmode as u32 == wire::CTDB_RECOVERY_ACTIVE {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            let vnn = match self
                .ctrl("GETVNNMAP", leader, ControlData::Getvnnmap)
                .and_then(|d| Self::decode::<wire::VnnMap>("GETVNNMAP", &d))
            {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("Failed to get generation from node {leader}");
                    return Err(e);
                }
            };
            if vnn.generation == wire::INVALID_GENERATION {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            return Ok(vnn.generation);
        }
    }
}

pub fn list_of_nodes(map: &NodeMap, mask: u32, exclude: u32) -> Vec<u32> {
    map.nodes
        .iter()
        .filter(|n| n.flags & mask == 0 && n.pnn != exclude)
        .map(|n| n.pnn)
        .collect()
}

/// Upstream's `parse_nodestring()`.
fn parse_nodestring(ctx: &mut Ctx, s: Option<&str>) -> Option<NodeMap> {
    let map = ctx.get_nodemap(false)?;
    let mut out = NodeMap::default();
    match s {
        None => {
            if let Some(n) = wire::find_node(&map, ctx.cmd_pnn) {
                out.nodes.push(*n);
            }
        }
        Some("all") => out = map.clone(),
        Some(list) => {
            for tok in list.split(',').filter(|t| !t.is_empty()) {
                let pnn = match format::smb_strtoul(tok, 0, false) {
                    Some(v) => v as u32,
                    None => {
                        eprintln!("Invalid node {tok}");
                        return None;
                    }
                };
                match wire::find_node(&map, pnn) {
                    Some(n) => out.nodes.push(*n),
                    None => {
                        eprintln!("Node {pnn} does not exist");
                        return None;
                    }
                }
            }
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

fn control_version(_: &Options, _: &[String]) -> i32 {
    println!("{VERSION_STRING}");
    0
}

fn control_status(ctx: &mut Ctx, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("status"));
    }
    let map_in = match ctx.get_nodemap(false) {
        Some(m) => m,
        None => return 1,
    };
    let map = match ctx.nodemap_unknown(&map_in) {
        Some(m) => m,
        None => return 1,
    };
    let cmd_pnn = ctx.cmd_pnn;
    if ctx.opts.machinereadable {
        ctx.print_nodemap_machine(&map, cmd_pnn);
        return 0;
    }
    let vnn = match ctx
        .ctrl("GETVNNMAP", cmd_pnn, ControlData::Getvnnmap)
        .and_then(|d| Ctx::decode::<wire::VnnMap>("GETVNNMAP", &d))
    {
        Ok(v) => v,
        Err(e) => return e,
    };
    let recmode = match ctx.ctrl_status("GET_RECMODE", cmd_pnn, ControlData::GetRecmode) {
        Ok(s) if s >= 0 => s,
        Ok(s) => {
            eprintln!("Control GET_RECMODE failed, ret={s}");
            return s;
        }
        Err(e) => return e,
    };
    let leader = match ctx.get_leader() {
        Ok(l) => l,
        Err(e) => return e,
    };
    ctx.print_nodemap(&map, cmd_pnn, true);
    if vnn.generation == wire::INVALID_GENERATION {
        println!("Generation:INVALID");
    } else {
        println!("Generation:{}", vnn.generation);
    }
    println!("Size:{}", vnn.map.len());
    for (i, m) in vnn.map.iter().enumerate() {
        println!("hash:{} lmaster:{}", i, *m as i32);
    }
    println!(
        "Recovery mode:{} ({})",
        if recmode == wire::CTDB_RECOVERY_NORMAL {
            "NORMAL"
        } else {
            "RECOVERY"
        },
        recmode
    );
    println!("Leader:{}", format::pnn_string(leader));
    0
}

fn control_uptime(ctx: &mut Ctx, _: &[String]) -> i32 {
    let cmd_pnn = ctx.cmd_pnn;
    let up = match ctx
        .ctrl("UPTIME", cmd_pnn, ControlData::Uptime)
        .and_then(|d| Ctx::decode::<wire::Uptime>("UPTIME", &d))
    {
        Ok(u) => u,
        Err(e) => return e,
    };
    print!("{}", format::uptime(cmd_pnn, &up));
    0
}

fn control_ping(ctx: &mut Ctx, _: &[String]) -> i32 {
    let cmd_pnn = ctx.cmd_pnn;
    let start = Instant::now();
    let n = match ctx.ctrl_status("PING", cmd_pnn, ControlData::Ping) {
        Ok(s) if s >= 0 => s,
        Ok(s) => {
            eprintln!("Control PING failed, ret={s}");
            return s;
        }
        Err(e) => return e,
    };
    println!(
        "response from {} time={:.6} sec  ({} clients)",
        cmd_pnn,
        start.elapsed().as_secs_f64(),
        n
    );
    0
}

fn control_runstate(ctx: &mut Ctx, args: &[String]) -> i32 {
    let cmd_pnn = ctx.cmd_pnn;
    let rs = match ctx.get_runstate(cmd_pnn) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut found = true;
    for a in args {
        found = false;
        let t = format::runstate_from_string(a);
        if t == 0 {
            println!("Invalid run state ({a})");
            return 1;
        }
        if t == rs {
            found = true;
            break;
        }
    }
    if !found {
        println!(
            "CTDB not in required run state (got {})",
            format::runstate_to_string(rs)
        );
        return 1;
    }
    println!("{}", format::runstate_to_string(rs));
    0
}

fn list_tunables(ctx: &mut Ctx) -> Result<Vec<String>, i32> {
    let cmd_pnn = ctx.cmd_pnn;
    let d = ctx.ctrl("LIST_TUNABLES", cmd_pnn, ControlData::ListTunables)?;
    Ctx::decode::<wire::VarList>("LIST_TUNABLES", &d)
        .map(|l| l.names.into_iter().map(str::to_string).collect())
}

fn getvar(ctx: &mut Ctx, name: &str) -> i32 {
    let list = match list_tunables(ctx) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Failed to get list of variables from node {}", ctx.cmd_pnn);
            return e;
        }
    };
    if !list.iter().any(|v| v.eq_ignore_ascii_case(name)) {
        println!("No such tunable {name}");
        return 1;
    }
    let cmd_pnn = ctx.cmd_pnn;
    let value = match ctx
        .ctrl(
            "GET_TUNABLE",
            cmd_pnn,
            ControlData::GetTunable(StringN::new(name)),
        )
        .and_then(|d| Ctx::decode::<u32>("GET_TUNABLE", &d))
    {
        Ok(v) => v,
        Err(e) => return e,
    };
    println!("{name:<26} = {value}");
    0
}

fn control_getvar(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("getvar"));
    }
    getvar(ctx, &args[0])
}

fn control_setvar(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 2 {
        usage(Some("setvar"));
    }
    let list = match list_tunables(ctx) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Failed to get list of variables from node {}", ctx.cmd_pnn);
            return e;
        }
    };
    if !list.iter().any(|v| v.eq_ignore_ascii_case(&args[0])) {
        println!("No such tunable {}", args[0]);
        return 1;
    }
    let value = match format::smb_strtoul(&args[1], 0, false) {
        Some(v) => v as u32,
        None => return libc::EINVAL,
    };
    let cmd_pnn = ctx.cmd_pnn;
    let tunable = Tunable::new(&args[0], value);
    match ctx.ctrl("SET_TUNABLE", cmd_pnn, ControlData::SetTunable(tunable)) {
        Ok(_) => 0,
        Err(1) => {
            eprintln!("Setting obsolete tunable variable '{}'", args[0]);
            0
        }
        Err(e) => e,
    }
}

fn control_listvars(ctx: &mut Ctx, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("listvars"));
    }
    let list = match list_tunables(ctx) {
        Ok(l) => l,
        Err(e) => return e,
    };
    for v in list {
        getvar(ctx, &v);
    }
    0
}

fn control_statistics(ctx: &mut Ctx, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("statistics"));
    }
    let cmd_pnn = ctx.cmd_pnn;
    let s = match ctx
        .ctrl("STATISTICS", cmd_pnn, ControlData::Statistics)
        .and_then(|d| Ctx::decode::<wire::Statistics>("STATISTICS", &d))
    {
        Ok(s) => s,
        Err(e) => return e,
    };
    if ctx.opts.machinereadable {
        print!("{}", format::statistics_machine(&s, true, ctx.sep()));
    } else {
        print!("{}", format::statistics(&s));
    }
    0
}

fn control_statistics_reset(ctx: &mut Ctx, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("statisticsreset"));
    }
    let cmd_pnn = ctx.cmd_pnn;
    match ctx.ctrl("STATISTICS_RESET", cmd_pnn, ControlData::StatisticsReset) {
        Ok(_) => 0,
        Err(e) => e,
    }
}

fn control_stats(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() > 1 {
        usage(Some("stats"));
    }
    let count = args.first().map(|a| format::atoi(a)).unwrap_or(0);
    let cmd_pnn = ctx.cmd_pnn;
    let list = match ctx
        .ctrl("GET_STAT_HISTORY", cmd_pnn, ControlData::GetStatHistory)
        .and_then(|d| Ctx::decode::<wire::StatisticsList>("GET_STAT_HISTORY", &d).map(|l| l.stats))
    {
        Ok(l) => l,
        Err(e) => return e,
    };
    let mut show_header = true;
    for (i, s) in list.iter().enumerate() {
        if s.statistics_start_time.tv_sec == 0 {
            continue;
        }
        if ctx.opts.machinereadable {
            print!("{}", format::statistics_machine(s, show_header, ctx.sep()));
            show_header = false;
        } else {
            print!("{}", format::statistics(s));
        }
        if count > 0 && i as i32 == count {
            break;
        }
    }
    0
}

fn get_public_ips(ctx: &mut Ctx, dest: u32) -> Result<Vec<wire::PublicIp>, i32> {
    let d = ctx.ctrl("GET_PUBLIC_IPS", dest, ControlData::GetPublicIps)?;
    Ctx::decode::<wire::PublicIpList>("GET_PUBLIC_IPS", &d).map(|l| l.ips)
}

fn get_public_ip_info(
    ctx: &mut Ctx,
    dest: u32,
    addr: &SockAddr,
) -> Result<wire::PublicIpInfo, i32> {
    let d = ctx.ctrl(
        "GET_PUBLIC_IP_INFO",
        dest,
        ControlData::GetPublicIpInfo(*addr),
    )?;
    Ctx::decode::<wire::PublicIpInfo>("GET_PUBLIC_IP_INFO", &d)
}

fn get_all_public_ips(ctx: &mut Ctx) -> Result<Vec<wire::PublicIp>, i32> {
    let map = ctx.get_nodemap(false).ok_or(1)?;
    let nodes = list_of_nodes(&map, wire::NODE_FLAGS_INACTIVE, wire::CTDB_UNKNOWN_PNN);
    if nodes.is_empty() {
        return Err(1);
    }
    let mut all: Vec<wire::PublicIp> = Vec::new();
    for pnn in nodes {
        let ips = get_public_ips(ctx, pnn).map_err(|_| 1)?;
        for ip in ips {
            let pos = all.iter().position(|a| a.addr == ip.addr);
            if pnn == ip.pnn {
                match pos {
                    Some(p) => all[p] = ip,
                    None => all.push(ip),
                }
            } else if pos.is_none() {
                all.push(wire::PublicIp {
                    pnn: wire::CTDB_UNKNOWN_PNN,
                    addr: ip.addr,
                });
            }
        }
    }
    Ok(all)
}

fn control_ip(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() > 1 {
        usage(Some("ip"));
    }
    let do_all = match args.first() {
        Some(a) if a == "all" => true,
        Some(_) => usage(Some("ip")),
        None => false,
    };
    let cmd_pnn = ctx.cmd_pnn;
    let mut ips = match if do_all {
        get_all_public_ips(ctx)
    } else {
        get_public_ips(ctx, cmd_pnn)
    } {
        Ok(v) => v,
        Err(e) => return e,
    };
    ips.sort_by_key(|a| wire::addr_cmp_key(&a.addr));
    let mut infos = Vec::new();
    if ctx.opts.verbose {
        for ip in &ips {
            let pnn = if do_all { ip.pnn } else { cmd_pnn };
            if pnn == wire::CTDB_UNKNOWN_PNN {
                infos.push(None);
                continue;
            }
            match get_public_ip_info(ctx, pnn, &ip.addr) {
                Ok(i) => infos.push(Some(i)),
                Err(e) => return e,
            }
        }
    } else {
        // Upstream asks for the info even when not printing it.
        for ip in &ips {
            let pnn = if do_all { ip.pnn } else { cmd_pnn };
            if pnn == wire::CTDB_UNKNOWN_PNN {
                continue;
            }
            if let Err(e) = get_public_ip_info(ctx, pnn, &ip.addr) {
                return e;
            }
        }
    }
    print!(
        "{}",
        format::public_ips(
            &ips,
            &infos,
            do_all,
            cmd_pnn,
            ctx.opts.machinereadable,
            ctx.opts.verbose,
            ctx.sep()
        )
    );
    0
}

fn control_ipinfo(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("ipinfo"));
    }
    let addr = match ip_arg(&args[0], false) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let cmd_pnn = ctx.cmd_pnn;
    let info = match get_public_ip_info(ctx, cmd_pnn, &addr) {
        Ok(i) => i,
        Err(e) => {
            if e == -1 {
                println!("Node {} does not know about IP {}", cmd_pnn, args[0]);
            }
            return e;
        }
    };
    print!("{}", format::ipinfo(cmd_pnn, &info));
    0
}

fn control_ifaces(ctx: &mut Ctx, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("ifaces"));
    }
    let cmd_pnn = ctx.cmd_pnn;
    let list = match ctx.get_ifaces(cmd_pnn) {
        Ok(l) => l,
        Err(e) => return e,
    };
    print!(
        "{}",
        format::ifaces(&list, cmd_pnn, ctx.opts.machinereadable, ctx.sep())
    );
    0
}

fn control_setifacelink(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 2 {
        usage(Some("setifacelink"));
    }
    if args[0].len() > wire::CTDB_IFACE_SIZE {
        eprintln!("Interface name '{}' too long", args[0]);
        return 1;
    }
    let cmd_pnn = ctx.cmd_pnn;
    let list = match ctx.get_ifaces(cmd_pnn) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Failed to get interface information from node {cmd_pnn}");
            return e;
        }
    };
    if !list.iter().any(|i| wire::iface_name(i) == args[0]) {
        println!("Interface {} not configured on node {}", args[0], cmd_pnn);
        return 1;
    }
    let link_state = match args[1].as_str() {
        "up" => 1,
        "down" => 0,
        _ => usage(Some("setifacelink")),
    };
    let iface = wire::Iface::new(&args[0], link_state, 0);
    match ctx.ctrl(
        "SET_IFACE_LINK_STATE",
        cmd_pnn,
        ControlData::SetIfaceLinkState(iface),
    ) {
        Ok(_) => 0,
        Err(e) => e,
    }
}

fn control_process_exists(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 && args.len() != 2 {
        usage(Some("process-exists"));
    }
    let pid = format::atoi(&args[0]);
    let mut srvid: u64 = 0;
    if args.len() == 2 {
        match format::smb_strtoul(&args[1], 0, false) {
            Some(v) => srvid = v,
            None => return libc::EINVAL,
        }
    }
    let cmd_pnn = ctx.cmd_pnn;
    let status = if srvid == 0 {
        match ctx.ctrl_status("PROCESS_EXISTS", cmd_pnn, ControlData::ProcessExists(pid)) {
            Ok(s) => s,
            Err(e) => return e,
        }
    } else {
        let pid_srvid = PidSrvid { pid, srvid };
        match ctx.ctrl_status(
            "CHECK_PID_SRVID",
            cmd_pnn,
            ControlData::CheckPidSrvid(pid_srvid),
        ) {
            Ok(s) => s,
            Err(e) => return e,
        }
    };
    let what = if status == 0 {
        "exists"
    } else {
        "does not exist"
    };
    if srvid == 0 {
        println!("PID {pid} {what}");
    } else {
        println!("PID {pid} with SRVID 0x{srvid:x} {what}");
    }
    status
}

fn control_getdbmap(ctx: &mut Ctx, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("getdbmap"));
    }
    let cmd_pnn = ctx.cmd_pnn;
    let dbmap = match ctx.get_dbmap(cmd_pnn) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let s = ctx.opts.sep.clone();
    if ctx.opts.machinereadable {
        println!(
            "{}",
            format::machine_row(
                &s,
                &[
                    "ID",
                    "Name",
                    "Path",
                    "Persistent",
                    "Sticky",
                    "Unhealthy",
                    "Readonly",
                    "Replicated"
                ]
            )
        );
    } else {
        println!("Number of databases:{}", dbmap.len());
    }
    for db in dbmap {
        let name = match ctx.get_dbname(cmd_pnn, db.db_id) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let path = match ctx.getdbpath(cmd_pnn, db.db_id) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let health = match ctx.db_get_health(cmd_pnn, db.db_id) {
            Ok(h) => h,
            Err(e) => return e,
        };
        let f = |b: u8| db.flags & b != 0;
        let persistent = f(wire::CTDB_DB_FLAGS_PERSISTENT);
        let readonly = f(wire::CTDB_DB_FLAGS_READONLY);
        let sticky = f(wire::CTDB_DB_FLAGS_STICKY);
        let replicated = f(wire::CTDB_DB_FLAGS_REPLICATED);
        if ctx.opts.machinereadable {
            let b = |v: bool| if v { "1" } else { "0" }.to_string();
            println!(
                "{}",
                format::machine_row(
                    &s,
                    &[
                        format!("0x{:08X}", db.db_id),
                        name,
                        path,
                        b(persistent),
                        b(sticky),
                        b(health.is_some()),
                        b(readonly),
                        b(replicated),
                    ]
                )
            );
        } else {
            println!(
                "dbid:0x{:08x} name:{} path:{}{}{}{}{}{}",
                db.db_id,
                name,
                path,
                if persistent { " PERSISTENT" } else { "" },
                if sticky { " STICKY" } else { "" },
                if readonly { " READONLY" } else { "" },
                if replicated { " REPLICATED" } else { "" },
                if health.is_some() { " UNHEALTHY" } else { "" },
            );
        }
    }
    0
}

fn control_getdbstatus(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("getdbstatus"));
    }
    let (db_id, name, flags) = match ctx.db_exists(&args[0]) {
        Some(v) => v,
        None => return 1,
    };
    let cmd_pnn = ctx.cmd_pnn;
    let path = match ctx.getdbpath(cmd_pnn, db_id) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let health = match ctx.db_get_health(cmd_pnn, db_id) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let yn = |b: u8| if flags & b != 0 { "yes" } else { "no" };
    println!("dbid: 0x{db_id:08x}\nname: {name}\npath: {path}");
    println!(
        "PERSISTENT: {}\nREPLICATED: {}\nSTICKY: {}\nREADONLY: {}",
        yn(wire::CTDB_DB_FLAGS_PERSISTENT),
        yn(wire::CTDB_DB_FLAGS_REPLICATED),
        yn(wire::CTDB_DB_FLAGS_STICKY),
        yn(wire::CTDB_DB_FLAGS_READONLY)
    );
    println!("HEALTH: {}", health.as_deref().unwrap_or("OK"));
    0
}

fn control_catdb(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("catdb"));
    }
    let (db_id, name, flags) = match ctx.db_exists(&args[0]) {
        Some(v) => v,
        None => return 1,
    };
    if let Err(e) = ctx.attach(&name, flags) {
        eprintln!("Failed to attach to DB {name}");
        return e;
    }
    let srvid = wire::CTDB_SRVID_CLIENT_RANGE | std::process::id() as u64;
    if let Err(e) = ctx.client.register_srvid(srvid) {
        return e;
    }
    let traverse = TraverseStartExt {
        db_id,
        reqid: 0,
        srvid,
        withemptyrecords: false,
    };
    let cmd_pnn = ctx.cmd_pnn;
    let t = ctx.timeout();
    let mut count = 0u32;
    let mut ret = 0;
    match ctx.client.control(
        cmd_pnn,
        t,
        &ControlRequest::new(ControlData::TraverseStartExt(traverse)),
    ) {
        Err(e) => {
            eprintln!("traverse: control failed, ret={e}");
            ret = e;
        }
        Ok(r) if r.status != 0 => {
            eprintln!("traverse: control reply failed, ret={}", r.status);
            ret = r.status;
        }
        Ok(_) => loop {
            let msg = match ctx.client.wait_message(srvid, None) {
                Ok(m) => m,
                Err(e) => {
                    ret = e;
                    break;
                }
            };
            let rec = match RecData::pull(&mut Reader::new(&msg)) {
                Ok(r) => r,
                Err(_) => continue,
            };
            if rec.key.is_empty() && rec.data.is_empty() {
                break;
            }
            let (hdr, value) = match LtdbHeader::split(rec.data) {
                Ok(v) => v,
                Err(_) => continue,
            };
            // Upstream skips records whose value is empty (deleted).
            if value.is_empty() {
                continue;
            }
            count += 1;
            print!("{}", format::dump_record(rec.key, &hdr, value));
        },
    }
    let _ = ctx.client.deregister_srvid(srvid);
    println!("Dumped {count} records");
    ret
}

fn control_cattdb(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("cattdb"));
    }
    let (_, name, flags) = match ctx.db_exists(&args[0]) {
        Some(v) => v,
        None => return 1,
    };
    let mut db = match ctx.attach(&name, flags) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("Failed to attach to DB {name}");
            return e;
        }
    };
    let recs = match local::traverse_local(&mut db) {
        Ok(r) => r,
        Err(e) => {
            println!("Dumped 0 record(s)");
            return e;
        }
    };
    let mut count = 0u32;
    let mut ret = 0;
    for (key, value) in recs {
        let (hdr, data) = match LtdbHeader::split(&value) {
            Ok(v) => v,
            Err(_) => {
                ret = libc::EMSGSIZE;
                break;
            }
        };
        count += 1;
        print!("{}", format::dump_record(&key, &hdr, data));
    }
    println!("Dumped {count} record(s)");
    ret
}

fn control_getcapabilities(ctx: &mut Ctx, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("getcapabilities"));
    }
    let cmd_pnn = ctx.cmd_pnn;
    let caps = match ctx
        .ctrl("GET_CAPABILITIES", cmd_pnn, ControlData::GetCapabilities)
        .and_then(|d| Ctx::decode::<u32>("GET_CAPABILITIES", &d))
    {
        Ok(c) => c,
        Err(e) => return e,
    };
    let leader = caps & wire::CTDB_CAP_RECMASTER != 0;
    let lmaster = caps & wire::CTDB_CAP_LMASTER != 0;
    if ctx.opts.machinereadable {
        let s = &ctx.opts.sep;
        println!("{}", format::machine_row(s, &["LEADER", "LMASTER"]));
        println!(
            "{}",
            format::machine_row(
                s,
                &[(leader as u8).to_string(), (lmaster as u8).to_string()]
            )
        );
    } else {
        println!("LEADER: {}", if leader { "YES" } else { "NO" });
        println!("LMASTER: {}", if lmaster { "YES" } else { "NO" });
    }
    0
}

fn control_pnn(ctx: &mut Ctx, _: &[String]) -> i32 {
    println!("{}", ctx.client.pnn());
    0
}

/// Upstream's `run_helper()`: runs a helper, maps its exit status.
fn run_helper(command: &str, path: &str, args: &[String]) -> i32 {
    let status = match std::process::Command::new(path).args(args).status() {
        Ok(s) => s,
        Err(e) => {
            // Upstream's child exits with 64+errno when execv fails.
            let errno = e.raw_os_error().unwrap_or(libc::ENOEXEC);
            eprintln!("{command} failed with error {errno}");
            return errno;
        }
    };
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        if (64..255).contains(&code) {
            eprintln!("{command} failed with error {}", code - 64);
            return code - 64;
        }
        return code;
    }
    if let Some(sig) = status.signal() {
        eprintln!("{command} terminated with signal {sig}");
        return libc::EINTR;
    }
    0
}

fn helper_path(env: &str, name: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| format!("/usr/libexec/ctdb/{name}"))
}

fn control_lvs(_: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("lvs"));
    }
    run_helper(
        "LVS helper",
        &helper_path("CTDB_LVS_HELPER", "ctdb_lvs"),
        args,
    )
}

fn control_natgw(_: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("natgw"));
    }
    run_helper(
        "NAT gateway helper",
        &helper_path("CTDB_NATGW_HELPER", "ctdb_natgw"),
        args,
    )
}

fn control_event(_: &Options, args: &[String]) -> i32 {
    run_helper(
        "event daemon helper",
        &helper_path("CTDB_EVENT_HELPER", "ctdb-event"),
        args,
    )
}

fn control_scriptstatus(opts: &Options, args: &[String]) -> i32 {
    if args.len() > 1 {
        usage(Some("scriptstatus"));
    }
    let ev = args
        .first()
        .cloned()
        .unwrap_or_else(|| "monitor".to_string());
    let argv = vec!["status".to_string(), "legacy".to_string(), ev];
    control_event(opts, &argv);
    0
}

fn control_setdebug(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("setdebug"));
    }
    let level = match format::debug_level_parse(&args[0]) {
        Some(l) => l,
        None => {
            eprintln!("Invalid debug level '{}'. Valid levels are:", args[0]);
            eprintln!("\tERROR | WARNING | NOTICE | INFO | DEBUG");
            return 1;
        }
    };
    let cmd_pnn = ctx.cmd_pnn;
    match ctx.ctrl("SET_DEBUG", cmd_pnn, ControlData::SetDebug(level as u32)) {
        Ok(_) => 0,
        Err(e) => e,
    }
}

fn control_getdebug(ctx: &mut Ctx, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("getdebug"));
    }
    let cmd_pnn = ctx.cmd_pnn;
    let level = match ctx
        .ctrl("GET_DEBUG", cmd_pnn, ControlData::GetDebug)
        .and_then(|d| Ctx::decode::<u32>("GET_DEBUG", &d))
    {
        Ok(l) => l as i32,
        Err(e) => return e,
    };
    println!("{}", format::debug_level_to_string(level));
    0
}

fn control_attach(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.is_empty() || args.len() > 2 {
        usage(Some("attach"));
    }
    let mut flags = 0u8;
    if args.len() == 2 {
        flags = match args[1].as_str() {
            "persistent" => wire::CTDB_DB_FLAGS_PERSISTENT,
            "readonly" => wire::CTDB_DB_FLAGS_READONLY,
            "sticky" => wire::CTDB_DB_FLAGS_STICKY,
            "replicated" => wire::CTDB_DB_FLAGS_REPLICATED,
            _ => usage(Some("attach")),
        };
    }
    match ctx.attach(&args[0], flags) {
        Ok(_) => 0,
        Err(e) => e,
    }
}

fn control_detach(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.is_empty() {
        usage(Some("detach"));
    }
    let cmd_pnn = ctx.cmd_pnn;
    let recmode = match ctx.ctrl_status("GET_RECMODE", cmd_pnn, ControlData::GetRecmode) {
        Ok(s) if s >= 0 => s,
        Ok(s) => {
            eprintln!("Control GET_RECMODE failed, ret={s}");
            return s;
        }
        Err(e) => return e,
    };
    if recmode as u32 == wire::CTDB_RECOVERY_ACTIVE {
        eprintln!("Database cannot be detached when recovery is active");
        return 1;
    }
    let map = match ctx.get_nodemap(false) {
        Some(m) => m,
        None => return 1,
    };
    for n in &map.nodes {
        if n.flags & (wire::NODE_FLAGS_DISCONNECTED | wire::NODE_FLAGS_DELETED) != 0 {
            continue;
        }
        if n.flags & wire::NODE_FLAGS_INACTIVE != 0 {
            eprintln!(
                "Database cannot be detached on inactive (stopped or banned) node {}",
                n.pnn
            );
            return 1;
        }
        let name = StringN::new("AllowClientDBAttach");
        let value = match ctx
            .ctrl("GET_TUNABLE", n.pnn, ControlData::GetTunable(name))
            .and_then(|d| Ctx::decode::<u32>("GET_TUNABLE", &d))
        {
            Ok(v) => v,
            Err(e) => {
                eprintln!(
                    "Unable to get tunable AllowClientDBAttach from node {}",
                    n.pnn
                );
                return e;
            }
        };
        if value == 1 {
            eprintln!(
                "Database access is still active on node {}. Set AllowclientDBAttach=0 on all nodes.",
                n.pnn
            );
            return 1;
        }
    }
    let mut ret2 = 0;
    for a in args {
        let (db_id, name, flags) = match ctx.db_exists(a) {
            Some(v) => v,
            None => continue,
        };
        if flags & (wire::CTDB_DB_FLAGS_PERSISTENT | wire::CTDB_DB_FLAGS_REPLICATED) != 0 {
            eprintln!("Only volatile databases can be detached");
            return 1;
        }
        let pnn = ctx.pnn;
        let t = ctx.timeout();
        let r = ctx
            .client
            .control(pnn, t, &ControlRequest::new(ControlData::DbDetach(db_id)));
        let e = match r {
            Ok(r) if r.status == 0 => 0,
            Ok(r) => r.status,
            Err(e) => e,
        };
        if e != 0 {
            eprintln!("detach: {name} DB_DETACH failed, ret={e}");
            eprintln!("Database {name} detach failed");
            ret2 = e;
        }
    }
    ret2
}

fn control_dumpmemory(ctx: &mut Ctx, _: &[String]) -> i32 {
    let cmd_pnn = ctx.cmd_pnn;
    match ctx.ctrl("DUMP_MEMORY", cmd_pnn, ControlData::DumpMemory) {
        Ok(d) => {
            print!("{}", wire::parse_string(&d).unwrap_or_default());
            0
        }
        Err(e) => e,
    }
}

fn control_rddumpmemory(ctx: &mut Ctx, _: &[String]) -> i32 {
    let srvid = ctx.next_srvid();
    if let Err(e) = ctx.client.register_srvid(srvid) {
        return e;
    }
    let mut msg = Vec::new();
    msg.extend_from_slice(&ctx.pnn.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&srvid.to_ne_bytes());
    let cmd_pnn = ctx.cmd_pnn;
    if let Err(e) = ctx
        .client
        .send_message(cmd_pnn, wire::CTDB_SRVID_MEM_DUMP, &msg)
    {
        return e;
    }
    if let Ok(d) = ctx.client.wait_message(srvid, None) {
        let end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
        print!("{}", String::from_utf8_lossy(&d[..end]));
    }
    0
}

fn control_getpid(ctx: &mut Ctx, _: &[String]) -> i32 {
    let cmd_pnn = ctx.cmd_pnn;
    match ctx.ctrl_status("GET_PID", cmd_pnn, ControlData::GetPid) {
        Ok(pid) => {
            println!("{}", pid as u32);
            0
        }
        Err(e) => e,
    }
}

/// A node-state command: its flag, the control that changes it, messages.
struct FlagOp {
    name: &'static str,
    desc: &'static str,
    flag: u32,
    set: bool,
    input: ControlData<'static>,
    cname: &'static str,
    fail: &'static str,
}

fn flag_command(ctx: &mut Ctx, args: &[String], f: FlagOp) -> i32 {
    if !args.is_empty() {
        usage(Some(f.name));
    }
    if ctx.check_flags(f.desc, f.flag, f.set) == 0 {
        return 0;
    }
    let cmd_pnn = ctx.cmd_pnn;
    if let Err(e) = ctx.ctrl(f.cname, cmd_pnn, f.input.clone()) {
        eprintln!("{} {cmd_pnn}", f.fail);
        return e;
    }
    ctx.wait_for_flags(f.flag, f.set);
    ctx.ipreallocate()
}

fn control_disable(ctx: &mut Ctx, args: &[String]) -> i32 {
    flag_command(
        ctx,
        args,
        FlagOp {
            name: "disable",
            desc: "disabled",
            flag: wire::NODE_FLAGS_PERMANENTLY_DISABLED,
            set: true,
            input: ControlData::DisableNode,
            cname: "DISABLE_NODE",
            fail: "Failed to disable node",
        },
    )
}

fn control_enable(ctx: &mut Ctx, args: &[String]) -> i32 {
    flag_command(
        ctx,
        args,
        FlagOp {
            name: "enable",
            desc: "disabled",
            flag: wire::NODE_FLAGS_PERMANENTLY_DISABLED,
            set: false,
            input: ControlData::EnableNode,
            cname: "ENABLE_NODE",
            fail: "Failed to enable node",
        },
    )
}

fn control_stop(ctx: &mut Ctx, args: &[String]) -> i32 {
    flag_command(
        ctx,
        args,
        FlagOp {
            name: "stop",
            desc: "stopped",
            flag: wire::NODE_FLAGS_STOPPED,
            set: true,
            input: ControlData::StopNode,
            cname: "STOP_NODE",
            fail: "Failed to stop node",
        },
    )
}

fn control_continue(ctx: &mut Ctx, args: &[String]) -> i32 {
    flag_command(
        ctx,
        args,
        FlagOp {
            name: "continue",
            desc: "stopped",
            flag: wire::NODE_FLAGS_STOPPED,
            set: false,
            input: ControlData::ContinueNode,
            cname: "CONTINUE_NODE",
            fail: "Failed to continue stopped node",
        },
    )
}

fn set_ban_state(ctx: &mut Ctx, time: u32) -> Result<Vec<u8>, i32> {
    let cmd_pnn = ctx.cmd_pnn;
    let state = BanState { pnn: cmd_pnn, time };
    ctx.ctrl("SET_BAN_STATE", cmd_pnn, ControlData::SetBanState(state))
}

fn control_ban(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("ban"));
    }
    if ctx.check_flags("banned", wire::NODE_FLAGS_BANNED, true) == 0 {
        return 0;
    }
    let time = match format::smb_strtoul(&args[0], 0, false) {
        Some(v) => v as u32,
        None => return libc::EINVAL,
    };
    if time == 0 {
        eprintln!("Ban time cannot be zero");
        return libc::EINVAL;
    }
    if let Err(e) = set_ban_state(ctx, time) {
        eprintln!("Failed to ban node {}", ctx.cmd_pnn);
        return e;
    }
    ctx.wait_for_flags(wire::NODE_FLAGS_BANNED, true);
    ctx.ipreallocate()
}

fn control_unban(ctx: &mut Ctx, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("unban"));
    }
    if ctx.check_flags("banned", wire::NODE_FLAGS_BANNED, false) == 0 {
        return 0;
    }
    if let Err(e) = set_ban_state(ctx, 0) {
        eprintln!("Failed to unban node {}", ctx.cmd_pnn);
        return e;
    }
    ctx.wait_for_flags(wire::NODE_FLAGS_BANNED, false);
    ctx.ipreallocate()
}

fn control_shutdown(ctx: &mut Ctx, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("shutdown"));
    }
    let cmd_pnn = ctx.cmd_pnn;
    let mut req = ControlRequest::new(ControlData::Shutdown);
    req.flags = wire::CTDB_CTRL_FLAG_NOREPLY;
    let t = ctx.timeout();
    if let Err(e) = ctx.ctrl_timeout("SHUTDOWN", cmd_pnn, t, req) {
        eprintln!("Unable to shutdown node {cmd_pnn}");
        return e;
    }
    if ctx.pnn == cmd_pnn {
        ctx.client.wait_closed();
    }
    0
}

fn control_recover(ctx: &mut Ctx, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("recover"));
    }
    let generation = match ctx.get_generation() {
        Ok(g) => g,
        Err(e) => return e,
    };
    let cmd_pnn = ctx.cmd_pnn;
    if let Err(e) = ctx.ctrl(
        "SET_RECMODE",
        cmd_pnn,
        ControlData::SetRecmode(wire::CTDB_RECOVERY_ACTIVE),
    ) {
        eprintln!("Failed to set recovery mode active");
        return e;
    }
    loop {
        match ctx.get_generation() {
            Ok(g) if g != generation => return 0,
            Ok(_) => std::thread::sleep(Duration::from_secs(1)),
            Err(e) => {
                eprintln!("Failed to confirm end of recovery");
                return e;
            }
        }
    }
}

fn control_ipreallocate(ctx: &mut Ctx, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("ipreallocate"));
    }
    ctx.ipreallocate()
}

fn control_gratarp(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 2 {
        usage(Some("gratarp"));
    }
    let addr = match ip_arg(&args[0], false) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let cmd_pnn = ctx.cmd_pnn;
    let info = AddrInfo {
        addr,
        mask: 0,
        iface: StringN::new(&args[1]),
    };
    match ctx.ctrl(
        "SEND_GRATUITOUS_ARP",
        cmd_pnn,
        ControlData::SendGratuitousArp(info),
    ) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("Unable to send gratuitous arp from node {cmd_pnn}");
            e
        }
    }
}

/// Upstream's `ctdb_connection_list_read(fd 0, client_first=false)`:
/// "server client" per line, `#` comments and empty lines skipped.
fn read_connections_stdin() -> Result<Vec<wire::Connection>, i32> {
    let mut text = String::new();
    if std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).is_err() {
        return Err(libc::EIO);
    }
    let mut conns = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut it = line.split([' ', '\t']).filter(|t| !t.is_empty());
        let (a, b) = match (it.next(), it.next()) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(libc::EINVAL),
        };
        match (
            wire::parse_sock_addr(a, true),
            wire::parse_sock_addr(b, true),
        ) {
            (Some(src), Some(dst)) if wire::addr_cmp_key(&src).0 == wire::addr_cmp_key(&dst).0 => {
                conns.push(wire::Connection { src, dst })
            }
            _ => return Err(libc::EINVAL),
        }
    }
    Ok(conns)
}

/// `ctdb_sys_send_tcp(dest, src, 0, 0, 0)`: an ACK from `src` to `dest`.
fn send_tickle(dest: &SockAddr, src: &SockAddr) -> i32 {
    let (d, s) = match (dest.ip(), src.ip()) {
        (Some(d), Some(s)) => (d, s),
        _ => return -1,
    };
    let failed = |errno: i32| {
        eprintln!("Failed sendto ({})", crate::sys::strerror(errno));
        -1
    };
    // Mixed families: upstream hands the kernel an address of the other
    // family, which sendto() rejects.
    let pkt = match crate::sys::tickle_packet(s, src.port(), d, dest.port()) {
        Some(p) => p,
        None => return failed(libc::EAFNOSUPPORT),
    };
    match crate::sys::send_raw(d, &pkt) {
        Ok(()) => 0,
        Err(e) => failed(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

fn control_tickle(_: &Options, args: &[String]) -> i32 {
    if !args.is_empty() && args.len() != 2 {
        usage(Some("tickle"));
    }
    if args.is_empty() {
        let conns = match read_connections_stdin() {
            Ok(c) => c,
            Err(e) => return e,
        };
        let failed = conns
            .iter()
            .filter(|c| send_tickle(&c.src, &c.dst) != 0)
            .count();
        if failed > 0 {
            eprintln!("Failed to send {failed} tickles");
            return 1;
        }
        return 0;
    }
    let addrs = match args
        .iter()
        .map(|a| ip_arg(a, true))
        .collect::<Result<Vec<_>, i32>>()
    {
        Ok(a) => a,
        Err(e) => return e,
    };
    let ret = send_tickle(&addrs[0], &addrs[1]);
    if ret != 0 {
        eprintln!("Failed to send tickle ack");
        return ret;
    }
    0
}

fn control_gettickles(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.is_empty() || args.len() > 2 {
        usage(Some("gettickles"));
    }
    let mut port = 0u64;
    if args.len() == 2 {
        match format::smb_strtoul(&args[1], 10, false) {
            Some(p) => port = p,
            None => return libc::EINVAL,
        }
    }
    let mut addr = match ip_arg(&args[0], false) {
        Ok(a) => a,
        Err(e) => return e,
    };
    addr.set_port(port as u16);
    let cmd_pnn = ctx.cmd_pnn;
    let wire::TickleList { addr: a, conns } = match ctx
        .ctrl(
            "GET_TCP_TICKLE_LIST",
            cmd_pnn,
            ControlData::GetTcpTickleList(addr),
        )
        .and_then(|d| Ctx::decode::<wire::TickleList>("GET_TCP_TICKLE_LIST", &d))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("Failed to get list of connections");
            return e;
        }
    };
    let s = ctx.opts.sep.clone();
    if ctx.opts.machinereadable {
        println!(
            "{}",
            format::machine_row(&s, &["Source IP", "Port", "Destiation IP", "Port"])
        );
        for c in &conns {
            println!(
                "{}",
                format::machine_row(
                    &s,
                    &[
                        wire::addr_text(&c.src, false),
                        c.src.port().to_string(),
                        wire::addr_text(&c.dst, false),
                        c.dst.port().to_string(),
                    ]
                )
            );
        }
    } else {
        println!("Connections for IP: {}", wire::addr_text(&a, false));
        println!("Num connections: {}", conns.len());
        for c in &conns {
            println!(
                "SRC: {}   DST: {}",
                wire::addr_text(&c.src, true),
                wire::addr_text(&c.dst, true)
            );
        }
    }
    0
}

fn tickle_control(
    ctx: &mut Ctx,
    args: &[String],
    name: &str,
    input: fn(wire::Connection) -> ControlData<'static>,
    cname: &str,
    fail: &str,
) -> i32 {
    if !args.is_empty() && args.len() != 2 {
        usage(Some(name));
    }
    if args.is_empty() {
        let conns = match read_connections_stdin() {
            Ok(c) => c,
            Err(e) => return e,
        };
        if conns.is_empty() {
            return 0;
        }
        let cmd_pnn = ctx.cmd_pnn;
        let mut failed = 0;
        for c in conns {
            let t = ctx.timeout();
            match ctx
                .client
                .control(cmd_pnn, t, &ControlRequest::new(input(c)))
            {
                Ok(r) if r.status == 0 => {}
                _ => failed += 1,
            }
        }
        if failed > 0 {
            let verb = if cname == "TCP_REMOVE" {
                "remove"
            } else {
                "add"
            };
            eprintln!("Failed to {verb} {failed} tickles");
            return 1;
        }
        return 0;
    }
    let addrs = match args
        .iter()
        .map(|a| ip_arg(a, true))
        .collect::<Result<Vec<_>, i32>>()
    {
        Ok(a) => a,
        Err(e) => return e,
    };
    let conn = wire::Connection {
        src: addrs[0],
        dst: addrs[1],
    };
    let cmd_pnn = ctx.cmd_pnn;
    match ctx.ctrl(cname, cmd_pnn, input(conn)) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("{fail}");
            e
        }
    }
}

fn control_addtickle(ctx: &mut Ctx, args: &[String]) -> i32 {
    tickle_control(
        ctx,
        args,
        "addtickle",
        ControlData::TcpAddDelayedUpdate,
        "TCP_ADD_DELAYED_UPDATE",
        "Failed to register connection",
    )
}

fn control_deltickle(ctx: &mut Ctx, args: &[String]) -> i32 {
    tickle_control(
        ctx,
        args,
        "deltickle",
        ControlData::TcpRemove,
        "TCP_REMOVE",
        "Failed to unregister connection",
    )
}

fn control_listnodes(opts: &Options, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("listnodes"));
    }
    let map = match read_nodes_file() {
        Some(m) => m,
        None => return 1,
    };
    for n in &map.nodes {
        if n.flags & wire::NODE_FLAGS_DELETED != 0 {
            continue;
        }
        if opts.machinereadable {
            println!(
                "{}",
                format::machine_row(
                    &opts.sep,
                    &[n.pnn.to_string(), wire::addr_text(&n.addr, false)]
                )
            );
        } else {
            println!("{}", wire::addr_text(&n.addr, false));
        }
    }
    0
}

fn control_reloadnodes(ctx: &mut Ctx, _: &[String]) -> i32 {
    let map = match ctx.get_nodemap(false) {
        Some(m) => m,
        None => return 1,
    };
    let file_map = match read_nodes_file() {
        Some(m) => m,
        None => return 1,
    };
    for n in &map.nodes {
        if n.flags & wire::NODE_FLAGS_DISCONNECTED != 0 {
            continue;
        }
        let remote = match ctx
            .ctrl("GET_NODES_FILE", n.pnn, ControlData::GetNodesFile)
            .and_then(|d| Ctx::decode::<NodeMap>("GET_NODES_FILE", &d))
        {
            Ok(m) => m,
            Err(e) => {
                eprintln!("ERROR: Failed to get nodes file from node {}", n.pnn);
                return e;
            }
        };
        if !format::nodemap_identical(&file_map, &remote) {
            eprintln!(
                "ERROR: Nodes file on node {} differs from current node ({})",
                n.pnn, ctx.pnn
            );
            return 1;
        }
    }
    let (out, reload, failed) = format::check_node_file_changes(&map, &file_map);
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    if failed {
        return 1;
    }
    if !reload {
        eprintln!("No change in nodes file, skipping unnecessary reload");
        return 0;
    }
    let nodes = list_of_nodes(&map, wire::NODE_FLAGS_DISCONNECTED, wire::CTDB_UNKNOWN_PNN);
    let timeout = 2 * ctx.opts.timelimit.max(0) as u32;
    let r = disable_msg(
        ctx,
        wire::CTDB_SRVID_DISABLE_RECOVERIES,
        timeout,
        &nodes,
        "recoveries",
    );
    if r != 0 {
        eprintln!("Failed to disable recoveries");
        return r;
    }
    let t = ctx.timeout();
    let replies = ctx.client.control_multi(
        &nodes,
        t,
        &ControlRequest::new(ControlData::ReloadNodesFile),
    );
    let mut failed = false;
    for (pnn, r) in nodes.iter().zip(replies) {
        if !matches!(r, Ok(ref r) if r.status == 0) {
            eprintln!("Node {pnn} failed to reload nodes");
            failed = true;
        }
    }
    if failed {
        eprintln!("You MUST fix failed nodes manually!");
    }
    let r = disable_msg(
        ctx,
        wire::CTDB_SRVID_DISABLE_RECOVERIES,
        0,
        &nodes,
        "recoveries",
    );
    if r != 0 {
        eprintln!("Failed to enable recoveries");
        return r;
    }
    0
}

/// DISABLE_RECOVERIES / DISABLE_TAKEOVER_RUNS to each node and wait for a
/// reply from all of them.
fn disable_msg(ctx: &mut Ctx, msg_srvid: u64, timeout: u32, nodes: &[u32], what: &str) -> i32 {
    let srvid = ctx.next_srvid();
    if let Err(e) = ctx.client.register_srvid(srvid) {
        return e;
    }
    let mut msg = Vec::new();
    msg.extend_from_slice(&ctx.pnn.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&srvid.to_ne_bytes());
    msg.extend_from_slice(&timeout.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    for &n in nodes {
        if let Err(e) = ctx.client.send_message(n, msg_srvid, &msg) {
            let _ = ctx.client.deregister_srvid(srvid);
            return e;
        }
    }
    let deadline = ctx.deadline();
    let mut replied = vec![false; nodes.len()];
    // Upstream compares the wait result with ETIME although the wait
    // reports ETIMEDOUT, so a timeout is silently treated as success and
    // its "Timed out waiting to disable ..." message is never printed.
    let _ = what;
    let ret = loop {
        match ctx.client.wait_message(srvid, Some(deadline)) {
            Ok(d) if d.len() == 4 => {
                let v = i32::from_ne_bytes([d[0], d[1], d[2], d[3]]);
                if v < 0 {
                    break 1;
                }
                if let Some(p) = nodes.iter().position(|&n| n == v as u32) {
                    replied[p] = true;
                }
                if replied.iter().all(|&r| r) {
                    break 0;
                }
            }
            Ok(_) => {}
            Err(_) => break 0,
        }
    };
    let _ = ctx.client.deregister_srvid(srvid);
    ret
}

fn control_moveip(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 2 {
        usage(Some("moveip"));
    }
    let addr = match ip_arg(&args[0], false) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let pnn = match format::smb_strtoul(&args[1], 10, false) {
        Some(p) if p as u32 != wire::CTDB_UNKNOWN_PNN && p <= u32::MAX as u64 => p as u32,
        _ => {
            eprintln!("Invalid PNN {}", args[1]);
            return 1;
        }
    };
    let mut ret = 0;
    for _ in 0..5 {
        ret = moveip(ctx, &addr, pnn);
        if ret == 0 {
            break;
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    if ret != 0 {
        eprintln!("Failed to move IP {} to node {}", args[0], pnn);
        return ret;
    }
    0
}

fn moveip(ctx: &mut Ctx, addr: &SockAddr, pnn: u32) -> i32 {
    let timeout = 2 * ctx.opts.timelimit.max(0) as u32;
    if let Err(e) = ctx.client.send_message(
        wire::CTDB_BROADCAST_CONNECTED,
        wire::CTDB_SRVID_DISABLE_IP_CHECK,
        &timeout.to_ne_bytes(),
    ) {
        eprintln!("Failed to disable IP check");
        return e;
    }
    let ips = match get_public_ips(ctx, pnn) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("Failed to get Public IPs from node {pnn}");
            return e;
        }
    };
    if !ips.iter().any(|i| i.addr.same_ip(addr)) {
        eprintln!(
            "Node {} CANNOT host IP address {}",
            pnn,
            wire::addr_text(addr, false)
        );
        return 1;
    }
    let map = match ctx.get_nodemap(false) {
        Some(m) => m,
        None => return 1,
    };
    let nodes = list_of_nodes(&map, wire::NODE_FLAGS_INACTIVE, pnn);
    let ip = wire::PublicIp { pnn, addr: *addr };
    if let Err(e) = ctx.multi(&nodes, ControlRequest::new(ControlData::ReleaseIp(ip))) {
        eprintln!("Failed to release IP on nodes");
        return e;
    }
    if let Err(e) = ctx.ctrl("TAKEOVER_IP", pnn, ControlData::TakeoverIp(ip)) {
        eprintln!("Failed to takeover IP on node {pnn}");
        return e;
    }
    0
}

fn control_addip(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 2 {
        usage(Some("addip"));
    }
    let (addr, mask) = match wire::parse_ip_mask(&args[0]) {
        Some(v) => v,
        None => {
            eprintln!("Invalid IP/Mask {}", args[0]);
            return 1;
        }
    };
    let cmd_pnn = ctx.cmd_pnn;
    let ips = match get_public_ips(ctx, cmd_pnn) {
        Ok(v) => v,
        Err(_) => {
            eprintln!("Failed to get Public IPs from node {cmd_pnn}");
            return 1;
        }
    };
    if ips.iter().any(|i| i.addr.same_ip(&addr)) {
        eprintln!(
            "Node already knows about IP {}",
            wire::addr_text(&addr, false)
        );
        return 0;
    }
    let info = AddrInfo {
        addr,
        mask,
        iface: StringN::new(&args[1]),
    };
    let mut ret = 0;
    for _ in 0..5 {
        ret = match ctx.ctrl("ADD_PUBLIC_IP", cmd_pnn, ControlData::AddPublicIp(info)) {
            Ok(_) => 0,
            Err(e) => e,
        };
        if ret == 0 {
            break;
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    if ret != 0 {
        eprintln!("Failed to add public IP to node {cmd_pnn}. Giving up");
        return ret;
    }
    if let Err(e) = ctx.client.send_message(
        wire::CTDB_BROADCAST_CONNECTED,
        wire::CTDB_SRVID_REBALANCE_NODE,
        &cmd_pnn.to_ne_bytes(),
    ) {
        eprintln!("Failed to ask leader to distribute IPs");
        return e;
    }
    0
}

fn control_delip(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("delip"));
    }
    let addr = match ip_arg(&args[0], false) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let cmd_pnn = ctx.cmd_pnn;
    let ips = match get_public_ips(ctx, cmd_pnn) {
        Ok(v) => v,
        Err(_) => {
            eprintln!("Failed to get Public IPs from node {cmd_pnn}");
            return 1;
        }
    };
    if !ips.iter().any(|i| i.addr.same_ip(&addr)) {
        eprintln!(
            "Node does not know about IP address {}",
            wire::addr_text(&addr, false)
        );
        return 0;
    }
    let info = AddrInfo {
        addr,
        mask: 0,
        iface: StringN(None),
    };
    match ctx.ctrl("DEL_PUBLIC_IP", cmd_pnn, ControlData::DelPublicIp(info)) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("Failed to delete public IP from node {cmd_pnn}");
            e
        }
    }
}

fn control_backupdb(ctx: &mut Ctx, args: &[String]) -> i32 {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::OpenOptionsExt;

    if args.len() != 2 {
        usage(Some("backupdb"));
    }
    let (db_id, name, flags) = match ctx.db_exists(&args[0]) {
        Some(v) => v,
        None => return 1,
    };
    let mut db = match ctx.attach(&name, flags) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("Failed to attach to DB {name}");
            return e;
        }
    };
    // O_RDWR|O_CREAT without O_TRUNC, as upstream.
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&args[1])
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("Failed to open file {} for writing", args[1]);
            return e.raw_os_error().unwrap_or(libc::EIO);
        }
    };
    let header_fail = |e: std::io::Error| {
        eprintln!("Failed to write header to file {}", args[1]);
        e.raw_os_error().unwrap_or(libc::EIO)
    };
    if let Err(e) = file.write_all(&[0u8; format::BACKUP_HEADER_LEN]) {
        return header_fail(e);
    }
    let recs = match local::traverse_local(&mut db) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Failed to collect records from DB {name}");
            return e;
        }
    };
    let mut nbuf = 0u64;
    let mut nrec = 0u64;
    // Upstream leaves the buffers' db_id uninitialised (stack garbage);
    // this writes the database's id, which restoredb replaces anyway.
    let mut buf = RecBufferBuilder::new(db_id);
    let mut out = Vec::new();
    for (i, (key, value)) in recs.iter().enumerate() {
        buf.add(0, None, key, value);
        let last = i + 1 == recs.len();
        if buf.wire_len() >= 100_000 || last {
            out.clear();
            buf.as_rec_buffer().push_file(&mut out);
            if let Err(e) = file.write_all(&out) {
                eprintln!("Failed to write records to backup file");
                return e.raw_os_error().unwrap_or(libc::EIO);
            }
            nbuf += 1;
            nrec += u64::from(buf.count());
            buf.clear();
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = format::backup_header(now as i64, u64::from(flags), nbuf, nrec, &name);
    if let Err(e) = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(&header))
    {
        return header_fail(e);
    }
    println!("Database backed up to {}", args[1]);
    0
}

fn control_restoredb(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.is_empty() || args.len() > 2 {
        usage(Some("restoredb"));
    }
    let data = match std::fs::read(&args[0]) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("Failed to open file {} for reading", args[0]);
            return e.raw_os_error().unwrap_or(libc::EIO);
        }
    };
    let backup = match format::Backup::parse(&data) {
        Ok(b) => b,
        Err(format::BackupError::Version(v)) => {
            eprintln!("Wrong version of backup file, expected 3, got {v}");
            return libc::EINVAL;
        }
        Err(_) => {
            eprintln!("Failed to read db header from file {}", args[0]);
            return libc::EIO;
        }
    };
    let db_name = args.get(1).cloned().unwrap_or_else(|| backup.name.clone());
    println!(
        "Restoring database {} from backup @ {}",
        db_name,
        crate::sys::timestamp(backup.timestamp)
    );
    let db_flags = (backup.flags & 0xff) as u8;
    let db_id = match ctx.attach(&db_name, db_flags) {
        Ok(db) => db.db_id,
        Err(e) => {
            eprintln!("Failed to attach to DB {db_name}");
            return e;
        }
    };
    let (nodes, transdb) = match db_change_targets(ctx, db_id) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let pulldb = PullDbExt {
        db_id,
        lmaster: 0,
        srvid: wire::SRVID_CTDB_PUSHDB,
    };

    let result = (|| -> Result<(), i32> {
        freeze_and_wipe(ctx, &nodes, transdb)?;
        ctx.multi(
            &nodes,
            ControlRequest::new(ControlData::DbPushStart(pulldb)),
        )?;
        for buf in &backup.buffers {
            let mut b = buf.clone();
            // The record buffer carries the target db_id.
            b[0..4].copy_from_slice(&db_id.to_ne_bytes());
            for &n in &nodes {
                ctx.client.send_message(n, wire::SRVID_CTDB_PUSHDB, &b)?;
            }
        }
        let replies = ctx.multi(
            &nodes,
            ControlRequest::new(ControlData::DbPushConfirm(db_id)),
        )?;
        for (pnn, d) in nodes.iter().zip(replies) {
            let n = match u32::from_bytes(&d) {
                Ok(n) => n,
                Err(_) => {
                    eprintln!("Invalid response from node {pnn}");
                    return Err(libc::EPROTO);
                }
            };
            if n as u64 != backup.nrec {
                eprintln!("Node {pnn} received {n} of {} records", backup.nrec);
                return Err(1);
            }
        }
        commit_and_thaw(ctx, &nodes, transdb)
    })();
    finish_db_change(ctx, result, &format!("Database {db_name} restored"))
}

fn control_dumpdbbackup(_: &Options, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("dumpbackup"));
    }
    let data = match std::fs::read(&args[0]) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("Failed to open file {} for reading", args[0]);
            return e.raw_os_error().unwrap_or(libc::EIO);
        }
    };
    let backup = match format::Backup::parse(&data) {
        Ok(b) => b,
        Err(format::BackupError::Version(v)) => {
            eprintln!("Wrong version of backup file, expected 3, got {v}");
            return libc::EINVAL;
        }
        Err(_) => {
            eprintln!("Failed to read db header from file {}", args[0]);
            return libc::EIO;
        }
    };
    println!(
        "Dumping database {} from backup @ {}",
        backup.name,
        crate::sys::timestamp(backup.timestamp)
    );
    let mut count = 0;
    for buf in &backup.buffers {
        match format::rec_buffer_records(buf) {
            Ok(recs) => {
                for (key, data) in recs {
                    let (hdr, value) = match LtdbHeader::split(&data) {
                        Ok(v) => v,
                        Err(_) => {
                            eprintln!("Failed to dump records");
                            return libc::EINVAL;
                        }
                    };
                    count += 1;
                    print!("{}", format::dump_record(&key, &hdr, value));
                }
            }
            Err(_) => {
                eprintln!("Failed to read records");
                return libc::EIO;
            }
        }
    }
    println!("Dumped {count} record(s)");
    0
}

/// The active nodes and the transaction id (db_id, generation) of a
/// database-wide change made on all of them (wipedb, restoredb).
fn db_change_targets(ctx: &mut Ctx, db_id: u32) -> Result<(Vec<u32>, TransDb), i32> {
    let map = match ctx.get_nodemap(false) {
        Some(m) => m,
        None => {
            eprintln!("Failed to get nodemap");
            return Err(libc::ENOMEM);
        }
    };
    let generation = match ctx.get_generation() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("Failed to get current generation");
            return Err(e);
        }
    };
    let nodes = list_of_nodes(&map, wire::NODE_FLAGS_INACTIVE, wire::CTDB_UNKNOWN_PNN);
    let transdb = TransDb {
        db_id,
        tid: generation,
    };
    Ok((nodes, transdb))
}

/// First steps of a database-wide change: freeze, start the transaction, wipe.
fn freeze_and_wipe(ctx: &mut Ctx, nodes: &[u32], transdb: TransDb) -> Result<(), i32> {
    for input in [
        ControlData::DbFreeze(transdb.db_id),
        ControlData::DbTransactionStart(transdb),
        ControlData::WipeDatabase(transdb),
    ] {
        ctx.multi(nodes, ControlRequest::new(input))?;
    }
    Ok(())
}

/// Last steps of a database-wide change: mark healthy, commit, thaw.
fn commit_and_thaw(ctx: &mut Ctx, nodes: &[u32], transdb: TransDb) -> Result<(), i32> {
    for input in [
        ControlData::DbSetHealthy(transdb.db_id),
        ControlData::DbTransactionCommit(transdb),
        ControlData::DbThaw(transdb.db_id),
    ] {
        ctx.multi(nodes, ControlRequest::new(input))?;
    }
    Ok(())
}

/// Prints `done` on success; on failure forces a recovery, as upstream does,
/// so no node is left with the database frozen mid-transaction.
fn finish_db_change(ctx: &mut Ctx, result: Result<(), i32>, done: &str) -> i32 {
    match result {
        Ok(()) => {
            println!("{done}");
            0
        }
        Err(e) => {
            let pnn = ctx.pnn;
            let t = ctx.timeout();
            let _ = ctx.client.control(
                pnn,
                t,
                &ControlRequest::new(ControlData::SetRecmode(wire::CTDB_RECOVERY_ACTIVE)),
            );
            e
        }
    }
}

fn control_wipedb(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("wipedb"));
    }
    let (db_id, name, flags) = match ctx.db_exists(&args[0]) {
        Some(v) => v,
        None => return 1,
    };
    if let Err(e) = ctx.attach(&name, flags) {
        eprintln!("Failed to attach to DB {name}");
        return e;
    }
    let (nodes, transdb) = match db_change_targets(ctx, db_id) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let result = (|| -> Result<(), i32> {
        freeze_and_wipe(ctx, &nodes, transdb)?;
        commit_and_thaw(ctx, &nodes, transdb)
    })();
    finish_db_change(ctx, result, &format!("Database {name} wiped"))
}

fn control_leader(ctx: &mut Ctx, _: &[String]) -> i32 {
    match ctx.get_leader() {
        Ok(l) => {
            println!("{}", format::pnn_string(l));
            0
        }
        Err(e) => e,
    }
}

fn control_getreclock(ctx: &mut Ctx, args: &[String]) -> i32 {
    if !args.is_empty() {
        usage(Some("getreclock"));
    }
    let cmd_pnn = ctx.cmd_pnn;
    match ctx.ctrl("GET_RECLOCK_FILE", cmd_pnn, ControlData::GetReclockFile) {
        Ok(d) => {
            if let Some(s) = wire::parse_string(&d) {
                println!("{s}");
            }
            0
        }
        Err(e) => e,
    }
}

fn role_command(ctx: &mut Ctx, args: &[String], name: &str, input: U32Control, cname: &str) -> i32 {
    if args.len() != 1 {
        usage(Some(name));
    }
    let v: u32 = match args[0].as_str() {
        "on" => 1,
        "off" => 0,
        _ => usage(Some(name)),
    };
    let cmd_pnn = ctx.cmd_pnn;
    match ctx.ctrl(cname, cmd_pnn, input(v)) {
        Ok(_) => 0,
        Err(e) => e,
    }
}

fn control_setlmasterrole(ctx: &mut Ctx, args: &[String]) -> i32 {
    role_command(
        ctx,
        args,
        "setlmasterrole",
        ControlData::SetLmasterrole,
        "SET_LMASTERROLE",
    )
}

fn control_setleaderrole(ctx: &mut Ctx, args: &[String]) -> i32 {
    role_command(
        ctx,
        args,
        "setleaderrole",
        ControlData::SetRecmasterrole,
        "SET_RECMASTERROLE",
    )
}

fn db_flag_command(
    ctx: &mut Ctx,
    args: &[String],
    name: &str,
    what: &str,
    input: U32Control,
    cname: &str,
) -> i32 {
    if args.len() != 1 {
        usage(Some(name));
    }
    let (db_id, _, flags) = match ctx.db_exists(&args[0]) {
        Some(v) => v,
        None => return 1,
    };
    if flags & (wire::CTDB_DB_FLAGS_PERSISTENT | wire::CTDB_DB_FLAGS_REPLICATED) != 0 {
        eprintln!("{what} can be set only on volatile DB");
        return 1;
    }
    let cmd_pnn = ctx.cmd_pnn;
    match ctx.ctrl(cname, cmd_pnn, input(db_id)) {
        Ok(_) => 0,
        Err(e) => e,
    }
}

fn control_setdbreadonly(ctx: &mut Ctx, args: &[String]) -> i32 {
    db_flag_command(
        ctx,
        args,
        "setdbreadonly",
        "READONLY",
        ControlData::SetDbReadonly,
        "SET_DB_READONY",
    )
}

fn control_setdbsticky(ctx: &mut Ctx, args: &[String]) -> i32 {
    db_flag_command(
        ctx,
        args,
        "setdbsticky",
        "STICKY",
        ControlData::SetDbSticky,
        "SET_DB_STICKY",
    )
}

/// Upstream's `str_to_data()`: "0x…" is hex, anything else the bytes.
fn str_to_data(s: &str) -> Result<Vec<u8>, i32> {
    let Some(hex) = s.strip_prefix("0x") else {
        return Ok(s.as_bytes().to_vec());
    };
    if hex.len() % 2 != 0 {
        eprintln!("Key ({hex}) contains odd number of hex digits");
        return Err(libc::EINVAL);
    }
    let b = hex.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 2);
    for i in 0..b.len() / 2 {
        let pair = &b[2 * i..2 * i + 2];
        let v = std::str::from_utf8(pair)
            .ok()
            .filter(|p| p.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|p| u8::from_str_radix(p, 16).ok());
        match v {
            Some(v) => out.push(v),
            None => {
                eprintln!("Invalid hex: {}", String::from_utf8_lossy(&b[2 * i..]));
                return Err(libc::EINVAL);
            }
        }
    }
    Ok(out)
}

fn parse_key(s: &str) -> Result<Vec<u8>, i32> {
    str_to_data(s).inspect_err(|_| eprintln!("Failed to parse key {s}"))
}

fn parse_value(s: &str) -> Result<Vec<u8>, i32> {
    str_to_data(s).inspect_err(|_| eprintln!("Failed to parse value {s}"))
}

/// printf's "%.*s": the bytes up to the first NUL.
fn c_str_bytes(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Checks shared by the persistent-database commands; returns the name and
/// flags when the database may be used.
fn persistent_db(ctx: &mut Ctx, arg: &str) -> Option<(String, u8)> {
    let (_, name, flags) = ctx.db_exists(arg)?;
    if flags & (wire::CTDB_DB_FLAGS_PERSISTENT | wire::CTDB_DB_FLAGS_REPLICATED) == 0 {
        eprintln!("Transactions not supported on DB {name}");
        return None;
    }
    Some((name, flags))
}

fn volatile_db(ctx: &mut Ctx, arg: &str) -> Option<(String, u8)> {
    let (_, name, flags) = ctx.db_exists(arg)?;
    if flags & (wire::CTDB_DB_FLAGS_PERSISTENT | wire::CTDB_DB_FLAGS_REPLICATED) != 0 {
        eprintln!("DB {name} is not a volatile database");
        return None;
    }
    Some((name, flags))
}

fn attach_or_report(ctx: &mut Ctx, name: &str, flags: u8) -> Result<LocalDb, i32> {
    ctx.attach(name, flags).inspect_err(|_| {
        eprintln!("Failed to attach to DB {name}");
    })
}

/// An address argument (`ip`, or `ip:port` with `with_port`); prints
/// upstream's complaint and gives status 1 if it is not one.
fn ip_arg(s: &str, with_port: bool) -> Result<SockAddr, i32> {
    wire::parse_sock_addr(s, with_port).ok_or_else(|| {
        eprintln!("Invalid IP address {s}");
        1
    })
}

/// The first steps of readkey, writekey and deletekey: the volatile
/// database `db_arg` attached, and the key `key_arg` parsed.
fn volatile_db_and_key(
    ctx: &mut Ctx,
    db_arg: &str,
    key_arg: &str,
) -> Result<(LocalDb, Vec<u8>), i32> {
    let Some((name, flags)) = volatile_db(ctx, db_arg) else {
        return Err(1);
    };
    let db = attach_or_report(ctx, &name, flags)?;
    Ok((db, parse_key(key_arg)?))
}

/// `ctdb_transaction_start()` including the attach of g_lock.tdb.
fn start_transaction(
    ctx: &mut Ctx,
    db: &LocalDb,
    readonly: bool,
) -> Result<(LocalDb, Transaction), i32> {
    let mut glock = match ctx.attach("g_lock.tdb", 0) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("transaction_start: {} attach g_lock.tdb failed", db.name);
            eprintln!("Failed to start transaction on db {}", db.name);
            return Err(e);
        }
    };
    match Transaction::start(ctx, db, &mut glock, readonly) {
        Ok(t) => Ok((glock, t)),
        Err(e) => {
            eprintln!("Failed to start transaction on db {}", db.name);
            Err(e)
        }
    }
}

fn control_pfetch(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 2 {
        usage(Some("pfetch"));
    }
    let Some((name, flags)) = persistent_db(ctx, &args[0]) else {
        return 1;
    };
    let mut db = match attach_or_report(ctx, &name, flags) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let key = match parse_key(&args[1]) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let (mut glock, mut tx) = match start_transaction(ctx, &db, true) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let data = match tx.fetch(&mut db, &key) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("Failed to read record for key {}", args[1]);
            let _ = tx.cancel(ctx, &mut db, &mut glock);
            return e;
        }
    };
    println!("{}", c_str_bytes(&data));
    let _ = tx.cancel(ctx, &mut db, &mut glock);
    0
}

/// pstore and pdelete: one store in a transaction, committed.
fn persistent_store(ctx: &mut Ctx, args: &[String], value: Option<&str>) -> i32 {
    let Some((name, flags)) = persistent_db(ctx, &args[0]) else {
        return 1;
    };
    let mut db = match attach_or_report(ctx, &name, flags) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let key = match parse_key(&args[1]) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let data = match value {
        Some(v) => match parse_value(v) {
            Ok(d) => d,
            Err(e) => return e,
        },
        None => Vec::new(),
    };
    let (mut glock, mut tx) = match start_transaction(ctx, &db, false) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if let Err(e) = tx.store(&mut db, &key, &data) {
        let what = if value.is_some() { "store" } else { "delete" };
        eprintln!("Failed to {what} record for key {}", args[1]);
        let _ = tx.cancel(ctx, &mut db, &mut glock);
        return e;
    }
    if let Err(e) = tx.commit(ctx, &mut db, &mut glock) {
        eprintln!("Failed to commit transaction on db {name}");
        return e;
    }
    0
}

fn control_pstore(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 3 {
        usage(Some("pstore"));
    }
    let value = args[2].clone();
    persistent_store(ctx, args, Some(&value))
}

fn control_pdelete(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 2 {
        usage(Some("pdelete"));
    }
    persistent_store(ctx, args, None)
}

/// Lines as `fgets(line, 1024, file)` returns them.
fn fgets_lines(input: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n').map(|p| p + 1);
        let n = nl.unwrap_or(rest.len()).min(1023);
        out.push(String::from_utf8_lossy(&rest[..n]).into_owned());
        rest = &rest[n..];
    }
    out
}

/// `ptrans_parse_string()`: a quoted string (possibly "0x…" hex) after
/// blanks. Ok(None) is an empty string.
fn ptrans_parse_string(ptr: &mut &str) -> Result<Option<Vec<u8>>, ()> {
    let t = ptr.trim_start_matches([' ', '\t']);
    // The rest of the line is printed with its newline, as upstream does.
    let Some(t) = t.strip_prefix('"') else {
        eprintln!("Unsupported input format in {ptr}");
        return Err(());
    };
    let Some(n) = t.find('"') else {
        eprintln!("Unmatched \" in input {ptr}");
        return Err(());
    };
    let data = if n > 0 {
        Some(str_to_data(&t[..n]).map_err(|_| ())?)
    } else {
        None
    };
    *ptr = &t[n + 1..];
    Ok(data)
}

fn control_ptrans(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.is_empty() || args.len() > 2 {
        usage(Some("ptrans"));
    }
    let Some((name, flags)) = persistent_db(ctx, &args[0]) else {
        return 1;
    };
    let input = if args.len() == 2 {
        match std::fs::read(&args[1]) {
            Ok(d) => d,
            Err(_) => {
                eprintln!("Failed to open file {}", args[1]);
                return 1;
            }
        }
    } else {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut v);
        v
    };
    let mut db = match attach_or_report(ctx, &name, flags) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let (mut glock, mut tx) = match start_transaction(ctx, &db, false) {
        Ok(v) => v,
        Err(e) => return e,
    };
    for line in fgets_lines(&input) {
        let mut ptr: &str = &line;
        let key = match ptrans_parse_string(&mut ptr) {
            Ok(Some(k)) => k,
            _ => continue,
        };
        let value = match ptrans_parse_string(&mut ptr) {
            Ok(v) => v.unwrap_or_default(),
            Err(()) => continue,
        };
        if let Err(e) = tx.store(&mut db, &key, &value) {
            eprintln!("Failed to store record");
            let _ = tx.cancel(ctx, &mut db, &mut glock);
            return e;
        }
    }
    if let Err(e) = tx.commit(ctx, &mut db, &mut glock) {
        eprintln!("Failed to commit transaction on db {name}");
        return e;
    }
    0
}

fn open_tdb_file(path: &str) -> Option<ctdb_engine::CoreStore> {
    match local::open_tdb(path, 0) {
        Ok(s) => Some(s),
        Err(_) => {
            eprintln!("Failed to open TDB file {path}");
            None
        }
    }
}

fn control_tfetch(_: &mut Ctx, args: &[String]) -> i32 {
    if args.len() < 2 || args.len() > 3 {
        usage(Some("tfetch"));
    }
    let Some(mut tdb) = open_tdb_file(&args[0]) else {
        return 1;
    };
    let key = match parse_key(&args[1]) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let data = match tdb.fetch(&key) {
        Ok(Some(d)) => d,
        _ => {
            eprintln!("No record for key {}", args[1]);
            return 1;
        }
    };
    if data.len() < wire::LTDB_HEADER_SIZE {
        eprintln!("Invalid record for key {}", args[1]);
        return 1;
    }
    drop(tdb);
    if args.len() == 3 {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&args[2])
        {
            Ok(mut f) => {
                if f.write_all(&data).is_err() {
                    eprintln!("Failed to write record to file");
                }
            }
            Err(_) => eprintln!("Failed to open output file {}", args[2]),
        }
    }
    let hdr = match wire::ltdb_header(&data) {
        Ok(h) => h,
        Err(_) => {
            eprintln!("Failed to parse header from data");
            return 1;
        }
    };
    print!("{}", format::dump_ltdb_header(&hdr));
    print!(
        "{}",
        format::dump_data("data", &data[wire::LTDB_HEADER_SIZE..])
    );
    0
}

fn control_tstore(_: &mut Ctx, args: &[String]) -> i32 {
    if args.len() < 3 || args.len() > 5 {
        usage(Some("tstore"));
    }
    let Some(mut tdb) = open_tdb_file(&args[0]) else {
        return 1;
    };
    let key = match parse_key(&args[1]) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let value = match parse_value(&args[2]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let mut header = wire::LtdbHeader::default();
    if args.len() > 3 {
        match format::smb_strtoul(&args[3], 0, false) {
            Some(v) => header.rsn = v,
            None => return libc::EINVAL,
        }
    }
    if args.len() > 4 {
        header.dmaster = format::atoi(&args[4]) as u32;
    }
    let rec = wire::ltdb_value(&header, &value);
    if tdb
        .store(&key, &rec, ctdb_engine::StoreFlag::Replace)
        .is_err()
    {
        eprintln!("Failed to write record {} to file {}", args[1], args[0]);
        return 1;
    }
    0
}

fn control_readkey(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() < 2 || args.len() > 3 {
        usage(Some("readkey"));
    }
    let mut readonly = false;
    if args.len() == 3 {
        if args[2] == "readonly" {
            readonly = true;
        } else {
            usage(Some("readkey"));
        }
    }
    let (mut db, key) = match volatile_db_and_key(ctx, &args[0], &args[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    match local::fetch_lock(ctx, &mut db, &key, readonly) {
        Ok(h) => {
            let data = h.data().to_vec();
            println!("Data: size:{} ptr:[{}]", data.len(), c_str_bytes(&data));
            h.release(&mut db);
            0
        }
        Err(e) => {
            eprintln!("Failed to read record for key {}", args[1]);
            e
        }
    }
}

fn control_writekey(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 3 {
        usage(Some("writekey"));
    }
    let (mut db, key) = match volatile_db_and_key(ctx, &args[0], &args[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let data = match parse_value(&args[2]) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let h = match local::fetch_lock(ctx, &mut db, &key, false) {
        Ok(h) => h,
        Err(e) => {
            // Upstream names the database here, not the key.
            eprintln!("Failed to lock record for key {}", args[0]);
            return e;
        }
    };
    let ret = match local::store_record(&mut db, &h, &data) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Failed to store record for key {}", args[1]);
            e
        }
    };
    h.release(&mut db);
    ret
}

fn control_deletekey(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 2 {
        usage(Some("deletekey"));
    }
    let (mut db, key) = match volatile_db_and_key(ctx, &args[0], &args[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let h = match local::fetch_lock(ctx, &mut db, &key, false) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("Failed to fetch record for key {}", args[1]);
            return e;
        }
    };
    let ret = match local::delete_record(ctx, &mut db, &h) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Failed to delete record for key {}", args[1]);
            e
        }
    };
    h.release(&mut db);
    ret
}

fn control_checktcpport(_: &Options, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("chktcpport"));
    }
    let port = format::atoi(&args[0]) as u32 as u16;
    match std::net::TcpListener::bind(("0.0.0.0", port)) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!(
                "Failed to bind to TCP port {}",
                format::atoi(&args[0]) as u32
            );
            e.raw_os_error().unwrap_or(1)
        }
    }
}

fn control_getdbseqnum(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("getdbseqnum"));
    }
    let (db_id, name, _) = match ctx.db_exists(&args[0]) {
        Some(v) => v,
        None => return 1,
    };
    let cmd_pnn = ctx.cmd_pnn;
    let r = ctx
        .ctrl(
            "GET_DB_SEQNUM",
            cmd_pnn,
            ControlData::GetDbSeqnum(DbIdPad(db_id)),
        )
        .and_then(|d| Ctx::decode::<u64>("GET_DB_SEQNUM", &d));
    match r {
        Ok(s) => {
            println!("0x{s:x}");
            0
        }
        Err(e) => {
            eprintln!("Failed to get sequence number for DB {name}");
            e
        }
    }
}

fn control_nodestatus(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() > 1 {
        usage(Some("nodestatus"));
    }
    let nodestring = args.first().map(String::as_str);
    let print_hdr = nodestring == Some("all");
    let map_in = match parse_nodestring(ctx, nodestring) {
        Some(m) => m,
        None => return 1,
    };
    let map = match ctx.nodemap_unknown(&map_in) {
        Some(m) => m,
        None => return 1,
    };
    let cmd_pnn = ctx.cmd_pnn;
    if ctx.opts.machinereadable {
        ctx.print_nodemap_machine(&map, cmd_pnn);
    } else {
        ctx.print_nodemap(&map, cmd_pnn, print_hdr);
    }
    let mut ret = 0u32;
    for n in &map.nodes {
        if n.flags & wire::NODE_FLAGS_DELETED != 0 {
            continue;
        }
        ret |= n.flags;
    }
    ret as i32
}

fn control_dbstatistics(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() != 1 {
        usage(Some("dbstatistics"));
    }
    let (db_id, name, _) = match ctx.db_exists(&args[0]) {
        Some(v) => v,
        None => return 1,
    };
    let cmd_pnn = ctx.cmd_pnn;
    let d = ctx.ctrl(
        "GET_DB_STATISTICS",
        cmd_pnn,
        ControlData::GetDbStatistics(db_id),
    );
    let s = match d.and_then(|d| {
        Ctx::decode::<wire::DbStatistics>("GET_DB_STATISTICS", &d)
            .map(|s| format::dbstatistics(&name, &s))
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Failed to get statistics for DB {name}");
            return e;
        }
    };
    print!("{s}");
    0
}

fn control_reloadips(ctx: &mut Ctx, args: &[String]) -> i32 {
    if args.len() > 1 {
        usage(Some("reloadips"));
    }
    let map = match ctx.get_nodemap(false) {
        Some(m) => m,
        None => return 1,
    };
    let map2 = match parse_nodestring(ctx, args.first().map(String::as_str)) {
        Some(m) => m,
        None => return 1,
    };
    let connected = list_of_nodes(&map, wire::NODE_FLAGS_DISCONNECTED, wire::CTDB_UNKNOWN_PNN);
    let active = list_of_nodes(&map2, wire::NODE_FLAGS_INACTIVE, wire::CTDB_UNKNOWN_PNN);
    if connected.is_empty() || active.is_empty() {
        eprintln!("Memory allocation error");
        return 1;
    }
    let timeout = 2 * ctx.opts.timelimit.max(0) as u32;
    let r = disable_msg(
        ctx,
        wire::CTDB_SRVID_DISABLE_TAKEOVER_RUNS,
        timeout,
        &connected,
        "takeover runs",
    );
    if r != 0 {
        eprintln!("Failed to disable takeover runs");
        return r;
    }
    if ctx
        .multi(&active, ControlRequest::new(ControlData::ReloadPublicIps))
        .is_err()
    {
        eprintln!("Failed to reload IPs on some nodes.");
    }
    let r = disable_msg(
        ctx,
        wire::CTDB_SRVID_DISABLE_TAKEOVER_RUNS,
        0,
        &connected,
        "takeover runs",
    );
    if r != 0 {
        eprintln!("Failed to enable takeover runs");
        return r;
    }
    ctx.ipreallocate()
}
