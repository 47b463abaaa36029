//! The CTDB record header (`struct ctdb_ltdb_header`) carried in front of
//! every value of a CTDB local database.
//!
//! ctdbd and smbd store `header (24 bytes) || user data` as the TDB value;
//! the header says which node is the data master and how fresh the copy is.
//! The layout is host byte order (little-endian on every platform CTDB runs
//! on here), exactly as the C struct: `rsn u64, dmaster u32, reserved1 u32,
//! flags u32, pad u32`. A value shorter than 24 bytes is "no record".

use std::fmt;

/// Size of the header in bytes (`sizeof(struct ctdb_ltdb_header)`).
pub const LTDB_HEADER_SIZE: usize = 24;

/// `CTDB_REC_*` record flags (the header's `flags` word).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RecordFlags(pub u32);

impl RecordFlags {
    /// No flag set (`CTDB_REC_FLAG_DEFAULT`).
    pub const DEFAULT: RecordFlags = RecordFlags(0);
    /// Migrated while non-empty (`CTDB_REC_FLAG_MIGRATED_WITH_DATA`).
    pub const MIGRATED_WITH_DATA: RecordFlags = RecordFlags(0x0001_0000);
    /// Transient: stored by a vacuum-triggered migration (`CTDB_REC_FLAG_VACUUM_MIGRATED`).
    pub const VACUUM_MIGRATED: RecordFlags = RecordFlags(0x0002_0000);
    /// Transient: header synthesised for a missing record (`CTDB_REC_FLAG_AUTOMATIC`).
    pub const AUTOMATIC: RecordFlags = RecordFlags(0x0004_0000);
    /// The dmaster has handed out read-only copies (`CTDB_REC_RO_HAVE_DELEGATIONS`).
    pub const RO_HAVE_DELEGATIONS: RecordFlags = RecordFlags(0x0100_0000);
    /// This copy is a read-only delegation (`CTDB_REC_RO_HAVE_READONLY`).
    pub const RO_HAVE_READONLY: RecordFlags = RecordFlags(0x0200_0000);
    /// Revocation of read-only copies in progress (`CTDB_REC_RO_REVOKING_READONLY`).
    pub const RO_REVOKING_READONLY: RecordFlags = RecordFlags(0x0400_0000);
    /// Revocation finished (`CTDB_REC_RO_REVOKE_COMPLETE`).
    pub const RO_REVOKE_COMPLETE: RecordFlags = RecordFlags(0x0800_0000);
    /// Mask of all read-only delegation flags (`CTDB_REC_RO_FLAGS`).
    pub const RO_FLAGS: RecordFlags = RecordFlags(0x0F00_0000);

    /// Flags that must never be written to disk (transient markers).
    pub const NOT_PERSISTED: RecordFlags = RecordFlags(0x0002_0000 | 0x0004_0000);

    /// Raw flag word.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True if every bit of `other` is set in `self`.
    pub const fn contains(self, other: RecordFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if any bit of `other` is set in `self`.
    pub const fn intersects(self, other: RecordFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// True if no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Set the bits of `other`.
    pub fn insert(&mut self, other: RecordFlags) {
        self.0 |= other.0;
    }

    /// Clear the bits of `other`.
    pub fn remove(&mut self, other: RecordFlags) {
        self.0 &= !other.0;
    }

    /// `self` with the bits of `other` cleared.
    pub const fn without(self, other: RecordFlags) -> RecordFlags {
        RecordFlags(self.0 & !other.0)
    }
}

impl std::ops::BitOr for RecordFlags {
    type Output = RecordFlags;
    fn bitor(self, rhs: RecordFlags) -> RecordFlags {
        RecordFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for RecordFlags {
    fn bitor_assign(&mut self, rhs: RecordFlags) {
        self.0 |= rhs.0;
    }
}

impl std::ops::BitAnd for RecordFlags {
    type Output = RecordFlags;
    fn bitand(self, rhs: RecordFlags) -> RecordFlags {
        RecordFlags(self.0 & rhs.0)
    }
}

impl fmt::Display for RecordFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: &[(RecordFlags, &str)] = &[
            (RecordFlags::MIGRATED_WITH_DATA, "MIGRATED_WITH_DATA"),
            (RecordFlags::VACUUM_MIGRATED, "VACUUM_MIGRATED"),
            (RecordFlags::AUTOMATIC, "AUTOMATIC"),
            (RecordFlags::RO_HAVE_DELEGATIONS, "RO_HAVE_DELEGATIONS"),
            (RecordFlags::RO_HAVE_READONLY, "RO_HAVE_READONLY"),
            (RecordFlags::RO_REVOKING_READONLY, "RO_REVOKING_READONLY"),
            (RecordFlags::RO_REVOKE_COMPLETE, "RO_REVOKE_COMPLETE"),
        ];
        if self.is_empty() {
            return f.write_str("DEFAULT");
        }
        let mut rest = *self;
        let mut first = true;
        for (flag, name) in NAMES {
            if self.contains(*flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest.remove(*flag);
            }
        }
        if !rest.is_empty() {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "0x{:08x}", rest.0)?;
        }
        Ok(())
    }
}

/// A decoded `struct ctdb_ltdb_header`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LtdbHeader {
    /// Record sequence number.
    pub rsn: u64,
    /// PNN of the node holding the authoritative copy.
    pub dmaster: u32,
    /// Reserved, 0 when written by ctdbd; preserved as read.
    pub reserved1: u32,
    /// `CTDB_REC_*` flags.
    pub flags: RecordFlags,
    /// Tail padding of the C struct; written as 0 by ctdbd, preserved as read.
    pub pad: u32,
}

