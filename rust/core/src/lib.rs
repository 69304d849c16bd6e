//! fastcheckpoint core: everything that does not need Python.
//!
//! * [`wire`]: msgpack framing helpers (skip a value, split an array) with depth
//!   and size bounds, used to slice element bytes without decoding them.
//! * [`envelope`]: our own blob envelope (magic, version, flags, CRC32, optional
//!   zstd body, optional list-delta header).
//! * [`delta`]: element-level list deltas: the keyframe/delta decision and the
//!   reconstruction of a full msgpack array from a delta chain.
//! * [`store`]: the SQLite store (rusqlite): batched transactions, WAL, lock waits.
//! * [`sqlite_api`]: which SQLite library the store calls, bound at run time.
//! * [`crash`]: crash points on the write path (test builds only).

pub mod crash;
pub mod delta;
pub mod envelope;
pub mod error;
pub mod sqlite_api;
pub mod store;
pub mod wire;

pub use error::{Error, Result};
