//! The two built-in TDB hash functions.
//!
//! A TDB file records which hash it was created with only indirectly (the
//! `magic1_hash`/`magic2_hash` header fields are the hash of fixed strings),
//! so both functions must produce exactly the values libtdb 1.4 computes,
//! bit for bit, or the engine could neither open libtdb's files nor find
//! records in them.
//!
//! * [`tdb_old_hash`] — libtdb's historical default (files created without
//!   `TDB_INCOMPATIBLE_HASH`; CTDB persistent databases).
//! * [`jenkins_hash`] — Bob Jenkins' lookup3 `hashlittle` with initval 0
//!   (`TDB_INCOMPATIBLE_HASH`, mutex files, CTDB volatile databases). CTDB's
//!   `ctdb_hash` (database ids, lmaster selection) is the same function.
//!
//! Both are independent of host byte order and key alignment.

/// libtdb's default ("old") hash function.
///
/// `v = 0x238F13AF * len; v += key[i] << ((i * 5) % 24)` for every byte,
/// then `1103515243 * v + 12345`, all modulo 2^32.
pub fn tdb_old_hash(key: &[u8]) -> u32 {
    let mut value = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
    // shift = (i * 5) % 24 with libtdb's 32-bit `i * 5`: kept incrementally
    // (no division per byte) while `i * 5` cannot wrap, exactly beyond.
    const NO_WRAP: usize = (u32::MAX / 5) as usize + 1;
    let (head, tail) = key.split_at(key.len().min(NO_WRAP));
    let mut shift = 0u32;
    for &byte in head {
        value = value.wrapping_add(u32::from(byte) << shift);
        shift += 5;
        if shift >= 24 {
            shift -= 24;
        }
    }
    for (j, &byte) in tail.iter().enumerate() {
        let i = (NO_WRAP + j) as u32;
        value = value.wrapping_add(u32::from(byte) << (i.wrapping_mul(5) % 24));
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345)
}

#[inline(always)]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline(always)]
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// Little-endian word at `i` (the caller guarantees `i + 4 <= b.len()`).
#[inline(always)]
fn le32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Jenkins lookup3 `hashlittle(key, len, 0)`, as libtdb's
/// `tdb_jenkins_hash` and CTDB's `ctdb_hash`.
///
/// The key is consumed in 12-byte little-endian blocks; the final 1..=12
/// bytes are added (zero-padded) before the final mix. An empty key yields
/// the initial value `0xdeadbeef` without mixing. Whole words are loaded
/// at once (this is on every store/fetch/delete path).
pub fn jenkins_hash(key: &[u8]) -> u32 {
    let init = 0xDEAD_BEEFu32.wrapping_add(key.len() as u32);
    let (mut a, mut b, mut c) = (init, init, init);
    if key.is_empty() {
        return c;
    }
    // Every block but the last (which may be full) is mixed; the last
    // 1..=12 bytes go to the final mix.
    let mut rest = key;
    while rest.len() > 12 {
        a = a.wrapping_add(le32(rest, 0));
        b = b.wrapping_add(le32(rest, 4));
        c = c.wrapping_add(le32(rest, 8));
        mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    let n = rest.len();
    let tail: u128 = if key.len() >= 12 {
        // The last 12 bytes of the key end with the final block: load them
        // at once and shift the bytes of the previous block out.
        let mut last = [0u8; 16];
        last[..12].copy_from_slice(&key[key.len() - 12..]);
        u128::from_le_bytes(last) >> (8 * (12 - n))
    } else {
        let mut t = [0u8; 16];
        t[..n].copy_from_slice(rest);
        u128::from_le_bytes(t)
    };
    a = a.wrapping_add(tail as u32);
    b = b.wrapping_add((tail >> 32) as u32);
    c = c.wrapping_add((tail >> 64) as u32);
    final_mix(&mut a, &mut b, &mut c);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC1: &[u8] = b"TDB file\n\0";
    const MAGIC2: [u8; 4] = 0x2601_1999u32.to_le_bytes();

    #[test]
    fn old_hash_vectors() {
        assert_eq!(tdb_old_hash(MAGIC1), 0xF67D_9F0D);
        assert_eq!(tdb_old_hash(&MAGIC2), 0x3AFE_F920);
        assert_eq!(tdb_old_hash(b"key"), 0x2936_EE41);
        assert_eq!(tdb_old_hash(b""), 0x0000_3039);
    }

    #[test]
    fn jenkins_vectors() {
        assert_eq!(jenkins_hash(MAGIC1), 0xD7B6_94E5);
        assert_eq!(jenkins_hash(&MAGIC2), 0x76B9_440E);
        assert_eq!(jenkins_hash(b"key"), 0x7935_F00C);
        assert_eq!(jenkins_hash(b""), 0xDEAD_BEEF);
    }

    /// Published lookup3 driver values: hashlittle("Four score and seven
    /// years ago", 30, 0) = 0x17770551.
    #[test]
    fn jenkins_lookup3_reference() {
        assert_eq!(jenkins_hash(b"Four score and seven years ago"), 0x1777_0551);
    }

    /// Cover every tail length (1..=12) and multi-block keys: the hash of a
    /// key must not depend on where it sits in memory (alignment).
    #[test]
    fn jenkins_alignment_independent() {
        let buf: Vec<u8> = (0u8..64)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        for len in 0..40 {
            let reference = jenkins_hash(&buf[..len]);
            let mut shifted = vec![0u8; len + 3];
            for off in 1..4 {
                shifted[off..off + len].copy_from_slice(&buf[..len]);
                assert_eq!(
                    jenkins_hash(&shifted[off..off + len]),
                    reference,
                    "len {len}"
                );
            }
        }
    }

    /// Values computed by libtdb itself (python3-tdb files: the record's
    /// stored full_hash), for keys spanning 1..=25 bytes.
    #[test]
    fn libtdb_record_hashes() {
        for (key, old, jenkins) in LIBTDB_VECTORS {
            assert_eq!(tdb_old_hash(key), *old, "old hash of {key:?}");
            assert_eq!(jenkins_hash(key), *jenkins, "jenkins hash of {key:?}");
        }
    }

    #[rustfmt::skip]
    const LIBTDB_VECTORS: &[(&[u8], u32, u32)] = &[
        (b"a", 0x094A72E9, 0x58D68708),
        (b"ab", 0xE3B19DCE, 0xFBB3A8DF),
        (b"abc", 0xC225ADF3, 0x0E397631),
        (b"abcd", 0x30323A18, 0xB5F4889C),
        (b"hello", 0xE7255F4A, 0x34CBBC6E),
        (b"abcdef7", 0x5BD29B0B, 0x26331E7E),
        (b"12345678", 0x86F98900, 0x941B63D3),
        (b"123456789", 0x19F31525, 0x845D9A96),
        (b"0123456789", 0xD9CBC9E9, 0xF1AC04DC),
        (b"0123456789a", 0xA781303A, 0x505572AF),
        (b"0123456789ab", 0xB9AA375F, 0x1065E50A),
        (b"0123456789abc", 0xDC06D384, 0x7351CE56),
        (b"Four score and seven years ago", 0x996C77EB, 0x17770551),
        (b"locking.tdb\x00", 0x42FE72C5, 0x7A19D84D),
        (b"\xff\x00\x80\x7f\x01", 0x0D598987, 0xA628CD51),
        (b"__db_sequence_number__\x00", 0x7ADA95B3, 0xD64D294D),
    ];
}
