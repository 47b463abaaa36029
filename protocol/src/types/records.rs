//! Record marshalling: the ltdb header, one record (`rec_data`) and a
//! buffer of records (`rec_buffer`).
//!
//! Why a borrowed buffer plus an iterator: record buffers carry whole
//! databases during recovery, so decoding validates the records once and
//! then hands out views into the receive buffer without copying. Encoding
//! goes through [`RecBufferBuilder`], which appends records to one `Vec`.

use crate::error::ProtocolError;
use crate::types::misc::{pull_datan, push_datan};
use crate::wire::{Put, Reader, Wire};

/// Size of [`LtdbHeader`] on the wire and in the ltdb.
pub const LTDB_HEADER_SIZE: usize = 24;
/// Fixed part of a `rec_data`: length, reqid, keylen, datalen.
pub const REC_DATA_HEADER_SIZE: usize = 16;

/// `ctdb_ltdb_header` (24 bytes): rsn, dmaster, reserved1, flags, 4 pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct LtdbHeader {
    pub rsn: u64,
    pub dmaster: u32,
    pub reserved1: u32,
    pub flags: u32,
}

impl LtdbHeader {
    pub const FLAG_MIGRATED_WITH_DATA: u32 = 0x0001_0000;
    pub const FLAG_VACUUM_MIGRATED: u32 = 0x0002_0000;
    pub const FLAG_AUTOMATIC: u32 = 0x0004_0000;
    pub const RO_HAVE_DELEGATIONS: u32 = 0x0100_0000;
    pub const RO_HAVE_READONLY: u32 = 0x0200_0000;
    pub const RO_REVOKING_READONLY: u32 = 0x0400_0000;
    pub const RO_REVOKE_COMPLETE: u32 = 0x0800_0000;
    pub const RO_FLAGS: u32 = Self::RO_HAVE_DELEGATIONS
        | Self::RO_HAVE_READONLY
        | Self::RO_REVOKING_READONLY
        | Self::RO_REVOKE_COMPLETE;

    /// Splits a header off the front of `data` (`ctdb_ltdb_header_extract`):
    /// returns the header and the value after it.
    pub fn split(data: &[u8]) -> Result<(LtdbHeader, &[u8]), ProtocolError> {
        let mut r = Reader::new(data);
        let h = LtdbHeader::pull(&mut r)?;
        Ok((h, r.remaining()))
    }
}

impl<'a> Wire<'a> for LtdbHeader {
    fn wire_len(&self) -> usize {
        LTDB_HEADER_SIZE
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u64(self.rsn);
        out.put_u32(self.dmaster);
        out.put_u32(self.reserved1);
        out.put_u32(self.flags);
        out.put_zeros(4);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let h = LtdbHeader {
            rsn: r.u64("ltdb_header rsn")?,
            dmaster: r.u32("ltdb_header dmaster")?,
            reserved1: r.u32("ltdb_header reserved1")?,
            flags: r.u32("ltdb_header flags")?,
        };
        r.skip(4, "ltdb_header padding")?;
        Ok(h)
    }
}

/// One record, `ctdb_rec_data_old`: `u32 length` (whole record), reqid,
/// keylen, datalen, key, data.
///
/// `header`, when set, is sent in front of `data` and counted in datalen,
/// as upstream's push does. Decoding never sets it: the header stays at the
/// front of `data`; use [`RecData::split_header`] to take it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RecData<'a> {
    pub reqid: u32,
    pub header: Option<LtdbHeader>,
    pub key: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> RecData<'a> {
    pub fn new(reqid: u32, key: &'a [u8], data: &'a [u8]) -> Self {
        RecData {
            reqid,
            header: None,
            key,
            data,
        }
    }

    pub fn with_header(reqid: u32, header: LtdbHeader, key: &'a [u8], data: &'a [u8]) -> Self {
        RecData {
            reqid,
            header: Some(header),
            key,
            data,
        }
    }

    /// The ltdb header and value: `header` if set, else parsed from the
    /// front of `data` (an error if data is shorter than 24 bytes).
    pub fn split_header(&self) -> Result<(LtdbHeader, &'a [u8]), ProtocolError> {
        match self.header {
            Some(h) => Ok((h, self.data)),
            None => LtdbHeader::split(self.data),
        }
    }

    /// The datalen field: data plus header if one is attached.
    pub fn data_len(&self) -> usize {
        self.data.len() + self.header.map_or(0, |_| LTDB_HEADER_SIZE)
    }

    /// True for the end marker of a traverse (keylen 0 and datalen 0).
    pub fn is_end_marker(&self) -> bool {
        self.key.is_empty() && self.data_len() == 0
    }
}

