//! TDB 1.4 compatible storage, byte-compatible with Samba's libtdb 1.4.8 and
//! partitioned across cores.
//!
//! # Format (see `shared/spec/tdb-format.md`)
//!
//! A file is a 168-byte header (magic `"TDB file\n\0"`, version
//! `0x2601196D`, hash size, `rwlocks`, `recovery_start`, sequence number,
//! magic hashes that identify the hash function, feature flags, mutex area
//! size), the free-list head at 168, `hash_size` chain heads from 172, then
//! records: a 24-byte header (`next`, `rec_len`, `key_len`, `data_len`,
//! `full_hash`, `magic`), key, data, slack and a 4-byte tailer holding the
//! record's total size. All words are little-endian `u32`. Records are
//! prepended to chains; deleted records become dead (and stay on the chain
//! while a traversal holds them, or up to `max_dead` per chain: 5 with
//! `TDB_VOLATILE` or [`OpenOptions::max_dead`]),
//! freed records go to a single LIFO free list and merge with a free left
//! neighbour; allocation is best fit with 25 % over-allocation, split from
//! the end; the file grows like libtdb's `tdb_expand`. With
//! `TDB_MUTEX_LOCKING` a page-aligned area of robust pthread mutexes comes
//! first and every logical offset is shifted by its size (lock offsets are
//! not). Transactions use libtdb's recovery record, so a crash mid-commit is
//! repaired identically by libtdb and by this engine.
//!
//! # Locking
//!
//! Locks are libtdb's byte-range locks (open 0, active 4, transaction 8,
//! free list 164, chain `b` at 168+4b, allrecord `[168, EOF)`, record locks
//! at record offsets), but taken as Linux **OFD** locks: they belong to an
//! open file description, so each core's own descriptor excludes the other
//! cores exactly like another process would, conflicts with libtdb's
//! classic POSIX locks, and closing one descriptor never drops another
//! core's locks. In mutex mode chain and free-list locks are the mutexes in
//! the file ([`sys::mutex`]).
//!
//! # Ownership model
//!
//! [`Database::open`] opens a file once per node and returns a cheap shared
//! handle. [`Database::partition`]`(core, ncores)` returns a [`CoreStore`]
//! that owns the `core`-th of `ncores` contiguous ranges of chains (chain
//! heads and chain mutexes of neighbouring chains share cache lines, so
//! they belong to the same core) and the records on
//! them; a key of another core's chain gives [`Error::NotOwner`], and
//! [`Database::owner_of`] routes keys. A `CoreStore` has its own descriptor
//! and its own mapping, remapped lazily when another handle or process has
//! grown the file, so the store/fetch path takes no lock between cores
//! beyond the per-chain lock libtdb also takes. Allocation first reuses dead
//! records of the record's own chain (up to `max_dead` are kept, as ctdbd's
//! `tdb_set_max_dead(5)`), then — for partitions of a multi-core database —
//! the partition's *reserve*: dead records parked on one of its own chains
//! under a key that hashes there (valid dead records for libtdb and
//! `tdbtool check`), refilled in batches, so cores rarely meet on the
//! free-list lock. Only then the free list (with file growth) is used.
//! Likewise a partition's delete (with `max_dead` 0) parks the dead record
//! on its reserve instead of freeing it, and the reserve is given back to
//! the free list in batches.
//! Operations that need the whole file (transactions, wipe, check, lockall)
//! need a handle with `ncores == 1` ([`Database::handle`]), which is how
//! persistent databases are served. A thread must not hold a lock through
//! one handle while waiting for another handle of the same file (OFD locks
//! of different handles exclude each other even within one thread).
//!
//! Traversal copies one chain at a time under its chain lock and runs the
//! callbacks after unlocking, so it needs no record locks and one lock pair
//! per non-empty chain. Freeing a dead record still respects record locks
//! held by libtdb traversals (tested with `F_OFD_GETLK` under the chain
//! lock, equivalent to libtdb's probe-and-unlock).
//!
//! Values are always copied in and out of the mapping: the file is shared
//! with other processes, so no reference into it ever escapes [`sys`].
//!
//! # Deliberate differences from libtdb
//!
//! * Opening a non-empty file that is not a TDB with `create` fails with
//!   [`Error::BadHeader`] instead of silently overwriting it.
//! * After replaying a recovery record, the space past the restored end of
//!   file (left by the interrupted transaction) is put on the free list, so
//!   `tdb_check` passes; libtdb leaves it unaccounted.
//! * Nested transactions, `TDB_INTERNAL`, `TDB_NOMMAP` and byte-swapped
//!   files are refused with clear errors.

#![deny(unsafe_code)]

pub mod check;
pub mod db;
pub mod error;
pub mod format;
pub mod hash;
pub mod ltdb;
pub mod store;
#[allow(unsafe_code)]
pub mod sys;
mod transaction;

pub use check::CheckReport;
pub use db::{fuzz_cleanup, fuzz_open, Database, OpenOptions};
pub use error::{Error, Result};
pub use format::{flags, HashKind};
pub use store::{ChainWaiter, CoreStore, RecordGuard, StoreFlag, Walk};
