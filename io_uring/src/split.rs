//! Splitting one socket into a read half and a write half for two tasks of
//! the same core (a [`crate::PacketReader`] in one, a [`crate::SendQueue`]
//! writer in the other).
//!
//! Why not `futures_lite::io::split`: it guards the stream with an
//! `Arc<Mutex>`, which a single-threaded core does not need. The halves here
//! share an `Rc<RefCell>` borrowed only for the length of one poll, so they
//! are `!Send` and cost no atomics. glommio streams keep separate read and
//! write sources, so a pending read and a pending write do not disturb each
//! other.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};

/// Read half of a split stream.
#[derive(Debug)]
pub struct ReadHalf<S>(Rc<RefCell<S>>);

/// Write half of a split stream.
#[derive(Debug)]
pub struct WriteHalf<S>(Rc<RefCell<S>>);

/// Splits `stream` into halves usable by two tasks of the current core.
pub fn split<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> (ReadHalf<S>, WriteHalf<S>) {
    let s = Rc::new(RefCell::new(stream));
    (ReadHalf(s.clone()), WriteHalf(s))
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadHalf<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteHalf<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}
