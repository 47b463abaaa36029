//! Round trips and layout checks for every marshalled type in
//! `ctdb_protocol::types`.
//!
//! Random values come from a seeded splitmix64 generator (seed printed at
//! the start of each test, override with `CTDB_TEST_SEED`): encode, check
//! `wire_len`, decode, compare, re-encode to identical bytes, and check that
//! every strict prefix of the encoding is rejected. Hand-written byte
//! vectors pin the layouts to the tables of the spec (`ctdb-protocol.md`
//! §1, §12), and IPv6 text is compared with glibc's `inet_ntop` through the
//! system Python.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use ctdb_protocol::types::*;
use ctdb_protocol::{ProtocolError, Wire};

// ---------------------------------------------------------------- PRNG ---

struct Rng(u64);

impl Rng {
    fn from_env(test: &str) -> Rng {
        let seed = std::env::var("CTDB_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_c7db_0417_0012);
        println!("{test}: seed {seed} (set CTDB_TEST_SEED to reproduce)");
        Rng(seed)
    }
    fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn u32(&mut self) -> u32 {
        self.u64() as u32
    }
    fn u16(&mut self) -> u16 {
        self.u64() as u16
    }
    fn u8(&mut self) -> u8 {
        self.u64() as u8
    }
    fn i32(&mut self) -> i32 {
        self.u64() as i32
    }
    fn i64(&mut self) -> i64 {
        self.u64() as i64
    }
    fn bool(&mut self) -> bool {
        self.u64() & 1 == 1
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.u64() % n as u64) as usize
        }
    }
    /// A finite double (NaN would not compare equal).
    fn f64(&mut self) -> f64 {
        (self.u64() >> 11) as f64 / 1024.0 - 1e12
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.u8()).collect()
    }
    /// Bytes with no NUL (a C string body).
    fn cstr(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.u8().max(1)).collect()
    }
    fn ascii(&mut self, min: usize, max: usize) -> String {
        let n = min + self.below(max - min + 1);
        (0..n).map(|_| (b'A' + (self.u8() % 26)) as char).collect()
    }
}

// ------------------------------------------------------ generators ---

fn gen_sock_addr(r: &mut Rng) -> SockAddr {
    match r.below(5) {
        0 => SockAddr::Unspec,
        1 | 2 => SockAddr::V4(SocketAddrV4::new(Ipv4Addr::from(r.u32()), r.u16())),
        _ => {
            let mut o = [0u8; 16];
            for b in o.iter_mut() {
                // Runs of zero segments exercise the text compression.
                *b = if r.below(3) == 0 { 0 } else { r.u8() };
            }
            SockAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(o),
                r.u16(),
                r.u32(),
                r.u32(),
            ))
        }
    }
}

fn gen_timeval(r: &mut Rng) -> Timeval {
    Timeval::new(r.i64(), r.i64())
}

fn gen_latency(r: &mut Rng) -> LatencyCounter {
    LatencyCounter {
        num: r.i32(),
        min: r.f64(),
        max: r.f64(),
        total: r.f64(),
    }
}

fn gen_buckets(r: &mut Rng) -> [u32; MAX_COUNT_BUCKETS] {
    let mut b = [0u32; MAX_COUNT_BUCKETS];
    b.iter_mut().for_each(|v| *v = r.u32());
    b
}

fn gen_locks(r: &mut Rng) -> LockStatistics {
    LockStatistics {
        num_calls: r.u32(),
        num_current: r.u32(),
        num_pending: r.u32(),
        num_failed: r.u32(),
        latency: gen_latency(r),
        buckets: gen_buckets(r),
    }
}

fn gen_statistics(r: &mut Rng) -> Statistics {
    Statistics {
        num_clients: r.u32(),
        frozen: r.u32(),
        recovering: r.u32(),
        client_packets_sent: r.u32(),
        client_packets_recv: r.u32(),
        node_packets_sent: r.u32(),
        node_packets_recv: r.u32(),
        keepalive_packets_sent: r.u32(),
        keepalive_packets_recv: r.u32(),
        node: StatisticsNode {
            req_call: r.u32(),
            reply_call: r.u32(),
            req_dmaster: r.u32(),
            reply_dmaster: r.u32(),
            reply_error: r.u32(),
            req_message: r.u32(),
            req_control: r.u32(),
            reply_control: r.u32(),
            req_tunnel: r.u32(),
        },
        client: StatisticsClient {
            req_call: r.u32(),
            req_message: r.u32(),
            req_control: r.u32(),
            req_tunnel: r.u32(),
        },
        timeouts: StatisticsTimeouts {
            call: r.u32(),
            control: r.u32(),
            traverse: r.u32(),
        },
        reclock_ctdbd: gen_latency(r),
        reclock_recd: gen_latency(r),
        locks: gen_locks(r),
        total_calls: r.u32(),
        pending_calls: r.u32(),
        childwrite_calls: r.u32(),
        pending_childwrite_calls: r.u32(),
        memory_used: r.u32(),
        last_counter: r.u32(),
        max_hop_count: r.u32(),
        hop_count_bucket: gen_buckets(r),
        call_latency: gen_latency(r),
        childwrite_latency: gen_latency(r),
        num_recoveries: r.u32(),
        statistics_start_time: gen_timeval(r),
        statistics_current_time: gen_timeval(r),
        total_ro_delegations: r.u32(),
        total_ro_revokes: r.u32(),
    }
}

fn gen_ltdb_header(r: &mut Rng) -> LtdbHeader {
    LtdbHeader {
        rsn: r.u64(),
        dmaster: r.u32(),
        reserved1: r.u32(),
        flags: r.u32(),
    }
}

fn gen_node(r: &mut Rng) -> NodeAndFlags {
    NodeAndFlags {
        pnn: r.u32(),
        flags: r.u32(),
        addr: gen_sock_addr(r),
    }
}

fn gen_public_ip(r: &mut Rng) -> PublicIp {
    PublicIp {
        pnn: r.u32(),
        addr: gen_sock_addr(r),
    }
}

fn gen_iface(r: &mut Rng) -> Iface {
    let mut name = [0u8; IFACE_NAME_SIZE];
    name.iter_mut().for_each(|b| *b = r.u8());
    Iface {
        name,
        link_state: r.u16(),
        references: r.u32(),
    }
}

fn gen_conn(r: &mut Rng) -> Connection {
    Connection {
        src: gen_sock_addr(r),
        dst: gen_sock_addr(r),
    }
}

fn gen_script(r: &mut Rng) -> Script {
    let mut s = Script::default();
    s.name.iter_mut().for_each(|b| *b = r.u8());
    s.output.iter_mut().for_each(|b| *b = r.u8());
    s.start = gen_timeval(r);
    s.finished = gen_timeval(r);
    s.status = r.i32();
    s
}

fn gen_server_id(r: &mut Rng) -> ServerId {
    ServerId {
        pid: r.u64(),
        task_id: r.u32(),
        vnn: r.u32(),
        unique_id: r.u64(),
    }
}

fn gen_tunables(r: &mut Rng) -> TunableList {
    let mut a = [0u32; TUNABLE_COUNT];
    a.iter_mut().for_each(|v| *v = r.u32());
    TunableList::from_array(a)
}

fn gen_vec<T>(r: &mut Rng, max: usize, f: impl Fn(&mut Rng) -> T) -> Vec<T> {
    let n = r.below(max + 1);
    (0..n).map(|_| f(r)).collect()
}

/// An owned record: reqid, optional ltdb header, key, data.
type OwnedRec = (u32, Option<LtdbHeader>, Vec<u8>, Vec<u8>);

/// Random records (owned) for record buffers and rec_data.
fn gen_records(r: &mut Rng, max: usize) -> Vec<OwnedRec> {
    gen_vec(r, max, |r| {
        let h = if r.bool() {
            Some(gen_ltdb_header(r))
        } else {
            None
        };
        (r.u32(), h, r.bytes(40), r.bytes(100))
    })
}

// ------------------------------------------------------------ checks ---

/// Encode, decode, compare, re-encode, prefixes and a trailing byte.
macro_rules! check {
    ($ty:ident, $v:expr) => {
        check!($ty, $v, prefixes)
    };
    ($ty:ident, $v:expr, $mode:ident) => {{
        let v = $v;
        let bytes = v.to_bytes();
        assert_eq!(bytes.len(), v.wire_len(), "{} wire_len", stringify!($ty));
        let d = match $ty::from_bytes(&bytes) {
            Ok(d) => d,
            Err(e) => panic!("{} failed to decode {:?}: {e}", stringify!($ty), v),
        };
        assert_eq!(d, v, "{} round trip", stringify!($ty));
        assert_eq!(d.to_bytes(), bytes, "{} re-encode", stringify!($ty));
        check!(@$mode $ty, bytes);
        let mut longer = bytes.clone();
        longer.push(0x5a);
        assert!(
            $ty::from_bytes(&longer).is_err(),
            "{} accepted a trailing byte",
            stringify!($ty)
        );
    }};
    (@prefixes $ty:ident, $bytes:expr) => {
        for n in 0..$bytes.len() {
            assert!(
                $ty::from_bytes(&$bytes[..n]).is_err(),
                "{}: prefix of {} of {} bytes decoded",
                stringify!($ty),
                n,
                $bytes.len()
            );
        }
    };
    (@noprefixes $ty:ident, $bytes:expr) => {};
}

const ITERS: usize = 300;

