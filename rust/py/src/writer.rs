//! `DeltaWriter`: turns a put's changed channel values into stored blobs.
//!
//! Lists become keyframes or element deltas (see `fastcheckpoint_core::delta`);
//! every other value becomes a plain envelope. All blobs carry a CRC32 and large
//! ones are zstd-compressed. Encoding needs the GIL; hashing, diffing, sealing
//! and compression run with it released. With `seal=False` the writer hands out
//! `Body` objects instead, which the SQLite store seals on the thread that
//! commits them: for the async savers, off the event loop.
//!
//! For the lists of the most recently written channels the writer also keeps
//! their encoding with an identity trace per element (`crate::trace`): at the
//! next put, elements whose trace still matches reuse their bytes and hash, and
//! only new or changed elements are encoded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fastcheckpoint_core::delta::{self, ListState, Policy};
use fastcheckpoint_core::envelope::{self, Unsealed};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::encode::Encoder;
use crate::errors::core_error;
use crate::trace::{Trace, Tracer};

/// The stored type tag of our envelopes (never "msgpack": upstream must not misread them).
pub const ENVELOPE_TYPE: &str = "fc1";

type ChannelKey = (String, String, String);
/// `(channel, version, type tag, bytes or Body, delta base version, rewrite)`
/// as a saver stores it; `rewrite`: the row is already stored and gets these
/// bytes and base instead (the same value, as a pointer to a segment).
type StoredBlob<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    &'static str,
    Bound<'py, PyAny>,
    Option<String>,
    bool,
);

/// An envelope not sealed yet (no checksum, not compressed): what `seal` would
/// store. The SQLite store seals it, without the GIL, on the thread that
/// writes it; `seal()` does it here for anyone else.
#[pyclass(frozen, module = "fastcheckpoint._native")]
pub struct Body(pub Arc<Unsealed>);

#[pymethods]
impl Body {
    /// The envelope `seal(data)` would make, sealed later.
    #[new]
    fn new(data: &[u8]) -> Self {
        Body(Arc::new(Unsealed {
            body: data.to_vec(),
            delta: None,
        }))
    }

    fn seal<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        sealed_now(py, &self.0)
    }
}

/// `u` sealed with the GIL released.
fn sealed_now<'py>(py: Python<'py>, u: &Unsealed) -> Bound<'py, PyBytes> {
    let blob = py.detach(|| u.seal());
    PyBytes::new(py, &blob)
}

/// `u` sealed now, or handed out as a `Body` to seal later.
fn stored<'py>(py: Python<'py>, u: Unsealed, seal: bool) -> PyResult<Bound<'py, PyAny>> {
    if seal {
        Ok(sealed_now(py, &u).into_any())
    } else {
        Ok(Bound::new(py, Body(Arc::new(u)))?.into_any())
    }
}

/// How many channels keep their encoded list and traces. They hold references
/// to the elements (the messages of a thread), so only recent ones are kept.
const RECENT: usize = 16;

#[pyclass(frozen, module = "fastcheckpoint._native")]
pub struct DeltaWriter {
    policy: Policy,
    states: Mutex<States>,
    /// Most recently written last.
    recent: Mutex<Vec<(ChannelKey, Encoded)>>,
}

/// One list as encoded: its elements' msgpack concatenated, their boundaries,
/// hashes (filled in while sealing) and traces (None: encode it every time).
#[derive(Default)]
struct Encoded {
    elems: Vec<u8>,
    bounds: Vec<usize>,
    hashes: Vec<u128>,
    traces: Vec<Option<Trace>>,
}

