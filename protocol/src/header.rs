//! The 32-byte packet header every CTDB packet starts with, and the framing
//! rules around it.
//!
//! Why a separate [`RawHeader`]: a stream reader needs the length before the
//! packet is complete, and a daemon may want to log or count a packet whose
//! operation it does not know. [`RawHeader::parse`] reads the eight fields
//! without judging them; [`RawHeader::check`] applies upstream's rules
//! (`ctdb_req_header_verify`: length at least 32, magic, version) plus our
//! configurable maximum size. The decoded [`Header`] keeps only
//! what a packet's user needs; length, magic and version are rewritten on
//! every encode.

use crate::error::ProtocolError;
use crate::wire::Put;

/// "CTDB" as a host-order u32 (bytes `42 44 54 43` on little-endian).
pub const CTDB_MAGIC: u32 = 0x4354_4442;
/// The only protocol version there is.
pub const CTDB_PROTOCOL: u32 = 1;
/// Size of `struct ctdb_req_header`.
pub const HEADER_LEN: usize = 32;
/// ctdbd and the ctdb client library pad every packet to a multiple of this
/// (`CTDB_DS_ALIGNMENT`) and rewrite the length field to the padded size.
pub const CTDB_DS_ALIGNMENT: usize = 8;
/// Default for [`DecodeLimits::max_packet`]: 256 MiB. Upstream has no hard
/// limit; record buffers in recovery are bounded by RecBufferSizeLimit (1 MiB
/// by default) and single records by tdb, so this is generous.
pub const DEFAULT_MAX_PACKET: u32 = 256 * 1024 * 1024;

/// Bounds applied while decoding untrusted bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest acceptable value of the header's length field.
    pub max_packet: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_packet: DEFAULT_MAX_PACKET,
        }
    }
}

/// The operation field (`enum ctdb_operation`). Number 6 was removed
/// upstream and is unknown here too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Operation {
    ReqCall = 0,
    ReplyCall = 1,
    ReqDmaster = 2,
    ReplyDmaster = 3,
    ReplyError = 4,
    ReqMessage = 5,
    ReqControl = 7,
    ReplyControl = 8,
    ReqKeepalive = 9,
    ReqTunnel = 10,
}

impl Operation {
    /// Every operation, in numeric order.
    pub const ALL: [Operation; 10] = [
        Operation::ReqCall,
        Operation::ReplyCall,
        Operation::ReqDmaster,
        Operation::ReplyDmaster,
        Operation::ReplyError,
        Operation::ReqMessage,
        Operation::ReqControl,
        Operation::ReplyControl,
        Operation::ReqKeepalive,
        Operation::ReqTunnel,
    ];

    pub fn from_u32(v: u32) -> Result<Operation, ProtocolError> {
        Ok(match v {
            0 => Operation::ReqCall,
            1 => Operation::ReplyCall,
            2 => Operation::ReqDmaster,
            3 => Operation::ReplyDmaster,
            4 => Operation::ReplyError,
            5 => Operation::ReqMessage,
            7 => Operation::ReqControl,
            8 => Operation::ReplyControl,
            9 => Operation::ReqKeepalive,
            10 => Operation::ReqTunnel,
            _ => return Err(ProtocolError::UnknownOperation(v)),
        })
    }

