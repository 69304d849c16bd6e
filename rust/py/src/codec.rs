//! `Codec`: the native half of `fastcheckpoint.serde.RustSerializer`: encodes
//! with [`crate::encode`], decodes with [`crate::decode`] under its
//! [`Policy`] (see [`crate::policy`]), and reads delta chains.

use std::borrow::Cow;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList};

use crate::decode::{Decoder, GcPause};
use crate::encode::Encoder;
use crate::errors::corrupt_data_error;
use crate::policy::{keys, Policy};
use fastcheckpoint_core::envelope;

#[pyclass(frozen, module = "fastcheckpoint._native")]
pub struct Codec {
    policy: Policy,
}

#[pymethods]
impl Codec {
    #[new]
    #[pyo3(signature = (*, permissive, allowed=None, safe=None, safe_methods=None, raise_refused=false))]
    fn new(
        permissive: bool,
        allowed: Option<&Bound<'_, PyAny>>,
        safe: Option<&Bound<'_, PyAny>>,
        safe_methods: Option<&Bound<'_, PyAny>>,
        raise_refused: bool,
    ) -> PyResult<Self> {
        Ok(Codec {
            policy: Policy::new(
                permissive,
                raise_refused,
                keys(allowed)?,
                keys(safe)?,
                keys(safe_methods)?,
            ),
        })
    }

    #[getter]
    fn permissive(&self) -> bool {
        self.policy.permissive
    }

    /// Encodes `obj` as LangGraph's "msgpack" type.
    fn dumps<'py>(
        &self,
        py: Python<'py>,
        obj: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut e = Encoder::new(py)?;
        e.encode(obj)?;
        Ok(PyBytes::new(py, &e.buf))
    }

    /// Decodes LangGraph "msgpack" bytes.
    fn loads<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let _gc = GcPause::new(py, data.len());
        Decoder::new(py, &self.policy, data, 0).decode_all()
    }

    /// Decodes one of our envelopes on top of the decoded value of its delta
    /// base: a self-contained blob decodes whole (`base` unused); a list delta
    /// (whose header must name `base_version`) yields a new list holding
    /// `base[:keep]` followed by its own decoded elements. Elements kept from
    /// the base are the base's objects, not copies.
    #[pyo3(signature = (blob, base=None, base_version=None))]
    fn loads_step<'py>(
        &self,
        py: Python<'py>,
        blob: PyBackedBytes,
        base: Option<Bound<'py, PyAny>>,
        base_version: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.loads_steps(py, vec![(blob, base_version)], base)
    }

    /// Decodes `(blob, base_version)` steps, oldest first, as `loads_step`
    /// would one after the other, but builds only the newest value: the list's
    /// elements stay in one vector while the deltas apply, where a step at a
    /// time copied the whole list into a new one per delta. The GC is paused
    /// for the whole chain.
    #[pyo3(signature = (steps, base=None))]
    fn loads_steps<'py>(
        &self,
        py: Python<'py>,
        steps: Vec<(PyBackedBytes, Option<String>)>,
        base: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut opened = Vec::with_capacity(steps.len());
        for (blob, _) in &steps {
            opened.push(match bodies::get(blob) {
                Some((header, body)) => (header, Body::Shared(body)),
                None => {
                    let o = py
                        .detach(|| envelope::open(blob))
                        .map_err(crate::errors::core_error)?;
                    (o.delta, Body::Read(o.body))
                }
            });
        }
        let _gc = GcPause::new(py, opened.iter().map(|(_, b)| b.len()).sum());
        let mut value = base.map(Value::Whole);
        for ((blob, base_version), (delta, body)) in steps.iter().zip(opened) {
            let body = match body {
                Body::Read(Cow::Owned(read)) => {
                    Body::Shared(bodies::put(blob, delta.as_ref(), read))
                }
                body => body,
            };
            let Some(header) = delta else {
                value = Some(Value::Whole(
                    Decoder::new(py, &self.policy, &body, 0).decode_all()?,
                ));
                continue;
            };
            if base_version.as_deref() != Some(header.base.as_str()) {
                return Err(corrupt_data_error(format!(
                    "delta applies to version {:?}, but its row names {:?} as base",
                    header.base, base_version
                )));
            }
            let mut items = match value {
                Some(Value::Items(items)) => items,
                Some(Value::Whole(v)) if v.is_instance_of::<PyList>() => {
                    v.downcast::<PyList>()?.iter().collect()
                }
                _ => return Err(corrupt_data_error("a list delta's base is not a list")),
            };
            let keep = header.keep as usize;
            if keep > items.len() {
                return Err(corrupt_data_error(format!(
                    "delta keeps {keep} elements of a base holding {}",
                    items.len()
                )));
            }
            items.truncate(keep);
            let mut d = Decoder::new(py, &self.policy, &body, 0);
            while !d.at_end() {
                items.push(d.value(false)?);
            }
            if items.len() != header.total as usize {
                return Err(corrupt_data_error(format!(
                    "delta announces {} elements, rebuilt {}",
                    header.total,
                    items.len()
                )));
            }
            value = Some(Value::Items(items));
        }
        match value {
            Some(Value::Whole(v)) => Ok(v),
            Some(Value::Items(items)) => Ok(PyList::new(py, items)?.into_any()),
            None => Err(corrupt_data_error("no blob to decode")),
        }
    }

    /// Decodes a chain of our envelopes (newest first, ending in a keyframe).
    fn loads_chain<'py>(
        &self,
        py: Python<'py>,
        chain: Vec<PyBackedBytes>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let full = crate::writer::assemble(py, chain)?;
        let _gc = GcPause::new(py, full.len());
        Decoder::new(py, &self.policy, &full, 0).decode_all()
    }
}