impl Encoded {
    /// The part of `prev` whose elements `list` still holds unchanged, in place.
    fn reuse<'py>(
        prev: Option<Encoded>,
        list: &Bound<'py, PyList>,
        tracer: &mut Tracer<'py>,
    ) -> Encoded {
        let mut enc = prev.unwrap_or_default();
        let same = enc
            .traces
            .iter()
            .zip(list.iter())
            .take_while(|(t, item)| t.as_ref().is_some_and(|t| tracer.matches(t, item)))
            .count();
        enc.traces.truncate(same);
        enc.hashes.truncate(same);
        enc.bounds.truncate(same + 1);
        if enc.bounds.is_empty() {
            enc.bounds.push(0); // bounds start at 0
        }
        enc.elems.truncate(enc.bounds[same]);
        enc
    }
}

/// What the writer knows of the last stored version of each list channel,
/// for the `cap` channels used most recently: a server's saver meets ever more
/// threads, and a channel forgotten is learned again when a run reads it
/// (`seed`), or else costs one keyframe.
struct States {
    map: HashMap<ChannelKey, (u64, ListState)>,
    tick: u64,
    cap: usize,
}

impl States {
    fn get(&mut self, key: &ChannelKey) -> Option<&ListState> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(key).map(|(used, state)| {
            *used = tick;
            &*state
        })
    }

    fn insert(&mut self, key: ChannelKey, state: ListState) {
        self.tick += 1;
        self.map.insert(key, (self.tick, state));
        if self.map.len() > self.cap {
            // Forget the least recently used quarter at once, so this scan
            // runs once per cap / 4 new channels.
            let mut ticks: Vec<u64> = self.map.values().map(|(used, _)| *used).collect();
            let cut = ticks.len() - (self.cap * 3 / 4).max(1);
            let (_, oldest_kept, _) = ticks.select_nth_unstable(cut);
            let oldest_kept = *oldest_kept;
            self.map.retain(|_, (used, _)| *used >= oldest_kept);
        }
    }
}

#[pymethods]
impl DeltaWriter {
    /// `ratio`: a list's deltas since its last segment may weigh up to this
    /// fraction of it before the next segment compacts them; `max_depth`: the
    /// most deltas since the last segment (see `delta::Policy` for both
    /// defaults); `min_len`: shorter lists are stored whole; `remember`: how
    /// many list channels (thread, namespace, channel) the writer keeps the
    /// stored element hashes of (16 bytes per element).
    #[new]
    #[pyo3(signature = (*, ratio=None, max_depth=None, min_len=None, remember=1024))]
    fn new(
        ratio: Option<f64>,
        max_depth: Option<u32>,
        min_len: Option<usize>,
        remember: usize,
    ) -> PyResult<Self> {
        let default = Policy::default();
        let ratio = ratio.unwrap_or(default.ratio);
        if !(ratio > 0.0 && ratio.is_finite()) {
            return Err(PyValueError::new_err("ratio must be a positive number"));
        }
        Ok(DeltaWriter {
            policy: Policy {
                ratio,
                max_depth: max_depth.unwrap_or(default.max_depth).max(1),
                min_len: min_len.unwrap_or(default.min_len),
            },
            states: Mutex::new(States {
                map: HashMap::new(),
                tick: 0,
                cap: remember.max(1),
            }),
            recent: Mutex::new(Vec::new()),
        })
    }

