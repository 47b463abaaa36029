//! CTDB configuration files. See ARCHITECTURE.md.
