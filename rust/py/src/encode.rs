//! Python objects -> msgpack, byte-compatible with LangGraph's `JsonPlusSerializer`
//! (ormsgpack with `_msgpack_default`).
//!
//! Exact builtin types are recognised by pointer first; other types are classified
//! once per type object (in upstream's precedence order) and cached; rare types go
//! to a Python cold path (`fastcheckpoint._cold.default`) that mirrors upstream.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, LazyLock, Mutex};

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString,
    PyTuple, PyType,
};

use crate::errors::serialization_error;
use crate::pyrefs::{std, Std};

/// Deepest nesting we encode (a cycle ends here instead of overflowing the stack).
pub use fastcheckpoint_core::wire::MAX_DEPTH;
/// Largest encoding we produce.
pub const MAX_OUTPUT: usize = 1 << 31;

use fastcheckpoint_core::wire::ext;

/// How instances of one type are encoded.
enum Kind {
    /// Subclasses ormsgpack encodes natively (str/int/dict/list subclasses).
    Str,
    Int,
    Dict,
    List,
    DeltaSnapshot,
    /// Pydantic v2 model whose `model_dump()` equals its field values: read `__dict__`.
    PydanticFields {
        fields: Vec<Field>,
        extra: bool,
        /// Its `__dict__` and `__pydantic_extra__` are pydantic's own plain
        /// attributes, so an identity trace (`crate::trace`) may stand for it.
        traceable: bool,
        /// For a traceable model with extras: pydantic's own descriptor.
        extra_slot: Option<ExtraSlot>,
    },
    /// Any other pydantic v2 model: call `model_dump()` as upstream does.
    PydanticDump,
    NamedTuple,
    Uuid,
    Decimal,
    Collection,
    Datetime,
    Timedelta,
    Date,
    Time,
    Timezone,
    Enum,
    Send,
    Dataclass {
        fields: Vec<Py<PyString>>,
    },
    Item {
        slots: Vec<Py<PyString>>,
    },
    Cold,
}

/// `BaseModel.__pydantic_extra__` (a slot), read through its `__get__`: a
/// generic getattr looked the name up on the instance's type at every read
/// (~30 ns per message of every put's trace check).
struct ExtraSlot {
    descr: Py<PyAny>,
    get: ffi::descrgetfunc,
}

impl ExtraSlot {
    fn of(descr: Bound<'_, PyAny>) -> Option<ExtraSlot> {
        // SAFETY: a live type object; any type may be asked since Python 3.10.
        let get = unsafe { ffi::PyType_GetSlot(descr.get_type_ptr(), ffi::Py_tp_descr_get) };
        (!get.is_null()).then(|| ExtraSlot {
            descr: descr.unbind(),
            // SAFETY: what the type holds in its tp_descr_get slot.
            get: unsafe { std::mem::transmute::<*mut std::ffi::c_void, ffi::descrgetfunc>(get) },
        })
    }
}

/// A field name and its msgpack encoding, computed once per type.
struct Field {
    name: Py<PyString>,
    packed: Vec<u8>,
}

pub struct Entry {
    _ty: Py<PyType>, // keeps the type alive so its address is never reused
    /// msgpack of `(type.__module__, type.__name__)`, the head of every ext tuple.
    head: Vec<u8>,
    kind: Kind,
}

/// Type objects are keyed by address: an identity hash is enough.
#[derive(Default, Clone, Copy)]
struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | *b as u64;
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type AddrMap<V> = HashMap<usize, V, std::hash::BuildHasherDefault<AddrHasher>>;

static TYPES: LazyLock<Mutex<AddrMap<Arc<Entry>>>> =
    LazyLock::new(|| Mutex::new(AddrMap::default()));

fn has(ty: &Bound<'_, PyType>, attr: &str) -> bool {
    ty.getattr(attr).map(|a| a.is_callable()).unwrap_or(false)
}

fn names(list: Bound<'_, PyAny>) -> PyResult<Vec<Py<PyString>>> {
    list.try_iter()?
        .map(|n| Ok(n?.downcast_into::<PyString>()?.unbind()))
        .collect()
}