    /// Encodes the channels named in `new_versions`. Returns, per channel,
    /// `(channel, version, type, bytes, base, False)` where `base` is the
    /// version a list delta applies to (None when self-contained); channels
    /// absent from `values` are `("empty", b"")` as upstream stores them. A
    /// list stored as a segment is followed by `(channel, version, type,
    /// bytes, base, True)` for each earlier version it covers: that stored
    /// row must get these bytes and base (the segment's version), in the same
    /// transaction and after the segment's row (a pointer into the segment,
    /// rebuilding the same list). With `seal=False` the
    /// bytes of our envelopes are `Body` objects, sealed by the store.
    #[pyo3(signature = (thread_id, checkpoint_ns, values, new_versions, seal=true))]
    fn encode_blobs<'py>(
        &self,
        py: Python<'py>,
        thread_id: &str,
        checkpoint_ns: &str,
        values: &Bound<'py, PyDict>,
        new_versions: &Bound<'py, PyDict>,
        seal: bool,
    ) -> PyResult<Vec<StoredBlob<'py>>> {
        let mut out = Vec::with_capacity(new_versions.len());
        for (ch, ver) in new_versions.iter() {
            // An absent value and None, as upstream stores them: a dialect
            // may need to tell None from a value without decoding
            // (postgres._schema.NO_SEED_TYPES).
            let value = match values.get_item(&ch)? {
                Some(v) if !v.is_none() => v,
                absent_or_none => {
                    let tag = if absent_or_none.is_none() {
                        "empty"
                    } else {
                        "null"
                    };
                    out.push((ch, ver, tag, PyBytes::new(py, b"").into_any(), None, false));
                    continue;
                }
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
                let body = Unsealed {
                    body: e.buf,
                    delta: None,
                };
                out.push((ch, ver, ENVELOPE_TYPE, stored(py, body, seal)?, None, false));
                continue;
            };
            let key = (
                thread_id.to_owned(),
                checkpoint_ns.to_owned(),
                ch_s.to_str()?.to_owned(),
            );
            let version = ver_s.to_str()?.to_owned();
            // Encode each element on its own (the array is header + their
            // concatenation), except those the last put encoded and that are unchanged.
            let mut tracer = Tracer::new(py);
            let mut enc = Encoded::reuse(self.take_recent(&key), list, &mut tracer);
            let mut e = Encoder::new(py)?;
            e.buf = std::mem::take(&mut enc.elems);
            for item in list.iter().skip(enc.traces.len()) {
                e.encode(&item)?;
                enc.bounds.push(e.buf.len());
                enc.traces.push(tracer.record(&item));
            }
            enc.elems = e.buf;
            let put = py.detach(|| self.plan_list(key.clone(), version.clone(), &mut enc));
            out.push((
                ch.clone(),
                ver.clone(),
                ENVELOPE_TYPE,
                stored(py, put.body, seal)?,
                put.base,
                false,
            ));
            for (covered, pointer) in put.rewrites {
                out.push((
                    ch.clone(),
                    PyString::new(py, &covered).into_any(),
                    ENVELOPE_TYPE,
                    stored(py, pointer, seal)?,
                    Some(version.clone()),
                    true,
                ));
            }
            self.keep_recent(key, enc);
        }
        Ok(out)
    }

    /// Learns a list channel's stored version from a read of it (its blob
    /// chain, newest first, ending with a keyframe), so that a saver that did
    /// not write it (a new process, a saver per request, another worker) stores
    /// its next put as a delta rather than the whole list again. A read of a
    /// thread's latest checkpoint (`head`) replaces what the writer knew, since
    /// the next put continues it; any other read (an older checkpoint) only
    /// teaches a writer that knows nothing of the channel. A chain that is not
    /// a list teaches nothing (and is no error here).
    ///
    /// `value`, the list just decoded from that chain by a `head` read, is
    /// what a graph run goes on with: each element gets an identity trace
    /// against its stored bytes, so the next put encodes only what the run
    /// added or changed, as if this writer had written those objects itself.
    #[pyo3(signature = (thread_id, checkpoint_ns, channel, version, chain, head=false, value=None))]
    #[allow(clippy::too_many_arguments)]
    fn seed(
        &self,
        py: Python<'_>,
        thread_id: &str,
        checkpoint_ns: &str,
        channel: &str,
        version: &str,
        chain: Vec<PyBackedBytes>,
        head: bool,
        value: Option<Bound<'_, PyAny>>,
    ) {
        let key = (
            thread_id.to_owned(),
            checkpoint_ns.to_owned(),
            channel.to_owned(),
        );
        let list = value
            .filter(|_| head)
            .and_then(|v| v.downcast_into_exact::<PyList>().ok());
        let at_version = |states: &mut States| states.get(&key).map(|s| s.version == version);
        match at_version(&mut self.states.lock().unwrap()) {
            // This writer stored that version: only the objects are new.
            Some(true) => {
                if let Some(list) = list {
                    self.retrace(py, &key, &list);
                }
                return;
            }
            Some(false) if !head => return,
            _ => {}
        }
        let contents = py.detach(|| {
            let parts: Vec<&[u8]> = chain.iter().map(|b| b.as_ref()).collect();
            delta::chain_contents(&parts, version.to_owned(), self.policy)
        });
        let Ok((state, elems, bounds)) = contents else {
            return;
        };
        let enc = list.filter(|l| l.len() + 1 == bounds.len()).map(|l| {
            let mut tracer = Tracer::new(py);
            Encoded {
                traces: l.iter().map(|item| tracer.record(&item)).collect(),
                hashes: state.hashes.clone(),
                elems,
                bounds,
            }
        });
        {
            let mut states = self.states.lock().unwrap();
            // Another thread may have learned it meanwhile.
            if at_version(&mut states).is_some_and(|same| same || !head) {
                return;
            }
            states.insert(key.clone(), state);
        }
        self.take_recent(&key);
        if let Some(enc) = enc {
            self.keep_recent(key, enc);
        }
    }

    /// Drops what the writer remembers for a thread (or for all threads), so the
    /// next put of each list is a keyframe. Call when stored blobs are removed
    /// or a write was rolled back.
    #[pyo3(signature = (thread_id=None))]
    fn forget(&self, thread_id: Option<&str>) {
        let mut st = self.states.lock().unwrap();
        let mut recent = self.recent.lock().unwrap();
        match thread_id {
            Some(t) => {
                st.map.retain(|k, _| k.0 != t);
                recent.retain(|(k, _)| k.0 != t);
            }
            None => {
                st.map.clear();
                recent.clear();
            }
        }
    }
}

