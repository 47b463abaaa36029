//! Network partitions for cluster tests: nodes run in separate network
//! namespaces joined by one veth pair, so a test can cut the cluster in
//! two (and heal it) without touching the host's own network or any other
//! test's traffic.
//!
//! Layout: namespace A holds the nodes of group A, namespace B the others.
//! The node addresses stay in 127.0.0.0/8 as everywhere in these tests:
//! each namespace's loopback loses its 127.0.0.1/8 (whose local route
//! would swallow every 127/8 address) and the node addresses sit on the
//! veth ends, with `route_localnet` set so the kernel routes them. A
//! partition is a blackhole route for the other group's addresses on each
//! side (links and addresses stay up, so no daemon sees its own address
//! vanish); healing deletes those routes. The Unix sockets and the cluster
//! lock file are on the shared file system, so the CLI and the lock work
//! from anywhere.
//!
//! The daemons are started through a small wrapper script that picks the
//! namespace from the node's `CTDB_BASE` and `exec`s `ip netns exec NS
//! ctdbd ...`: `ip` execs without forking, so the pid the harness spawned
//! is the daemon's own and stopping by pid works as for any cluster.
//!
//! Needs root and iproute2 (`ip`); [`available`] says whether this host
//! can do it. Dropping a [`Partitioned`] deletes both namespaces (which
//! removes the veth pair).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{io_err, HarnessError, Result};

/// The `ip` tool of iproute2.
pub const IP: &str = "/usr/sbin/ip";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// True if namespaces can be created here (root, `ip` present): probes by
/// creating and deleting one.
pub fn available() -> bool {
    if !Path::new(IP).is_file() {
        return false;
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("ctp{}x{n}p", std::process::id());
    let ok = ip(&["netns", "add", &name]).is_ok();
    if ok {
        let _ = ip(&["netns", "del", &name]);
    }
    ok
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new(IP)
        .args(args)
        .output()
        .map_err(|source| HarnessError::Spawn {
            program: PathBuf::from(IP),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HarnessError::BadSpec(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn ip_in(ns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["netns", "exec", ns, IP];
    all.extend_from_slice(args);
    ip(&all)
}

fn sysctl_in(ns: &str, key: &str, value: &str) -> Result<()> {
    // /proc/sys/net is per namespace: write it from inside.
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let out = Command::new(IP)
        .args(["netns", "exec", ns, "/bin/sh", "-c"])
        .arg(format!("echo {value} > {path}"))
        .output()
        .map_err(|source| HarnessError::Spawn {
            program: PathBuf::from(IP),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HarnessError::BadSpec(format!(
            "sysctl {key}={value} in {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Two network namespaces joined by a veth pair, holding the addresses of
/// two groups of nodes.
#[derive(Debug)]
pub struct Partitioned {
    ns: [String; 2],
    veth: [String; 2],
    groups: [Vec<Ipv4Addr>; 2],
    wrapper: PathBuf,
    cut: bool,
}

impl Partitioned {
    /// Create the namespaces for `group_a` and `group_b` (node addresses,
    /// all in one /24), and write into `dir` a wrapper that runs `ctdbd`
    /// in namespace A for the nodes whose `CTDB_BASE` ends in one of
    /// `bases_a` and in namespace B otherwise.
    pub fn create(
        group_a: &[Ipv4Addr],
        group_b: &[Ipv4Addr],
        bases_a: &[PathBuf],
        ctdbd: &Path,
        dir: &Path,
    ) -> Result<Partitioned> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}x{}", std::process::id() % 100_000, n % 100);
        let p = Partitioned {
            ns: [format!("ctt{tag}a"), format!("ctt{tag}b")],
            // Interface names are at most 15 bytes.
            veth: [format!("ct{tag}a"), format!("ct{tag}b")],
            groups: [group_a.to_vec(), group_b.to_vec()],
            wrapper: dir.join("ctdbd-in-netns"),
            cut: false,
        };
        // From here on, Drop cleans up whatever was made.
        for ns in &p.ns {
            ip(&["netns", "add", ns])?;
        }
        ip(&[
            "link", "add", &p.veth[0], "type", "veth", "peer", "name", &p.veth[1],
        ])?;
        for side in 0..2 {
            let (ns, veth) = (&p.ns[side], &p.veth[side]);
            ip(&["link", "set", veth, "netns", ns])?;
            sysctl_in(ns, "net.ipv4.conf.all.route_localnet", "1")?;
            sysctl_in(ns, &format!("net.ipv4.conf.{veth}.route_localnet"), "1")?;
            ip_in(ns, &["link", "set", "lo", "up"])?;
            ip_in(ns, &["addr", "del", "127.0.0.1/8", "dev", "lo"])?;
            for a in &p.groups[side] {
                ip_in(ns, &["addr", "add", &format!("{a}/24"), "dev", veth])?;
            }
            ip_in(ns, &["link", "set", veth, "up"])?;
        }
        let mut script = String::from("#!/bin/sh\n# Run ctdbd in the namespace of its node.\nns=");
        script.push_str(&p.ns[1]);
        script.push_str("\ncase \"$CTDB_BASE\" in\n");
        for b in bases_a {
            script.push_str(&format!("\"{}\") ns={} ;;\n", b.display(), p.ns[0]));
        }
        script.push_str(&format!(
            "esac\nexec {IP} netns exec \"$ns\" {} \"$@\"\n",
            ctdbd.display()
        ));
        std::fs::write(&p.wrapper, script).map_err(io_err("write", &p.wrapper))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p.wrapper, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &p.wrapper))?;
        Ok(p)
    }

    /// The wrapper to give the cluster as its ctdbd.
    pub fn wrapper(&self) -> &Path {
        &self.wrapper
    }

    /// The namespace names (A, B).
    pub fn namespaces(&self) -> (&str, &str) {
        (&self.ns[0], &self.ns[1])
    }

    /// Cut every path between the groups: each side blackholes the other
    /// side's addresses.
    pub fn partition(&mut self) -> Result<()> {
        for side in 0..2 {
            for a in &self.groups[1 - side] {
                ip_in(
                    &self.ns[side],
                    &["route", "add", "blackhole", &format!("{a}/32")],
                )?;
            }
        }
        self.cut = true;
        Ok(())
    }

    /// Undo [`Partitioned::partition`].
    pub fn heal(&mut self) -> Result<()> {
        let mut first = None;
        for side in 0..2 {
            for a in &self.groups[1 - side] {
                if let Err(e) = ip_in(
                    &self.ns[side],
                    &["route", "del", "blackhole", &format!("{a}/32")],
                ) {
                    first.get_or_insert(e);
                }
            }
        }
        self.cut = false;
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether the groups are cut apart now.
    pub fn is_partitioned(&self) -> bool {
        self.cut
    }
}

impl Drop for Partitioned {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = ip(&["netns", "del", ns]);
        }
        // A veth left in the root namespace (creation failed half way).
        let _ = ip(&["link", "del", &self.veth[0]]);
    }
}