/// A value too short to carry a record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortValue {
    /// Length of the value that was offered.
    pub len: usize,
}

impl fmt::Display for ShortValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record value of {} bytes is shorter than the {}-byte ctdb_ltdb_header",
            self.len, LTDB_HEADER_SIZE
        )
    }
}

impl std::error::Error for ShortValue {}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

impl LtdbHeader {
    /// A header with the given rsn, dmaster and flags and zero reserved fields.
    pub const fn new(rsn: u64, dmaster: u32, flags: RecordFlags) -> LtdbHeader {
        LtdbHeader {
            rsn,
            dmaster,
            reserved1: 0,
            flags,
            pad: 0,
        }
    }

    /// Decode the header at the start of `value`; `None` if the value is
    /// shorter than [`LTDB_HEADER_SIZE`] (CTDB treats that as no record).
    pub fn parse(value: &[u8]) -> Option<LtdbHeader> {
        let b = value.get(..LTDB_HEADER_SIZE)?;
        let mut rsn = [0u8; 8];
        rsn.copy_from_slice(&b[0..8]);
        Some(LtdbHeader {
            rsn: u64::from_le_bytes(rsn),
            dmaster: u32_at(b, 8),
            reserved1: u32_at(b, 12),
            flags: RecordFlags(u32_at(b, 16)),
            pad: u32_at(b, 20),
        })
    }

    /// Like [`LtdbHeader::parse`] but with an error naming the length.
    pub fn try_parse(value: &[u8]) -> Result<LtdbHeader, ShortValue> {
        LtdbHeader::parse(value).ok_or(ShortValue { len: value.len() })
    }

    /// Split a value into its header and user data.
    pub fn split(value: &[u8]) -> Option<(LtdbHeader, &[u8])> {
        let header = LtdbHeader::parse(value)?;
        Some((header, &value[LTDB_HEADER_SIZE..]))
    }

    /// The 24 encoded bytes.
    pub fn to_bytes(&self) -> [u8; LTDB_HEADER_SIZE] {
        let mut out = [0u8; LTDB_HEADER_SIZE];
        out[0..8].copy_from_slice(&self.rsn.to_le_bytes());
        out[8..12].copy_from_slice(&self.dmaster.to_le_bytes());
        out[12..16].copy_from_slice(&self.reserved1.to_le_bytes());
        out[16..20].copy_from_slice(&self.flags.0.to_le_bytes());
        out[20..24].copy_from_slice(&self.pad.to_le_bytes());
        out
    }

    /// Encode into the first 24 bytes of `buf`; error if `buf` is shorter.
    pub fn write_to(&self, buf: &mut [u8]) -> Result<(), ShortValue> {
        let len = buf.len();
        let dst = buf.get_mut(..LTDB_HEADER_SIZE).ok_or(ShortValue { len })?;
        dst.copy_from_slice(&self.to_bytes());
        Ok(())
    }

