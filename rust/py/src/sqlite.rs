//! `SqliteStore`: the Python face of `fastcheckpoint_core::store`.
//!
//! Parameters are converted to owned SQLite values under the GIL; the
//! transaction itself (locking, I/O, waiting on other writers) runs with the
//! GIL released, so other Python threads keep running. The connection sits
//! behind a mutex taken only while the GIL is released (never the reverse,
//! which could deadlock two threads).

use std::sync::Mutex;
use std::time::Duration;

use fastcheckpoint_core::store::{self, Row, Stmt, Store, StoreError, Synchronous};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use rusqlite::types::Value;

use crate::errors::{config_error, store_error};

#[pyclass(frozen, module = "fastcheckpoint._native")]
pub struct SqliteStore {
    inner: Mutex<Option<Store>>,
}

fn to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    Ok(if obj.is_none() {
        Value::Null
    } else if let Ok(s) = obj.downcast_exact::<PyString>() {
        Value::Text(s.to_str()?.to_owned())
    } else if let Ok(b) = obj.downcast_exact::<PyBytes>() {
        Value::Blob(b.as_bytes().to_vec())
    } else if obj.is_instance_of::<PyBool>() {
        Value::Integer(obj.is_truthy()? as i64)
    } else if obj.is_instance_of::<PyInt>() {
        Value::Integer(obj.extract()?)
    } else if obj.is_instance_of::<PyFloat>() {
        Value::Real(obj.extract()?)
    } else if let Ok(s) = obj.downcast::<PyString>() {
        Value::Text(s.to_str()?.to_owned())
    } else if let Ok(b) = obj.extract::<Vec<u8>>() {
        Value::Blob(b)
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "cannot bind a value of type {} as an SQL parameter",
            obj.get_type().name()?
        )));
    })
}

fn to_stmts(items: &Bound<'_, PyList>) -> PyResult<Vec<Stmt>> {
    items
        .iter()
        .map(|item| {
            let t = item.downcast::<PyTuple>()?;
            let sql: String = t.get_item(0)?.extract()?;
            let params = t
                .get_item(1)?
                .try_iter()?
                .map(|p| to_value(&p?))
                .collect::<PyResult<Vec<_>>>()?;
            let require_row = t.len() > 2 && t.get_item(2)?.is_truthy()?;
            Ok(Stmt {
                sql,
                params,
                require_row,
            })
        })
        .collect()
}

fn row_to_py<'py>(py: Python<'py>, row: Row) -> PyResult<Bound<'py, PyTuple>> {
    let items = row
        .into_iter()
        .map(|v| -> PyResult<Bound<'py, PyAny>> {
            Ok(match v {
                Value::Null => py.None().into_bound(py),
                Value::Integer(i) => i.into_pyobject(py)?.into_any(),
                Value::Real(f) => f.into_pyobject(py)?.into_any(),
                Value::Text(s) => PyString::new(py, &s).into_any(),
                Value::Blob(b) => PyBytes::new(py, &b).into_any(),
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyTuple::new(py, items)
}

impl SqliteStore {
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut() {
                Some(store) => f(store).map_err(Some),
                None => Err(None),
            }
        })
        .map_err(|e| match e {
            Some(e) => store_error(e),
            None => config_error("the saver's database connection is closed"),
        })
    }
}

#[pymethods]
impl SqliteStore {
    /// Opens `path` (":memory:" for a private in-memory database) in WAL mode.
    #[new]
    #[pyo3(signature = (path, *, synchronous="NORMAL", busy_timeout=30.0))]
    fn new(py: Python<'_>, path: String, synchronous: &str, busy_timeout: f64) -> PyResult<Self> {
        let sync = match synchronous.to_ascii_uppercase().as_str() {
            "NORMAL" => Synchronous::Normal,
            "FULL" => Synchronous::Full,
            other => {
                return Err(config_error(format!(
                    "synchronous must be 'NORMAL' or 'FULL', not {other:?}"
                )))
            }
        };
        if !busy_timeout.is_finite() || busy_timeout < 0.0 {
            return Err(config_error(
                "busy_timeout must be a non-negative number of seconds",
            ));
        }
        let timeout = Duration::from_secs_f64(busy_timeout);
        let store = py
            .detach(|| Store::open(&path, sync, timeout))
            .map_err(store_error)?;
        Ok(SqliteStore {
            inner: Mutex::new(Some(store)),
        })
    }

    /// Runs `[(sql, params, require_row), ...]` in one `BEGIN IMMEDIATE`
    /// transaction; returns the rows each statement changed (or returned).
    fn write(&self, py: Python<'_>, batch: &Bound<'_, PyList>) -> PyResult<Vec<usize>> {
        let stmts = to_stmts(batch)?;
        self.with(py, move |s| s.write(&stmts))
    }

    /// Runs several batches like `write`'s in one transaction (group commit);
    /// returns for each its row counts, or the typed error that undid it alone.
    /// An error of the transaction as a whole is raised: nothing was stored.
    fn write_group<'py>(
        &self,
        py: Python<'py>,
        batches: &Bound<'py, PyList>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let batches = batches
            .iter()
            .map(|b| to_stmts(b.downcast::<PyList>()?))
            .collect::<PyResult<Vec<_>>>()?;
        let results = self.with(py, move |s| s.write_group(&batches))?;
        results
            .into_iter()
            .map(|r| match r {
                Ok(counts) => Ok(counts.into_pyobject(py)?.into_any()),
                Err(e) => Ok(store_error(e).into_value(py).into_bound(py).into_any()),
            })
            .collect()
    }

    /// Runs `[(sql, params), ...]` in one read transaction; returns each one's rows.
    fn read<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyList>,
    ) -> PyResult<Vec<Vec<Bound<'py, PyTuple>>>> {
        let stmts = to_stmts(queries)?;
        let results = self.with(py, move |s| s.read(&stmts))?;
        results
            .into_iter()
            .map(|rows| rows.into_iter().map(|r| row_to_py(py, r)).collect())
            .collect()
    }

    /// Runs a multi-statement script (schema set-up, maintenance).
    fn execute_script(&self, py: Python<'_>, sql: String) -> PyResult<()> {
        self.with(py, move |s| s.execute_script(&sql))
    }

    /// Closes the connection; later calls raise `ConfigError`.
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        });
    }
}

/// `(version, address of sqlite3_libversion)` of the SQLite library linked in.
#[pyfunction]
pub fn sqlite_library() -> (String, usize) {
    store::library()
}
