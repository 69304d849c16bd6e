//! Python objects looked up once per process (type objects and helpers).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

pub struct Std {
    pub datetime: Py<PyType>,
    pub date: Py<PyType>,
    pub time: Py<PyType>,
    pub timedelta: Py<PyType>,
    pub timezone: Py<PyType>,
    pub uuid: Py<PyType>,
    pub decimal: Py<PyType>,
    pub deque: Py<PyType>,
    pub enum_base: Py<PyType>,
    pub delta_snapshot: Py<PyType>,
    pub send: Py<PyType>,
    pub item: Py<PyType>,
    pub memoryview: Py<PyType>,
    /// `fastcheckpoint._cold`: the rare-type paths, written in Python.
    pub cold: Py<PyModule>,
    /// `sys.modules`: a resolved class stays in use while its module is there.
    pub modules: Py<PyDict>,
}

static STD: PyOnceLock<Std> = PyOnceLock::new();

fn cls(py: Python<'_>, module: &str, name: &str) -> PyResult<Py<PyType>> {
    Ok(py
        .import(module)?
        .getattr(name)?
        .downcast_into::<PyType>()
        .map_err(PyErr::from)?
        .unbind())
}

pub fn std(py: Python<'_>) -> PyResult<&'static Std> {
    STD.get_or_try_init(py, || {
        Ok(Std {
            datetime: cls(py, "datetime", "datetime")?,
            date: cls(py, "datetime", "date")?,
            time: cls(py, "datetime", "time")?,
            timedelta: cls(py, "datetime", "timedelta")?,
            timezone: cls(py, "datetime", "timezone")?,
            uuid: cls(py, "uuid", "UUID")?,
            decimal: cls(py, "decimal", "Decimal")?,
            deque: cls(py, "collections", "deque")?,
            enum_base: cls(py, "enum", "Enum")?,
            delta_snapshot: cls(py, "langgraph.checkpoint.serde.types", "_DeltaSnapshot")?,
            send: cls(py, "langgraph.types", "Send")?,
            item: cls(py, "langgraph.store.base", "Item")?,
            memoryview: cls(py, "builtins", "memoryview")?,
            cold: py.import("fastcheckpoint._cold")?.unbind(),
            modules: py
                .import("sys")?
                .getattr("modules")?
                .downcast_into::<PyDict>()
                .map_err(PyErr::from)?
                .unbind(),
        })
    })
}
