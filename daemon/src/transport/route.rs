//! Which core handles a packet that arrived from another node.
//!
//! Why a function of its own: a connection is read by whichever core
//! accepted it (SO_REUSEPORT spreads connections over the cores), but a
//! record may only be touched by the data core that owns its hash chain.
//! So every reader asks [`route`] where a packet goes and hands it over
//! through the transport's cross-core channels when it is not its own.
//!
//! * REQ_CALL, REQ_DMASTER, REPLY_DMASTER carry a database id and a key:
//!   they go to the shard owning the key's chain ([`ShardMap::shard_of`]).
//!   Which *node* is lmaster of a key (jenkins over the vnn map) is decided
//!   by the sender; inside a node, the key decides the shard.
//! * REPLY_CALL and REPLY_ERROR answer a call this node sent: they go back
//!   to the core that sent it, found from the request id
//!   ([`ShardMap::reply_dest`]; by default the top byte of the reqid is the
//!   sending shard + 1, 0 meaning the control core).
//! * Everything else (controls, messages, keepalives, tunnels) goes to the
//!   control core.
//!
//! A packet too short to read its key from goes to the control core, which
//! decodes it fully and reports the error.

use ctdb_protocol::{Operation, RawHeader, HEADER_LEN};

/// Where a received packet is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// The control core (core 0).
    Control,
    /// Data shard `n` (core `n + 1`, or core 0 in a one-core runtime).
    Shard(usize),
}

impl Destination {
    /// The core index of this destination in a runtime of `cores` cores.
    pub fn core(self, cores: usize) -> usize {
        match self {
            Destination::Control => 0,
            Destination::Shard(_) if cores <= 1 => 0,
            Destination::Shard(n) => 1 + n % (cores - 1),
        }
    }
}

/// How keys and request ids map to shards on this node.
pub trait ShardMap {
    /// The shard owning `key` of database `db_id`; `None` for a database
    /// the data cores do not serve (persistent, replicated, unknown), which
    /// then goes to the control core.
    fn shard_of(&self, db_id: u32, key: &[u8]) -> Option<usize>;

    /// Where the reply with request id `reqid` goes.
    fn reply_dest(&self, reqid: u32) -> Destination {
        match reqid >> 24 {
            0 => Destination::Control,
            s => Destination::Shard(s as usize - 1),
        }
    }
}

/// The engine's partition for volatile databases: chain
/// `jenkins(key) % hash_size`, shard `chain % shards`
/// (`ctdb_engine::Database::partition`). Databases listed in `control_dbs`
/// stay on the control core.
#[derive(Debug, Clone)]
pub struct ChainShards {
    pub shards: usize,
    pub hash_size: u32,
    pub control_dbs: Vec<u32>,
}

impl ShardMap for ChainShards {
    fn shard_of(&self, db_id: u32, key: &[u8]) -> Option<usize> {
        if self.shards == 0 || self.control_dbs.contains(&db_id) {
            return None;
        }
        let chain = ctdb_engine::hash::jenkins_hash(key) % self.hash_size.max(1);
        Some(chain as usize % self.shards)
    }
}

/// Request id of a call sent from `dest`, following the default
/// [`ShardMap::reply_dest`] rule: `seq` keeps its low 24 bits.
pub fn reqid_for(dest: Destination, seq: u32) -> u32 {
    let top = match dest {
        Destination::Control => 0,
        Destination::Shard(n) => (n as u32 + 1) & 0xff,
    };
    (top << 24) | (seq & 0x00ff_ffff)
}