impl<'a> Wire<'a> for RecData<'a> {
    fn wire_len(&self) -> usize {
        REC_DATA_HEADER_SIZE + self.key.len() + self.data_len()
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.wire_len() as u32);
        out.put_u32(self.reqid);
        out.put_u32(self.key.len() as u32);
        out.put_u32(self.data_len() as u32);
        out.put_bytes(self.key);
        if let Some(h) = &self.header {
            h.push(out);
        }
        out.put_bytes(self.data);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let length = r.u32("rec_data length")?;
        // The whole record must be present before we look inside it.
        let have = r.remaining().len() + 4;
        if (length as usize) > have {
            return Err(ProtocolError::Short {
                what: "rec_data",
                need: length as usize,
                have,
            });
        }
        let reqid = r.u32("rec_data reqid")?;
        let keylen = r.u32("rec_data keylen")?;
        let datalen = r.u32("rec_data datalen")?;
        let total = REC_DATA_HEADER_SIZE as u64 + u64::from(keylen) + u64::from(datalen);
        if total != u64::from(length) {
            return Err(ProtocolError::BadValue {
                what: "rec_data length (must be 16 + keylen + datalen)",
                value: u64::from(length),
            });
        }
        let key = r.bytes(keylen as usize, "rec_data key")?;
        let data = r.bytes(datalen as usize, "rec_data data")?;
        Ok(RecData {
            reqid,
            header: None,
            key,
            data,
        })
    }
}

/// `ctdb_rec_buffer` / `ctdb_marshall_buffer`: db_id, `u32 count`, then
/// `count` records back to back. A decoded buffer has been validated
/// record by record, so iterating it cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecBuffer<'a> {
    pub db_id: u32,
    count: u32,
    records: &'a [u8],
}

impl<'a> RecBuffer<'a> {
    /// A buffer with no records.
    pub fn empty(db_id: u32) -> Self {
        RecBuffer {
            db_id,
            count: 0,
            records: &[],
        }
    }

    /// Validates `records` as exactly `count` back-to-back records.
    pub fn new(db_id: u32, count: u32, records: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(records);
        for _ in 0..count {
            RecData::pull(&mut r)?;
        }
        if !r.is_empty() {
            return Err(ProtocolError::Trailing {
                what: "rec_buffer records",
                extra: r.remaining().len(),
            });
        }
        Ok(RecBuffer {
            db_id,
            count,
            records,
        })
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The marshalled records (without db_id and count).
    pub fn records_bytes(&self) -> &'a [u8] {
        self.records
    }

    pub fn iter(&self) -> RecBufferIter<'a> {
        RecBufferIter {
            r: Reader::new(self.records),
            left: self.count,
        }
    }
}

impl<'a> RecBuffer<'a> {
    /// Appends the file form upstream's `ctdb_rec_buffer_write` uses for
    /// `ctdb backupdb` files and recovery spill files: db_id, count, the
    /// records' byte length as a 64-bit `size_t`, then the records.
    pub fn push_file(&self, out: &mut Vec<u8>) {
        out.put_u32(self.db_id);
        out.put_u32(self.count);
        out.put_u64(self.records.len() as u64);
        out.put_bytes(self.records);
    }

    /// Reads one buffer in the [`RecBuffer::push_file`] form, validating
    /// that the records fill the stated length exactly.
    pub fn pull_file(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let db_id = r.u32("rec_buffer file db_id")?;
        let count = r.u32("rec_buffer file count")?;
        let len = r.u64("rec_buffer file length")?;
        let len = usize::try_from(len).map_err(|_| ProtocolError::BadValue {
            what: "rec_buffer file length",
            value: len,
        })?;
        let records = r.bytes(len, "rec_buffer file records")?;
        if u64::from(count) > (len / REC_DATA_HEADER_SIZE) as u64 {
            return Err(ProtocolError::BadValue {
                what: "rec_buffer file count",
                value: u64::from(count),
            });
        }
        RecBuffer::new(db_id, count, records)
    }
}

impl<'a> IntoIterator for &RecBuffer<'a> {
    type Item = RecData<'a>;
    type IntoIter = RecBufferIter<'a>;
    fn into_iter(self) -> RecBufferIter<'a> {
        self.iter()
    }
}

