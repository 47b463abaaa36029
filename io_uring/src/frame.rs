//! Frame rules shared by the reader and the writers: what a valid length is,
//! where the magic sits, and ctdbd's 8-byte padding.
//!
//! A CTDB stream is a sequence of packets, each starting with its own total
//! length as a host-order `u32` (the first header field), followed by the
//! magic. Nothing else in the header matters for framing.

use crate::error::IoError;

/// Size of `struct ctdb_req_header`; the smallest legal packet.
pub const HEADER_LEN: u32 = ctdb_protocol::HEADER_LEN as u32;
/// `CTDB_MAGIC`: "CTDB" read as a little-endian `u32`.
pub const CTDB_MAGIC: u32 = ctdb_protocol::CTDB_MAGIC;

/// `CTDB_DS_ALIGNMENT`: ctdbd pads every packet it sends to this multiple.
pub const PACKET_ALIGN: usize = ctdb_protocol::CTDB_DS_ALIGNMENT;

/// Default upper bound on one packet: the protocol crate's decode limit, so
/// whatever the reader accepts the decoder accepts too. Upstream has no
/// bound; we need one so a hostile length field cannot make us allocate
/// without limit (the buffer only grows as bytes actually arrive up to it).
pub const DEFAULT_MAX_PACKET: u32 = ctdb_protocol::header::DEFAULT_MAX_PACKET;

/// How a stream is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameConfig {
    /// Largest packet accepted (and sent), in bytes. At least [`HEADER_LEN`].
    pub max_packet: u32,
    /// Reject packets whose magic is not [`CTDB_MAGIC`] as soon as 8 bytes
    /// of them arrive.
    pub check_magic: bool,
    /// How much to ask the kernel for per read; several small packets are
    /// usually picked up by one read.
    pub read_chunk: usize,
}

impl Default for FrameConfig {
    fn default() -> Self {
        FrameConfig {
            max_packet: DEFAULT_MAX_PACKET,
            check_magic: true,
            read_chunk: 64 * 1024,
        }
    }
}

impl FrameConfig {
    /// Checks a length field read at stream offset `offset`.
    pub fn check_length(&self, length: u32, offset: u64) -> Result<(), IoError> {
        let max = self.max_packet.max(HEADER_LEN);
        if length < HEADER_LEN || length > max {
            return Err(IoError::BadLength {
                length,
                min: HEADER_LEN,
                max,
                offset,
            });
        }
        Ok(())
    }
}

/// Reads the length field of a packet (first 4 bytes, host order).
pub fn length_field(pkt: &[u8]) -> Option<u32> {
    pkt.get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the magic field (bytes 4..8, host order).
pub fn magic_field(pkt: &[u8]) -> Option<u32> {
    pkt.get(4..8)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// `len` rounded up to [`PACKET_ALIGN`].
pub fn padded_len(len: usize) -> usize {
    (len + PACKET_ALIGN - 1) & !(PACKET_ALIGN - 1)
}

/// Checks that `pkt` is a whole frame under `cfg`: its length field equals
/// its size, which lies within `HEADER_LEN..=max_packet`.
pub fn check_outgoing(pkt: &[u8], cfg: &FrameConfig) -> Result<(), IoError> {
    let length_field = length_field(pkt).unwrap_or(0);
    if pkt.len() < HEADER_LEN as usize {
        return Err(IoError::BadOutgoing {
            length_field,
            actual: pkt.len(),
            reason: "shorter than a packet header",
        });
    }
    if length_field as usize != pkt.len() {
        return Err(IoError::BadOutgoing {
            length_field,
            actual: pkt.len(),
            reason: "length field does not match packet size",
        });
    }
    if length_field > cfg.max_packet {
        return Err(IoError::BadOutgoing {
            length_field,
            actual: pkt.len(),
            reason: "larger than the configured maximum packet",
        });
    }
    Ok(())
}

/// Pads `pkt` in place as ctdbd does: zero bytes up to a multiple of 8, and
/// the length field rewritten to the padded size. Checks the frame first.
pub fn pad_packet(pkt: &mut Vec<u8>, cfg: &FrameConfig) -> Result<(), IoError> {
    check_outgoing(pkt, cfg)?;
    let padded = padded_len(pkt.len());
    if padded > cfg.max_packet as usize {
        return Err(IoError::BadOutgoing {
            length_field: pkt.len() as u32,
            actual: pkt.len(),
            reason: "padding would exceed the configured maximum packet",
        });
    }
    pkt.resize(padded, 0);
    pkt[..4].copy_from_slice(&(padded as u32).to_ne_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(len: usize) -> Vec<u8> {
        let mut v = vec![0xAAu8; len];
        v[..4].copy_from_slice(&(len as u32).to_ne_bytes());
        v[4..8].copy_from_slice(&CTDB_MAGIC.to_ne_bytes());
        v
    }

    #[test]
    fn padding_rounds_up_and_rewrites_length() {
        let cfg = FrameConfig::default();
        for len in 32..=80usize {
            let mut p = pkt(len);
            pad_packet(&mut p, &cfg).unwrap();
            assert_eq!(p.len() % 8, 0);
            assert!(p.len() >= len && p.len() < len + 8);
            assert_eq!(length_field(&p), Some(p.len() as u32));
            assert!(p[len..].iter().all(|&b| b == 0), "pad bytes must be zero");
            assert!(p[8..len].iter().all(|&b| b == 0xAA), "payload untouched");
        }
    }

    #[test]
    fn outgoing_checks_name_the_problem() {
        let cfg = FrameConfig {
            max_packet: 64,
            ..FrameConfig::default()
        };
        let e = check_outgoing(&pkt(31)[..], &cfg).unwrap_err();
        assert!(
            e.to_string().contains("shorter than a packet header"),
            "{e}"
        );
        let mut p = pkt(40);
        p[0] = 41;
        let e = check_outgoing(&p, &cfg).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        let e = check_outgoing(&pkt(72), &cfg).unwrap_err();
        assert!(e.to_string().contains("maximum"), "{e}");
        let mut p = pkt(61);
        let tight = FrameConfig {
            max_packet: 62,
            ..cfg
        };
        let e = pad_packet(&mut p, &tight).unwrap_err();
        assert!(e.to_string().contains("padding"), "{e}");
        assert!(cfg.check_length(31, 7).is_err());
        assert!(cfg.check_length(65, 7).is_err());
        assert!(cfg.check_length(32, 7).is_ok());
        assert!(cfg.check_length(64, 7).is_ok());
    }
}