    /// `header || data` as one value, ready to store.
    pub fn with_data(&self, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(LTDB_HEADER_SIZE + data.len());
        v.extend_from_slice(&self.to_bytes());
        v.extend_from_slice(data);
        v
    }
}

impl fmt::Display for LtdbHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rsn {} dmaster {} flags {}",
            self.rsn, self.dmaster, self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64, for seeded round-trip tests.
    struct SplitMix(u64);
    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn known_layout() {
        let h = LtdbHeader {
            rsn: 0x0102_0304_0506_0708,
            dmaster: 0x1112_1314,
            reserved1: 0,
            flags: RecordFlags::MIGRATED_WITH_DATA | RecordFlags::RO_HAVE_DELEGATIONS,
            pad: 0,
        };
        let bytes = h.to_bytes();
        assert_eq!(
            bytes,
            [
                0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // rsn
                0x14, 0x13, 0x12, 0x11, // dmaster
                0, 0, 0, 0, // reserved1
                0x00, 0x00, 0x01, 0x01, // flags
                0, 0, 0, 0, // pad
            ]
        );
        assert_eq!(LtdbHeader::parse(&bytes), Some(h));
    }

    #[test]
    fn short_values_are_no_record() {
        for len in 0..LTDB_HEADER_SIZE {
            let v = vec![0xAAu8; len];
            assert_eq!(LtdbHeader::parse(&v), None);
            assert!(LtdbHeader::split(&v).is_none());
            let err = LtdbHeader::try_parse(&v).unwrap_err();
            assert_eq!(err.len, len);
            assert!(err.to_string().contains(&format!("{len} bytes")));
            let mut buf = vec![0u8; len];
            assert!(LtdbHeader::default().write_to(&mut buf).is_err());
        }
        assert!(LtdbHeader::parse(&[0u8; LTDB_HEADER_SIZE]).is_some());
    }

    #[test]
    fn split_and_with_data_round_trip() {
        let seed = 0x5EED_0001u64;
        let mut rng = SplitMix(seed);
        for _ in 0..500 {
            let h = LtdbHeader {
                rsn: rng.next(),
                dmaster: rng.next() as u32,
                reserved1: rng.next() as u32,
                flags: RecordFlags(rng.next() as u32),
                pad: rng.next() as u32,
            };
            let len = (rng.next() % 64) as usize;
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let value = h.with_data(&data);
            let (h2, d2) = LtdbHeader::split(&value).expect("long enough");
            assert_eq!(h2, h, "seed {seed:#x}");
            assert_eq!(d2, &data[..], "seed {seed:#x}");
            let mut buf = vec![0u8; LTDB_HEADER_SIZE + 3];
            h.write_to(&mut buf).unwrap();
            assert_eq!(&buf[..LTDB_HEADER_SIZE], &h.to_bytes());
            assert_eq!(&buf[LTDB_HEADER_SIZE..], &[0, 0, 0]);
        }
    }

    #[test]
    fn flag_values_and_ops() {
        assert_eq!(RecordFlags::MIGRATED_WITH_DATA.bits(), 0x0001_0000);
        assert_eq!(RecordFlags::VACUUM_MIGRATED.bits(), 0x0002_0000);
        assert_eq!(RecordFlags::AUTOMATIC.bits(), 0x0004_0000);
        assert_eq!(
            RecordFlags::RO_HAVE_DELEGATIONS
                | RecordFlags::RO_HAVE_READONLY
                | RecordFlags::RO_REVOKING_READONLY
                | RecordFlags::RO_REVOKE_COMPLETE,
            RecordFlags::RO_FLAGS
        );
        let mut f = RecordFlags::AUTOMATIC | RecordFlags::RO_HAVE_READONLY;
        assert!(f.intersects(RecordFlags::RO_FLAGS));
        assert!(!f.contains(RecordFlags::RO_FLAGS));
        assert_eq!(
            f.without(RecordFlags::NOT_PERSISTED),
            RecordFlags::RO_HAVE_READONLY
        );
        f.remove(RecordFlags::RO_FLAGS);
        assert_eq!(f, RecordFlags::AUTOMATIC);
        assert_eq!(f.to_string(), "AUTOMATIC");
        assert_eq!(RecordFlags::DEFAULT.to_string(), "DEFAULT");
        assert_eq!(
            RecordFlags(0x0001_0001).to_string(),
            "MIGRATED_WITH_DATA|0x00000001"
        );
    }
}
