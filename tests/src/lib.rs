//! Helpers shared by the multi-node tests. See ARCHITECTURE.md.
