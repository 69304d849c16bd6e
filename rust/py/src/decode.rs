//! msgpack -> Python objects, reading what `JsonPlusSerializer` writes (and what
//! `encode` writes). Declared sizes are checked against the remaining bytes
//! before anything is allocated, nesting is bounded, and every ext payload goes
//! through the codec's security policy before any class is called.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::errors::deserialization_error;
use crate::policy::{Policy, Resolved};
use crate::pyrefs::std;

use fastcheckpoint_core::wire::{ext, Marker, MAX_DEPTH};
/// Map keys up to this length are shared within one decode...
const KEY_CACHE_LEN: usize = 64;
/// ...in a direct-mapped table of this many slots (a power of two)...
const KEY_CACHE_SLOTS: usize = 256;
/// ...of an input at least this long (a small one rarely repeats a key).
const KEY_CACHE_MIN_INPUT: usize = 1024;

/// A history repeats the same few dozen keys thousands of times. A key is
/// kept in the slot its bytes hash to or the one beside it; when both are
/// taken it replaces the neighbour, so a collision only costs a new
/// (interned) string. Cheaper than a hash map: no general-purpose hash of the
/// bytes, no probing.
struct KeyCache<'a, 'py>(Vec<Option<(&'a [u8], Bound<'py, PyString>)>>);

impl<'a, 'py> KeyCache<'a, 'py> {
    fn new() -> Self {
        Self((0..KEY_CACHE_SLOTS).map(|_| None).collect())
    }

    /// From the first and last 8 bytes (a shorter key: all of it) and the
    /// length: keys of one schema differ there.
    fn slot(b: &[u8]) -> usize {
        let n = b.len();
        let (head, tail) = match (b.first_chunk::<8>(), b.last_chunk::<8>()) {
            (Some(h), Some(t)) => (u64::from_le_bytes(*h), u64::from_le_bytes(*t)),
            _ => (b.iter().fold(0, |w, &c| w << 8 | c as u64), 0),
        };
        let h = (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 56) as usize & (KEY_CACHE_SLOTS - 1)
    }
}

pub struct Decoder<'a, 'py> {
    py: Python<'py>,
    policy: &'a Policy,
    buf: &'a [u8],
    pos: usize,
    depth: usize,
    /// Map keys, each built once and interned, so pydantic field names match
    /// it by identity.
    keys: Option<KeyCache<'a, 'py>>,
    /// Classes this decode has resolved, by (module, name).
    classes: Vec<(&'a str, &'a str, Arc<Resolved>)>,
}

/// Pauses Python's cyclic GC while a large value is built, as msgpack-python
/// advises: the thousands of new containers would otherwise set off repeated
/// collections (~17% of a history's decode) that cannot find garbage in them.
/// A GC someone else disabled is left disabled.
pub struct GcPause(bool);

/// Bodies from this size up pause the GC.
const GC_PAUSE_MIN: usize = 64 * 1024;

impl GcPause {
    pub fn new(_py: Python<'_>, input_len: usize) -> Self {
        GcPause(input_len >= GC_PAUSE_MIN && unsafe { pyo3::ffi::PyGC_Disable() } == 1)
    }
}

impl Drop for GcPause {
    fn drop(&mut self) {
        if self.0 {
            unsafe { pyo3::ffi::PyGC_Enable() };
        }
    }
}

fn py_str<'py>(py: Python<'py>, b: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    #[cfg(not(windows))]
    if !b.is_ascii() && b.len() <= WIDE_MAX {
        if let Ok(text) = std::str::from_utf8(b) {
            return wide_str(py, text);
        }
    }
    // CPython validates while decoding: one pass instead of two. (It also words
    // the error of invalid text.)
    unsafe {
        let ptr = pyo3::ffi::PyUnicode_DecodeUTF8(
            b.as_ptr().cast(),
            b.len() as pyo3::ffi::Py_ssize_t,
            c"strict".as_ptr(),
        );
        Bound::from_owned_ptr_or_err(py, ptr)
    }
    .map_err(|e| deserialization_error(format!("invalid UTF-8 in msgpack str: {e}")))
}