/// True when `model_dump()` of this class is just its fields (and extras) by name.
fn pydantic_fields(py: Python<'_>, ty: &Bound<'_, PyType>) -> PyResult<Option<(Vec<Field>, bool)>> {
    let cold = std(py)?.cold.bind(py);
    let plan = cold.call_method1("pydantic_plain_fields", (ty,))?;
    if plan.is_none() {
        return Ok(None);
    }
    let (fields, extra): (Bound<'_, PyAny>, bool) = plan.extract()?;
    let fields = names(fields)?
        .into_iter()
        .map(|name| {
            let mut packed = Vec::new();
            rmp::encode::write_str(&mut packed, name.bind(py).to_str()?).ok();
            Ok(Field { name, packed })
        })
        .collect::<PyResult<_>>()?;
    Ok(Some((fields, extra)))
}

fn classify(py: Python<'_>, s: &Std, ty: &Bound<'_, PyType>) -> PyResult<Kind> {
    let is_sub = |base: &Py<PyType>| ty.is_subclass(base.bind(py)).unwrap_or(false);
    let is_enum = is_sub(&s.enum_base);
    // ormsgpack encodes these subclasses natively (enums pass through to default).
    if !is_enum {
        if ty.is_subclass_of::<PyString>()? {
            return Ok(Kind::Str);
        }
        if ty.is_subclass_of::<PyInt>()? {
            return Ok(Kind::Int);
        }
        if ty.is_subclass_of::<PyDict>()? {
            return Ok(Kind::Dict);
        }
        if ty.is_subclass_of::<PyList>()? {
            return Ok(Kind::List);
        }
    }
    // Upstream `_msgpack_default` precedence from here on.
    if ty.is(s.delta_snapshot.bind(py)) {
        return Ok(Kind::DeltaSnapshot);
    }
    if has(ty, "model_dump") {
        return Ok(match pydantic_fields(py, ty)? {
            Some((fields, extra)) => {
                let cold = std(py)?.cold.bind(py);
                let traceable = cold.call_method1("traceable_model", (ty,))?.is_truthy()?;
                let extra_slot = if traceable && extra {
                    ExtraSlot::of(cold.call_method0("pydantic_extra_descriptor")?)
                } else {
                    None
                };
                Kind::PydanticFields {
                    fields,
                    extra,
                    traceable,
                    extra_slot,
                }
            }
            None => Kind::PydanticDump,
        });
    }
    if has(ty, "get_secret_value") || has(ty, "dict") {
        return Ok(Kind::Cold);
    }
    if has(ty, "_asdict") {
        return Ok(Kind::NamedTuple);
    }
    if is_sub(&s.uuid) {
        return Ok(Kind::Uuid);
    }
    if is_sub(&s.decimal) {
        return Ok(Kind::Decimal);
    }
    if ty.is_subclass_of::<PySet>()? || ty.is_subclass_of::<PyFrozenSet>()? || is_sub(&s.deque) {
        return Ok(Kind::Collection);
    }
    if is_sub(&s.datetime) {
        return Ok(Kind::Datetime);
    }
    if is_sub(&s.timedelta) {
        return Ok(Kind::Timedelta);
    }
    if is_sub(&s.date) {
        return Ok(Kind::Date);
    }
    if is_sub(&s.time) {
        return Ok(Kind::Time);
    }
    if is_sub(&s.timezone) {
        return Ok(Kind::Timezone);
    }
    if is_enum {
        return Ok(Kind::Enum);
    }
    if ty.is(s.send.bind(py)) {
        return Ok(Kind::Send);
    }
    if ty.hasattr("__dataclass_fields__")? {
        let cold = s.cold.bind(py);
        return Ok(Kind::Dataclass {
            fields: names(cold.call_method1("dataclass_fields", (ty,))?)?,
        });
    }
    if ty.is(s.item.bind(py)) {
        return Ok(Kind::Item {
            slots: names(ty.getattr("__slots__")?)?,
        });
    }
    Ok(Kind::Cold)
}

impl Entry {
    /// For a traceable pydantic model: its field names and whether extras are read.
    pub fn traced_fields(&self) -> Option<(impl Iterator<Item = &Py<PyString>> + Clone, bool)> {
        match &self.kind {
            Kind::PydanticFields {
                fields,
                extra,
                traceable: true,
                ..
            } => Some((fields.iter().map(|f| &f.name), *extra)),
            _ => None,
        }
    }

    /// `obj.__pydantic_extra__` of a pydantic model of this type.
    pub fn extras<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match &self.kind {
            Kind::PydanticFields {
                extra_slot: Some(slot),
                ..
            } => {
                let ty = obj.get_type_ptr().cast::<ffi::PyObject>();
                // SAFETY: the descriptor's own __get__ with a live instance and its type.
                unsafe {
                    Bound::from_owned_ptr_or_err(
                        obj.py(),
                        (slot.get)(slot.descr.as_ptr(), obj.as_ptr(), ty),
                    )
                }
            }
            _ => obj.getattr(intern!(obj.py(), "__pydantic_extra__")),
        }
    }
}