#[test]
fn fixed_sizes_match_spec() {
    let mut r = Rng::from_env("fixed_sizes_match_spec");
    let cases: Vec<(&str, usize, usize)> = vec![
        ("sock_addr", gen_sock_addr(&mut r).wire_len(), 28),
        ("timeval", gen_timeval(&mut r).wire_len(), 16),
        ("dbid", DbId::default().wire_len(), 8),
        ("node_and_flags", gen_node(&mut r).wire_len(), 36),
        ("public_ip", gen_public_ip(&mut r).wire_len(), 32),
        ("iface", gen_iface(&mut r).wire_len(), 24),
        ("connection", gen_conn(&mut r).wire_len(), 56),
        ("ban_state", BanState::default().wire_len(), 8),
        ("uptime", Uptime::default().wire_len(), 64),
        ("transdb", TransDb::default().wire_len(), 8),
        ("pulldb", PullDb::default().wire_len(), 8),
        ("pulldb_ext", PullDbExt::default().wire_len(), 16),
        ("traverse_start", TraverseStart::default().wire_len(), 16),
        (
            "traverse_start_ext",
            TraverseStartExt::default().wire_len(),
            24,
        ),
        ("traverse_all", TraverseAll::default().wire_len(), 24),
        ("traverse_all_ext", TraverseAllExt::default().wire_len(), 32),
        ("node_flag_change", NodeFlagChange::default().wire_len(), 12),
        ("pid_srvid", PidSrvid::default().wire_len(), 12),
        ("db_vacuum", DbVacuum::default().wire_len(), 5),
        ("ltdb_header", LtdbHeader::default().wire_len(), 24),
        ("latency_counter", LatencyCounter::default().wire_len(), 32),
        ("tunable_list", TunableList::default().wire_len(), 248),
        ("script", Script::default().wire_len(), 584),
        (
            "election_message",
            ElectionMessage::default().wire_len(),
            32,
        ),
        ("srvid_message", SrvidMessage::default().wire_len(), 16),
        ("disable_message", DisableMessage::default().wire_len(), 24),
        ("statistics", Statistics::default().wire_len(), 488),
        ("server_id", ServerId::default().wire_len(), 24),
        ("g_lock", GLock::default().wire_len(), 32),
        ("lock_statistics", LockStatistics::default().wire_len(), 112),
        ("key_data (empty key)", KeyData::default().wire_len(), 36),
        (
            "db_statistics (no keys)",
            DbStatistics::default().wire_len(),
            464,
        ),
        ("vnn_map (empty)", VnnMap::default().wire_len(), 8),
        ("node_map (empty)", NodeMap::default().wire_len(), 4),
        ("tickle_list (empty)", TickleList::default().wire_len(), 32),
        (
            "public_ip_info (no ifaces)",
            PublicIpInfo::default().wire_len(),
            40,
        ),
        ("script_list (empty)", ScriptList::default().wire_len(), 8),
        (
            "statistics_list (empty)",
            StatisticsList::default().wire_len(),
            8,
        ),
        ("rec_buffer (empty)", RecBuffer::empty(7).wire_len(), 8),
        ("rec_data (empty)", RecData::default().wire_len(), 16),
    ];
    for (name, got, want) in cases {
        assert_eq!(got, want, "{name}");
    }
    // And the encodings really have that length.
    assert_eq!(Statistics::default().to_bytes().len(), 488);
    assert_eq!(TunableList::default().to_bytes().len(), 248);
    assert_eq!(TUNABLE_NAMES.len(), 62);
}

#[test]
fn roundtrip_fixed_types() {
    let mut r = Rng::from_env("roundtrip_fixed_types");
    for _ in 0..ITERS {
        check!(SockAddr, gen_sock_addr(&mut r));
        check!(Timeval, gen_timeval(&mut r));
        check!(
            DbId,
            DbId {
                db_id: r.u32(),
                flags: r.u8()
            }
        );
        check!(NodeAndFlags, gen_node(&mut r));
        check!(PublicIp, gen_public_ip(&mut r));
        check!(Iface, gen_iface(&mut r));
        check!(Connection, gen_conn(&mut r));
        check!(
            BanState,
            BanState {
                pnn: r.u32(),
                time: r.u32()
            }
        );
        check!(
            Uptime,
            Uptime {
                current_time: gen_timeval(&mut r),
                ctdbd_start_time: gen_timeval(&mut r),
                last_recovery_started: gen_timeval(&mut r),
                last_recovery_finished: gen_timeval(&mut r),
            }
        );
        check!(
            TransDb,
            TransDb {
                db_id: r.u32(),
                tid: r.u32()
            }
        );
        check!(
            PullDb,
            PullDb {
                db_id: r.u32(),
                lmaster: r.u32()
            }
        );
        check!(
            PullDbExt,
            PullDbExt {
                db_id: r.u32(),
                lmaster: r.u32(),
                srvid: r.u64()
            }
        );
        check!(
            TraverseStart,
            TraverseStart {
                db_id: r.u32(),
                reqid: r.u32(),
                srvid: r.u64()
            }
        );
        check!(
            TraverseStartExt,
            TraverseStartExt {
                db_id: r.u32(),
                reqid: r.u32(),
                srvid: r.u64(),
                withemptyrecords: r.bool()
            }
        );
        check!(
            TraverseAll,
            TraverseAll {
                db_id: r.u32(),
                reqid: r.u32(),
                pnn: r.u32(),
                client_reqid: r.u32(),
                srvid: r.u64()
            }
        );
        check!(
            TraverseAllExt,
            TraverseAllExt {
                db_id: r.u32(),
                reqid: r.u32(),
                pnn: r.u32(),
                client_reqid: r.u32(),
                srvid: r.u64(),
                withemptyrecords: r.bool()
            }
        );
        check!(
            NodeFlagChange,
            NodeFlagChange {
                pnn: r.u32(),
                new_flags: r.u32(),
                old_flags: r.u32()
            }
        );
        check!(
            PidSrvid,
            PidSrvid {
                pid: r.i32(),
                srvid: r.u64()
            }
        );
        check!(
            DbVacuum,
            DbVacuum {
                db_id: r.u32(),
                full_vacuum_run: r.bool()
            }
        );
        check!(LtdbHeader, gen_ltdb_header(&mut r));
        check!(LatencyCounter, gen_latency(&mut r));
        check!(TunableList, gen_tunables(&mut r));
        check!(Script, gen_script(&mut r));
        check!(
            ElectionMessage,
            ElectionMessage {
                num_connected: r.u32(),
                priority_time: gen_timeval(&mut r),
                pnn: r.u32(),
                node_flags: r.u32()
            }
        );
        check!(
            SrvidMessage,
            SrvidMessage {
                pnn: r.u32(),
                srvid: r.u64()
            }
        );
        check!(
            DisableMessage,
            DisableMessage {
                pnn: r.u32(),
                srvid: r.u64(),
                timeout: r.u32()
            }
        );
        check!(Statistics, gen_statistics(&mut r));
        check!(ServerId, gen_server_id(&mut r));
        check!(
            GLock,
            GLock {
                write: r.bool(),
                sid: gen_server_id(&mut r)
            }
        );
        check!(LockStatistics, gen_locks(&mut r));
    }
}

#[test]
fn roundtrip_counted_types() {
    let mut r = Rng::from_env("roundtrip_counted_types");
    for _ in 0..ITERS {
        check!(
            VnnMap,
            VnnMap {
                generation: r.u32(),
                map: gen_vec(&mut r, 20, |r| r.u32())
            }
        );
        check!(
            DbIdMap,
            DbIdMap {
                dbs: gen_vec(&mut r, 10, |r| DbId {
                    db_id: r.u32(),
                    flags: r.u8()
                })
            }
        );
        check!(
            NodeMap,
            NodeMap {
                nodes: gen_vec(&mut r, 8, gen_node)
            }
        );
        check!(
            PublicIpList,
            PublicIpList {
                ips: gen_vec(&mut r, 8, gen_public_ip)
            }
        );
        check!(
            IfaceList,
            IfaceList {
                ifaces: gen_vec(&mut r, 6, gen_iface)
            }
        );
        check!(
            PublicIpInfo,
            PublicIpInfo {
                ip: gen_public_ip(&mut r),
                active_idx: r.u32(),
                ifaces: gen_vec(&mut r, 6, gen_iface)
            }
        );
        check!(
            ConnectionList,
            ConnectionList {
                conns: gen_vec(&mut r, 6, gen_conn)
            }
        );
        check!(
            TickleList,
            TickleList {
                addr: gen_sock_addr(&mut r),
                conns: gen_vec(&mut r, 6, gen_conn)
            }
        );
        check!(
            ScriptList,
            ScriptList {
                scripts: gen_vec(&mut r, 3, gen_script)
            }
        );
        check!(
            StatisticsList,
            StatisticsList {
                stats: gen_vec(&mut r, 3, gen_statistics)
            }
        );
        // No count on the wire: a prefix can be a shorter valid list.
        check!(
            GLockList,
            GLockList {
                locks: gen_vec(&mut r, 4, |r| GLock {
                    write: r.bool(),
                    sid: gen_server_id(r)
                })
            },
            noprefixes
        );
    }
}

#[test]
fn roundtrip_variable_types() {
    let mut r = Rng::from_env("roundtrip_variable_types");
    for _ in 0..ITERS {
        let s = r.cstr(40);
        let s2 = r.cstr(40);
        let blob = r.bytes(200);
        let key = r.bytes(60);

        // A whole-buffer string: an empty buffer is the NULL string, so
        // prefixes are not all errors; those that are not must be NULL.
        let cs = CtdbString(if r.below(4) == 0 { None } else { Some(&s) });
        check!(CtdbString, cs, noprefixes);
        let enc = cs.to_bytes();
        for n in 1..enc.len() {
            assert!(CtdbString::from_bytes(&enc[..n]).is_err());
        }

        let sn = StringN(if r.below(4) == 0 { None } else { Some(&s) });
        check!(StringN, sn);
        check!(
            Tunable,
            Tunable {
                value: r.u32(),
                name: StringN(Some(&s2))
            }
        );
        check!(
            AddrInfo,
            AddrInfo {
                addr: gen_sock_addr(&mut r),
                mask: r.u32(),
                iface: sn
            }
        );
        check!(
            NotifyData,
            NotifyData {
                srvid: r.u64(),
                data: &blob
            }
        );
        check!(
            EchoData,
            EchoData {
                timeout: r.u32(),
                data: &blob
            }
        );
        check!(
            KeyData,
            KeyData {
                db_id: r.u32(),
                header: gen_ltdb_header(&mut r),
                key: &key
            }
        );

        let names: Vec<String> = gen_vec(&mut r, 8, |r| r.ascii(1, 25));
        check!(
            VarList,
            VarList {
                names: names.iter().map(|s| s.as_str()).collect()
            }
        );

        // Ten hot keys, some empty.
        let keys: Vec<Vec<u8>> = (0..MAX_HOT_KEYS)
            .map(|_| if r.bool() { r.bytes(30) } else { Vec::new() })
            .collect();
        let mut hot = [HotKey::default(); MAX_HOT_KEYS];
        for (h, k) in hot.iter_mut().zip(&keys) {
            *h = HotKey {
                count: r.u32(),
                key: k,
            };
        }
        check!(
            DbStatistics,
            DbStatistics {
                locks: gen_locks(&mut r),
                vacuum_latency: gen_latency(&mut r),
                db_ro_delegations: r.u32(),
                db_ro_revokes: r.u32(),
                hop_count_bucket: gen_buckets(&mut r),
                num_hot_keys: r.below(MAX_HOT_KEYS + 1) as u32,
                hot_keys: hot,
            }
        );
    }
}