/// Non-ASCII text up to this many bytes is built from UTF-32.
#[cfg(not(windows))]
const WIDE_MAX: usize = 32;

/// Short non-ASCII text through `PyUnicode_FromWideChar` (wchar_t is UTF-32
/// here): it finds the widest character first and fills a string of that
/// width, where CPython's UTF-8 decoder widens the string at each wider
/// character it meets (copying it each time; ~110 ns for "héllo wörld ✓ 🎉").
#[cfg(not(windows))]
fn wide_str<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    let mut wide = [0u32; WIDE_MAX];
    let mut n = 0;
    for c in text.chars() {
        wide[n] = c as u32; // at most one char per byte: it fits
        n += 1;
    }
    // SAFETY: `n` code points, none a surrogate (`text` is a str); wchar_t is
    // 32 bits wide off Windows.
    unsafe {
        let ptr =
            pyo3::ffi::PyUnicode_FromWideChar(wide.as_ptr().cast(), n as pyo3::ffi::Py_ssize_t);
        Bound::from_owned_ptr_or_err(py, ptr)
    }
}

/// Bytes of the length (or value) that follows a marker of an 8/16/32/64-bit kind.
fn width(m: Marker) -> usize {
    match m {
        Marker::U8 | Marker::Bin8 | Marker::Str8 | Marker::Ext8 => 1,
        Marker::U16
        | Marker::Bin16
        | Marker::Str16
        | Marker::Ext16
        | Marker::Array16
        | Marker::Map16 => 2,
        Marker::U32
        | Marker::Bin32
        | Marker::Str32
        | Marker::Ext32
        | Marker::Array32
        | Marker::Map32 => 4,
        Marker::U64 => 8,
        _ => unreachable!("{m:?} has no length field"),
    }
}

fn truncated() -> PyErr {
    deserialization_error("truncated msgpack data: the bytes end inside a value")
}

impl<'a, 'py> Decoder<'a, 'py> {
    pub fn new(py: Python<'py>, policy: &'a Policy, buf: &'a [u8], depth: usize) -> Self {
        Decoder {
            py,
            policy,
            buf,
            pos: 0,
            depth,
            keys: (buf.len() >= KEY_CACHE_MIN_INPUT).then(KeyCache::new),
            classes: Vec::new(),
        }
    }