/// `obj.__dict__` of a traceable model, through the standard `__dict__`
/// descriptor (`_cold.traceable_model` checks it is the one in use) without
/// looking it up on the type.
pub fn model_dict<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: a live object whose type stores its dict the standard way.
    unsafe {
        Bound::from_owned_ptr_or_err(
            obj.py(),
            ffi::PyObject_GenericGetDict(obj.as_ptr(), std::ptr::null_mut()),
        )
    }
}

/// Calls `each` with the values of `dict`'s first entries while their keys
/// are the `fields` names themselves, in order (how a model built by pydantic
/// or our decoder holds them); true when every field was met so.
pub fn in_field_order<'a, 'py>(
    dict: &Bound<'py, PyDict>,
    mut fields: impl Iterator<Item = &'a Py<PyString>>,
    mut each: impl FnMut(Borrowed<'_, 'py, PyAny>),
) -> bool {
    let p = dict.as_ptr();
    let (mut pos, mut k, mut v) = (0, std::ptr::null_mut(), std::ptr::null_mut());
    fields.all(|f| {
        // SAFETY: a live dict, held by the caller; the key is only compared by
        // address and the value borrowed for `each`, which runs no Python code.
        let next = unsafe { ffi::PyDict_Next(p, &mut pos, &mut k, &mut v) } != 0;
        let same = next && k == f.as_ptr();
        if same {
            each(unsafe { Borrowed::from_ptr(dict.py(), v) });
        }
        same
    })
}

/// The entry of a type the encoder has met before (never calls Python).
pub fn known_entry(ty: *mut pyo3::ffi::PyTypeObject) -> Option<Arc<Entry>> {
    TYPES.lock().unwrap().get(&(ty as usize)).cloned()
}

pub fn entry(py: Python<'_>, ty: &Bound<'_, PyType>) -> PyResult<Arc<Entry>> {
    let key = ty.as_ptr() as usize;
    if let Some(e) = TYPES.lock().unwrap().get(&key) {
        return Ok(e.clone());
    }
    // Classify outside the lock: it calls into Python.
    let kind = classify(py, std(py)?, ty)?;
    let mut head = Vec::new();
    let module: String = ty.getattr("__module__")?.extract()?;
    let name: String = ty.getattr("__name__")?.extract()?;
    rmp::encode::write_str(&mut head, &module).ok();
    rmp::encode::write_str(&mut head, &name).ok();
    let e = Arc::new(Entry {
        _ty: ty.clone().unbind(),
        head,
        kind,
    });
    TYPES.lock().unwrap().insert(key, e.clone());
    Ok(e)
}

pub struct Encoder<'py> {
    py: Python<'py>,
    s: &'static Std,
    pub buf: Vec<u8>,
    depth: usize,
    /// Pydantic models being written whose fields are being encoded: inside
    /// one, values are written as its `model_dump()` holds them (nested
    /// models and dataclasses as maps, named tuples as arrays), as upstream
    /// writes them.
    dumping: usize,
}

impl<'py> Encoder<'py> {
    pub fn new(py: Python<'py>) -> PyResult<Self> {
        Ok(Encoder {
            py,
            s: std(py)?,
            buf: Vec::with_capacity(256),
            depth: 0,
            dumping: 0,
        })
    }

    pub fn encode(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        self.value(obj)?;
        if self.buf.len() > MAX_OUTPUT {
            return Err(serialization_error("encoded value exceeds 2 GiB"));
        }
        Ok(())
    }