#[test]
fn roundtrip_records() {
    let mut r = Rng::from_env("roundtrip_records");
    for _ in 0..ITERS {
        let recs = gen_records(&mut r, 6);
        let db_id = r.u32();
        let mut b = RecBufferBuilder::new(db_id);
        for (reqid, h, k, d) in &recs {
            b.add(*reqid, h.as_ref(), k, d);
        }
        let buf = b.as_rec_buffer();
        check!(RecBuffer, buf);
        assert_eq!(b.wire_len(), buf.wire_len());
        assert_eq!(b.clone().into_wire_bytes(), buf.to_bytes());

        // Iterating a decoded buffer gives the records back, headers at the
        // front of data.
        let bytes = buf.to_bytes();
        let dec = RecBuffer::from_bytes(&bytes).unwrap();
        assert_eq!(dec.count() as usize, recs.len());
        let got: Vec<RecData<'_>> = dec.iter().collect();
        assert_eq!(got.len(), recs.len());
        for (g, (reqid, h, k, d)) in got.iter().zip(&recs) {
            assert_eq!(g.reqid, *reqid);
            assert_eq!(g.key, &k[..]);
            assert_eq!(g.header, None);
            match h {
                Some(h) => {
                    let (gh, gd) = g.split_header().unwrap();
                    assert_eq!(gh, *h);
                    assert_eq!(gd, &d[..]);
                }
                None => assert_eq!(g.data, &d[..]),
            }
        }

        // Single records without header round trip exactly.
        if let Some((reqid, _, k, d)) = recs.first() {
            check!(RecData, RecData::new(*reqid, k, d));
            // With a header, the decoded form carries it inside data.
            let h = gen_ltdb_header(&mut r);
            let with = RecData::with_header(*reqid, h, k, d);
            let enc = with.to_bytes();
            assert_eq!(enc.len(), 16 + k.len() + 24 + d.len());
            let dec = RecData::from_bytes(&enc).unwrap();
            assert_eq!(dec.split_header().unwrap(), (h, &d[..]));
        }
    }
}

#[test]
fn roundtrip_messages() {
    let mut r = Rng::from_env("roundtrip_messages");
    for _ in 0..ITERS {
        let ip = gen_sock_addr(&mut r).to_string();
        let other = r.bytes(50);
        let mut b = RecBufferBuilder::new(r.u32());
        for (reqid, h, k, d) in gen_records(&mut r, 3) {
            b.add(reqid, h.as_ref(), &k, &d);
        }
        let fc = NodeFlagChange {
            pnn: r.u32(),
            new_flags: r.u32(),
            old_flags: r.u32(),
        };
        let sm = SrvidMessage {
            pnn: r.u32(),
            srvid: r.u64(),
        };
        let dm = DisableMessage {
            pnn: r.u32(),
            srvid: r.u64(),
            timeout: r.u32(),
        };
        let msgs = vec![
            MessageData::Banning(r.u32()),
            MessageData::Election(ElectionMessage {
                num_connected: r.u32(),
                priority_time: gen_timeval(&mut r),
                pnn: r.u32(),
                node_flags: r.u32(),
            }),
            MessageData::Leader(r.u32()),
            MessageData::Reconfigure,
            MessageData::ReleaseIp(CtdbString::new(&ip)),
            MessageData::TakeIp(CtdbString::new(&ip)),
            MessageData::SetNodeFlags(fc),
            MessageData::RecdUpdateIp(gen_public_ip(&mut r)),
            MessageData::VacuumFetch(b.as_rec_buffer()),
            MessageData::DetachDatabase(r.u32()),
            MessageData::MemDump(sm),
            MessageData::GetLog,
            MessageData::ClearLog,
            MessageData::PushNodeFlags(fc),
            MessageData::ReloadNodes,
            MessageData::TakeoverRun(sm),
            MessageData::RebalanceNode(r.u32()),
            MessageData::DisableTakeoverRuns(dm),
            MessageData::DisableRecoveries(dm),
            MessageData::DisableIpCheck(r.u32()),
        ];
        for m in msgs {
            let srvid = m.srvid().unwrap();
            let bytes = m.to_bytes();
            assert_eq!(bytes.len(), m.wire_len());
            let d = MessageData::decode(srvid, &bytes).unwrap();
            assert_eq!(d, m);
            assert_eq!(d.to_bytes(), bytes);
            if !bytes.is_empty() {
                // A typed body must fill the message exactly.
                for n in 0..bytes.len() {
                    if matches!(m, MessageData::ReleaseIp(_) | MessageData::TakeIp(_)) && n == 0 {
                        continue; // empty = NULL string
                    }
                    assert!(
                        MessageData::decode(srvid, &bytes[..n]).is_err(),
                        "{m:?} {n}"
                    );
                }
            }
        }
        let client = 0xBE00_0000_0000_0000 | u64::from(r.u32());
        assert_eq!(
            MessageData::decode(client, &other).unwrap(),
            MessageData::Other(&other)
        );
    }
}

/// Random byte strings (mostly mutations of valid encodings) never panic
/// any decoder, and whatever decodes re-encodes to a decodable value.
#[test]
fn hostile_input_never_panics() {
    let mut r = Rng::from_env("hostile_input_never_panics");
    let mut b = RecBufferBuilder::new(1);
    b.add(1, Some(&LtdbHeader::default()), b"key", b"value");
    b.add(2, None, b"", b"");
    let seeds: Vec<Vec<u8>> = vec![
        NodeMap {
            nodes: vec![NodeAndFlags::default(); 2],
        }
        .to_bytes(),
        b.as_rec_buffer().to_bytes(),
        gen_statistics(&mut r).to_bytes(),
        DbStatistics::default().to_bytes(),
        VarList {
            names: vec!["A", "B"],
        }
        .to_bytes(),
        Tunable::new("EnableBans", 1).to_bytes(),
    ];
    for i in 0..5000 {
        let mut buf = seeds[i % seeds.len()].clone();
        for _ in 0..1 + r.below(4) {
            if buf.is_empty() {
                break;
            }
            let at = r.below(buf.len());
            buf[at] = match r.below(3) {
                0 => 0xff,
                1 => 0,
                _ => r.u8(),
            };
        }
        buf.truncate(r.below(buf.len() + 1).max(buf.len() / 2));
        macro_rules! try_all {
            ($($ty:ident),*) => {$(
                if let Ok(v) = $ty::from_bytes(&buf) {
                    let again = v.to_bytes();
                    assert!($ty::from_bytes(&again).is_ok(), "{}", stringify!($ty));
                }
            )*};
        }
        try_all!(
            SockAddr,
            VnnMap,
            DbIdMap,
            NodeMap,
            PublicIpList,
            IfaceList,
            PublicIpInfo,
            TickleList,
            ConnectionList,
            Statistics,
            StatisticsList,
            DbStatistics,
            RecBuffer,
            RecData,
            KeyData,
            VarList,
            Tunable,
            AddrInfo,
            StringN,
            CtdbString,
            NotifyData,
            EchoData,
            ScriptList,
            GLockList,
            TraverseStartExt,
            DbVacuum
        );
        for srvid in [srvid::VACUUM_FETCH, srvid::RELEASE_IP, srvid::ELECTION] {
            let _ = MessageData::decode(srvid, &buf);
        }
    }
}

// ---------------------------------------------------- byte layouts ---

#[test]
fn sock_addr_layout() {
    let a = SockAddr::from(SocketAddr::from(([192, 168, 1, 2], 4379)));
    let mut want = vec![2, 0, 0x11, 0x1b, 192, 168, 1, 2];
    want.resize(28, 0);
    assert_eq!(a.to_bytes(), want);
    assert_eq!(a.to_string(), "192.168.1.2");
    assert_eq!(a.to_string_with_port().unwrap(), "192.168.1.2:4379");
    assert_eq!(a.port(), 4379);

    let v6 = SockAddr::V6(SocketAddrV6::new(
        "fd00::1:2".parse().unwrap(),
        0x1234,
        0x0a0b0c0d,
        7,
    ));
    let b = v6.to_bytes();
    assert_eq!(&b[0..2], &[10, 0]);
    assert_eq!(&b[2..4], &[0x12, 0x34]);
    assert_eq!(&b[4..8], &0x0a0b0c0du32.to_ne_bytes());
    assert_eq!(&b[8..10], &[0xfd, 0x00]);
    assert_eq!(&b[20..24], &[0, 1, 0, 2]);
    assert_eq!(&b[24..28], &7u32.to_ne_bytes());
    assert_eq!(v6.to_string(), "fd00::1:2");
    assert_eq!(v6.to_string_with_port().unwrap(), "[fd00::1:2]:4660");

    assert_eq!(SockAddr::Unspec.to_bytes(), vec![0; 28]);
    // Unknown family is rejected.
    let mut bad = want.clone();
    bad[0] = 3;
    assert!(matches!(
        SockAddr::from_bytes(&bad),
        Err(ProtocolError::BadValue { value: 3, .. })
    ));
    // IPv4 trailing bytes are ignored on input, zero on output.
    let mut junk = want.clone();
    junk[20] = 9;
    assert_eq!(SockAddr::from_bytes(&junk).unwrap(), a);
}

