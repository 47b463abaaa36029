//! Which node hosts which public address: upstream's three IP allocation
//! algorithms (`IPAllocAlgorithm`: 0 deterministic, 1 non-deterministic,
//! 2 LCP2, the default), sans-I/O.
//!
//! Why a pure module: the leader's takeover run ([`super::run`]) gathers
//! what every node knows and can host, and the answer must be the one
//! Samba's leader would give for the same input, so nodes of both kinds
//! agree and the tests can check it without a cluster.
//!
//! The input is, per node, the addresses it knows (with the node it
//! believes hosts each) and those it could host now. Addresses are merged
//! into one list ordered by descending address key (IPv4 as the last of
//! four 32-bit words), a node's claim counting only for itself. LCP2
//! weighs an address against the others on a node by the square of their
//! common-prefix length, places unassigned addresses where they add the
//! least, then moves addresses onto nodes that had none ("rebalance
//! candidates", plus nodes that gained addresses) while that lowers the
//! imbalance. All sums are 32-bit and wrap, as upstream's.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// No node.
pub const UNKNOWN: u32 = u32::MAX;

/// The algorithm (`IPAllocAlgorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Deterministic,
    NonDeterministic,
    Lcp2,
}

impl Algorithm {
    /// As upstream: 0, 1, 2; anything else is LCP2.
    pub fn from_tunable(v: u32) -> Algorithm {
        match v {
            0 => Algorithm::Deterministic,
            1 => Algorithm::NonDeterministic,
            _ => Algorithm::Lcp2,
        }
    }
}

/// What one node reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeIps {
    /// GET_PUBLIC_IPS: every address it knows, with the node it believes
    /// hosts it.
    pub known: Vec<(IpAddr, u32)>,
    /// GET_PUBLIC_IPS with AVAILABLE_ONLY: those it can host now.
    pub available: Vec<IpAddr>,
}

/// The allocation's parameters.
#[derive(Debug, Clone)]
pub struct Params {
    pub algorithm: Algorithm,
    pub no_ip_takeover: bool,
    pub no_ip_failback: bool,
    /// Nodes to rebalance onto even if they host addresses (REBALANCE_NODE).
    pub force_rebalance: Vec<u32>,
}

/// One address of the merged list and its new node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub addr: IpAddr,
    pub pnn: u32,
    pub known_on: Vec<bool>,
    pub available_on: Vec<bool>,
}

/// The 128-bit key upstream sorts and measures addresses by.
pub fn ip_key(ip: &IpAddr) -> [u32; 4] {
    match ip {
        IpAddr::V4(a) => [0, 0, 0, u32::from(*a)],
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// Whether the cluster can host addresses at all: some address is hosted,
/// or there are addresses and some node can host one.
pub fn can_host_ips(nodes: &[NodeIps]) -> bool {
    let mut have = false;
    for (i, n) in nodes.iter().enumerate() {
        if !n.known.is_empty() {
            have = true;
            if n.known.iter().any(|(_, p)| *p == i as u32) {
                return true;
            }
        }
    }
    have && nodes.iter().any(|n| !n.available.is_empty())
}

/// The merged list, descending by key, with upstream's rule for the
/// current node: each node's claim counts only for itself; a later node
/// that knows no host keeps an earlier node's claim.
pub fn merge(nodes: &[NodeIps]) -> Vec<Slot> {
    let num = nodes.len();
    let mut tree: BTreeMap<[u32; 4], (IpAddr, u32)> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for (addr, pnn) in &n.known {
            let claim = if *pnn == i as u32 { *pnn } else { UNKNOWN };
            let key = ip_key(addr);
            let e = tree.entry(key).or_insert((*addr, UNKNOWN));
            e.0 = *addr;
            if claim != UNKNOWN {
                e.1 = claim;
            }
        }
    }
    tree.into_iter()
        .rev()
        .map(|(_, (addr, pnn))| {
            let same = |a: &IpAddr| a == &addr;
            let available_on: Vec<bool> =
                nodes.iter().map(|n| n.available.iter().any(same)).collect();
            let known_on = nodes
                .iter()
                .zip(&available_on)
                .map(|(n, av)| *av || n.known.iter().any(|(a, _)| same(a)))
                .collect();
            Slot {
                addr,
                pnn,
                known_on,
                available_on,
            }
        })
        .map(|mut s| {
            if s.pnn != UNKNOWN && s.pnn as usize >= num {
                s.pnn = UNKNOWN;
            }
            s
        })
        .collect()
}

/// Runs the allocation: the merged list with each address's new node
/// (`UNKNOWN`: nobody can host it).
pub fn allocate(nodes: &[NodeIps], params: &Params) -> Vec<Slot> {
    let mut a = Alloc {
        num: nodes.len(),
        ips: merge(nodes),
        p: params,
    };
    match params.algorithm {
        Algorithm::Lcp2 => a.lcp2(),
        Algorithm::Deterministic => a.deterministic(),
        Algorithm::NonDeterministic => a.nondeterministic(),
    }
    a.ips
}

struct Alloc<'a> {
    num: usize,
    ips: Vec<Slot>,
    p: &'a Params,
}