fn u32_at(pkt: &[u8], off: usize) -> Option<u32> {
    let b = pkt.get(off..off + 4)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Database id and key of a REQ_CALL / REQ_DMASTER / REPLY_DMASTER.
pub fn call_key(op: Operation, pkt: &[u8]) -> Option<(u32, &[u8])> {
    let h = HEADER_LEN;
    let (db_id, keylen, key_off) = match op {
        // flags, db_id, callid, hopcount, keylen, calldatalen, key
        Operation::ReqCall => (u32_at(pkt, h + 4)?, u32_at(pkt, h + 16)?, h + 24),
        // db_id, pad, rsn(8), dmaster, keylen, datalen, key
        Operation::ReqDmaster => (u32_at(pkt, h)?, u32_at(pkt, h + 20)?, h + 28),
        // db_id, pad, rsn(8), keylen, datalen, key
        Operation::ReplyDmaster => (u32_at(pkt, h)?, u32_at(pkt, h + 16)?, h + 24),
        _ => return None,
    };
    let key = pkt.get(key_off..key_off.checked_add(keylen as usize)?)?;
    Some((db_id, key))
}

/// Whether `pkt` completes a call the receiving node (`destnode`) sent,
/// so that its request id is the receiver's own: a REPLY_DMASTER, or a
/// REQ_DMASTER naming the receiver as the new dmaster.
pub fn completes_own_call(op: Operation, pkt: &[u8], destnode: u32) -> bool {
    match op {
        Operation::ReplyDmaster => true,
        // db_id, pad, rsn(8), dmaster
        Operation::ReqDmaster => u32_at(pkt, HEADER_LEN + 16) == Some(destnode),
        _ => false,
    }
}

/// Where `pkt` (a whole packet, header included) is handled.
pub fn route(pkt: &[u8], shards: &dyn ShardMap) -> Destination {
    let Ok(hdr) = RawHeader::parse(pkt) else {
        return Destination::Control;
    };
    let Ok(op) = hdr.operation() else {
        return Destination::Control;
    };
    // What completes a call the control core sent (request id top byte
    // 0) is finished there; a data core's calls are on its own key's
    // shard anyway.
    let ours_from_control = completes_own_call(op, pkt, hdr.destnode)
        && shards.reply_dest(hdr.reqid) == Destination::Control;
    match op {
        Operation::ReqCall | Operation::ReqDmaster | Operation::ReplyDmaster => {
            if ours_from_control {
                return Destination::Control;
            }
            match call_key(op, pkt).and_then(|(db, key)| shards.shard_of(db, key)) {
                Some(s) => Destination::Shard(s),
                None => Destination::Control,
            }
        }
        Operation::ReplyCall | Operation::ReplyError => shards.reply_dest(hdr.reqid),
        _ => Destination::Control,
    }
}

/// Upstream's filter in `ctdb_input_pkt`: call and dmaster packets are
/// dropped while this node is banned or when their generation is not this
/// node's vnn map generation. Everything else passes.
pub fn accept_packet(hdr: &RawHeader, generation: u32, banned: bool) -> bool {
    match Operation::from_u32(hdr.operation) {
        Ok(
            Operation::ReqCall
            | Operation::ReplyCall
            | Operation::ReqDmaster
            | Operation::ReplyDmaster,
        ) => !banned && hdr.generation == generation,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctdb_protocol::{Header, Packet, Payload, ReplyCall, ReqCall, ReqDmaster, ReqKeepalive};

    fn enc(p: Payload<'_>, reqid: u32) -> Vec<u8> {
        let mut out = Vec::new();
        Packet::new(Header::new(7, 1, 0, reqid), p)
            .encode(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn keys_go_to_their_chain_owner() {
        let m = ChainShards {
            shards: 3,
            hash_size: 10007,
            control_dbs: vec![99],
        };
        for i in 0..200u32 {
            let key = format!("key-{i}");
            let want = (ctdb_engine::hash::jenkins_hash(key.as_bytes()) % 10007) as usize % 3;
            let call = ReqCall {
                db_id: 5,
                key: key.as_bytes(),
                calldata: b"x",
                ..Default::default()
            };
            assert_eq!(
                route(&enc(Payload::ReqCall(call), 1), &m),
                Destination::Shard(want)
            );
            let dm = ReqDmaster {
                db_id: 5,
                key: key.as_bytes(),
                ..Default::default()
            };
            assert_eq!(
                route(&enc(Payload::ReqDmaster(dm), 1), &m),
                Destination::Shard(want)
            );
            let rd = ctdb_protocol::ReplyDmaster {
                db_id: 5,
                key: key.as_bytes(),
                data: b"record",
                ..Default::default()
            };
            assert_eq!(
                route(
                    &enc(
                        Payload::ReplyDmaster(rd),
                        reqid_for(Destination::Shard(want), 1)
                    ),
                    &m
                ),
                Destination::Shard(want)
            );
            // The control core's own call: finished there.
            assert_eq!(
                route(&enc(Payload::ReplyDmaster(rd), 1), &m),
                Destination::Control
            );
            // A REQ_DMASTER making this node (destination 1) dmaster of a
            // call the control core sent.
            let mine = ReqDmaster {
                db_id: 5,
                dmaster: 1,
                key: key.as_bytes(),
                ..Default::default()
            };
            assert_eq!(
                route(&enc(Payload::ReqDmaster(mine), 1), &m),
                Destination::Control
            );
            assert_eq!(
                route(
                    &enc(
                        Payload::ReqDmaster(mine),
                        reqid_for(Destination::Shard(want), 1)
                    ),
                    &m
                ),
                Destination::Shard(want)
            );
            let call99 = ReqCall {
                db_id: 99,
                key: key.as_bytes(),
                ..Default::default()
            };
            assert_eq!(
                route(&enc(Payload::ReqCall(call99), 1), &m),
                Destination::Control
            );
        }
    }

    #[test]
    fn replies_follow_reqid_and_rest_goes_to_control() {
        let m = ChainShards {
            shards: 2,
            hash_size: 17,
            control_dbs: vec![],
        };
        let r = enc(
            Payload::ReplyCall(ReplyCall::default()),
            reqid_for(Destination::Shard(1), 77),
        );
        assert_eq!(route(&r, &m), Destination::Shard(1));
        let r = enc(
            Payload::ReplyCall(ReplyCall::default()),
            reqid_for(Destination::Control, 77),
        );
        assert_eq!(route(&r, &m), Destination::Control);
        let k = enc(Payload::ReqKeepalive(Some(ReqKeepalive::default())), 0);
        assert_eq!(route(&k, &m), Destination::Control);
        assert_eq!(route(&[1, 2, 3], &m), Destination::Control);
        // A truncated call (key length beyond the packet) is not routed by key.
        let mut c = enc(
            Payload::ReqCall(ReqCall {
                db_id: 5,
                key: b"abc",
                ..Default::default()
            }),
            1,
        );
        c[HEADER_LEN + 16] = 0xff;
        assert_eq!(route(&c, &m), Destination::Control);
        assert_eq!(Destination::Shard(1).core(3), 2);
        assert_eq!(Destination::Shard(1).core(1), 0);
    }

    #[test]
    fn generation_filter_matches_upstream() {
        let call = enc(Payload::ReqCall(ReqCall::default()), 1);
        let h = RawHeader::parse(&call).unwrap();
        assert!(accept_packet(&h, 7, false));
        assert!(!accept_packet(&h, 8, false));
        assert!(!accept_packet(&h, 7, true));
        let k = enc(Payload::ReqKeepalive(None), 0);
        assert!(accept_packet(&RawHeader::parse(&k).unwrap(), 8, true));
    }
}