#[test]
fn sock_addr_parse() {
    let p = |s| SockAddr::parse_ip(s).map(|a| a.to_string());
    assert_eq!(p("10.0.0.1").as_deref(), Some("10.0.0.1"));
    assert_eq!(p("::ffff:10.0.0.1").as_deref(), Some("10.0.0.1"));
    assert!(matches!(
        SockAddr::parse_ip("::ffff:10.0.0.1"),
        Some(SockAddr::V4(_))
    ));
    assert_eq!(p("[fe80::1]").as_deref(), Some("fe80::1"));
    assert_eq!(p("10.0.0"), None);
    assert_eq!(p("bogus"), None);
    let a = SockAddr::parse_with_port("10.1.2.3:4379").unwrap();
    assert_eq!(a.port(), 4379);
    let b = SockAddr::parse_with_port("[fe80::1]:22").unwrap();
    assert_eq!(b.to_string_with_port().unwrap(), "[fe80::1]:22");
    assert!(SockAddr::parse_with_port("10.1.2.3").is_none());
    assert!(SockAddr::parse_with_port("10.1.2.3:").is_none());
    assert!(a.same_ip(&SockAddr::parse_ip("10.1.2.3").unwrap()));
    assert!(!a.same(&SockAddr::parse_ip("10.1.2.3").unwrap()));
    let sa: SocketAddr = "[fe80::1%3]:99".parse().unwrap();
    assert_eq!(SocketAddr::try_from(SockAddr::from(sa)), Ok(sa));
    assert_eq!(IpAddr::try_from(SockAddr::from(sa)), Ok(sa.ip()));
    assert!(SocketAddr::try_from(SockAddr::Unspec).is_err());
    assert_eq!(
        SockAddr::from(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_socket_addr(),
        Some(SocketAddr::from(([127, 0, 0, 1], 0)))
    );
}

/// IPv6 text must match glibc `inet_ntop`, which is what upstream prints.
/// The system Python's `socket.inet_ntop` is glibc's.
#[test]
fn ipv6_text_matches_glibc_inet_ntop() {
    let mut r = Rng::from_env("ipv6_text_matches_glibc_inet_ntop");
    let mut addrs: Vec<Ipv6Addr> = vec![
        "::".parse().unwrap(),
        "::1".parse().unwrap(),
        "::1.2.3.4".parse().unwrap(),
        "::1.2.0.0".parse().unwrap(),
        "::0.0.0.5".parse().unwrap(),
        "::ffff:1.2.3.4".parse().unwrap(),
        "::ffff:0:1".parse().unwrap(),
        "1::".parse().unwrap(),
        "1:0:0:1:0:0:0:1".parse().unwrap(),
        "1:0:0:1:0:0:1:1".parse().unwrap(),
        "1:0:1:1:1:1:1:1".parse().unwrap(),
        "fe80::dead:beef".parse().unwrap(),
    ];
    for _ in 0..400 {
        let mut seg = [0u16; 8];
        for s in seg.iter_mut() {
            *s = match r.below(4) {
                0 | 1 => 0,
                2 => 0xffff,
                _ => r.u16(),
            };
        }
        addrs.push(Ipv6Addr::from(seg));
    }
    let script = "import socket,sys\n\
                  for l in sys.stdin:\n    \
                  print(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(l.strip())))\n";
    let input: String = addrs
        .iter()
        .map(|a| {
            a.octets()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                + "\n"
        })
        .collect();
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), addrs.len());
    for (a, want) in addrs.iter().zip(lines) {
        assert_eq!(SockAddr::from(*a).to_string(), want, "{:?}", a.segments());
    }
}