    /// Upstream's name, e.g. `REQ_CALL`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::ReqCall => "REQ_CALL",
            Operation::ReplyCall => "REPLY_CALL",
            Operation::ReqDmaster => "REQ_DMASTER",
            Operation::ReplyDmaster => "REPLY_DMASTER",
            Operation::ReplyError => "REPLY_ERROR",
            Operation::ReqMessage => "REQ_MESSAGE",
            Operation::ReqControl => "REQ_CONTROL",
            Operation::ReplyControl => "REPLY_CONTROL",
            Operation::ReqKeepalive => "REQ_KEEPALIVE",
            Operation::ReqTunnel => "REQ_TUNNEL",
        }
    }

    /// Offset of the variable data in the C struct ctdbd puts on the wire
    /// (`offsetof(struct ctdb_*_old, data)`), i.e. the fixed part's size.
    pub fn fixed_len(self) -> usize {
        match self {
            Operation::ReqCall => 56,
            Operation::ReplyCall => 40,
            Operation::ReqDmaster => 60,
            Operation::ReplyDmaster => 56,
            Operation::ReplyError => 40,
            Operation::ReqMessage => 44,
            Operation::ReqControl => 60,
            Operation::ReplyControl => 44,
            Operation::ReqKeepalive => 40,
            Operation::ReqTunnel => 48,
        }
    }

    /// `sizeof(struct ctdb_*_old)` on x86_64: ctdbd allocates at least this
    /// much for a packet of this operation and sets the length to at least
    /// this value before padding (`_ctdb_transport_allocate`,
    /// `ctdbd_allocate_pkt`).
    pub fn struct_len(self) -> usize {
        match self {
            // u32-aligned structs with a trailing `uint8_t data[1]`
            Operation::ReqCall => 60,
            Operation::ReplyCall => 44,
            Operation::ReplyError => 44,
            Operation::ReplyControl => 48,
            // structs holding a u64 are 8-aligned
            Operation::ReqDmaster => 64,
            Operation::ReplyDmaster => 64,
            Operation::ReqMessage => 48,
            Operation::ReqControl => 64,
            Operation::ReqTunnel => 56,
            Operation::ReqKeepalive => 40,
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The header fields a packet's user sets and reads. Length, magic, version
/// and operation are not here: they follow from the payload and are written
/// by the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Header {
    /// vnn map generation of the sender (clients send 0, smbd messages 1).
    pub generation: u32,
    /// Destination pnn or one of the special values in [`crate::constants`].
    pub destnode: u32,
    /// Sender pnn.
    pub srcnode: u32,
    /// Request id; replies echo it.
    pub reqid: u32,
}

impl Header {
    pub fn new(generation: u32, destnode: u32, srcnode: u32, reqid: u32) -> Header {
        Header {
            generation,
            destnode,
            srcnode,
            reqid,
        }
    }

    /// The header of a reply to a packet with this header, sent by
    /// `srcnode`: back to the sender, same reqid and generation.
    pub fn reply(&self, srcnode: u32) -> Header {
        Header {
            generation: self.generation,
            destnode: self.srcnode,
            srcnode,
            reqid: self.reqid,
        }
    }
}

/// All eight header fields exactly as received, not yet validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawHeader {
    pub length: u32,
    pub magic: u32,
    pub version: u32,
    pub generation: u32,
    pub operation: u32,
    pub destnode: u32,
    pub srcnode: u32,
    pub reqid: u32,
}

impl RawHeader {
    /// Reads the first 32 bytes of `buf` without checking any field.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<RawHeader, ProtocolError> {
        let Some(h) = buf.get(..HEADER_LEN) else {
            return Err(ProtocolError::Short {
                what: "packet header",
                need: HEADER_LEN,
                have: buf.len(),
            });
        };
        let f = |i: usize| u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Ok(RawHeader {
            length: f(0),
            magic: f(4),
            version: f(8),
            generation: f(12),
            operation: f(16),
            destnode: f(20),
            srcnode: f(24),
            reqid: f(28),
        })
    }

    /// Upstream's header checks plus our size limit: length in
    /// `32..=max_packet`, magic, version. The operation is checked by
    /// [`RawHeader::operation`].
    #[inline]
    pub fn check(&self, limits: &DecodeLimits) -> Result<(), ProtocolError> {
        check_length(self.length, limits)?;
        if self.magic != CTDB_MAGIC {
            return Err(ProtocolError::BadMagic(self.magic));
        }
        if self.version != CTDB_PROTOCOL {
            return Err(ProtocolError::BadVersion(self.version));
        }
        Ok(())
    }

    /// The operation, if known.
    pub fn operation(&self) -> Result<Operation, ProtocolError> {
        Operation::from_u32(self.operation)
    }

    /// The fields a packet's user sees.
    pub fn header(&self) -> Header {
        Header {
            generation: self.generation,
            destnode: self.destnode,
            srcnode: self.srcnode,
            reqid: self.reqid,
        }
    }

    /// Appends the 32 header bytes.
    #[inline]
    pub fn push(&self, out: &mut Vec<u8>) {
        let mut h = [0u8; HEADER_LEN];
        for (i, v) in [
            self.length,
            self.magic,
            self.version,
            self.generation,
            self.operation,
            self.destnode,
            self.srcnode,
            self.reqid,
        ]
        .into_iter()
        .enumerate()
        {
            h[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        out.put_bytes(&h);
    }
}

fn check_length(length: u32, limits: &DecodeLimits) -> Result<(), ProtocolError> {
    if (length as usize) < HEADER_LEN || length > limits.max_packet {
        return Err(ProtocolError::BadLength {
            length,
            min: HEADER_LEN as u32,
            max: limits.max_packet,
        });
    }
    Ok(())
}

/// For stream framing: given at least the first 4 bytes of a packet, the
/// total number of bytes to read (the length field), checked against
/// `32..=max_packet`. `Ok(None)` if fewer than 4 bytes are available yet.
pub fn frame_length(prefix: &[u8], limits: &DecodeLimits) -> Result<Option<usize>, ProtocolError> {
    if prefix.len() < 4 {
        return Ok(None);
    }
    let length = u32::from_ne_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    check_length(length, limits)?;
    Ok(Some(length as usize))
}

/// Rounds `len` up to [`CTDB_DS_ALIGNMENT`].
pub fn pad_len(len: usize) -> usize {
    (len + CTDB_DS_ALIGNMENT - 1) & !(CTDB_DS_ALIGNMENT - 1)
}
