//! Packet framing over glommio sockets. See ARCHITECTURE.md.
