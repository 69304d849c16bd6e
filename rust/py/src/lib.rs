//! The `fastcheckpoint._native` extension module (private; the public API is Python).
//!
//! * [`codec`]: `Codec`, the Python <-> msgpack codec compatible with LangGraph's
//!   `JsonPlusSerializer` ("msgpack" type, ext codes 0-7 as named in core's
//!   `wire::ext`); it drives
//!   * [`encode`]: Python objects -> msgpack, each type classified once by
//!     [`classify`], and
//!   * [`decode`]: msgpack -> Python objects, bounded in depth and size, which
//!     rebuilds classes under
//!   * [`policy`]: what may be rebuilt (the security policy) and how.
//! * [`pyrefs`]: the Python types and functions the codec looks up once.
//! * [`writer`]: `DeltaWriter`, the per-saver state that turns channel values into
//!   checksummed keyframe/delta blobs, and the chain reader.
//! * [`trace`]: identity traces that let the writer reuse unchanged elements' bytes.
//! * [`store`]: `SqliteStore`, core's `store` (batched SQLite transactions) bound
//!   for Python, run without the GIL.
//! * [`cipher`]: `AesEax`, native AES-EAX in the format of LangGraph's pycryptodome
//!   cipher, under rotating keys.
//! * [`errors`]: the single mapping from Rust errors to the Python exception tree.

mod cipher;
mod classify;
mod codec;
mod decode;
mod encode;
mod errors;
mod policy;
mod pyrefs;
mod store;
mod trace;
mod writer;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<codec::Codec>()?;
    m.add_class::<cipher::AesEax>()?;
    m.add_class::<writer::DeltaWriter>()?;
    m.add_class::<writer::Body>()?;
    m.add_class::<store::SqliteStore>()?;
    #[cfg(unix)]
    m.add_class::<store::CommitQueue>()?;
    m.add_function(wrap_pyfunction!(store::sqlite_binding, m)?)?;
    m.add_function(wrap_pyfunction!(store::sqlite_error, m)?)?;
    m.add_function(wrap_pyfunction!(store::bind_sqlite_symbols, m)?)?;
    m.add_function(wrap_pyfunction!(writer::assemble_chain, m)?)?;
    m.add_function(wrap_pyfunction!(trace::traces_read_dict_tags, m)?)?;
    m.add_function(wrap_pyfunction!(writer::delta_base, m)?)?;
    m.add_function(wrap_pyfunction!(writer::blob_info, m)?)?;
    m.add_function(wrap_pyfunction!(writer::is_envelope, m)?)?;
    m.add_function(wrap_pyfunction!(writer::seal, m)?)?;
    m.add("ENVELOPE_TYPE", writer::ENVELOPE_TYPE)?;
    Ok(())
}
