//! Primitive marshalling: a bounds-checked reader over a receive buffer and the
//! [`Wire`] trait every packet payload and data type implements.
//!
//! Why a trait with `pull(&mut Reader)`: upstream marshals each type with a
//! `_len`, `_push` and `_pull` triple; keeping the same shape lets us check our
//! layouts against theirs one type at a time. Decoding borrows from the
//! receive buffer (`'a`), so keys, values and record buffers are never copied
//! on the way in. Every read is checked: a short or malformed buffer gives a
//! [`ProtocolError`], never a panic or an over-read.
//!
//! Everything is host byte order (little-endian on the platforms we support),
//! as upstream: CTDB never swaps bytes.

use crate::error::ProtocolError;

/// A cursor over a borrowed buffer. All reads are bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Takes the next `n` bytes; `what` names the field for the error.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        let have = self.buf.len() - self.pos;
        if n > have {
            return Err(ProtocolError::Short {
                what,
                need: n,
                have,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), ProtocolError> {
        self.bytes(n, what).map(|_| ())
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ProtocolError> {
        let s = self.bytes(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16, ProtocolError> {
        Ok(u16::from_ne_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        Ok(u32::from_ne_bytes(self.array(what)?))
    }
    pub fn i32(&mut self, what: &'static str) -> Result<i32, ProtocolError> {
        Ok(i32::from_ne_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        Ok(u64::from_ne_bytes(self.array(what)?))
    }
    pub fn i64(&mut self, what: &'static str) -> Result<i64, ProtocolError> {
        Ok(i64::from_ne_bytes(self.array(what)?))
    }
    pub fn f64(&mut self, what: &'static str) -> Result<f64, ProtocolError> {
        Ok(f64::from_ne_bytes(self.array(what)?))
    }

    /// A `u32` element count that is about to drive a loop over elements of
    /// at least `min_elem` bytes each: rejected early when the buffer cannot
    /// possibly hold that many, so a hostile count never causes a large
    /// allocation.
    pub fn count(&mut self, min_elem: usize, what: &'static str) -> Result<usize, ProtocolError> {
        let n = self.u32(what)? as usize;
        let have = self.buf.len() - self.pos;
        if min_elem > 0 && n > have / min_elem {
            return Err(ProtocolError::Short {
                what,
                need: n.saturating_mul(min_elem),
                have,
            });
        }
        Ok(n)
    }
}

/// Writers append to a caller-owned, reusable `Vec<u8>`.
pub trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_i32(&mut self, v: i32);
    fn put_u64(&mut self, v: u64);
    fn put_i64(&mut self, v: i64);
    fn put_f64(&mut self, v: f64);
    fn put_bytes(&mut self, v: &[u8]);
    fn put_zeros(&mut self, n: usize);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v)
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_ne_bytes())
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_ne_bytes())
    }
    fn put_i32(&mut self, v: i32) {
        self.extend_from_slice(&v.to_ne_bytes())
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_ne_bytes())
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_ne_bytes())
    }
    fn put_f64(&mut self, v: f64) {
        self.extend_from_slice(&v.to_ne_bytes())
    }
    fn put_bytes(&mut self, v: &[u8]) {
        self.extend_from_slice(v)
    }
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0)
    }
}

/// A value with a CTDB wire form. `'a` is the lifetime of the receive buffer
/// that decoded values may borrow from.
pub trait Wire<'a>: Sized {
    /// Exact number of bytes [`Wire::push`] appends.
    fn wire_len(&self) -> usize;
    /// Appends the wire form to `out`.
    fn push(&self, out: &mut Vec<u8>);
    /// Reads one value from `r`, consuming exactly its wire form.
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError>;

    /// Decodes a whole buffer; trailing bytes are an error.
    fn from_bytes(buf: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(buf);
        let v = Self::pull(&mut r)?;
        if !r.is_empty() {
            return Err(ProtocolError::Trailing {
                what: std::any::type_name::<Self>(),
                extra: r.remaining().len(),
            });
        }
        Ok(v)
    }

    /// Encodes into a fresh vector (tests, cold paths).
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.wire_len());
        self.push(&mut v);
        v
    }
}

macro_rules! wire_int {
    ($t:ty, $get:ident, $put:ident) => {
        impl<'a> Wire<'a> for $t {
            fn wire_len(&self) -> usize {
                std::mem::size_of::<$t>()
            }
            fn push(&self, out: &mut Vec<u8>) {
                out.$put(*self)
            }
            fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
                r.$get(stringify!($t))
            }
        }
    };
}
wire_int!(u8, u8, put_u8);
wire_int!(u16, u16, put_u16);
wire_int!(u32, u32, put_u32);
wire_int!(i32, i32, put_i32);
wire_int!(u64, u64, put_u64);
wire_int!(i64, i64, put_i64);
wire_int!(f64, f64, put_f64);

/// Large values (statistics, tunable lists) are boxed inside enums so that
/// every packet value stays small; the box marshals as its content.
impl<'a, T: Wire<'a>> Wire<'a> for Box<T> {
    fn wire_len(&self) -> usize {
        (**self).wire_len()
    }
    fn push(&self, out: &mut Vec<u8>) {
        (**self).push(out)
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        T::pull(r).map(Box::new)
    }
}