    /// True once every byte has been decoded.
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Decodes exactly one value spanning the whole buffer.
    pub fn decode_all(mut self) -> PyResult<Bound<'py, PyAny>> {
        self.whole()
    }

    fn whole(&mut self) -> PyResult<Bound<'py, PyAny>> {
        let v = self.value(false)?;
        self.end()?;
        Ok(v)
    }

    fn end(&self) -> PyResult<()> {
        if self.pos != self.buf.len() {
            return Err(deserialization_error(format!(
                "{} trailing bytes after the msgpack value",
                self.buf.len() - self.pos
            )));
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> PyResult<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(truncated());
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> PyResult<usize> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0usize, |a, b| (a << 8) | *b as usize))
    }

    fn enter(&mut self) -> PyResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(deserialization_error(format!(
                "msgpack nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    /// A str value or key (its marker not yet read).
    fn str(&mut self) -> PyResult<Bound<'py, PyAny>> {
        let b = self.str_bytes()?.expect("called at a str marker");
        py_str(self.py, b)
    }

    /// The next value's bytes if it is a str (consumed), else None (not consumed).
    fn str_bytes(&mut self) -> PyResult<Option<&'a [u8]>> {
        let Some(&m) = self.buf.get(self.pos) else {
            return Err(truncated());
        };
        let len_bytes = match Marker::from_u8(m) {
            Marker::FixStr(n) => {
                self.pos += 1;
                return self.take(n as usize).map(Some);
            }
            Marker::Str8 => 1,
            Marker::Str16 => 2,
            Marker::Str32 => 4,
            _ => return Ok(None),
        };
        self.pos += 1;
        let n = self.be(len_bytes)?;
        self.take(n).map(Some)
    }

    /// A str read as Rust text (class and method names), never built in Python.
    fn rust_str(&mut self, what: &str) -> PyResult<&'a str> {
        let b = self
            .str_bytes()?
            .ok_or_else(|| deserialization_error(format!("ext {what} is not a str")))?;
        std::str::from_utf8(b)
            .map_err(|e| deserialization_error(format!("invalid UTF-8 in msgpack str: {e}")))
    }

    fn key(&mut self) -> PyResult<Bound<'py, PyAny>> {
        if self.keys.is_none() {
            return self.value(true);
        }
        // Not a str: nothing was consumed.
        let Some(b) = self.str_bytes()? else {
            return self.value(true);
        };
        if b.len() > KEY_CACHE_LEN {
            return py_str(self.py, b);
        }
        let keys = self.keys.as_mut().expect("checked above");
        let at = KeyCache::slot(b);
        // Two ways: a key whose slot is taken settles in the neighbouring one.
        for i in [at, at ^ 1] {
            match &keys.0[i] {
                Some((seen, k)) if *seen == b => return Ok(k.clone().into_any()),
                _ => {}
            }
        }
        let Ok(text) = std::str::from_utf8(b) else {
            return py_str(self.py, b); // CPython words the error
        };
        let k = PyString::intern(self.py, text);
        let free = if keys.0[at].is_none() { at } else { at ^ 1 };
        keys.0[free] = Some((b, k.clone()));
        Ok(k.into_any())
    }

    fn array(&mut self, n: usize, as_key: bool) -> PyResult<Bound<'py, PyAny>> {
        // Each element takes at least one byte: bound the allocation by the input.
        if n > self.buf.len() - self.pos {
            return Err(truncated());
        }
        self.enter()?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value(as_key)?);
        }
        self.depth -= 1;
        Ok(if as_key {
            PyTuple::new(self.py, items)?.into_any()
        } else {
            PyList::new(self.py, items)?.into_any()
        })
    }

    fn map(&mut self, n: usize, as_key: bool) -> PyResult<Bound<'py, PyAny>> {
        if as_key {
            return Err(deserialization_error("a msgpack map cannot be a dict key"));
        }
        if n.saturating_mul(2) > self.buf.len() - self.pos {
            return Err(truncated());
        }
        self.enter()?;
        let d = PyDict::new(self.py);
        for _ in 0..n {
            let k = self.key()?;
            let v = self.value(false)?;
            d.set_item(k, v)?;
        }
        self.depth -= 1;
        Ok(d.into_any())
    }

    fn ext(&mut self, n: usize) -> PyResult<Bound<'py, PyAny>> {
        let code = self.take(1)?[0] as i8;
        let data = self.take(n)?;
        self.enter()?;
        // The payload is decoded in place by this decoder, sharing its caches.
        let outer = (self.buf, self.pos);
        (self.buf, self.pos) = (data, 0);
        let v = self.ext_payload(code);
        (self.buf, self.pos) = outer;
        self.depth -= 1;
        v
    }

    fn ext_payload(&mut self, code: i8) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        match code {
            ext::DELTA_SNAPSHOT => {
                let v = self.whole()?;
                std(py)?.delta_snapshot.bind(py).call1((v,))
            }
            ext::NUMPY_ARRAY => {
                let v = self.whole()?;
                std(py)?.cold.bind(py).call_method1("numpy_from", (v,))
            }
            ext::CONSTRUCTOR_SINGLE_ARG..=ext::PYDANTIC_V2 => self.constructor(code),
            _ => Err(deserialization_error(format!(
                "unknown msgpack ext code {code}"
            ))),
        }
    }

    /// `[module, name, payload]`, plus the method name for code 3 (a fourth
    /// item for pydantic is upstream's unused method name).
    fn constructor(&mut self, code: i8) -> PyResult<Bound<'py, PyAny>> {
        let n = match Marker::from_u8(self.take(1)?[0]) {
            Marker::FixArray(n) => n as usize,
            Marker::Array16 => self.be(2)?,
            Marker::Array32 => self.be(4)?,
            _ => {
                return Err(deserialization_error(format!(
                    "ext {code} payload is not an array"
                )))
            }
        };
        let min = if code == ext::METHOD_SINGLE_ARG { 4 } else { 3 };
        if n < min {
            return Err(deserialization_error(format!(
                "ext {code} payload has {n} items"
            )));
        }
        self.enter()?;
        let module = self.rust_str("module name")?;
        let name = self.rust_str("class name")?;
        let payload = self.value(false)?;
        let method = if code == ext::METHOD_SINGLE_ARG {
            Some(self.rust_str("method name")?)
        } else {
            None
        };
        for _ in min..n {
            self.value(false)?;
        }
        self.end()?;
        self.depth -= 1;
        let known = self
            .classes
            .iter()
            .find(|(m, c, _)| *m == module && *c == name)
            .map(|(_, _, r)| r.clone());
        let (built, resolved) = self
            .policy
            .construct(self.py, code, module, name, &payload, method, known)?;
        if let (Some(r), true) = (resolved, self.classes.len() < 64) {
            self.classes.push((module, name, r));
        }
        Ok(built)
    }

    pub fn value(&mut self, as_key: bool) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let m = Marker::from_u8(self.take(1)?[0]);
        Ok(match m {
            Marker::FixPos(n) => (n as i64).into_pyobject(py)?.into_any(),
            Marker::FixNeg(n) => (n as i64).into_pyobject(py)?.into_any(),
            Marker::FixMap(n) => return self.map(n as usize, as_key),
            Marker::FixArray(n) => return self.array(n as usize, as_key),
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                self.pos -= 1; // str_bytes reads the marker again
                return self.str();
            }
            Marker::Null => py.None().into_bound(py),
            Marker::False => false.into_pyobject(py)?.to_owned().into_any(),
            Marker::True => true.into_pyobject(py)?.to_owned().into_any(),
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                let n = self.be(width(m))?;
                PyBytes::new(py, self.take(n)?).into_any()
            }
            Marker::Ext8 | Marker::Ext16 | Marker::Ext32 => {
                let n = self.be(width(m))?;
                return self.ext(n);
            }
            Marker::F32 => {
                let b = self.take(4)?;
                (f32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64)
                    .into_pyobject(py)?
                    .into_any()
            }
            Marker::F64 => {
                let b = self.take(8)?;
                f64::from_be_bytes(b.try_into().unwrap())
                    .into_pyobject(py)?
                    .into_any()
            }
            Marker::U8 | Marker::U16 | Marker::U32 | Marker::U64 => {
                (self.be(width(m))? as u64).into_pyobject(py)?.into_any()
            }
            Marker::I8 => (self.take(1)?[0] as i8 as i64)
                .into_pyobject(py)?
                .into_any(),
            Marker::I16 => {
                let b = self.take(2)?;
                (i16::from_be_bytes([b[0], b[1]]) as i64)
                    .into_pyobject(py)?
                    .into_any()
            }
            Marker::I32 => {
                let b = self.take(4)?;
                (i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64)
                    .into_pyobject(py)?
                    .into_any()
            }
            Marker::I64 => {
                let b = self.take(8)?;
                i64::from_be_bytes(b.try_into().unwrap())
                    .into_pyobject(py)?
                    .into_any()
            }
            Marker::FixExt1 => return self.ext(1),
            Marker::FixExt2 => return self.ext(2),
            Marker::FixExt4 => return self.ext(4),
            Marker::FixExt8 => return self.ext(8),
            Marker::FixExt16 => return self.ext(16),
            Marker::Array16 | Marker::Array32 => {
                let n = self.be(width(m))?;
                return self.array(n, as_key);
            }
            Marker::Map16 | Marker::Map32 => {
                let n = self.be(width(m))?;
                return self.map(n, as_key);
            }
            Marker::Reserved => return Err(deserialization_error("invalid msgpack marker 0xc1")),
        })
    }
}
