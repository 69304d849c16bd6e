//! Identity traces: a cheap proof that a list element is still exactly the
//! object graph the writer encoded at an earlier put, so its bytes can be reused.
//!
//! A trace lists, in encoding order, the address of every object the encoder
//! reads for a value and the length of every container, and holds a strong
//! reference to each of those objects so that no address can be reused while
//! the trace lives. Traced objects are either immutable (exact str, int, float,
//! bool, None, bytes) or containers whose contents are traced too (exact dict,
//! list, tuple; pydantic models read through `__dict__` and
//! `__pydantic_extra__`). So an equal trace means an equal encoding, and a
//! mutation at any depth changes the trace: that element is encoded again.
//! A value holding anything else has no trace and is encoded at every put.
//!
//! Walking runs no Python code (types are looked up only among those the
//! encoder has classified; model attributes are pydantic's own slots), and
//! every container is held by a strong reference while its items are read.
//!
//! On CPython 3.11-3.13 a dict is traced by its PEP 509 version tag, "globally
//! unique, changed each time the dictionary is modified": an equal tag means
//! the same keys holding the same objects, so only the containers among them
//! are walked again (a message's ten fields cost one comparison, not ten).

use std::sync::Arc;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::classify::{in_field_order, known_entry, model_dict, Entry};
use fastcheckpoint_core::wire::MAX_DEPTH;

pub struct Trace {
    tokens: Box<[usize]>,
    /// Every traced object, one per node in recording order. Held, its address
    /// means that object only.
    refs: Box<[Py<PyAny>]>,
}

/// Records and checks traces; one per list, so model types are looked up once.
pub struct Tracer<'py> {
    py: Python<'py>,
    /// Model types met so far, by address: the encoder's entry when traceable.
    models: Vec<(usize, Option<Arc<Entry>>)>,
    /// Where a trace is recorded before it is copied out at its exact size
    /// (growing a fresh pair of vectors per element cost more than the walk).
    scratch: (Vec<usize>, Vec<Py<PyAny>>),
    /// The containers found in the dicts being recorded (borrowed: each dict
    /// is held while its own are walked).
    kids: Vec<*mut ffi::PyObject>,
}

impl<'py> Tracer<'py> {
    pub fn new(py: Python<'py>) -> Self {
        Tracer {
            py,
            models: Vec::new(),
            scratch: (Vec::new(), Vec::new()),
            kids: Vec::new(),
        }
    }

    /// The trace of `obj` (just encoded), or None when it holds something untraceable.
    pub fn record(&mut self, obj: &Bound<'py, PyAny>) -> Option<Trace> {
        let (mut tokens, mut refs) = std::mem::take(&mut self.scratch);
        tokens.clear();
        refs.clear();
        let mut sink = Sink::Record {
            tokens: &mut tokens,
            refs: &mut refs,
        };
        let traced = self.walk(&mut sink, obj.as_borrowed(), 0);
        let trace = traced.then(|| Trace {
            tokens: tokens.as_slice().into(),
            refs: refs.drain(..).collect(),
        });
        refs.clear();
        self.scratch = (tokens, refs);
        trace
    }

    /// True when `obj` is still exactly the object graph `trace` recorded.
    pub fn matches(&mut self, trace: &Trace, obj: &Bound<'py, PyAny>) -> bool {
        let mut sink = Sink::Verify {
            tokens: &trace.tokens,
            pos: 0,
            refs: &trace.refs,
            at: 0,
        };
        self.walk(&mut sink, obj.as_borrowed(), 0)
            && matches!(sink, Sink::Verify { tokens, pos, .. } if pos == tokens.len())
    }

