//! TDB 1.4 compatible storage. See ARCHITECTURE.md.
pub mod hash;
pub mod ltdb;
