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

use std::sync::Arc;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::encode::{known_entry, Entry, MAX_DEPTH};

pub struct Trace {
    tokens: Box<[usize]>,
    /// Keeps every traced object alive: its address means that object only.
    _refs: Box<[Py<PyAny>]>,
}

/// Records and checks traces; one per list, so model types are looked up once.
pub struct Tracer<'py> {
    py: Python<'py>,
    /// Model types met so far, by address: the encoder's entry when traceable.
    models: Vec<(usize, Option<Arc<Entry>>)>,
    /// Where a trace is recorded before it is copied out at its exact size
    /// (growing a fresh pair of vectors per element cost more than the walk).
    scratch: (Vec<usize>, Vec<Py<PyAny>>),
}

impl<'py> Tracer<'py> {
    pub fn new(py: Python<'py>) -> Self {
        Tracer {
            py,
            models: Vec::new(),
            scratch: (Vec::new(), Vec::new()),
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
            _refs: refs.drain(..).collect(),
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
        };
        self.walk(&mut sink, obj.as_borrowed(), 0)
            && matches!(sink, Sink::Verify { tokens, pos } if pos == tokens.len())
    }

    /// False: untraceable (recording) or changed (verifying).
    fn walk(&mut self, sink: &mut Sink<'_>, obj: Borrowed<'_, 'py, PyAny>, depth: usize) -> bool {
        if depth > MAX_DEPTH || !sink.node(obj) {
            return false;
        }
        if obj.is_exact_instance_of::<PyString>()
            || obj.is_none()
            || obj.is_exact_instance_of::<PyInt>()
            || obj.is_exact_instance_of::<PyFloat>()
            || obj.is_exact_instance_of::<PyBool>()
            || obj.is_exact_instance_of::<PyBytes>()
        {
            return true;
        }
        // A container: held while its items are read.
        let obj = obj.to_owned();
        let p = obj.as_ptr();
        let py = self.py;
        if obj.is_exact_instance_of::<PyDict>() {
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
        // The standard `__dict__` descriptor (checked by `_cold.traceable_model`),
        // read without looking it up on the type.
        let Ok(dict) = (unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyObject_GenericGetDict(obj.as_ptr(), std::ptr::null_mut()),
            )
        }) else {
            return false;
        };
        let Ok(dict) = dict.downcast_exact::<PyDict>() else {
            return false;
        };
        // A field missing from __dict__ makes the encoder call model_dump():
        // untraceable. (When verifying, equal keys imply they are all there.)
        if matches!(sink, Sink::Record { .. }) && !starts_with_fields(dict, fields.clone()) {
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

/// True when the dict's first keys are the field names themselves, in order
/// (how a model built by pydantic or our decoder holds them): then every field
/// is there, without a lookup each.
fn starts_with_fields<'a>(
    dict: &Bound<'_, PyDict>,
    mut fields: impl Iterator<Item = &'a Py<PyString>>,
) -> bool {
    let p = dict.as_ptr();
    let (mut pos, mut k, mut v) = (0, std::ptr::null_mut(), std::ptr::null_mut());
    fields.all(|f| {
        // SAFETY: a live dict; the borrowed key is only compared by address.
        let next = unsafe { ffi::PyDict_Next(p, &mut pos, &mut k, &mut v) };
        next != 0 && k == f.as_ptr()
    })
}

enum Sink<'t> {
    Record {
        tokens: &'t mut Vec<usize>,
        refs: &'t mut Vec<Py<PyAny>>,
    },
    Verify {
        tokens: &'t [usize],
        pos: usize,
    },
}

impl Sink<'_> {
    fn token(&mut self, t: usize) -> bool {
        match self {
            Sink::Record { tokens, .. } => {
                tokens.push(t);
                true
            }
            Sink::Verify { tokens, pos } => {
                let same = tokens.get(*pos) == Some(&t);
                *pos += 1;
                same
            }
        }
    }

    fn node(&mut self, obj: Borrowed<'_, '_, PyAny>) -> bool {
        if let Sink::Record { refs, .. } = self {
            refs.push(obj.to_owned().unbind());
        }
        self.token(obj.as_ptr() as usize)
    }
}