impl DeltaWriter {
    /// Stores one list as planned by `delta::store` (a keyframe, a delta on
    /// the channel's previous version, or a segment with the rewrites that
    /// turn the deltas it covers into pointers). Hashes the elements `enc` has
    /// no hash for yet.
    fn plan_list(&self, key: ChannelKey, version: String, enc: &mut Encoded) -> delta::Stored {
        let (elems, bounds) = (&enc.elems, &enc.bounds);
        let have = enc.hashes.len();
        enc.hashes.extend(
            bounds[have..]
                .windows(2)
                .map(|w| delta::hash(&elems[w[0]..w[1]])),
        );
        let mut states = self.states.lock().unwrap();
        let prev = states.get(&key);
        let (stored, next) = delta::store(
            prev,
            version,
            elems,
            bounds,
            enc.hashes.clone(),
            self.policy,
        );
        states.insert(key, next);
        stored
    }

    /// Traces `list`'s elements in place of those of the encoding kept for
    /// `key` (the same stored version, read back as new objects).
    fn retrace(&self, py: Python<'_>, key: &ChannelKey, list: &Bound<'_, PyList>) {
        let Some(mut enc) = self.take_recent(key) else {
            return;
        };
        if enc.hashes.len() == list.len() && enc.bounds.len() == list.len() + 1 {
            let mut tracer = Tracer::new(py);
            enc.traces = list.iter().map(|item| tracer.record(&item)).collect();
        }
        self.keep_recent(key.clone(), enc);
    }

    fn take_recent(&self, key: &ChannelKey) -> Option<Encoded> {
        let mut recent = self.recent.lock().unwrap();
        let i = recent.iter().position(|(k, _)| k == key)?;
        Some(recent.remove(i).1)
    }

    fn keep_recent(&self, key: ChannelKey, enc: Encoded) {
        let mut recent = self.recent.lock().unwrap();
        recent.push((key, enc));
        if recent.len() > RECENT {
            recent.remove(0);
        }
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