    fn str_bytes(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let s = obj.downcast::<PyString>()?;
        match s.to_str() {
            Ok(text) => {
                rmp::encode::write_str_len(&mut self.buf, text.len() as u32).ok();
                self.buf.extend_from_slice(text.as_bytes());
            }
            // Lone surrogates: ormsgpack's OPT_REPLACE_SURROGATES writes '?' for each.
            Err(_) => {
                let b = s.call_method1("encode", ("utf-8", "replace"))?;
                let b = b.downcast::<PyBytes>()?.as_bytes();
                rmp::encode::write_str_len(&mut self.buf, b.len() as u32).ok();
                self.buf.extend_from_slice(b);
            }
        }
        Ok(())
    }

    fn int(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        // Overflow is reported by a flag, not an exception: no error built for big ints.
        let mut overflow = 0;
        let v = unsafe { pyo3::ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &mut overflow) };
        if v == -1 && overflow == 0 {
            if let Some(e) = PyErr::take(self.py) {
                return Err(e);
            }
        }
        if overflow == 0 {
            if v >= 0 {
                rmp::encode::write_uint(&mut self.buf, v as u64).ok();
            } else {
                rmp::encode::write_sint(&mut self.buf, v).ok();
            }
            Ok(())
        } else if let Ok(v) = obj.extract::<u64>() {
            rmp::encode::write_uint(&mut self.buf, v).ok();
            Ok(())
        } else {
            Err(serialization_error(
                "Integer exceeds 64-bit range (LangGraph's msgpack format cannot store it)",
            ))
        }
    }

    fn enter(&mut self) -> PyResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(serialization_error(format!(
                "value nested deeper than {MAX_DEPTH} levels (or self-referencing)"
            )));
        }
        Ok(())
    }

    fn seq<I: ExactSizeIterator<Item = Bound<'py, PyAny>>>(&mut self, items: I) -> PyResult<()> {
        rmp::encode::write_array_len(&mut self.buf, items.len() as u32).ok();
        self.enter()?;
        for it in items {
            self.value(&it)?;
        }
        self.depth -= 1;
        Ok(())
    }

    fn dict(&mut self, d: &Bound<'py, PyDict>) -> PyResult<()> {
        rmp::encode::write_map_len(&mut self.buf, d.len() as u32).ok();
        self.enter()?;
        for (k, v) in d.iter() {
            self.key(&k)?;
            self.value(&v)?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// Map keys as ormsgpack's OPT_NON_STR_KEYS writes them. Exact builtin
    /// types are settled first by pointer; an enum is found by its type's MRO
    /// (a Python-level isinstance would dispatch through the metaclass).
    fn key(&mut self, k: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        let s = self.s;
        if k.is_exact_instance_of::<PyString>() {
            return self.str_bytes(k);
        }
        if k.is_none()
            || k.is_exact_instance_of::<PyInt>()
            || k.is_exact_instance_of::<PyFloat>()
            || k.is_exact_instance_of::<PyBool>()
            || k.is_exact_instance_of::<PyBytes>()
        {
            return self.value(k);
        }
        let ty = k.get_type();
        if ty.is(s.uuid.bind(py)) {
            // str(uuid) without running UUID.__str__ (Python code).
            let n: u128 = k.getattr(intern!(py, "int"))?.extract()?;
            let text = uuid_text(n);
            rmp::encode::write_str(
                &mut self.buf,
                std::str::from_utf8(&text).unwrap_or_default(),
            )
            .ok();
            return Ok(());
        }
        if ty.is(s.date.bind(py)) {
            let (y, m, d): (u16, u8, u8) = (
                k.getattr(intern!(py, "year"))?.extract()?,
                k.getattr(intern!(py, "month"))?.extract()?,
                k.getattr(intern!(py, "day"))?.extract()?,
            );
            let mut text = [0u8; 10];
            write!(&mut text[..], "{y:04}-{m:02}-{d:02}").ok();
            rmp::encode::write_str(
                &mut self.buf,
                std::str::from_utf8(&text).unwrap_or_default(),
            )
            .ok();
            return Ok(());
        }
        if let Ok(t) = k.downcast_exact::<PyTuple>() {
            return self.key_tuple(t);
        }
        // SAFETY: two live type objects.
        if unsafe { ffi::PyType_IsSubtype(ty.as_type_ptr(), s.enum_base.bind(py).as_type_ptr()) }
            != 0
        {
            return self.key(&k.getattr("value")?);
        }
        if k.is_instance_of::<PyString>() {
            return self.str_bytes(k);
        }
        if k.is_instance_of::<PyInt>()
            || k.is_instance_of::<PyFloat>()
            || k.is_instance_of::<PyBytes>()
        {
            return self.value(k);
        }
        if let Ok(t) = k.downcast::<PyTuple>() {
            return self.key_tuple(t);
        }
        if k.is_instance(s.uuid.bind(py))? {
            return self.str_bytes(&k.str()?.into_any());
        }
        if k.is_instance(s.date.bind(py))? || k.is_instance(s.time.bind(py))? {
            return self.str_bytes(&k.call_method0("isoformat")?);
        }
        Err(serialization_error(format!(
            "Dict key must a type serializable with OPT_NON_STR_KEYS, got {}",
            k.get_type().name()?
        )))
    }

    fn key_tuple(&mut self, t: &Bound<'py, PyTuple>) -> PyResult<()> {
        rmp::encode::write_array_len(&mut self.buf, t.len() as u32).ok();
        self.enter()?;
        for it in t.iter() {
            self.key(&it)?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// Writes an ext whose payload is produced by `f`, with the smallest header.
    fn ext(&mut self, code: i8, f: impl FnOnce(&mut Self) -> PyResult<()>) -> PyResult<()> {
        // Room for an ext16 header, the usual size of a model's payload; the
        // payload is moved only when its header turns out shorter or longer.
        const RESERVED: usize = 4;
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; RESERVED]);
        self.enter()?;
        f(self)?;
        self.depth -= 1;
        let len = self.buf.len() - start - RESERVED;
        let mut head = Vec::with_capacity(6);
        rmp::encode::write_ext_meta(&mut head, len as u32, code).ok();
        if head.len() < RESERVED {
            self.buf.copy_within(start + RESERVED.., start + head.len());
            self.buf.truncate(start + head.len() + len);
        } else if head.len() > RESERVED {
            let grow = head.len() - RESERVED;
            self.buf.extend_from_slice(&[0; 2][..grow]);
            self.buf
                .copy_within(start + RESERVED..start + RESERVED + len, start + head.len());
        }
        self.buf[start..start + head.len()].copy_from_slice(&head);
        Ok(())
    }

    /// `(module, name, <payload>)` or with a trailing method name.
    fn tuple_ext(
        &mut self,
        code: i8,
        head: &[u8],
        method: Option<&str>,
        payload: impl FnOnce(&mut Self) -> PyResult<()>,
    ) -> PyResult<()> {
        self.ext(code, |e| {
            rmp::encode::write_array_len(&mut e.buf, if method.is_some() { 4 } else { 3 }).ok();
            e.buf.extend_from_slice(head);
            payload(e)?;
            if let Some(m) = method {
                rmp::encode::write_str(&mut e.buf, m).ok();
            }
            Ok(())
        })
    }

    /// A pydantic model whose `fields` (its `model_dump()`) are written by
    /// `fields`: an ext at the top, a plain map inside another model's dump.
    fn model(
        &mut self,
        head: &[u8],
        fields: impl FnOnce(&mut Self) -> PyResult<()>,
    ) -> PyResult<()> {
        self.dumping += 1;
        let res = if self.dumping > 1 {
            fields(self)
        } else {
            self.tuple_ext(ext::PYDANTIC_V2, head, Some("model_validate_json"), fields)
        };
        self.dumping -= 1;
        res
    }

    fn attr_map(&mut self, obj: &Bound<'py, PyAny>, fields: &[Py<PyString>]) -> PyResult<()> {
        rmp::encode::write_map_len(&mut self.buf, fields.len() as u32).ok();
        for f in fields {
            let f = f.bind(self.py);
            self.str_bytes(f.as_any())?;
            self.value(&obj.getattr(f)?)?;
        }
        Ok(())
    }

    pub fn value(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        // Hot path: exact builtin types, by pointer.
        if obj.is_exact_instance_of::<PyString>() {
            return self.str_bytes(obj);
        }
        if obj.is_none() {
            self.buf.push(0xc0);
            return Ok(());
        }
        if obj.is_exact_instance_of::<PyBool>() {
            self.buf.push(if obj.is_truthy()? { 0xc3 } else { 0xc2 });
            return Ok(());
        }
        if obj.is_exact_instance_of::<PyInt>() {
            return self.int(obj);
        }
        if obj.is_exact_instance_of::<PyFloat>() {
            rmp::encode::write_f64(&mut self.buf, obj.downcast::<PyFloat>()?.value()).ok();
            return Ok(());
        }
        if let Ok(d) = obj.downcast_exact::<PyDict>() {
            return self.dict(d);
        }
        if let Ok(l) = obj.downcast_exact::<PyList>() {
            return self.seq(l.iter());
        }
        if let Ok(t) = obj.downcast_exact::<PyTuple>() {
            return self.seq(t.iter());
        }
        if let Ok(b) = obj.downcast_exact::<PyBytes>() {
            rmp::encode::write_bin(&mut self.buf, b.as_bytes()).ok();
            return Ok(());
        }
        if let Ok(b) = obj.downcast_exact::<PyByteArray>() {
            rmp::encode::write_bin(&mut self.buf, &b.to_vec()).ok();
            return Ok(());
        }
        if obj.get_type().is(self.s.memoryview.bind(self.py)) {
            let b = obj.call_method0("tobytes")?;
            rmp::encode::write_bin(&mut self.buf, b.downcast::<PyBytes>()?.as_bytes()).ok();
            return Ok(());
        }
        self.rich(obj)
    }

    fn rich(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        let e = entry(py, &obj.get_type())?;
        let head = e.head.as_slice();
        match &e.kind {
            Kind::Str => self.str_bytes(obj),
            Kind::Int => self.int(obj),
            Kind::Dict => self.dict(obj.downcast::<PyDict>()?),
            Kind::List => self.seq(obj.downcast::<PyList>()?.iter()),
            Kind::DeltaSnapshot => {
                let v = obj.getattr("value")?;
                self.ext(ext::DELTA_SNAPSHOT, |e| e.value(&v))
            }
            Kind::PydanticFields {
                fields,
                extra,
                traceable,
                ..
            } => {
                let dict = if *traceable {
                    model_dict(obj)?
                } else {
                    obj.getattr(intern!(py, "__dict__"))?
                };
                let dict = dict.downcast::<PyDict>()?;
                let mut vals = Vec::with_capacity(fields.len());
                // Usually every field, in order, without a lookup each; any
                // after the first out of place are looked up.
                in_field_order(dict, fields.iter().map(|f| &f.name), |v| {
                    vals.push(v.to_owned())
                });
                for f in fields.iter().skip(vals.len()) {
                    match dict.get_item(f.name.bind(py))? {
                        Some(v) => vals.push(v),
                        // A field missing from __dict__: let pydantic decide, as upstream.
                        None => {
                            let dumped = obj.call_method0("model_dump")?;
                            return self.model(head, |e| e.value(&dumped));
                        }
                    }
                }
                let extras = if *extra {
                    e.extras(obj)?.downcast_into::<PyDict>().ok()
                } else {
                    None
                };
                self.model(head, |e| {
                    let n = fields.len() + extras.as_ref().map_or(0, |x| x.len());
                    rmp::encode::write_map_len(&mut e.buf, n as u32).ok();
                    for (f, v) in fields.iter().zip(vals) {
                        e.buf.extend_from_slice(&f.packed);
                        e.value(&v)?;
                    }
                    if let Some(x) = extras {
                        for (k, v) in x.iter() {
                            e.key(&k)?;
                            e.value(&v)?;
                        }
                    }
                    Ok(())
                })
            }
            Kind::PydanticDump => {
                let dumped = obj.call_method0("model_dump")?;
                self.model(head, |e| e.value(&dumped))
            }
            Kind::NamedTuple if self.dumping > 0 => self.seq(obj.downcast::<PyTuple>()?.iter()),
            Kind::NamedTuple => {
                let d = obj.call_method0("_asdict")?;
                self.tuple_ext(ext::CONSTRUCTOR_KW_ARGS, head, None, |e| e.value(&d))
            }
            Kind::Uuid => {
                let hex = obj.getattr("hex")?;
                self.tuple_ext(ext::CONSTRUCTOR_SINGLE_ARG, head, None, |e| e.value(&hex))
            }
            Kind::Decimal => {
                let s = obj.str()?.into_any();
                self.tuple_ext(ext::CONSTRUCTOR_SINGLE_ARG, head, None, |e| e.value(&s))
            }
            Kind::Collection => {
                let items: Vec<Bound<'py, PyAny>> = obj.try_iter()?.collect::<PyResult<_>>()?;
                self.tuple_ext(ext::CONSTRUCTOR_SINGLE_ARG, head, None, |e| {
                    e.seq(items.into_iter())
                })
            }
            Kind::Datetime => {
                let iso = obj.call_method0("isoformat")?;
                self.tuple_ext(ext::METHOD_SINGLE_ARG, head, Some("fromisoformat"), |e| {
                    e.value(&iso)
                })
            }
            Kind::Timedelta => {
                let args = [
                    obj.getattr("days")?,
                    obj.getattr("seconds")?,
                    obj.getattr("microseconds")?,
                ];
                self.tuple_ext(ext::CONSTRUCTOR_POS_ARGS, head, None, |e| {
                    e.seq(args.into_iter())
                })
            }
            Kind::Date => {
                let args = [
                    obj.getattr("year")?,
                    obj.getattr("month")?,
                    obj.getattr("day")?,
                ];
                self.tuple_ext(ext::CONSTRUCTOR_POS_ARGS, head, None, |e| {
                    e.seq(args.into_iter())
                })
            }
            Kind::Time => {
                const F: [&str; 6] = ["hour", "minute", "second", "microsecond", "tzinfo", "fold"];
                self.tuple_ext(ext::CONSTRUCTOR_KW_ARGS, head, None, |e| {
                    rmp::encode::write_map_len(&mut e.buf, F.len() as u32).ok();
                    for f in F {
                        rmp::encode::write_str(&mut e.buf, f).ok();
                        e.value(&obj.getattr(f)?)?;
                    }
                    Ok(())
                })
            }
            Kind::Timezone => {
                let args = obj.call_method0("__getinitargs__")?;
                self.tuple_ext(ext::CONSTRUCTOR_POS_ARGS, head, None, |e| e.value(&args))
            }
            Kind::Enum => {
                let v = obj.getattr("value")?;
                self.tuple_ext(ext::CONSTRUCTOR_SINGLE_ARG, head, None, |e| e.value(&v))
            }
            Kind::Send => {
                let mut args = vec![obj.getattr("node")?, obj.getattr("arg")?];
                let timeout = obj.getattr("timeout").ok().filter(|t| !t.is_none());
                args.extend(timeout);
                self.tuple_ext(ext::CONSTRUCTOR_POS_ARGS, head, None, |e| {
                    e.seq(args.into_iter())
                })
            }
            Kind::Dataclass { fields } if self.dumping > 0 => self.attr_map(obj, fields),
            Kind::Dataclass { fields } => {
                self.tuple_ext(ext::CONSTRUCTOR_KW_ARGS, head, None, |e| {
                    e.attr_map(obj, fields)
                })
            }
            Kind::Item { slots } => self.tuple_ext(ext::CONSTRUCTOR_KW_ARGS, head, None, |e| {
                e.attr_map(obj, slots)
            }),
            Kind::Cold => self.cold(obj),
        }
    }

    /// Rare types: `_cold.default(obj)` returns `(code, payload)` for an ext, or
    /// `(None, replacement)` for a value written in place of the object.
    fn cold(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let r = self.s.cold.bind(self.py).call_method1("default", (obj,))?;
        let (code, payload): (Option<i8>, Bound<'py, PyAny>) = r.extract()?;
        self.enter()?;
        let res = match code {
            Some(c) => self.ext(c, |e| e.value(&payload)),
            None => self.value(&payload),
        };
        self.depth -= 1;
        res
    }
}

/// `str(uuid)` of the 128-bit value: 8-4-4-4-12 lowercase hex digits.
fn uuid_text(n: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut at = 0;
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            out[at] = b'-';
            at += 1;
        }
        out[at] = HEX[(n >> (124 - 4 * i)) as usize & 0xf];
        at += 1;
    }
    out
}
