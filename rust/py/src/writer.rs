//! `DeltaWriter`: turns a put's changed channel values into stored blobs.
//!
//! Lists become keyframes or element deltas (see `fastcheckpoint_core::delta`);
//! every other value becomes a plain envelope. All blobs carry a CRC32 and large
//! ones are zstd-compressed. Encoding needs the GIL; hashing, diffing, sealing
//! and compression run with it released.

use std::collections::HashMap;
use std::sync::Mutex;

use fastcheckpoint_core::delta::{self, ListState, Policy};
use fastcheckpoint_core::envelope;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::encode::Encoder;
use crate::errors::core_error;

/// The stored type tag of our envelopes (never "msgpack": upstream must not misread them).
pub const ENVELOPE_TYPE: &str = "fc1";

type ChannelKey = (String, String, String);
/// `(channel, version, type tag, bytes, delta base version)` as a saver stores it.
type StoredBlob<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    &'static str,
    Bound<'py, PyBytes>,
    Option<String>,
);

#[pyclass(frozen, module = "fastcheckpoint._native")]
pub struct DeltaWriter {
    policy: Policy,
    states: Mutex<HashMap<ChannelKey, ListState>>,
}

/// One encoded list, ready to be sealed without the GIL.
struct Pending {
    elems: Vec<u8>,
    bounds: Vec<usize>,
}

#[pymethods]
impl DeltaWriter {
    #[new]
    #[pyo3(signature = (*, max_depth=64, min_len=4))]
    fn new(max_depth: u32, min_len: usize) -> Self {
        DeltaWriter {
            policy: Policy { max_depth, min_len },
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Encodes the channels named in `new_versions`. Returns, per channel,
    /// `(channel, version, type, bytes, base)` where `base` is the version a
    /// list delta applies to (None when self-contained); channels absent from
    /// `values` are `("empty", b"")` as upstream stores them.
    fn encode_blobs<'py>(
        &self,
        py: Python<'py>,
        thread_id: &str,
        checkpoint_ns: &str,
        values: &Bound<'py, PyDict>,
        new_versions: &Bound<'py, PyDict>,
    ) -> PyResult<Vec<StoredBlob<'py>>> {
        let mut out = Vec::with_capacity(new_versions.len());
        for (ch, ver) in new_versions.iter() {
            let Some(value) = values.get_item(&ch)? else {
                out.push((ch, ver, "empty", PyBytes::new(py, b""), None));
                continue;
            };
            let list = value
                .downcast_exact::<PyList>()
                .ok()
                .filter(|l| l.len() >= self.policy.min_len);
            let (Some(list), Ok(ver_s), Ok(ch_s)) =
                (list, ver.downcast::<PyString>(), ch.downcast::<PyString>())
            else {
                let mut e = Encoder::new(py)?;
                e.encode(&value)?;
                let blob = py.detach(|| envelope::seal(&e.buf, None));
                out.push((ch, ver, ENVELOPE_TYPE, PyBytes::new(py, &blob), None));
                continue;
            };
            // Encode each element on its own: the array is header + their concatenation.
            let mut e = Encoder::new(py)?;
            let mut bounds = Vec::with_capacity(list.len() + 1);
            bounds.push(0);
            for item in list.iter() {
                e.encode(&item)?;
                bounds.push(e.buf.len());
            }
            let pending = Pending {
                elems: e.buf,
                bounds,
            };
            let key = (
                thread_id.to_owned(),
                checkpoint_ns.to_owned(),
                ch_s.to_str()?.to_owned(),
            );
            let version = ver_s.to_str()?.to_owned();
            let (blob, base) = py.detach(|| self.seal_list(key, version, pending));
            out.push((ch, ver, ENVELOPE_TYPE, PyBytes::new(py, &blob), base));
        }
        Ok(out)
    }

    /// Drops what the writer remembers for a thread (or for all threads), so the
    /// next put of each list is a keyframe. Call when stored blobs are removed
    /// or a write was rolled back.
    #[pyo3(signature = (thread_id=None))]
    fn forget(&self, thread_id: Option<&str>) {
        let mut st = self.states.lock().unwrap();
        match thread_id {
            Some(t) => st.retain(|k, _| k.0 != t),
            None => st.clear(),
        }
    }
}

impl DeltaWriter {
    /// Seals one list as a delta against the channel's previous version when
    /// that pays, else as a keyframe; returns the blob and its base version.
    fn seal_list(&self, key: ChannelKey, version: String, p: Pending) -> (Vec<u8>, Option<String>) {
        let hashes: Vec<u128> = p
            .bounds
            .windows(2)
            .map(|w| delta::hash(&p.elems[w[0]..w[1]]))
            .collect();
        let mut states = self.states.lock().unwrap();
        let prev = states.get(&key);
        let keep = delta::plan(prev, &hashes, self.policy);
        let (blob, depth, base) = match (keep, prev) {
            (Some(k), Some(prev)) => (
                delta::seal_list(&p.elems, &p.bounds, Some((k, &prev.version))),
                prev.depth + 1,
                Some(prev.version.clone()),
            ),
            _ => (delta::seal_list(&p.elems, &p.bounds, None), 0, None),
        };
        states.insert(
            key,
            ListState {
                version,
                hashes,
                depth,
            },
        );
        (blob, base)
    }
}

/// The base version a delta blob applies to, or None for a self-contained blob.
#[pyfunction]
pub fn delta_base(blob: &[u8]) -> PyResult<Option<String>> {
    envelope::delta_base(blob).map_err(core_error)
}

/// A blob's header, checksum verified: (delta base or None, kept elements,
/// total elements, decompressed body length, compressed?).
#[pyfunction]
pub fn blob_info(blob: &[u8]) -> PyResult<(Option<String>, u32, u32, usize, bool)> {
    let i = envelope::info(blob).map_err(core_error)?;
    let (base, keep, total) = match i.delta {
        Some(d) => (Some(d.base), d.keep, d.total),
        None => (None, 0, 0),
    };
    Ok((base, keep, total, i.body_len, i.compressed))
}

/// Wraps whole msgpack bytes in an envelope (checksum; zstd when large), the
/// GIL released: how the savers store checkpoint rows and pending writes.
#[pyfunction]
pub fn seal<'py>(py: Python<'py>, data: PyBackedBytes) -> Bound<'py, PyBytes> {
    let blob = py.detach(|| envelope::seal(&data, None));
    PyBytes::new(py, &blob)
}

/// True when the bytes start like one of our envelopes.
#[pyfunction]
pub fn is_envelope(blob: &[u8]) -> bool {
    envelope::is_envelope(blob)
}

/// Rebuilds the msgpack bytes of a chain (newest first), with the GIL released.
pub fn assemble(py: Python<'_>, chain: Vec<PyBackedBytes>) -> PyResult<Vec<u8>> {
    py.detach(|| {
        let parts: Vec<&[u8]> = chain.iter().map(|b| b.as_ref()).collect();
        delta::assemble(&parts)
    })
    .map_err(core_error)
}

/// Rebuilds the msgpack bytes of a chain (newest first) without decoding them.
#[pyfunction]
pub fn assemble_chain<'py>(
    py: Python<'py>,
    chain: Vec<PyBackedBytes>,
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &assemble(py, chain)?))
}