/// A value while a delta chain is applied: decoded whole, or a list's
/// elements not yet put in a list.
enum Value<'py> {
    Whole(Bound<'py, PyAny>),
    Items(Vec<Bound<'py, PyAny>>),
}

/// A step's msgpack body: from the keyframe cache, or read from its blob.
enum Body<'a> {
    Shared(Arc<Vec<u8>>),
    Read(Cow<'a, [u8]>),
}

impl std::ops::Deref for Body<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Body::Shared(b) => b,
            Body::Read(b) => b,
        }
    }
}

/// Decompressed bodies of recently read large blobs (keyframes and segments),
/// with their delta headers, by their exact stored bytes: every read of a
/// thread's latest checkpoint goes through the same keyframe and segments
/// until the next ones are written, and decompressing them again cost ~0.45
/// ms of the 2.6 ms an 800-message chain took to decode. The stored bytes are
/// compared in full (they are small: the bodies compress well), so a hit is
/// always exact.
mod bodies {
    use std::sync::{Arc, Mutex};

    use fastcheckpoint_core::envelope::DeltaHeader;

    /// Bodies smaller than this decompress fast enough (a segment of 64
    /// short messages is above it).
    const MIN_BODY: usize = 16 * 1024;
    const MAX_ENTRIES: usize = 512;
    const MAX_BYTES: usize = 32 * 1024 * 1024;

    struct Entry {
        blob: Vec<u8>,
        header: Option<DeltaHeader>,
        body: Arc<Vec<u8>>,
    }

    /// Most recently used last.
    static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

    pub fn get(blob: &[u8]) -> Option<(Option<DeltaHeader>, Arc<Vec<u8>>)> {
        let mut cache = CACHE.lock().unwrap();
        let i = cache.iter().rposition(|e| e.blob == blob)?;
        let e = cache.remove(i);
        let found = (e.header.clone(), e.body.clone());
        cache.push(e);
        Some(found)
    }

    /// Keeps `body`, read from `blob`, if it is worth keeping; returns it shared.
    pub fn put(blob: &[u8], header: Option<&DeltaHeader>, body: Vec<u8>) -> Arc<Vec<u8>> {
        let body = Arc::new(body);
        if body.len() < MIN_BODY || body.len() > MAX_BYTES {
            return body;
        }
        let mut cache = CACHE.lock().unwrap();
        cache.push(Entry {
            blob: blob.to_vec(),
            header: header.cloned(),
            body: body.clone(),
        });
        let mut total: usize = cache.iter().map(|e| e.body.len()).sum();
        while cache.len() > MAX_ENTRIES || total > MAX_BYTES {
            total -= cache.remove(0).body.len();
        }
        body
    }
}
