//! The codec's security policy and how a permitted class is rebuilt.
//!
//! The policy (mirrors `JsonPlusSerializer`'s `allowed_msgpack_modules`; a
//! refused value comes back as its raw stored arguments, as upstream returns it,
//! with upstream's warning and event, or as a typed error with `raise_refused`):
//! * types in LangGraph's `SAFE_MSGPACK_TYPES` and in the explicit allowlist are
//!   always reconstructed;
//! * permissive mode (upstream's default) additionally reconstructs *data types*
//!   only: pydantic models, dataclasses, enums, named tuples and the standard
//!   value types. A blob naming a function or any other callable (`os.system`,
//!   `subprocess.Popen`, `builtins.eval`) is refused; nothing is called;
//! * strict mode (`LANGGRAPH_STRICT_MSGPACK`, or an explicit allowlist) refuses
//!   everything else.
//!
//! Nothing named by a refused value is ever called.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet, PyString, PyTuple};

use crate::errors::disallowed_type_error;
use crate::pyrefs::std;
use fastcheckpoint_core::wire::ext;

pub type Key = (String, String);

/// What a `Codec` may rebuild, and the classes it has resolved.
pub struct Policy {
    pub permissive: bool,
    /// Refusals raise `DisallowedTypeError` instead of returning the raw payload.
    raise_refused: bool,
    allowed: HashSet<Key>,
    safe: HashSet<Key>,
    safe_methods: HashSet<(String, String, String)>,
    /// Classes already resolved and permitted, by (module, name).
    resolved: Mutex<HashMap<Key, Arc<Resolved>>>,
}

/// A permitted class and, for LangChain messages, how to build it without re-validation.
pub struct Resolved {
    cls: Py<PyAny>,
    fast: Option<FastModel>,
    /// The module `cls` came from and its name in `sys.modules`: once the
    /// module is removed or replaced there, the class is resolved again (and,
    /// as upstream, its payload returned if it can no longer be imported).
    module: Py<PyAny>,
    module_name: Py<PyString>,
}

impl Resolved {
    fn current(&self, py: Python<'_>, modules: &Bound<'_, PyDict>) -> bool {
        matches!(modules.get_item(self.module_name.bind(py)), Ok(Some(m)) if m.is(self.module.bind(py)))
    }
}

/// A LangChain message class that can be rebuilt as `model_construct` does:
/// its stored kwargs are exactly `model_dump()` of a valid instance.
struct FastModel {
    fields: Vec<Py<PyString>>,
    extra: bool,
    /// `cls.__new__` (object's), looked up once.
    new: Py<PyAny>,
    /// The type's `tp_alloc` when `__new__` is object's own: then an instance
    /// starts as pydantic-core's `create_class` starts one, without the inline
    /// attribute values `object.__new__` lays out and the `__dict__` we set
    /// would at once replace (an allocation and a free less per message).
    alloc: Option<pyo3::ffi::allocfunc>,
    /// `set(fields)`: each instance gets a copy as its `__pydantic_fields_set__`.
    all_fields: Py<PySet>,
}

/// Why a class could not be used.
enum Unusable {
    /// The policy forbids it: a typed error for the caller.
    Refused(PyErr),
    /// It could not be imported or found: upstream returns the raw payload.
    Missing(PyErr),
}