#[test]
fn node_map_layout() {
    let m = NodeMap {
        nodes: vec![NodeAndFlags {
            pnn: 3,
            flags: NodeAndFlags::DISCONNECTED | NodeAndFlags::BANNED,
            addr: SockAddr::from(SocketAddr::from(([10, 0, 0, 7], 4379))),
        }],
    };
    let mut want = vec![
        1, 0, 0, 0, 3, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0x11, 0x1b, 10, 0, 0, 7,
    ];
    want.resize(40, 0);
    assert_eq!(m.to_bytes(), want);
    assert_eq!(NodeMap::from_bytes(&want).unwrap(), m);
    // A count larger than the buffer can hold is rejected before allocating.
    let mut huge = want.clone();
    huge[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert!(matches!(
        NodeMap::from_bytes(&huge),
        Err(ProtocolError::Short { .. })
    ));
}

#[test]
fn tunable_list_layout() {
    let mut t = TunableList::default();
    for (i, name) in TUNABLE_NAMES.iter().enumerate() {
        assert!(t.set(name, 1000 + i as u32));
    }
    assert!(t.set("enablebans", 1)); // case-insensitive
    assert!(!t.set("NoSuchTunable", 1));
    let b = t.to_bytes();
    assert_eq!(b.len(), 248);
    assert_eq!(&b[0..4], &1000u32.to_ne_bytes()); // MaxRedirectCount
    assert_eq!(&b[4 * 17..4 * 18], &1017u32.to_ne_bytes()); // DatabaseHashSize
    assert_eq!(&b[4 * 20..4 * 21], &1u32.to_ne_bytes()); // EnableBans
    assert_eq!(&b[244..248], &1061u32.to_ne_bytes()); // AllowMixedVersions
    assert_eq!(t.database_hash_size, 1017);
    assert_eq!(t.allow_mixed_versions, 1061);
    assert_eq!(t.get("KEEPALIVEINTERVAL"), Some(1004));
    assert_eq!(TUNABLE_NAMES[12], "EventScriptTimeout");
    assert_eq!(TunableList::index_of("AllowMixedVersions"), Some(61));

    let tn = Tunable::new("EnableBans", 0).to_bytes();
    assert_eq!(tn, b"\0\0\0\0\x0b\0\0\0EnableBans\0");
}

#[test]
fn statistics_layout() {
    let s = Statistics {
        num_clients: 1,
        keepalive_packets_recv: 2,
        node: StatisticsNode {
            req_call: 3,
            req_tunnel: 4,
            ..Default::default()
        },
        client: StatisticsClient {
            req_call: 5,
            ..Default::default()
        },
        timeouts: StatisticsTimeouts {
            traverse: 6,
            ..Default::default()
        },
        reclock_ctdbd: LatencyCounter {
            num: 7,
            min: 0.5,
            ..Default::default()
        },
        reclock_recd: LatencyCounter {
            num: 8,
            ..Default::default()
        },
        locks: LockStatistics {
            num_calls: 9,
            latency: LatencyCounter {
                num: 10,
                ..Default::default()
            },
            buckets: [11; 16],
            ..Default::default()
        },
        total_calls: 12,
        last_counter: 13,
        max_hop_count: 14,
        hop_count_bucket: [15; 16],
        call_latency: LatencyCounter {
            num: 16,
            ..Default::default()
        },
        childwrite_latency: LatencyCounter {
            num: 17,
            ..Default::default()
        },
        num_recoveries: 18,
        statistics_start_time: Timeval::new(19, 20),
        statistics_current_time: Timeval::new(21, 22),
        total_ro_delegations: 23,
        total_ro_revokes: 24,
        ..Default::default()
    };
    let b = s.to_bytes();
    assert_eq!(b.len(), 488);
    let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
    let i64_at = |o: usize| i64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
    let table = [
        (0, 1),
        (32, 2),
        (36, 3),
        (68, 4),
        (72, 5),
        (96, 6),
        (104, 7),
        (136, 8),
        (168, 9),
        (184, 10),
        (216, 11),
        (276, 11),
        (280, 12),
        (300, 13),
        (304, 14),
        (308, 15),
        (368, 15),
        (376, 16),
        (408, 17),
        (440, 18),
        (480, 23),
        (484, 24),
    ];
    for (off, v) in table {
        assert_eq!(u32_at(off), v, "statistics offset {off}");
    }
    // Padding is zero.
    for off in [100, 108, 372, 444] {
        assert_eq!(u32_at(off), 0, "padding at {off}");
    }
    assert_eq!(f64::from_ne_bytes(b[112..120].try_into().unwrap()), 0.5);
    assert_eq!(i64_at(448), 19);
    assert_eq!(i64_at(456), 20);
    assert_eq!(i64_at(464), 21);
    assert_eq!(i64_at(472), 22);
    assert_eq!(Statistics::from_bytes(&b).unwrap(), s);

    // statistics_list: int32 num, pad, entries; a negative num is invalid.
    let l = StatisticsList { stats: vec![s] }.to_bytes();
    assert_eq!(l.len(), 8 + 488);
    assert_eq!(&l[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
    let mut neg = l.clone();
    neg[..4].copy_from_slice(&(-1i32).to_ne_bytes());
    assert!(matches!(
        StatisticsList::from_bytes(&neg),
        Err(ProtocolError::BadValue { .. })
    ));
}

#[test]
fn db_statistics_layout() {
    let k0 = b"hot0".to_vec();
    let k9 = b"key-nine".to_vec();
    let mut hot = [HotKey::default(); MAX_HOT_KEYS];
    hot[0] = HotKey { count: 5, key: &k0 };
    hot[9] = HotKey { count: 6, key: &k9 };
    let d = DbStatistics {
        db_ro_delegations: 1,
        db_ro_revokes: 2,
        num_hot_keys: 10,
        hot_keys: hot,
        ..Default::default()
    };
    let b = d.to_bytes();
    assert_eq!(b.len(), 464 + 4 + 8);
    let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!(u32_at(144), 1);
    assert_eq!(u32_at(148), 2);
    assert_eq!(u32_at(216), 10);
    assert_eq!(u32_at(224), 5); // hot_keys[0].count
    assert_eq!(u64_at(240), 4); // hot_keys[0] key length
    assert_eq!(u32_at(224 + 9 * 24), 6);
    assert_eq!(u64_at(224 + 9 * 24 + 16), 8);
    assert_eq!(&b[464..468], b"hot0");
    assert_eq!(&b[468..], b"key-nine");
    // A key length beyond the buffer is an error, not an over-read.
    let mut bad = b.clone();
    bad[240..248].copy_from_slice(&u64::MAX.to_ne_bytes());
    assert!(DbStatistics::from_bytes(&bad).is_err());
}

#[test]
fn record_layouts() {
    let h = LtdbHeader {
        rsn: 0x0102030405060708,
        dmaster: 2,
        reserved1: 0,
        flags: LtdbHeader::FLAG_MIGRATED_WITH_DATA,
    };
    let hb = h.to_bytes();
    assert_eq!(hb.len(), 24);
    assert_eq!(&hb[..8], &0x0102030405060708u64.to_ne_bytes());
    assert_eq!(&hb[8..12], &[2, 0, 0, 0]);
    assert_eq!(&hb[16..20], &0x10000u32.to_ne_bytes());
    assert_eq!(&hb[20..], &[0; 4]);

    let rec = RecData::new(9, b"ab", b"xyz").to_bytes();
    assert_eq!(
        rec,
        [21, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, b'a', b'b', b'x', b'y', b'z']
    );
    // length must equal 16 + keylen + datalen.
    let mut bad = rec.clone();
    bad[0] = 20;
    assert!(matches!(
        RecData::from_bytes(&bad),
        Err(ProtocolError::BadValue { .. })
    ));
    let mut bad = rec.clone();
    bad[0] = 22;
    assert!(RecData::from_bytes(&bad).is_err());

    let mut b = RecBufferBuilder::new(0x11223344);
    b.add(9, None, b"ab", b"xyz");
    b.add(1, Some(&h), b"k", b"");
    let buf = b.as_rec_buffer().to_bytes();
    assert_eq!(&buf[..8], &[0x44, 0x33, 0x22, 0x11, 2, 0, 0, 0]);
    assert_eq!(&buf[8..29], &rec[..]);
    assert_eq!(buf.len(), 8 + 21 + 16 + 1 + 24);
    assert_eq!(&buf[29 + 12..29 + 16], &[24, 0, 0, 0]); // datalen counts the header
                                                        // Reuse after clear.
    let mut b2 = b.clone();
    b2.clear();
    assert!(b2.is_empty());
    assert_eq!(b2.as_rec_buffer(), RecBuffer::empty(0x11223344));
    b2.add(9, None, b"ab", b"xyz");
    assert_eq!(b2.records_len(), 21);
    assert_eq!(&b2.into_wire_bytes()[8..], &rec[..]);
    // A count the buffer cannot hold.
    let mut bad = buf.clone();
    bad[4] = 3;
    assert!(RecBuffer::from_bytes(&bad).is_err());
    // The end-of-traverse marker.
    let end = RecData::new(0, b"", b"");
    assert!(end.is_end_marker());
    assert_eq!(
        end.to_bytes(),
        [16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );

    let kd = KeyData {
        db_id: 5,
        header: h,
        key: b"K",
    }
    .to_bytes();
    assert_eq!(kd.len(), 37);
    assert_eq!(&kd[..8], &[5, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&kd[8..32], &hb[..]);
    assert_eq!(&kd[32..], &[1, 0, 0, 0, b'K']);
}

#[test]
fn string_and_misc_layouts() {
    assert_eq!(CtdbString::new("db.tdb").to_bytes(), b"db.tdb\0");
    assert_eq!(CtdbString::NULL.to_bytes(), b"");
    assert_eq!(CtdbString::from_bytes(b"").unwrap(), CtdbString(None));
    assert_eq!(CtdbString::from_bytes(b"x\0").unwrap().as_str(), Some("x"));
    assert!(matches!(
        CtdbString::from_bytes(b"abc"),
        Err(ProtocolError::BadString { .. })
    ));
    assert!(CtdbString::from_bytes(b"a\0b\0").is_err());
    assert_eq!(StringN::new("eth0").to_bytes(), b"\x05\0\0\0eth0\0");
    assert_eq!(StringN(None).to_bytes(), b"\0\0\0\0");
    assert!(StringN::from_bytes(b"\x02\0\0\0ab").is_err());

    let v = VarList {
        names: vec!["MaxRedirectCount", "SeqnumInterval"],
    };
    // ctdbd's form, with a leading ':'.
    assert_eq!(
        v.to_bytes(),
        b"\x21\0\0\0:MaxRedirectCount:SeqnumInterval\0"
    );
    // Upstream's client-side form, without it, decodes the same.
    assert_eq!(
        VarList::from_bytes(b"\x20\0\0\0MaxRedirectCount:SeqnumInterval\0").unwrap(),
        v
    );
    assert_eq!(VarList::default().to_bytes(), b"\0\0\0\0");
    // Empty names are skipped, as strtok does.
    assert_eq!(
        VarList::from_bytes(b"\x05\0\0\0:a::\0").unwrap().names,
        vec!["a"]
    );

    let ai = AddrInfo {
        addr: SockAddr::parse_ip("10.0.0.9").unwrap(),
        mask: 24,
        iface: StringN::new("eth1"),
    }
    .to_bytes();
    assert_eq!(ai.len(), 28 + 4 + 4 + 5);
    assert_eq!(&ai[28..32], &[24, 0, 0, 0]);
    assert_eq!(&ai[32..], b"\x05\0\0\0eth1\0");

    let i = Iface::new("eth0", 1, 2);
    let ib = i.to_bytes();
    assert_eq!(&ib[..5], b"eth0\0");
    assert_eq!(&ib[18..24], &[1, 0, 2, 0, 0, 0]);
    assert_eq!(i.name(), b"eth0");
    assert_eq!(
        Iface::new("a-very-long-interface-name", 0, 0).name().len(),
        17
    );

    let ps = PidSrvid {
        pid: 0x01020304,
        srvid: 0xFE00_0000_0000_0002,
    }
    .to_bytes();
    assert_eq!(ps.len(), 12);
    assert_eq!(&ps[4..], &0xFE00_0000_0000_0002u64.to_ne_bytes());

    let dm = DisableMessage {
        pnn: 1,
        srvid: 2,
        timeout: 3,
    }
    .to_bytes();
    assert_eq!(
        dm,
        [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]
    );
    let sm = SrvidMessage { pnn: 1, srvid: 2 }.to_bytes();
    assert_eq!(sm, [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);

    let e = ElectionMessage {
        num_connected: 2,
        priority_time: Timeval::new(3, 4),
        pnn: 5,
        node_flags: 6,
    }
    .to_bytes();
    assert_eq!(&e[..8], &[2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&e[8..16], &3i64.to_ne_bytes());
    assert_eq!(&e[24..], &[5, 0, 0, 0, 6, 0, 0, 0]);

    let te = TraverseStartExt {
        db_id: 1,
        reqid: 2,
        srvid: 3,
        withemptyrecords: true,
    }
    .to_bytes();
    assert_eq!(&te[16..], &[1, 0, 0, 0, 0, 0, 0, 0]);
    let mut bad = te.clone();
    bad[16] = 2;
    assert!(matches!(
        TraverseStartExt::from_bytes(&bad),
        Err(ProtocolError::BadValue { value: 2, .. })
    ));
    assert_eq!(
        DbVacuum {
            db_id: 7,
            full_vacuum_run: true
        }
        .to_bytes(),
        [7, 0, 0, 0, 1]
    );
    assert_eq!(
        DbId {
            db_id: 0xaabbccdd,
            flags: DB_FLAGS_PERSISTENT | DB_FLAGS_REPLICATED
        }
        .to_bytes(),
        [0xdd, 0xcc, 0xbb, 0xaa, 9, 0, 0, 0]
    );
    let vm = VnnMap {
        generation: 7,
        map: vec![0, 1],
    }
    .to_bytes();
    assert_eq!(vm, [7, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
    let tl = TickleList {
        addr: SockAddr::Unspec,
        conns: vec![Connection::default()],
    }
    .to_bytes();
    assert_eq!(tl.len(), 28 + 4 + 56);
    assert_eq!(&tl[28..32], &[1, 0, 0, 0]);
    let pii = PublicIpInfo {
        ip: PublicIp {
            pnn: 1,
            addr: SockAddr::Unspec,
        },
        active_idx: 2,
        ifaces: vec![Iface::new("e", 1, 0)],
    }
    .to_bytes();
    assert_eq!(pii.len(), 40 + 24);
    assert_eq!(&pii[32..40], &[2, 0, 0, 0, 1, 0, 0, 0]);
    let sl = ScriptList {
        scripts: vec![Script::default()],
    }
    .to_bytes();
    assert_eq!(sl.len(), 8 + 584);
    assert_eq!(
        NotifyData {
            srvid: 1,
            data: b"ab"
        }
        .to_bytes(),
        [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, b'a', b'b']
    );
    assert_eq!(
        EchoData {
            timeout: 1,
            data: b"ab"
        }
        .to_bytes(),
        [1, 0, 0, 0, 2, 0, 0, 0, b'a', b'b']
    );
}

#[test]
fn tunable_defaults_and_names() {
    let d = TunableList::defaults();
    assert_eq!(d.database_hash_size, 100001);
    assert_eq!(d.keepalive_interval, 5);
    assert_eq!(d.control_timeout, 60);
    assert_eq!(d.recover_timeout, 30);
    assert_eq!(d.enable_bans, 1);
    assert_eq!(d.pulldb_preallocation_size, 10 * 1024 * 1024);
    assert_eq!(d.ip_alloc_algorithm, 2);
    assert_eq!(d.get("QueueBufferSize"), Some(1024));
    // Every table entry names a wire field, each field exactly once.
    let mut seen = [false; TUNABLE_COUNT];
    for t in &TUNABLE_TABLE {
        let i = TunableList::index_of(t.name).unwrap();
        assert!(!seen[i], "{} twice", t.name);
        seen[i] = true;
        assert_eq!(d.to_array()[i], t.default, "{}", t.name);
    }
    assert!(TunableInfo::find("vacuumlimit").unwrap().obsolete);
    assert!(!TunableInfo::find("VacuumInterval").unwrap().obsolete);
    let names = TunableList::names();
    assert_eq!(names.names.len(), 62 - 13);
    assert_eq!(names.names[0], "SeqnumInterval");
    assert!(!names.names.contains(&"LCP2PublicIPs"));
    // Table order, not wire order: VacuumFastPathCount before MaxQueueDropMsg.
    let pos = |n: &str| names.names.iter().position(|x| *x == n).unwrap();
    assert!(pos("VacuumFastPathCount") < pos("MaxQueueDropMsg"));
    let enc = names.to_bytes();
    assert_eq!(VarList::from_bytes(&enc).unwrap(), names);
}

#[test]
fn lenient_string_like_upstream() {
    assert_eq!(CtdbString::from_bytes_lenient(b""), CtdbString(None));
    assert_eq!(
        CtdbString::from_bytes_lenient(b"no nul").as_str(),
        Some("no nul")
    );
    assert_eq!(
        CtdbString::from_bytes_lenient(b"a\0b\0").as_str(),
        Some("a")
    );
    assert_eq!(CtdbString::from_bytes_lenient(b"x\0").as_str(), Some("x"));
}

#[test]
fn connection_text() {
    let c = Connection::parse("10.0.0.1:445 10.0.0.99:40000", false).unwrap();
    assert_eq!(c.server().to_string_with_port().unwrap(), "10.0.0.1:445");
    assert_eq!(c.client().port(), 40000);
    assert_eq!(c.to_text(false).unwrap(), "10.0.0.1:445 10.0.0.99:40000");
    assert_eq!(c.to_text(true).unwrap(), "10.0.0.99:40000 10.0.0.1:445");
    let d = Connection::parse("10.0.0.99:40000\t10.0.0.1:445", true).unwrap();
    assert_eq!(c, d);
    let v6 = Connection::parse("[fd00::1]:445 [fd00::2]:1", false).unwrap();
    assert_eq!(v6.to_text(false).unwrap(), "[fd00::1]:445 [fd00::2]:1");
    assert!(Connection::parse("10.0.0.1:445 [fd00::2]:1", false).is_none());
    assert!(Connection::parse("10.0.0.1:445", false).is_none());
    assert!(Connection::parse("10.0.0.1 10.0.0.2", false).is_none());
    assert!(Connection::default().to_text(false).is_none());
}

/// Encoding and decoding a large record buffer: correctness of every
/// record, and the throughput printed for the record (not asserted).
#[test]
fn large_rec_buffer() {
    let mut r = Rng::from_env("large_rec_buffer");
    let n = 100_000;
    let h = gen_ltdb_header(&mut r);
    let value = r.bytes(100);
    let start = std::time::Instant::now();
    let mut b = RecBufferBuilder::new(42);
    for i in 0..n {
        let key = format!("key-{i:08}");
        b.add(i, Some(&h), key.as_bytes(), &value);
    }
    let bytes = b.into_wire_bytes();
    let enc = start.elapsed();
    let start = std::time::Instant::now();
    let dec = RecBuffer::from_bytes(&bytes).unwrap();
    let mut count = 0u32;
    for (i, rec) in dec.iter().enumerate() {
        assert_eq!(rec.reqid, i as u32);
        assert_eq!(rec.key, format!("key-{i:08}").as_bytes());
        let (gh, gv) = rec.split_header().unwrap();
        assert_eq!(gh, h);
        assert_eq!(gv, &value[..]);
        count += 1;
    }
    let decd = start.elapsed();
    assert_eq!(count, n);
    println!(
        "{} records, {} bytes: encode {:?} ({:.0} MB/s), decode+walk {:?} ({:.0} MB/s)",
        n,
        bytes.len(),
        enc,
        bytes.len() as f64 / enc.as_secs_f64() / 1e6,
        decd,
        bytes.len() as f64 / decd.as_secs_f64() / 1e6
    );
}

/// The file form of record buffers, checked against the real `ctdb` tool:
/// `ctdb dumpdbbackup` (no daemon needed) reads a backup file made of a
/// `struct db_header` and buffers in `ctdb_rec_buffer_write` form, splits
/// the ltdb header off each record's data and prints every field.
#[test]
fn backup_file_read_by_ctdb_dumpdbbackup() {
    let mut r = Rng::from_env("backup_file_read_by_ctdb_dumpdbbackup");
    let dir = std::env::temp_dir().join(format!(
        "ctdb-protocol-types-{}-{}",
        std::process::id(),
        r.u32()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("test.bak");

    let nbuf = 3;
    let db_id = r.u32();
    let mut file = Vec::new();
    // struct db_header: version 3, timestamp, flags, nbuf, nrec (all
    // 64-bit), name[64].
    let mut name = [0u8; 64];
    name[..8].copy_from_slice(b"test.tdb");
    let mut expect = String::from("Dumping database test.tdb from backup @ 1970/01/01 00:00:00\n");
    let mut bufs = Vec::new();
    let mut nrec = 0u64;
    for _ in 0..nbuf {
        let mut b = RecBufferBuilder::new(db_id);
        for _ in 0..r.below(20) {
            let mut h = gen_ltdb_header(&mut r);
            h.flags = 0;
            for bit in [
                LtdbHeader::FLAG_MIGRATED_WITH_DATA,
                LtdbHeader::FLAG_VACUUM_MIGRATED,
                LtdbHeader::FLAG_AUTOMATIC,
                LtdbHeader::RO_HAVE_DELEGATIONS,
                LtdbHeader::RO_HAVE_READONLY,
                LtdbHeader::RO_REVOKING_READONLY,
                LtdbHeader::RO_REVOKE_COMPLETE,
            ] {
                if r.below(3) == 0 {
                    h.flags |= bit;
                }
            }
            let key = r.bytes(20);
            let data = r.bytes(60);
            b.add(r.u32(), Some(&h), &key, &data);
            expect += &ctdb_dump_record(&key, &h, &data);
            nrec += 1;
        }
        bufs.push(b);
    }
    expect += &format!("Dumped {nrec} record(s)\n");
    for v in [3u64, 0, 0, nbuf as u64, nrec] {
        file.extend_from_slice(&v.to_ne_bytes());
    }
    file.extend_from_slice(&name);
    for b in &bufs {
        b.as_rec_buffer().push_file(&mut file);
    }
    std::fs::write(&path, &file).unwrap();

    // Our reader agrees with our writer.
    let mut rd = ctdb_protocol::Reader::new(&file[104..]);
    for b in &bufs {
        assert_eq!(RecBuffer::pull_file(&mut rd).unwrap(), b.as_rec_buffer());
    }
    assert!(rd.is_empty());

    let out = std::process::Command::new("/usr/bin/ctdb")
        .arg("dumpdbbackup")
        .arg(&path)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .output()
        .expect("run /usr/bin/ctdb");
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ctdb dumpdbbackup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, expect);
}

// ------------------------------------------- real ctdbd golden replies ---
//
// `protocol/tests/golden/*.txt` hold every packet between Debian's `ctdb`
// CLI and Debian's ctdbd 4.17 together with what the CLI printed. Decoding
// the daemon's control replies with our types must give the values the
// real CLI printed from the same bytes.

struct Golden {
    out: Vec<String>,
    /// (from_cli, connection, packet bytes)
    packets: Vec<(bool, u32, Vec<u8>)>,
}

fn golden(name: &str) -> Golden {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut g = Golden {
        out: Vec::new(),
        packets: Vec::new(),
    };
    for line in text.lines() {
        if let Some(o) = line.strip_prefix("out|") {
            g.out.push(o.to_string());
        } else if line.starts_with("> ") || line.starts_with("< ") {
            let mut w = line.split(' ');
            let dir = w.next().unwrap() == ">";
            let conn: u32 = w.next().unwrap().parse().unwrap();
            let hex = w.next().unwrap();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            g.packets.push((dir, conn, bytes));
        }
    }
    g
}

/// How the CLI prints a duration in seconds: `(ddd hh:mm:ss)`.
fn elapsed_text(secs: i64) -> String {
    format!(
        "({:03} {:02}:{:02}:{:02})",
        secs / 86400,
        (secs % 86400) / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

impl Golden {
    /// Every (request data, reply data) of the given control opcode, paired
    /// by connection and reqid; only replies with status 0.
    fn controls(&self, opcode: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        const REQ_CONTROL: u32 = 7;
        const REPLY_CONTROL: u32 = 8;
        let mut v = Vec::new();
        for (dir, conn, req) in &self.packets {
            if !*dir || le32(req, 16) != REQ_CONTROL || le32(req, 32) != opcode {
                continue;
            }
            let reqid = le32(req, 28);
            let reply = self.packets.iter().find(|(d, c, p)| {
                !*d && c == conn && le32(p, 16) == REPLY_CONTROL && le32(p, 28) == reqid
            });
            let Some((_, _, rep)) = reply else { continue };
            if le32(rep, 32) != 0 {
                continue;
            }
            let in_len = le32(req, 56) as usize;
            let out_len = le32(rep, 36) as usize;
            v.push((
                req[60..60 + in_len].to_vec(),
                rep[44..44 + out_len].to_vec(),
            ));
        }
        v
    }

    fn one_reply(&self, opcode: u32) -> Vec<u8> {
        let c = self.controls(opcode);
        assert!(!c.is_empty(), "no reply to control {opcode}");
        c[0].1.clone()
    }

    /// The value printed after `label` on the line that starts with it.
    fn printed(&self, label: &str) -> String {
        self.out
            .iter()
            .find_map(|l| {
                let t = l.trim_start();
                t.strip_prefix(label)
                    .filter(|rest| rest.starts_with(' '))
                    .map(|rest| rest.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no output line for {label}"))
    }
}

#[test]
fn golden_statistics_match_cli() {
    let g = golden("statistics.txt");
    let data = g.one_reply(1); // STATISTICS
    assert_eq!(data.len(), 488);
    let s = Statistics::from_bytes(&data).unwrap();
    assert_eq!(s.to_bytes(), data);
    let p = |l: &str| g.printed(l).parse::<u32>().unwrap();
    assert_eq!(s.num_clients, p("num_clients"));
    assert_eq!(s.frozen, p("frozen"));
    assert_eq!(s.recovering, p("recovering"));
    assert_eq!(s.num_recoveries, p("num_recoveries"));
    assert_eq!(s.client_packets_sent, p("client_packets_sent"));
    assert_eq!(s.client_packets_recv, p("client_packets_recv"));
    assert_eq!(s.node_packets_sent, p("node_packets_sent"));
    assert_eq!(s.node_packets_recv, p("node_packets_recv"));
    assert_eq!(s.keepalive_packets_sent, p("keepalive_packets_sent"));
    assert_eq!(s.keepalive_packets_recv, p("keepalive_packets_recv"));
    assert_eq!(s.memory_used, p("memory_used"));
    assert_eq!(s.max_hop_count, p("max_hop_count"));
    assert_eq!(s.total_calls, p("total_calls"));
    assert_eq!(s.total_ro_revokes, p("total_ro_revokes"));
    // The node/client blocks print the same labels; take them in order.
    let block = |start: &str, n: usize| -> Vec<u32> {
        let i = g.out.iter().position(|l| l.trim() == start).unwrap();
        g.out[i + 1..i + 1 + n]
            .iter()
            .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
            .collect()
    };
    let n = s.node;
    assert_eq!(
        block("node", 9),
        vec![
            n.req_call,
            n.reply_call,
            n.req_dmaster,
            n.reply_dmaster,
            n.reply_error,
            n.req_message,
            n.req_control,
            n.reply_control,
            n.req_tunnel
        ]
    );
    let c = s.client;
    assert_eq!(
        block("client", 4),
        vec![c.req_call, c.req_message, c.req_control, c.req_tunnel]
    );
    // The counters are not all zero, so this compares real numbers.
    assert!(s.client_packets_sent > 0 && s.node.req_control > 0);
    // Start/current times: the CLI prints the difference as (ddd hh:mm:ss).
    let elapsed = s.statistics_current_time.tv_sec - s.statistics_start_time.tv_sec;
    let line = &g.out[2];
    assert!(line.contains(&elapsed_text(elapsed)), "{line}");
}

#[test]
fn golden_nodemap_vnnmap_uptime_match_cli() {
    let g = golden("status.txt");
    let nm = g.one_reply(91); // GET_NODEMAP
    let m = NodeMap::from_bytes(&nm).unwrap();
    assert_eq!(m.to_bytes(), nm);
    assert!(g.out[0].ends_with(&format!(":{}", m.nodes.len())));
    for node in &m.nodes {
        let line = g
            .out
            .iter()
            .find(|l| l.starts_with(&format!("pnn:{} ", node.pnn)))
            .unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[1], node.addr.to_string());
        assert_eq!(node.addr.port(), 4379);
        assert_eq!(words[2] == "OK", node.flags == 0);
    }
    let vm = VnnMap::from_bytes(&g.one_reply(5)).unwrap(); // GETVNNMAP
    assert!(g.out.contains(&format!("Generation:{}", vm.generation)));
    assert!(g.out.contains(&format!("Size:{}", vm.map.len())));
    for (h, l) in vm.map.iter().enumerate() {
        assert!(g.out.contains(&format!("hash:{h} lmaster:{l}")));
    }

    let g = golden("uptime.txt");
    let data = g.one_reply(69); // UPTIME
    let u = Uptime::from_bytes(&data).unwrap();
    assert_eq!(u.to_bytes(), data);
    let dur = (u.last_recovery_finished.tv_sec - u.last_recovery_started.tv_sec) as f64
        + (u.last_recovery_finished.tv_usec - u.last_recovery_started.tv_usec) as f64 / 1e6;
    assert!(
        g.out.contains(&format!(
            "Duration of last recovery/failover: {dur:.6} seconds"
        )),
        "{dur}"
    );
    let since = u.current_time.tv_sec - u.ctdbd_start_time.tv_sec;
    assert!(g.out[1].contains(&elapsed_text(since)), "{}", g.out[1]);
}

#[test]
fn golden_dbmap_and_strings_match_cli() {
    let g = golden("getdbmap.txt");
    let data = g.one_reply(9); // GET_DBMAP
    let m = DbIdMap::from_bytes(&data).unwrap();
    assert_eq!(m.to_bytes(), data);
    assert!(g
        .out
        .contains(&format!("Number of databases:{}", m.dbs.len())));
    // GET_DBNAME / GETDBPATH: u32 db_id in, string out.
    let names: Vec<(u32, String)> = g
        .controls(25)
        .iter()
        .map(|(i, o)| {
            let s = CtdbString::from_bytes(o).unwrap();
            assert_eq!(s.to_bytes(), *o);
            (u32::from_bytes(i).unwrap(), s.as_str().unwrap().to_string())
        })
        .collect();
    let paths: Vec<(u32, String)> = g
        .controls(4)
        .iter()
        .map(|(i, o)| {
            (
                u32::from_bytes(i).unwrap(),
                CtdbString::from_bytes(o).unwrap().to_string_lossy(),
            )
        })
        .collect();
    for db in &m.dbs {
        let name = &names.iter().find(|(id, _)| *id == db.db_id).unwrap().1;
        let path = &paths.iter().find(|(id, _)| *id == db.db_id).unwrap().1;
        let mut want = format!("dbid:0x{:08x} name:{name} path:{path}", db.db_id);
        if db.flags & DB_FLAGS_PERSISTENT != 0 {
            want += " PERSISTENT";
        }
        if db.flags & DB_FLAGS_REPLICATED != 0 {
            want += " REPLICATED";
        }
        assert!(g.out.contains(&want), "{want}");
    }
    assert!(m.dbs.iter().any(|d| d.flags & DB_FLAGS_PERSISTENT != 0));
}

#[test]
fn golden_tunables_match_cli() {
    let g = golden("listvars.txt");
    // LIST_TUNABLES: ctdbd sends ":Name:Name..." with a leading colon.
    let data = g.one_reply(50);
    assert_eq!(data[4], b':');
    let vl = VarList::from_bytes(&data).unwrap();
    assert_eq!(vl, TunableList::names());
    let printed: Vec<(String, u32)> = g
        .out
        .iter()
        .map(|l| {
            let (n, v) = l.split_once('=').unwrap();
            (n.trim().to_string(), v.trim().parse().unwrap())
        })
        .collect();
    assert_eq!(
        printed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        vl.names
    );
    // GET_TUNABLE: stringn name in, u32 out; values are upstream's
    // defaults except those a recorded `ctdb setvar` changed.
    let defaults = TunableList::defaults();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut changed = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("cmd: ctdb setvar ") {
                changed.push(rest.split_whitespace().next().unwrap().to_string());
            }
        }
    }
    let gets = g.controls(49);
    assert_eq!(gets.len(), vl.names.len());
    for (input, output) in gets {
        let name = StringN::from_bytes(&input).unwrap();
        assert_eq!(name.to_bytes(), input);
        let name = name.as_str().unwrap();
        let value = u32::from_bytes(&output).unwrap();
        let (_, shown) = printed.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(value, *shown);
        if !changed.iter().any(|c| c.eq_ignore_ascii_case(name)) {
            assert_eq!(Some(value), defaults.get(name), "{name}");
        }
    }
}

#[test]
fn golden_db_statistics_match_cli() {
    let g = golden("dbstatistics.txt");
    let data = g.one_reply(132); // GET_DB_STATISTICS
    let s = DbStatistics::from_bytes(&data).unwrap();
    assert_eq!(s.num_hot_keys as usize, MAX_HOT_KEYS);
    assert_eq!(g.printed("Num Hot Keys:"), "10");
    assert_eq!(
        g.printed("db_ro_delegations"),
        s.db_ro_delegations.to_string()
    );
    assert_eq!(g.printed("num_calls"), s.locks.num_calls.to_string());
    // ctdbd fills the pointer slots with real pointers; we send 0, so only
    // compare the bytes outside those slots.
    let ours = s.to_bytes();
    assert_eq!(ours.len(), data.len());
    let mut a = ours;
    let mut b = data;
    for i in 0..MAX_HOT_KEYS {
        let p = 224 + 24 * i + 8;
        a[p..p + 8].fill(0);
        b[p..p + 8].fill(0);
    }
    assert_eq!(a, b);
}

/// One record as `ctdb catdb` / `ctdb dumpdbbackup` print it.
fn ctdb_dump_record(key: &[u8], h: &LtdbHeader, data: &[u8]) -> String {
    let show = |name: &str, b: &[u8]| {
        let mut s = format!("{name}({}) = \"", b.len());
        for &c in b {
            if (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\' {
                s.push(c as char);
            } else {
                s.push_str(&format!("\\{c:02X}"));
            }
        }
        s + "\"\n"
    };
    let flag_names = [
        (LtdbHeader::FLAG_MIGRATED_WITH_DATA, "MIGRATED_WITH_DATA"),
        (LtdbHeader::FLAG_VACUUM_MIGRATED, "VACUUM_MIGRATED"),
        (LtdbHeader::FLAG_AUTOMATIC, "AUTOMATIC"),
        (LtdbHeader::RO_HAVE_DELEGATIONS, "RO_HAVE_DELEGATIONS"),
        (LtdbHeader::RO_HAVE_READONLY, "RO_HAVE_READONLY"),
        (LtdbHeader::RO_REVOKING_READONLY, "RO_REVOKING_READONLY"),
        (LtdbHeader::RO_REVOKE_COMPLETE, "RO_REVOKE_COMPLETE"),
    ];
    let mut s = show("key", key);
    s += &format!(
        "dmaster: {}\nrsn: {}\nflags: 0x{:08x}",
        h.dmaster, h.rsn, h.flags
    );
    for (bit, n) in flag_names {
        if h.flags & bit != 0 {
            s += " ";
            s += n;
        }
    }
    s += "\n";
    s += &show("data", data);
    s + "\n"
}

/// Traverse records arrive as REQ_MESSAGEs whose payload is one rec_data
/// with the ltdb header in front of the value; an empty record ends it.
#[test]
fn golden_catdb_traverse_records_match_cli() {
    const REQ_MESSAGE: u32 = 5;
    for file in ["catdb-volatile.txt", "catdb-persistent.txt"] {
        let g = golden(file);
        let mut text = String::new();
        let mut records = 0;
        let mut ended = false;
        for (from_cli, _, p) in &g.packets {
            if *from_cli || le32(p, 16) != REQ_MESSAGE {
                continue;
            }
            let srvid = u64::from_le_bytes(p[32..40].try_into().unwrap());
            let datalen = le32(p, 40) as usize;
            let payload = &p[44..44 + datalen];
            if srvid == srvid::LEADER {
                assert!(matches!(
                    MessageData::decode(srvid, payload).unwrap(),
                    MessageData::Leader(0)
                ));
                continue;
            }
            let MessageData::Other(body) = MessageData::decode(srvid, payload).unwrap() else {
                panic!("traverse srvid {srvid:#x} is well-known");
            };
            let rec = RecData::from_bytes(body).unwrap();
            assert_eq!(rec.to_bytes(), body);
            assert!(!ended, "record after the end marker");
            if rec.is_end_marker() {
                ended = true;
                continue;
            }
            let (h, value) = rec.split_header().unwrap();
            // The client library drops records that are only a header
            // (deleted records ctdbd still traverses).
            if value.is_empty() {
                continue;
            }
            text += &ctdb_dump_record(rec.key, &h, value);
            records += 1;
        }
        assert!(ended, "{file}: no end marker");
        assert!(records > 0);
        text += &format!("Dumped {records} records\n");
        let mut printed = g.out.join("\n");
        printed.push('\n');
        assert_eq!(text, printed, "{file}");
    }
}

/// `ctdb ptrans` commits with TRANS3_COMMIT: a rec_buffer whose records
/// carry an ltdb header and the new value for each key read from stdin.
#[test]
fn golden_trans3_commit_rec_buffer() {
    let g = golden("ptrans.txt");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ptrans.txt"),
    )
    .unwrap();
    let input: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("in|"))
        .map(|l| {
            let w: Vec<&str> = l.split('"').collect();
            (w[1].to_string(), w[3].to_string())
        })
        .collect();
    assert!(!input.is_empty());
    let commits = g.controls(119);
    assert_eq!(commits.len(), 1);
    let data = &commits[0].0;
    let buf = RecBuffer::from_bytes(data).unwrap();
    assert_eq!(buf.to_bytes(), *data);
    let recs: Vec<RecData<'_>> = buf.iter().collect();
    for (k, v) in &input {
        let r = recs.iter().find(|r| r.key == k.as_bytes()).unwrap();
        let (_, value) = r.split_header().unwrap();
        assert_eq!(value, v.as_bytes());
    }
}

/// Purely random buffers of every length up to 600 bytes, through every
/// decoder: no panic, and anything accepted re-encodes to the same bytes
/// when the type's encoding is canonical.
#[test]
fn random_bytes_never_panic() {
    let mut r = Rng::from_env("random_bytes_never_panic");
    let srvids = [
        srvid::BANNING,
        srvid::ELECTION,
        srvid::LEADER,
        srvid::RECONFIGURE,
        srvid::RELEASE_IP,
        srvid::TAKE_IP,
        srvid::SET_NODE_FLAGS,
        srvid::RECD_UPDATE_IP,
        srvid::VACUUM_FETCH,
        srvid::DETACH_DATABASE,
        srvid::MEM_DUMP,
        srvid::PUSH_NODE_FLAGS,
        srvid::TAKEOVER_RUN,
        srvid::REBALANCE_NODE,
        srvid::DISABLE_TAKEOVER_RUNS,
        srvid::DISABLE_RECOVERIES,
        srvid::DISABLE_IP_CHECK,
    ];
    let (mut exact_ok, mut any_ok) = (0usize, 0usize);
    for i in 0..20_000 {
        let len = i % 601;
        // Small values make counts and lengths plausible more often.
        let buf: Vec<u8> = (0..len)
            .map(|_| if r.below(4) == 0 { r.u8() } else { r.u8() % 4 })
            .collect();
        macro_rules! exact {
            ($($ty:ident),*) => {$(
                if let Ok(v) = $ty::from_bytes(&buf) {
                    assert_eq!(v.to_bytes(), buf, "{}", stringify!($ty));
                    exact_ok += 1;
                }
            )*};
        }
        // Types whose decoding keeps every byte (no padding, no ignored
        // fields) must reproduce the input exactly.
        exact!(
            VnnMap,
            NodeFlagChange,
            BanState,
            TransDb,
            PullDb,
            PullDbExt,
            TraverseStart,
            TraverseAll,
            PidSrvid,
            DbVacuum,
            Uptime,
            Timeval,
            ServerId,
            TunableList,
            StringN,
            CtdbString,
            Tunable,
            NotifyData,
            EchoData,
            RecData,
            RecBuffer,
            Iface,
            IfaceList
        );
        macro_rules! any {
            ($($ty:ident),*) => {$(
                if let Ok(v) = $ty::from_bytes(&buf) {
                    let again = v.to_bytes();
                    assert_eq!(again.len(), buf.len(), "{}", stringify!($ty));
                    assert_eq!($ty::from_bytes(&again).unwrap(), v, "{}", stringify!($ty));
                    any_ok += 1;
                }
            )*};
        }
        // Types with padding or ignored bytes: same length, same value.
        any!(
            SockAddr,
            DbId,
            DbIdMap,
            NodeAndFlags,
            NodeMap,
            PublicIp,
            PublicIpList,
            Connection,
            ConnectionList,
            TickleList,
            PublicIpInfo,
            AddrInfo,
            KeyData,
            LtdbHeader,
            TraverseStartExt,
            TraverseAllExt,
            ElectionMessage,
            SrvidMessage,
            DisableMessage,
            Script,
            ScriptList,
            GLock,
            GLockList
        );
        // Floats: NaN payloads make value comparison meaningless; just
        // decode and re-encode.
        for res in [
            Statistics::from_bytes(&buf).map(|v| v.to_bytes()),
            StatisticsList::from_bytes(&buf).map(|v| v.to_bytes()),
            LatencyCounter::from_bytes(&buf).map(|v| v.to_bytes()),
            DbStatistics::from_bytes(&buf).map(|v| v.to_bytes()),
        ]
        .into_iter()
        .flatten()
        {
            assert_eq!(res.len(), buf.len());
        }
        if let Ok(v) = VarList::from_bytes(&buf) {
            assert_eq!(VarList::from_bytes(&v.to_bytes()).unwrap(), v);
        }
        let _ = RecBuffer::pull_file(&mut ctdb_protocol::Reader::new(&buf));
        for s in srvids {
            if let Ok(m) = MessageData::decode(s, &buf) {
                assert_eq!(MessageData::decode(s, &m.to_bytes()).unwrap(), m);
            }
        }
    }
    // The random inputs do reach the decoders' success paths.
    println!("accepted: {exact_ok} exact, {any_ok} canonicalised");
    assert!(exact_ok > 100 && any_ok > 100, "{exact_ok} {any_ok}");
}

/// Every control payload and message body in the recordings whose type is
/// one of ours decodes, and re-encodes to exactly the bytes ctdbd or the
/// CLI sent.
#[test]
fn golden_every_typed_payload_reencodes() {
    const REQ_MESSAGE: u32 = 5;
    const REQ_CONTROL: u32 = 7;
    const REPLY_CONTROL: u32 = 8;
    fn check<'a, T: Wire<'a> + std::fmt::Debug>(what: String, data: &'a [u8]) -> usize {
        match T::from_bytes(data) {
            Ok(v) => {
                let again = v.to_bytes();
                if again != data {
                    let at = again
                        .iter()
                        .zip(data)
                        .position(|(a, b)| a != b)
                        .unwrap_or(again.len().min(data.len()));
                    panic!(
                        "{what}: re-encoding differs at byte {at} of {} (ours {})",
                        data.len(),
                        again.len()
                    );
                }
                1
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    files.sort();
    assert!(files.len() > 30);
    let mut checked = 0;
    for f in &files {
        let g = golden(f);
        let mut opcode_of = std::collections::HashMap::new();
        for (from_cli, conn, p) in &g.packets {
            let op = le32(p, 16);
            if op == REQ_MESSAGE {
                let srvid = u64::from_le_bytes(p[32..40].try_into().unwrap());
                let body = &p[44..44 + le32(p, 40) as usize];
                let m = MessageData::decode(srvid, body)
                    .unwrap_or_else(|e| panic!("{f}: message {srvid:#x}: {e}"));
                if m.srvid().is_some() {
                    assert_eq!(m.to_bytes(), body, "{f}: {m:?}");
                    checked += 1;
                }
                continue;
            }
            if op == REQ_CONTROL && *from_cli {
                let opcode = le32(p, 32);
                opcode_of.insert((*conn, le32(p, 28)), opcode);
                let d = &p[60..60 + le32(p, 56) as usize];
                let w = format!("{f}: control {opcode} input");
                checked += match opcode {
                    6 => check::<VnnMap>(w, d),
                    18 | 61 | 150 => check::<CtdbString>(w, d),
                    20 | 97 => check::<TraverseStart>(w, d),
                    21 => check::<TraverseAll>(w, d),
                    22 => check::<RecData>(w, d),
                    44..=46 | 126 => check::<Connection>(w, d),
                    48 => check::<Tunable>(w, d),
                    49 => check::<StringN>(w, d),
                    52 => check::<NodeFlagChange>(w, d),
                    55 | 123 => check::<SockAddr>(w, d),
                    56 => check::<TickleList>(w, d),
                    63 | 74 | 119 | 154 => check::<RecBuffer>(w, d),
                    64 | 77 | 78 => check::<AddrInfo>(w, d),
                    67 | 143 | 144 => check::<TransDb>(w, d),
                    88 | 89 => check::<PublicIp>(w, d),
                    109 => check::<BanState>(w, d),
                    114 => check::<NotifyData>(w, d),
                    125 => check::<Iface>(w, d),
                    128 => check::<KeyData>(w, d),
                    131 => check::<TraverseStartExt>(w, d),
                    135 => check::<TraverseAllExt>(w, d),
                    146 | 147 => check::<PullDbExt>(w, d),
                    151 => check::<PidSrvid>(w, d),
                    155 => check::<DbVacuum>(w, d),
                    156 => check::<EchoData>(w, d),
                    _ => 0,
                };
            } else if op == REPLY_CONTROL && !*from_cli {
                let Some(&opcode) = opcode_of.get(&(*conn, le32(p, 28))) else {
                    continue;
                };
                if le32(p, 32) != 0 {
                    continue;
                }
                let d = &p[44..44 + le32(p, 36) as usize];
                let w = format!("{f}: control {opcode} output");
                checked += match opcode {
                    1 => check::<Statistics>(w, d),
                    4 | 25 | 99 | 122 => check::<CtdbString>(w, d),
                    5 => check::<VnnMap>(w, d),
                    9 => check::<DbIdMap>(w, d),
                    50 => check::<VarList>(w, d),
                    53 => check::<TunableList>(w, d),
                    55 => check::<TickleList>(w, d),
                    69 => check::<Uptime>(w, d),
                    74 => check::<RecBuffer>(w, d),
                    90 => check::<PublicIpList>(w, d),
                    91 | 140 => check::<NodeMap>(w, d),
                    110 => check::<BanState>(w, d),
                    123 => check::<PublicIpInfo>(w, d),
                    124 => check::<IfaceList>(w, d),
                    127 => check::<StatisticsList>(w, d),
                    132 => check::<DbStatistics>(w, d),
                    156 => check::<EchoData>(w, d),
                    _ => 0,
                };
            }
        }
    }
    println!("{checked} typed payloads re-encoded identically");
    assert!(checked > 100, "{checked}");
}