    /// False: untraceable (recording) or changed (verifying).
    fn walk(&mut self, sink: &mut Sink<'_>, obj: Borrowed<'_, 'py, PyAny>, depth: usize) -> bool {
        if depth > MAX_DEPTH || !sink.node(obj) {
            return false;
        }
        if atom(obj) {
            return true;
        }
        // A container: held while its items are read.
        let obj = obj.to_owned();
        let p = obj.as_ptr();
        let py = self.py;
        if obj.is_exact_instance_of::<PyDict>() {
            if let Some(tag) = dict_tag(py, p) {
                return sink.token(tag) && self.dict_containers(sink, p, depth);
            }
            if !sink.token(unsafe { ffi::PyDict_Size(p) } as usize) {
                return false;
            }
            let (mut pos, mut k, mut v) = (0, std::ptr::null_mut(), std::ptr::null_mut());
            // Borrowed items: nothing below runs Python code that could remove them.
            while unsafe { ffi::PyDict_Next(p, &mut pos, &mut k, &mut v) } != 0 {
                let (k, v) = unsafe { (Borrowed::from_ptr(py, k), Borrowed::from_ptr(py, v)) };
                if !self.walk(sink, k, depth + 1) || !self.walk(sink, v, depth + 1) {
                    return false;
                }
            }
            return true;
        }
        let item: unsafe extern "C" fn(_, _) -> _ = if obj.is_exact_instance_of::<PyList>() {
            ffi::PyList_GetItem
        } else if obj.is_exact_instance_of::<PyTuple>() {
            ffi::PyTuple_GetItem
        } else {
            return self.model(sink, &obj, depth);
        };
        let n = obj.len().unwrap_or(0);
        if !sink.token(n) {
            return false;
        }
        for i in 0..n {
            let it = unsafe { item(p, i as ffi::Py_ssize_t) };
            if it.is_null() || !self.walk(sink, unsafe { Borrowed::from_ptr(py, it) }, depth + 1) {
                return false;
            }
        }
        true
    }

    /// The containers among a dict's keys and values (its version tag stands
    /// for the rest): their count, then each walked. Verifying reads them back
    /// from the trace, as the equal tag proves the dict still holds them.
    fn dict_containers(
        &mut self,
        sink: &mut Sink<'_>,
        p: *mut ffi::PyObject,
        depth: usize,
    ) -> bool {
        let py = self.py;
        if let Sink::Verify { .. } = sink {
            let Some(n) = sink.next_token() else {
                return false;
            };
            for _ in 0..n {
                match sink.next_ref(py) {
                    Some(c) if self.walk(sink, c.as_borrowed(), depth + 1) => {}
                    _ => return false,
                }
            }
            return true;
        }
        // One pass gathers them (on a stack shared by nested dicts), then each is walked.
        let start = self.kids.len();
        let (mut pos, mut k, mut v) = (0, std::ptr::null_mut(), std::ptr::null_mut());
        // Borrowed items: the dict is held, and nothing below runs Python code.
        while unsafe { ffi::PyDict_Next(p, &mut pos, &mut k, &mut v) } != 0 {
            for o in [k, v] {
                if !atom(unsafe { Borrowed::from_ptr(py, o) }) {
                    self.kids.push(o);
                }
            }
        }
        let walked = sink.token(self.kids.len() - start)
            && (start..self.kids.len()).all(|i| {
                let o = unsafe { Borrowed::from_ptr(py, self.kids[i]) };
                self.walk(sink, o, depth + 1)
            });
        self.kids.truncate(start);
        walked
    }

    fn model(&mut self, sink: &mut Sink<'_>, obj: &Bound<'py, PyAny>, depth: usize) -> bool {
        let py = self.py;
        let ty = obj.get_type_ptr();
        let key = ty as usize;
        let plan = match self.models.iter().find(|(k, _)| *k == key) {
            Some((_, plan)) => plan.clone(),
            None => {
                let plan = known_entry(ty).filter(|e| e.traced_fields().is_some());
                self.models.push((key, plan.clone()));
                plan
            }
        };
        // The type is part of the trace: `obj.__class__ = Other` changes it.
        let Some(plan) = plan.filter(|_| sink.token(key)) else {
            return false;
        };
        let (fields, extra) = plan.traced_fields().expect("traceable");
        let Ok(dict) = model_dict(obj) else {
            return false;
        };
        let Ok(dict) = dict.downcast_exact::<PyDict>() else {
            return false;
        };
        // A field missing from __dict__ makes the encoder call model_dump():
        // untraceable. (When verifying, equal keys imply they are all there.)
        if matches!(sink, Sink::Record { .. }) && !in_field_order(dict, fields.clone(), |_| ()) {
            for f in fields {
                if !dict.contains(f.bind(py)).unwrap_or(false) {
                    return false;
                }
            }
        }
        if !self.walk(sink, dict.as_any().as_borrowed(), depth + 1) {
            return false;
        }
        if !extra {
            return true;
        }
        match plan.extras(obj) {
            Ok(x) => self.walk(sink, x.as_borrowed(), depth + 1),
            Err(_) => false,
        }
    }
}

/// Immutable values traced by address alone.
fn atom(obj: Borrowed<'_, '_, PyAny>) -> bool {
    obj.is_exact_instance_of::<PyString>()
        || obj.is_none()
        || obj.is_exact_instance_of::<PyInt>()
        || obj.is_exact_instance_of::<PyFloat>()
        || obj.is_exact_instance_of::<PyBool>()
        || obj.is_exact_instance_of::<PyBytes>()
}

