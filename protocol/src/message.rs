//! REQ_MESSAGE bodies typed by srvid.
//!
//! The body types and the srvid table are defined with the other
//! marshalled types in [`crate::types`] (`protocol_message.c`'s switch);
//! this module re-exports them next to the packet layer and lets a typed
//! body ride in a [`ReqMessage`](crate::packet::ReqMessage) through
//! [`Body`].

use crate::packet::Body;

pub use crate::types::{DisableMessage, ElectionMessage, MessageData, SrvidMessage};

impl Body for MessageData<'_> {
    fn body_len(&self) -> usize {
        self.wire_len()
    }
    fn push_body(&self, out: &mut Vec<u8>) {
        self.push(out)
    }
}