impl Policy {
    /// The policy of a codec: `allowed` (module, name) pairs, LangGraph's
    /// `safe` types and `safe_methods` (module, name, method) triples (each
    /// read from Python with [`keys`]).
    pub fn new(
        permissive: bool,
        raise_refused: bool,
        allowed: HashSet<Key>,
        safe: HashSet<Key>,
        safe_methods: HashSet<(String, String, String)>,
    ) -> Self {
        Policy {
            permissive,
            raise_refused,
            allowed,
            safe,
            safe_methods,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    fn resolve<'py>(
        &self,
        py: Python<'py>,
        module: &str,
        name: &str,
    ) -> Result<Arc<Resolved>, Unusable> {
        let key = (module.to_owned(), name.to_owned());
        let std = std(py).map_err(Unusable::Missing)?;
        if let Some(r) = self.resolved.lock().unwrap().get(&key) {
            if r.current(py, std.modules.bind(py)) {
                return Ok(r.clone());
            }
        }
        let cold = std.cold.bind(py);
        let listed = self.safe.contains(&key) || self.allowed.contains(&key);
        if !listed && !self.permissive {
            let _ = cold.call_method1(
                "on_blocked",
                (module, name, "not in allowed_msgpack_modules"),
            );
            return Err(Unusable::Refused(disallowed_type_error(format!(
                "refused to deserialize {module}.{name}: not in allowed_msgpack_modules \
                 (strict mode). Allow it with RustSerializer(allowed_msgpack_modules=[({module:?}, {name:?})])"
            ))));
        }
        let imported = py.import(module).map_err(Unusable::Missing)?;
        let cls = imported.getattr(name).map_err(Unusable::Missing)?;
        if !listed {
            let ok: bool = cold
                .call_method1("is_data_type", (&cls,))
                .and_then(|r| r.extract())
                .map_err(Unusable::Missing)?;
            if !ok {
                let _ = cold.call_method1("on_blocked", (module, name, "not a data type"));
                return Err(Unusable::Refused(disallowed_type_error(format!(
                    "refused to deserialize {module}.{name}: it is not a data type \
                     (pydantic model, dataclass, enum, named tuple or standard value type)"
                ))));
            }
            let _ = cold.call_method1("on_unregistered", (module, name));
        }
        // A class whose fast plan cannot be computed is simply validated.
        let fast = fast_model(py, &cls, module, name).ok().flatten();
        let r = Arc::new(Resolved {
            cls: cls.unbind(),
            fast,
            module: imported.into_any().unbind(),
            module_name: PyString::new(py, module).unbind(),
        });
        self.resolved.lock().unwrap().insert(key, r.clone());
        Ok(r)
    }

    /// Builds the object of an ext 0-5 value, after the policy allows it.
    /// `known` is the class this decode resolved before; the class resolved
    /// now is returned for the decoder to remember.
    #[allow(clippy::too_many_arguments)]
    pub fn construct<'py>(
        &self,
        py: Python<'py>,
        code: i8,
        module: &str,
        name: &str,
        payload: &Bound<'py, PyAny>,
        method: Option<&str>,
        known: Option<Arc<Resolved>>,
    ) -> PyResult<(Bound<'py, PyAny>, Option<Arc<Resolved>>)> {
        let cold = std(py)?.cold.bind(py);
        if let Some(method) = method {
            let listed = self.safe_methods.contains(&(
                module.to_owned(),
                name.to_owned(),
                method.to_owned(),
            ));
            if !listed {
                let _ = cold.call_method1("on_method_blocked", (module, name, method));
                if !self.raise_refused {
                    return Ok((payload.clone(), None));
                }
                return Err(disallowed_type_error(format!(
                    "refused to deserialize {module}.{name}.{method}: method not in the allowed set"
                )));
            }
        }
        let (resolved, new) = match known {
            Some(r) => (r, None),
            None => match self.resolve(py, module, name) {
                Ok(r) => (r.clone(), Some(r)),
                // As upstream: the raw payload, never a call.
                Err(Unusable::Refused(_)) if !self.raise_refused => {
                    return Ok((payload.clone(), None))
                }
                Err(Unusable::Refused(e)) => return Err(e),
                Err(Unusable::Missing(e)) => {
                    let raw =
                        cold.call_method1("reconstruction_fallback", (module, name, payload, e))?;
                    return Ok((raw, None));
                }
            },
        };
        let cls = resolved.cls.bind(py);
        if let (ext::PYDANTIC_V2, Some(fm)) = (code, &resolved.fast) {
            if let Some(obj) = fast_build(py, cls, fm, payload)? {
                return Ok((obj, new));
            }
        }
        let built = match code {
            ext::CONSTRUCTOR_SINGLE_ARG => cls.call1((payload,)),
            ext::CONSTRUCTOR_POS_ARGS if module == "langgraph.types" && name == "Send" => {
                cold.call_method1("send_from_args", (payload,))
            }
            ext::CONSTRUCTOR_POS_ARGS => payload
                .downcast::<PyList>()
                .map_err(PyErr::from)
                .and_then(|a| cls.call1(PyTuple::new(py, a)?)),
            ext::CONSTRUCTOR_KW_ARGS => payload
                .downcast::<PyDict>()
                .map_err(PyErr::from)
                .and_then(|kw| cls.call((), Some(kw))),
            ext::METHOD_SINGLE_ARG => cls
                .getattr(method.unwrap_or_default())
                .and_then(|m| m.call1((payload,))),
            // pydantic v1 / v2: validate, else construct without validation (as upstream).
            _ => {
                let fallback = if code == ext::PYDANTIC_V1 {
                    "construct"
                } else {
                    "model_construct"
                };
                match payload.downcast::<PyDict>() {
                    Ok(kw) => cls
                        .call((), Some(kw))
                        .or_else(|_| cls.call_method(fallback, (), Some(kw))),
                    Err(e) => Err(e.into()),
                }
            }
        };
        let built = match built {
            Ok(v) => v,
            // Pydantic payloads fall back to their field dict, others to their args.
            Err(e) => cold.call_method1("reconstruction_fallback", (module, name, payload, e))?,
        };
        Ok((built, new))
    }
}