/// The head of `PyDictObject` in CPython 3.11-3.13 (Include/cpython/dictobject.h;
/// the same in the three, for the GIL builds an abi3 wheel loads into).
#[repr(C)]
struct DictHead {
    ob_refcnt: ffi::Py_ssize_t,
    ob_type: *mut ffi::PyTypeObject,
    ma_used: ffi::Py_ssize_t,
    ma_version_tag: u64,
    ma_keys: *mut std::ffi::c_void,
    ma_values: *mut std::ffi::c_void,
}

/// Whether dict version tags can be read here: CPython 3.11 to 3.13 (3.12
/// deprecates the tag but still bumps it on every change; 3.14 drops it; other
/// versions walk every item), 64-bit (a tag fits a token), and a dict read
/// through `DictHead` behaves as the header says.
static TAGS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn tags_usable(py: Python<'_>) -> bool {
    if cfg!(not(target_pointer_width = "64"))
        || !(py.version_info() >= (3, 11) && py.version_info() < (3, 14))
    {
        return false;
    }
    let d = PyDict::new(py);
    // SAFETY: a live exact dict; on 3.11 its head is laid out as DictHead.
    let head = || unsafe { &*(d.as_ptr() as *const DictHead) };
    let mut seen = vec![head().ma_version_tag];
    let mut same_layout = head().ob_type == std::ptr::addr_of_mut!(ffi::PyDict_Type)
        && head().ma_used == 0
        && head().ma_values.is_null();
    for step in 0..3 {
        let done = match step {
            0 => d.set_item("k", 1),
            1 => d.set_item("k", 2),
            _ => d.del_item("k"),
        };
        let tag = head().ma_version_tag;
        same_layout &=
            done.is_ok() && !seen.contains(&tag) && head().ma_used == (step < 2) as ffi::Py_ssize_t;
        seen.push(tag);
    }
    same_layout
}

/// Whether traces read dict version tags in this interpreter (see `TAGS`).
#[pyfunction]
pub fn traces_read_dict_tags(py: Python<'_>) -> bool {
    *TAGS.get_or_init(|| tags_usable(py))
}

/// A dict's version tag, when usable (see `TAGS`). Only for a combined table:
/// a split table's values can belong to an object (its instance attributes,
/// a materialized `vars(obj)`), which CPython 3.13 writes in place without
/// touching the tag, so such a dict is walked item by item.
fn dict_tag(py: Python<'_>, p: *mut ffi::PyObject) -> Option<usize> {
    if !traces_read_dict_tags(py) {
        return None;
    }
    // SAFETY: `p` is a live exact dict, laid out as DictHead (checked once).
    let head = unsafe { &*(p as *const DictHead) };
    head.ma_values
        .is_null()
        .then_some(head.ma_version_tag as usize)
}

enum Sink<'t> {
    Record {
        tokens: &'t mut Vec<usize>,
        refs: &'t mut Vec<Py<PyAny>>,
    },
    Verify {
        tokens: &'t [usize],
        pos: usize,
        /// The trace's objects, one per node, in recording order.
        refs: &'t [Py<PyAny>],
        at: usize,
    },
}

impl Sink<'_> {
    fn token(&mut self, t: usize) -> bool {
        match self {
            Sink::Record { tokens, .. } => {
                tokens.push(t);
                true
            }
            Sink::Verify { tokens, pos, .. } => {
                let same = tokens.get(*pos) == Some(&t);
                *pos += 1;
                same
            }
        }
    }

    fn node(&mut self, obj: Borrowed<'_, '_, PyAny>) -> bool {
        match self {
            Sink::Record { refs, .. } => refs.push(obj.to_owned().unbind()),
            Sink::Verify { at, .. } => *at += 1,
        }
        self.token(obj.as_ptr() as usize)
    }

    /// Verifying: the next recorded token, consumed.
    fn next_token(&mut self) -> Option<usize> {
        let Sink::Verify { tokens, pos, .. } = self else {
            return None;
        };
        let t = tokens.get(*pos).copied();
        *pos += 1;
        t
    }

    /// Verifying: the object the next node recorded (not consumed: walking it
    /// reads its node).
    fn next_ref<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        let Sink::Verify { refs, at, .. } = self else {
            return None;
        };
        refs.get(*at).map(|r| r.bind(py).clone())
    }
}