/// Iterator over the records of a [`RecBuffer`], borrowing them.
#[derive(Debug, Clone)]
pub struct RecBufferIter<'a> {
    r: Reader<'a>,
    left: u32,
}

impl<'a> Iterator for RecBufferIter<'a> {
    type Item = RecData<'a>;
    fn next(&mut self) -> Option<RecData<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated at construction; a failure here ends the iteration.
        match RecData::pull(&mut self.r) {
            Ok(d) => Some(d),
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

impl<'a> Wire<'a> for RecBuffer<'a> {
    fn wire_len(&self) -> usize {
        8 + self.records.len()
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.db_id);
        out.put_u32(self.count);
        out.put_bytes(self.records);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let db_id = r.u32("rec_buffer db_id")?;
        let count = r.count(REC_DATA_HEADER_SIZE, "rec_buffer count")? as u32;
        let start = r.remaining();
        let before = r.pos();
        for _ in 0..count {
            RecData::pull(r)?;
        }
        let used = r.pos() - before;
        Ok(RecBuffer {
            db_id,
            count,
            records: &start[..used],
        })
    }
}

/// Builds a record buffer for sending; [`RecBufferBuilder::as_rec_buffer`]
/// gives the [`RecBuffer`] view to put in a control or message, and
/// [`RecBufferBuilder::into_wire_bytes`] the finished encoding without a
/// copy (the buffer keeps room for db_id and count at its front).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecBufferBuilder {
    pub db_id: u32,
    count: u32,
    /// 8 reserved bytes, then the marshalled records.
    buf: Vec<u8>,
}

impl Default for RecBufferBuilder {
    fn default() -> Self {
        RecBufferBuilder::new(0)
    }
}

impl RecBufferBuilder {
    pub fn new(db_id: u32) -> Self {
        Self::with_capacity(db_id, 0)
    }

    /// A builder with room for `bytes` bytes of records.
    pub fn with_capacity(db_id: u32, bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(8 + bytes);
        buf.put_zeros(8);
        RecBufferBuilder {
            db_id,
            count: 0,
            buf,
        }
    }

    /// Appends a record (`ctdb_rec_buffer_add`): the header, when given,
    /// goes in front of `data`.
    pub fn add(&mut self, reqid: u32, header: Option<&LtdbHeader>, key: &[u8], data: &[u8]) {
        let rec = RecData {
            reqid,
            header: header.copied(),
            key,
            data,
        };
        self.add_rec(&rec);
    }

    pub fn add_rec(&mut self, rec: &RecData<'_>) {
        rec.push(&mut self.buf);
        self.count += 1;
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of marshalled records so far (without db_id and count); what
    /// upstream compares with RecBufferSizeLimit.
    pub fn records_len(&self) -> usize {
        self.buf.len() - 8
    }

    /// Encoded size of the whole buffer.
    pub fn wire_len(&self) -> usize {
        self.buf.len()
    }

    /// Drops all records, keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.truncate(8);
        self.count = 0;
    }

    pub fn as_rec_buffer(&self) -> RecBuffer<'_> {
        RecBuffer {
            db_id: self.db_id,
            count: self.count,
            records: &self.buf[8..],
        }
    }

    /// The finished `rec_buffer` encoding, without copying the records.
    pub fn into_wire_bytes(mut self) -> Vec<u8> {
        self.buf[0..4].copy_from_slice(&self.db_id.to_ne_bytes());
        self.buf[4..8].copy_from_slice(&self.count.to_ne_bytes());
        self.buf
    }
}

/// `ctdb_key_data` (SCHEDULE_FOR_DELETION): db_id, 4 pad, ltdb header,
/// then the key as `u32 len` + bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct KeyData<'a> {
    pub db_id: u32,
    pub header: LtdbHeader,
    pub key: &'a [u8],
}

impl<'a> Wire<'a> for KeyData<'a> {
    fn wire_len(&self) -> usize {
        8 + LTDB_HEADER_SIZE + 4 + self.key.len()
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.db_id);
        out.put_zeros(4);
        self.header.push(out);
        push_datan(out, self.key);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let db_id = r.u32("key_data db_id")?;
        r.skip(4, "key_data padding")?;
        Ok(KeyData {
            db_id,
            header: LtdbHeader::pull(r)?,
            key: pull_datan(r, "key_data key")?,
        })
    }
}