fn fast_model(
    py: Python<'_>,
    cls: &Bound<'_, PyAny>,
    module: &str,
    name: &str,
) -> PyResult<Option<FastModel>> {
    let plan = std(py)?
        .cold
        .bind(py)
        .call_method1("fast_model", (cls, module, name))?;
    if plan.is_none() {
        return Ok(None);
    }
    let (fields, extra): (Vec<Bound<'_, PyString>>, bool) = plan.extract()?;
    let new = cls.getattr(intern!(py, "__new__"))?;
    let object_new = py
        .get_type::<pyo3::types::PyAny>()
        .getattr(intern!(py, "__new__"))?;
    let alloc = match cls.downcast::<pyo3::types::PyType>() {
        Ok(tp) if new.is(&object_new) => {
            // SAFETY: a live type object; a heap type always has this slot.
            let slot =
                unsafe { pyo3::ffi::PyType_GetSlot(tp.as_type_ptr(), pyo3::ffi::Py_tp_alloc) };
            (!slot.is_null()).then(|| unsafe {
                std::mem::transmute::<*mut std::ffi::c_void, pyo3::ffi::allocfunc>(slot)
            })
        }
        _ => None,
    };
    Ok(Some(FastModel {
        all_fields: PySet::new(py, &fields)?.unbind(),
        fields: fields.into_iter().map(Bound::unbind).collect(),
        extra,
        new: new.unbind(),
        alloc,
    }))
}

/// Builds a message exactly as pydantic's `model_construct` would, when the
/// payload holds every field in declaration order (what `model_dump()` and our
/// encoder write). Returns None to fall back to validation.
fn fast_build<'py>(
    py: Python<'py>,
    cls: &Bound<'py, PyAny>,
    fm: &FastModel,
    payload: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Ok(kw) = payload.downcast::<PyDict>() else {
        return Ok(None);
    };
    if kw.len() < fm.fields.len() || (!fm.extra && kw.len() != fm.fields.len()) {
        return Ok(None);
    }
    let n = fm.fields.len();
    for (i, (k, _)) in kw.iter().enumerate() {
        match fm.fields.get(i) {
            // Keys are interned by the decoder: usually the very field name object.
            Some(f) if k.is(f) || k.eq(f.bind(py))? => {}
            Some(_) => return Ok(None),
            None if k.is_instance_of::<PyString>() => {}
            None => return Ok(None),
        }
    }
    // Usually the payload is exactly the fields: use it as __dict__ as is, and
    // a copy of the class's field set (a set copied from a set takes its
    // entries and hashes as they are).
    let (fields, extra, fields_set) = if kw.len() == n {
        let all = unsafe {
            Bound::from_owned_ptr_or_err(py, pyo3::ffi::PySet_New(fm.all_fields.as_ptr()))?
        };
        let extra = if fm.extra {
            Some(PyDict::new(py))
        } else {
            None
        };
        (kw.clone(), extra, all)
    } else {
        let (fields, extra) = (PyDict::new(py), PyDict::new(py));
        for (i, (k, v)) in kw.iter().enumerate() {
            if i < n {
                fields.set_item(k, v)?
            } else {
                extra.set_item(k, v)?
            }
        }
        let fields_set = PySet::new(py, fields.keys())?.into_any();
        (fields, Some(extra), fields_set)
    };
    let obj = match (fm.alloc, cls.downcast::<pyo3::types::PyType>()) {
        // SAFETY: the type's own allocator, called as object.__new__ calls it.
        (Some(alloc), Ok(tp)) => unsafe {
            Bound::from_owned_ptr_or_err(py, alloc(tp.as_type_ptr(), 0))?
        },
        _ => fm.new.bind(py).call1((cls,))?,
    };
    let set = |attr: &Bound<'py, PyString>, value: &Bound<'py, PyAny>| -> PyResult<()> {
        // object.__setattr__: bypasses pydantic's validating __setattr__.
        let rc = unsafe {
            pyo3::ffi::PyObject_GenericSetAttr(obj.as_ptr(), attr.as_ptr(), value.as_ptr())
        };
        if rc < 0 {
            Err(PyErr::fetch(py))
        } else {
            Ok(())
        }
    };
    set(intern!(py, "__dict__"), fields.as_any())?;
    // The field set holds only field names (str, which cannot form a cycle) and
    // pydantic only ever adds names to it: the cyclic GC need not watch it, as
    // CPython stops watching a dict or tuple of atoms. A history's get_tuple
    // builds one per message, a quarter of the containers its next collection
    // would otherwise walk.
    // SAFETY: a live set just made here; any object may be untracked at any time.
    unsafe { pyo3::ffi::PyObject_GC_UnTrack(fields_set.as_ptr().cast()) };
    set(intern!(py, "__pydantic_fields_set__"), fields_set.as_any())?;
    let extra = match extra {
        Some(extra) if fm.extra => extra.into_any(),
        _ => py.None().into_bound(py),
    };
    set(intern!(py, "__pydantic_extra__"), &extra)?;
    set(
        intern!(py, "__pydantic_private__"),
        &py.None().into_bound(py),
    )?;
    Ok(Some(obj))
}

/// The entries of a Python iterable of tuples that have `T`'s arity.
pub fn keys<'py, T: FromPyObject<'py> + Eq + std::hash::Hash>(
    items: Option<&Bound<'py, PyAny>>,
) -> PyResult<HashSet<T>> {
    let mut out = HashSet::new();
    if let Some(items) = items {
        for it in items.try_iter()? {
            // Entries of another arity never match a (module, name) key, as upstream.
            if let Ok(k) = it?.extract::<T>() {
                out.insert(k);
            }
        }
    }
    Ok(out)
}
