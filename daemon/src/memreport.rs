//! `ctdb dumpmemory` (DUMP_MEMORY) and `ctdb rddumpmemory` (a message to
//! `CTDB_SRVID_MEM_DUMP`, answered by the recovery daemon): a report of
//! what the daemon holds, laid out as talloc's full report, which is what
//! upstream sends and what scripts parse:
//!
//! ```text
//! full talloc report on 'ctdb_context' (total   4321 bytes in  17 blocks)
//!     struct ctdb_node               contains    120 bytes in   1 blocks (ref 0) 0x55d0c0
//! ```
//!
//! Why estimates: the daemon has no allocator hierarchy to walk. Each entry
//! is one of the daemon's structures (node table, clients, databases,
//! tunables, statistics, srvid subscribers) with its size computed from
//! `size_of` and the lengths of what it owns on the heap (names, tables,
//! srvid sets), so the numbers grow and shrink with the real state, and
//! the address is the structure's own.

use std::fmt::Write;
use std::mem::size_of;

use ctdb_protocol::types::Statistics;

use crate::state::{ClientEntry, Daemon};

/// One node of the report tree.
pub struct Entry {
    name: String,
    /// Bytes of this entry alone (children add theirs).
    own: usize,
    addr: usize,
    children: Vec<Entry>,
}

impl Entry {
    pub fn new<T: ?Sized>(name: impl Into<String>, own: usize, at: &T) -> Entry {
        Entry {
            name: name.into(),
            own,
            addr: at as *const T as *const u8 as usize,
            children: Vec::new(),
        }
    }

    pub fn child(mut self, c: Entry) -> Entry {
        self.children.push(c);
        self
    }

    /// Bytes and blocks of this entry and everything below it.
    fn totals(&self) -> (usize, usize) {
        self.children
            .iter()
            .map(Entry::totals)
            .fold((self.own, 1), |(b, n), (cb, cn)| (b + cb, n + cn))
    }

    fn render(&self, depth: usize, out: &mut String) {
        let (bytes, blocks) = self.totals();
        let _ = writeln!(
            out,
            "{:indent$}{:<30} contains {:>6} bytes in {:>3} blocks (ref 0) {:#x}",
            "",
            self.name,
            bytes,
            blocks,
            self.addr,
            indent = depth * 4
        );
        for c in &self.children {
            c.render(depth + 1, out);
        }
    }
}

/// The whole report for a tree rooted at `root`.
pub fn render(root: &Entry) -> String {
    let (bytes, blocks) = root.totals();
    // talloc pads the block count to 3; scripts match one space before
    // it (upstream's reports always have 100 blocks or more): unpadded.
    let mut out = format!(
        "full talloc report on '{}' (total {:>6} bytes in {} blocks)\n",
        root.name, bytes, blocks
    );
    for c in &root.children {
        c.render(1, &mut out);
    }
    out
}

/// The report of a running daemon; `root` names the top context
/// (`ctdb_context` for ctdbd, `ctdb_recoverd` for the recovery daemon).
pub fn daemon_report(d: &Daemon, root: &str) -> String {
    render(&daemon_tree(d, root))
}

/// The report's total bytes: what `ctdb statistics` shows as `memory_used`
/// (upstream: the total size of its talloc context, the same number its
/// report starts with).
pub fn daemon_bytes(d: &Daemon) -> usize {
    daemon_tree(d, "ctdb_context").totals().0
}

fn daemon_tree(d: &Daemon, root: &str) -> Entry {
    let mut top = Entry::new(root, size_of::<Daemon>(), d);

    {
        let table = d.id.nodes.borrow();
        let mut nodes = Entry::new("struct ctdb_node *", 0, &*table);
        for e in &table.entries {
            nodes = nodes.child(Entry::new("struct ctdb_node", size_of_val(e), e));
        }
        top = top.child(nodes);
    }

    {
        let clients = d.clients.borrow();
        let mut list = Entry::new("struct ctdb_client *", 0, &*clients);
        for c in clients.values() {
            let own = size_of::<ClientEntry>() + c.srvids.capacity() * size_of::<u64>();
            list = list.child(Entry::new("struct ctdb_client", own, c));
        }
        top = top.child(list);
    }

    {
        let dbs = d.dbs.borrow();
        let mut list = Entry::new("struct ctdb_db_context *", 0, &*dbs);
        for db in dbs.iter() {
            let own = size_of_val(db) + db.name().len() + db.path().as_os_str().len();
            let e = Entry::new("struct ctdb_db_context", own, db).child(Entry::new(
                db.name(),
                db.name().len() + 1,
                db.name(),
            ));
            list = list.child(e);
        }
        top = top.child(list);
    }

    {
        let t = d.tunables.borrow();
        top = top.child(Entry::new(
            "struct ctdb_tunable_list",
            size_of_val(&*t),
            &*t,
        ));
    }

    {
        let s = d.stats.borrow();
        let history = s.history.len() * size_of::<Statistics>();
        top = top.child(
            Entry::new("struct ctdb_statistics", 2 * size_of::<Statistics>(), &*s).child(
                Entry::new("struct ctdb_statistics_list", history, &s.history),
            ),
        );
    }

    {
        let subs = d.subscribers.borrow();
        let mut list = Entry::new("struct srvid_context", 0, &*subs);
        for (srvid, senders) in subs.iter() {
            let own = size_of::<u64>() + senders.iter().map(size_of_val).sum::<usize>();
            list = list.child(Entry::new(format!("srvid 0x{srvid:016x}"), own, srvid));
        }
        top = top.child(list);
    }

    {
        let tunnels = d.tunnels.borrow();
        let own = tunnels.capacity() * (size_of::<u64>() + size_of::<u32>());
        top = top.child(Entry::new("struct ctdb_tunnel_context", own, &*tunnels));
    }

    top
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line patterns upstream's debug.003.dumpmemory accepts.
    fn line_ok(l: &str) -> bool {
        let child = l.starts_with(char::is_whitespace)
            && l.contains(" contains ")
            && l.contains(" bytes in ")
            && l.contains(" blocks (ref 0) 0x");
        let head = l.starts_with("full talloc report on '")
            && l.contains("' (total ")
            && l.ends_with(" blocks)");
        child || head
    }

    #[test]
    fn report_sums_children_and_keeps_talloc_layout() {
        let x = 0u8;
        let root = Entry::new("ctdb_context", 100, &x)
            .child(Entry::new("a", 10, &x).child(Entry::new("b", 5, &x)))
            .child(Entry::new("c", 1, &x));
        let r = render(&root);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(
            lines[0],
            "full talloc report on 'ctdb_context' (total    116 bytes in 4 blocks)"
        );
        assert!(lines[1].starts_with(
            "    a                              contains     15 bytes in   2 blocks (ref 0) 0x"
        ));
        assert!(lines[2].starts_with("        b "));
        assert!(lines[3].starts_with("    c "));
        assert!(lines.iter().all(|l| line_ok(l)), "{r}");
    }
}
