//! Cluster membership types: the vnn map, the node map and flag changes.

use crate::error::ProtocolError;
use crate::types::{counted_list, plain_struct, SockAddr};
use crate::wire::{Put, Reader, Wire};

/// `ctdb_vnn_map` (GETVNNMAP/SETVNNMAP): generation, then `u32 size` and the
/// lmaster pnns.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct VnnMap {
    pub generation: u32,
    pub map: Vec<u32>,
}

impl<'a> Wire<'a> for VnnMap {
    fn wire_len(&self) -> usize {
        8 + 4 * self.map.len()
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.generation);
        out.put_u32(self.map.len() as u32);
        for &p in &self.map {
            out.put_u32(p);
        }
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let generation = r.u32("vnn_map generation")?;
        let n = r.count(4, "vnn_map size")?;
        let mut map = Vec::with_capacity(n);
        for _ in 0..n {
            map.push(r.u32("vnn_map entry")?);
        }
        Ok(VnnMap { generation, map })
    }
}

plain_struct! {
    /// `ctdb_node_and_flags` (36 bytes): one node map entry.
    pub struct NodeAndFlags {
        pub pnn: u32,
        pub flags: u32,
        pub addr: SockAddr,
    }
}

impl NodeAndFlags {
    pub const SIZE: usize = 36;
    pub const DISCONNECTED: u32 = 0x1;
    pub const UNHEALTHY: u32 = 0x2;
    pub const PERMANENTLY_DISABLED: u32 = 0x4;
    pub const BANNED: u32 = 0x8;
    pub const DELETED: u32 = 0x10;
    pub const STOPPED: u32 = 0x20;
    pub const DISABLED: u32 = Self::UNHEALTHY | Self::PERMANENTLY_DISABLED;
    pub const INACTIVE: u32 = Self::DELETED | Self::DISCONNECTED | Self::BANNED | Self::STOPPED;
}

counted_list! {
    /// `ctdb_node_map` (GET_NODEMAP, GET_NODES_FILE): `u32 num` + entries.
    pub struct NodeMap { pub nodes: Vec<NodeAndFlags> } min NodeAndFlags::SIZE, what "node_map num"
}

plain_struct! {
    /// `ctdb_node_flag_change` (MODIFY_FLAGS, PUSH_NODE_FLAGS message): 12 bytes.
    pub struct NodeFlagChange {
        pub pnn: u32,
        pub new_flags: u32,
        pub old_flags: u32,
    }
}