fn ip_distance(a: &IpAddr, b: &IpAddr) -> u32 {
    let (ka, kb) = (ip_key(a), ip_key(b));
    // As upstream: leading zeros of every word's XOR, summed (it does not
    // stop at the first differing word).
    ka.iter()
        .zip(kb.iter())
        .map(|(x, y)| (x ^ y).leading_zeros())
        .sum()
}

impl Alloc<'_> {
    fn can_host(&self, pnn: usize, ip: usize) -> bool {
        self.ips[ip].available_on.get(pnn).copied().unwrap_or(false)
    }

    fn can_takeover(&self, pnn: usize, ip: usize) -> bool {
        !self.p.no_ip_takeover && self.can_host(pnn, ip)
    }

    fn coverage(&self, pnn: usize) -> usize {
        self.ips.iter().filter(|s| s.pnn == pnn as u32).count()
    }

    fn unassign_unsuitable(&mut self) {
        for i in 0..self.ips.len() {
            let p = self.ips[i].pnn;
            if p != UNKNOWN && !self.can_host(p as usize, i) {
                self.ips[i].pnn = UNKNOWN;
            }
        }
    }

    /// The least-covered node that can take `ip` over.
    fn find_takeover_node(&mut self, ip: usize) -> bool {
        let mut best: Option<(usize, usize)> = None;
        for n in 0..self.num {
            if !self.can_takeover(n, ip) {
                continue;
            }
            let c = self.coverage(n);
            if best.is_none_or(|(_, m)| c < m) {
                best = Some((n, c));
            }
        }
        match best {
            Some((n, _)) => {
                self.ips[ip].pnn = n as u32;
                true
            }
            None => {
                tracing::warn!(
                    "Could not find node to take over public address '{}'",
                    self.ips[ip].addr
                );
                false
            }
        }
    }

    fn basic_allocate_unassigned(&mut self) {
        for i in 0..self.ips.len() {
            if self.ips[i].pnn == UNKNOWN && !self.find_takeover_node(i) {
                tracing::warn!("Failed to find node to cover ip {}", self.ips[i].addr);
            }
        }
    }

    fn deterministic(&mut self) {
        tracing::info!("Deterministic IPs enabled. Resetting all ip allocations");
        let num = self.num.max(1);
        for (i, s) in self.ips.iter_mut().enumerate() {
            s.pnn = (i % num) as u32;
        }
        if self.p.no_ip_failback {
            tracing::warn!(
                "WARNING: 'NoIPFailback' set but ignored - incompatible with 'Deterministic IPs"
            );
        }
        self.unassign_unsuitable();
        self.basic_allocate_unassigned();
    }

    fn nondeterministic(&mut self) {
        let num_ips = self.ips.len();
        self.unassign_unsuitable();
        self.basic_allocate_unassigned();
        if self.p.no_ip_failback {
            return;
        }
        let mut retries = 0usize;
        'again: loop {
            for t in 0..self.ips.len() {
                if self.ips[t].pnn == UNKNOWN {
                    continue;
                }
                let mut max: Option<(usize, usize)> = None;
                let mut min: Option<(usize, usize)> = None;
                for n in 0..self.num {
                    if !self.can_takeover(n, t) {
                        continue;
                    }
                    let c = self.coverage(n);
                    if max.is_none_or(|(_, m)| c > m) {
                        max = Some((n, c));
                    }
                    if min.is_none_or(|(_, m)| c < m) {
                        min = Some((n, c));
                    }
                }
                let (Some((maxnode, maxnum)), Some((_, minnum))) = (max, min) else {
                    continue;
                };
                if maxnum > minnum + 1 && retries < num_ips + 5 {
                    if let Some(tt) = self.ips.iter().position(|s| s.pnn == maxnode as u32) {
                        self.find_takeover_node(tt);
                        retries += 1;
                        continue 'again;
                    }
                }
            }
            break;
        }
    }

    /// Sum of squared distances from `ip` to the other addresses on `pnn`,
    /// over the slots from `from` on.
    fn dsum(&self, ip: usize, from: usize, pnn: usize) -> u32 {
        let addr = &self.ips[ip].addr;
        let mut sum = 0u32;
        for (j, s) in self.ips.iter().enumerate().skip(from) {
            if s.pnn != pnn as u32 || j == ip {
                continue;
            }
            let d = ip_distance(addr, &s.addr);
            sum = sum.wrapping_add(d.wrapping_mul(d));
        }
        sum
    }

    fn imbalance(&self, pnn: usize) -> u32 {
        let mut imb = 0u32;
        for i in 0..self.ips.len() {
            if self.ips[i].pnn == pnn as u32 {
                imb = imb.wrapping_add(self.dsum(i, i + 1, pnn));
            }
        }
        imb
    }

    fn lcp2(&mut self) {
        self.unassign_unsuitable();
        let mut imb: Vec<u32> = (0..self.num).map(|n| self.imbalance(n)).collect();
        let mut candidates = vec![true; self.num];
        for s in &self.ips {
            if s.pnn != UNKNOWN {
                candidates[s.pnn as usize] = false;
            }
        }
        for &p in &self.p.force_rebalance {
            match candidates.get_mut(p as usize) {
                Some(c) => {
                    tracing::info!("Forcing rebalancing of IPs to node {p}");
                    *c = true;
                }
                None => tracing::error!("unknown node {p}"),
            }
        }
        self.lcp2_allocate_unassigned(&mut imb);
        if self.p.no_ip_failback || !candidates.iter().any(|c| *c) {
            return;
        }
        self.lcp2_failback(&mut imb, &candidates);
    }

    fn lcp2_allocate_unassigned(&mut self, imb: &mut [u32]) {
        loop {
            let mut best: Option<(usize, usize, u32, u32)> = None; // ip, node, dsum, imbl
            for t in 0..self.ips.len() {
                if self.ips[t].pnn != UNKNOWN {
                    continue;
                }
                for (dst, cur) in imb.iter().enumerate().take(self.num) {
                    if !self.can_takeover(dst, t) {
                        continue;
                    }
                    let dsum = self.dsum(t, 0, dst);
                    let dimbl = cur.wrapping_add(dsum);
                    if best.is_none_or(|(_, _, m, _)| dsum < m) {
                        best = Some((t, dst, dsum, dimbl));
                    }
                }
            }
            let Some((t, dst, _, dimbl)) = best else {
                break;
            };
            self.ips[t].pnn = dst as u32;
            imb[dst] = dimbl;
            if !self.ips.iter().any(|s| s.pnn == UNKNOWN) {
                return;
            }
        }
        for s in self.ips.iter().filter(|s| s.pnn == UNKNOWN) {
            tracing::warn!("Failed to find node to cover ip {}", s.addr);
        }
    }

    fn lcp2_failback_candidate(&mut self, src: usize, imb: &mut [u32], cand: &[bool]) -> bool {
        // ip, dst, srcimbl, dstimbl
        let mut best: Option<(usize, usize, u32, u32)> = None;
        for t in 0..self.ips.len() {
            if self.ips[t].pnn != src as u32 {
                continue;
            }
            let srcdsum = self.dsum(t, 0, src);
            let srcimbl = imb[src].wrapping_sub(srcdsum);
            for dst in 0..self.num {
                if !cand[dst] || !self.can_takeover(dst, t) {
                    continue;
                }
                let dstdsum = self.dsum(t, 0, dst);
                let dstimbl = imb[dst].wrapping_add(dstdsum);
                if dstimbl < imb[src]
                    && dstdsum < srcdsum
                    && best.is_none_or(|(_, _, ms, md)| {
                        srcimbl.wrapping_add(dstimbl) < ms.wrapping_add(md)
                    })
                {
                    best = Some((t, dst, srcimbl, dstimbl));
                }
            }
        }
        match best {
            Some((t, dst, si, di)) => {
                imb[src] = si;
                imb[dst] = di;
                self.ips[t].pnn = dst as u32;
                true
            }
            None => false,
        }
    }

    fn lcp2_failback(&mut self, imb: &mut [u32], cand: &[bool]) {
        // Bounded: every move lowers the total imbalance.
        for _ in 0..100_000 {
            let mut order: Vec<usize> = (0..self.num).collect();
            order.sort_by(|a, b| imb[*b].cmp(&imb[*a]));
            let mut again = false;
            for n in order {
                if imb[n] == 0 {
                    break;
                }
                if self.lcp2_failback_candidate(n, imb, cand) {
                    again = true;
                    break;
                }
            }
            if !again {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn params(a: Algorithm) -> Params {
        Params {
            algorithm: a,
            no_ip_takeover: false,
            no_ip_failback: false,
            force_rebalance: Vec::new(),
        }
    }

    /// `n` nodes all knowing and able to host `addrs`, none hosted.
    fn fresh(n: usize, addrs: &[&str]) -> Vec<NodeIps> {
        (0..n)
            .map(|_| NodeIps {
                known: addrs.iter().map(|a| (ip(a), UNKNOWN)).collect(),
                available: addrs.iter().map(|a| ip(a)).collect(),
            })
            .collect()
    }

    fn per_node(slots: &[Slot], n: usize) -> Vec<usize> {
        (0..n)
            .map(|p| slots.iter().filter(|s| s.pnn == p as u32).count())
            .collect()
    }

    const SIX: [&str; 6] = [
        "10.0.0.31",
        "10.0.0.32",
        "10.0.0.33",
        "10.0.1.41",
        "10.0.1.42",
        "10.0.1.43",
    ];

    #[test]
    fn merged_list_is_descending_and_claims_count_for_self_only() {
        let mut nodes = fresh(2, &["10.0.0.1", "10.0.0.3", "10.0.0.2"]);
        nodes[0].known[0].1 = 1; // node 0 thinks node 1 hosts .1: ignored
        nodes[1].known[1].1 = 1; // node 1 hosts .3
        let m = merge(&nodes);
        let addrs: Vec<String> = m.iter().map(|s| s.addr.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.3", "10.0.0.2", "10.0.0.1"]);
        assert_eq!(m[0].pnn, 1);
        assert_eq!(m[2].pnn, UNKNOWN);
    }

    #[test]
    fn every_algorithm_covers_every_address_once_and_balances() {
        for a in [
            Algorithm::Lcp2,
            Algorithm::Deterministic,
            Algorithm::NonDeterministic,
        ] {
            let slots = allocate(&fresh(3, &SIX), &params(a));
            assert_eq!(slots.len(), 6);
            assert!(slots.iter().all(|s| s.pnn < 3), "{a:?}: {slots:?}");
            assert_eq!(per_node(&slots, 3), [2, 2, 2], "{a:?}");
        }
    }

    #[test]
    fn lcp2_first_allocation_is_upstreams() {
        // Worked by hand from upstream's rules (and what Samba's ctdbd
        // 4.17 hosts for this file): descending order, first strictly
        // cheaper node wins.
        let slots = allocate(&fresh(3, &SIX), &params(Algorithm::Lcp2));
        let got: Vec<(String, u32)> = slots.iter().map(|s| (s.addr.to_string(), s.pnn)).collect();
        let want = [
            ("10.0.1.43", 0),
            ("10.0.1.42", 1),
            ("10.0.1.41", 2),
            ("10.0.0.33", 0),
            ("10.0.0.32", 1),
            ("10.0.0.31", 2),
        ];
        let want: Vec<(String, u32)> = want.iter().map(|(a, p)| (a.to_string(), *p)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn lcp2_spreads_a_subnet_over_nodes() {
        let slots = allocate(&fresh(2, &SIX), &params(Algorithm::Lcp2));
        for p in 0..2u32 {
            let nets: Vec<u8> = slots
                .iter()
                .filter(|s| s.pnn == p)
                .map(|s| match s.addr {
                    IpAddr::V4(a) => a.octets()[2],
                    _ => 9,
                })
                .collect();
            assert!(nets.contains(&0) && nets.contains(&1), "node {p}: {nets:?}");
        }
    }

    #[test]
    fn unavailable_node_loses_its_addresses_and_gets_them_back() {
        let mut nodes = fresh(3, &SIX);
        let first = allocate(&nodes, &params(Algorithm::Lcp2));
        // Node 1 disabled: it still knows the addresses but can host none.
        for (i, n) in nodes.iter_mut().enumerate() {
            n.known = first
                .iter()
                .map(|s| (s.addr, if s.pnn == i as u32 { s.pnn } else { UNKNOWN }))
                .collect();
        }
        nodes[1].available.clear();
        let second = allocate(&nodes, &params(Algorithm::Lcp2));
        assert_eq!(per_node(&second, 3), [3, 0, 3]);
        // Unchanged addresses stay where they were.
        for (a, b) in first.iter().zip(&second) {
            if a.pnn != 1 {
                assert_eq!(a.pnn, b.pnn);
            }
        }
        // Enabled again: it is a rebalance candidate and gets two back.
        for (i, n) in nodes.iter_mut().enumerate() {
            n.known = second
                .iter()
                .map(|s| (s.addr, if s.pnn == i as u32 { s.pnn } else { UNKNOWN }))
                .collect();
        }
        nodes[1].available = SIX.iter().map(|a| ip(a)).collect();
        let third = allocate(&nodes, &params(Algorithm::Lcp2));
        assert_eq!(per_node(&third, 3), [2, 2, 2]);
        // NoIPFailback: it stays empty.
        let mut p = params(Algorithm::Lcp2);
        p.no_ip_failback = true;
        assert_eq!(per_node(&allocate(&nodes, &p), 3), [3, 0, 3]);
    }

    #[test]
    fn no_ip_takeover_leaves_unassigned_addresses_unhosted() {
        let mut p = params(Algorithm::Lcp2);
        p.no_ip_takeover = true;
        let slots = allocate(&fresh(3, &SIX), &p);
        assert!(slots.iter().all(|s| s.pnn == UNKNOWN));
    }

    #[test]
    fn can_host_needs_hosted_or_available_addresses() {
        assert!(!can_host_ips(&[NodeIps::default(), NodeIps::default()]));
        let mut nodes = fresh(2, &["10.0.0.1"]);
        assert!(can_host_ips(&nodes));
        nodes[0].available.clear();
        nodes[1].available.clear();
        assert!(!can_host_ips(&nodes));
        nodes[1].known[0].1 = 1;
        assert!(can_host_ips(&nodes));
    }

    #[test]
    fn distance_sums_leading_zeros_of_each_word() {
        assert_eq!(ip_distance(&ip("10.0.0.1"), &ip("10.0.0.1")), 128);
        assert_eq!(ip_distance(&ip("10.0.0.0"), &ip("10.0.0.1")), 96 + 31);
        assert_eq!(ip_distance(&ip("fc00::1"), &ip("fd00::1")), 7 + 32 * 3);
    }
}
