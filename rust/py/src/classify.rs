//! How the encoder writes each Python type: every type object met is
//! classified once (in upstream `_msgpack_default`'s precedence order) into a
//! [`Kind`], with the msgpack head of its ext tuples, and cached by address.
//! The identity traces (`crate::trace`) read the same entries.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFrozenSet, PyInt, PyList, PySet, PyString, PyType};

use crate::pyrefs::{std, Std};

/// How instances of one type are encoded.
pub enum Kind {
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
pub struct ExtraSlot {
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
pub struct Field {
    pub name: Py<PyString>,
    pub packed: Vec<u8>,
}

pub struct Entry {
    _ty: Py<PyType>, // keeps the type alive so its address is never reused
    /// msgpack of `(type.__module__, type.__name__)`, the head of every ext tuple.
    pub head: Vec<u8>,
    pub kind: Kind,
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
