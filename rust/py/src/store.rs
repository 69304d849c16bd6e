//! `SqliteStore`: the Python face of `fastcheckpoint_core::store`.
//!
//! Parameters are converted to owned SQLite values under the GIL; the sealing
//! of `Body` parameters (checksum, zstd) and the transaction itself (locking,
//! I/O, waiting on other writers) run with the GIL released, so other Python
//! threads keep running. The connection sits behind a mutex taken only while
//! the GIL is released (never the reverse, which could deadlock two threads).
//! `CommitQueue` runs the async savers' group commits on a thread that shares
//! that connection and never takes the GIL at all.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use fastcheckpoint_core::envelope::Unsealed;
use fastcheckpoint_core::sqlite_api;
use fastcheckpoint_core::store::{Row, Stmt, Store, StoreError, Synchronous};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use rusqlite::types::Value;

use crate::errors::{config_error, storage_error, store_error};
use crate::writer::Body;

#[pyclass(frozen, module = "fastcheckpoint._native")]
pub struct SqliteStore {
    inner: Shared,
}

/// The connection, shared with the store's commit threads; `None` once closed.
type Shared = Arc<Mutex<Option<Store>>>;

/// A store call's failure: the store's error, or `None` for a closed store.
type Outcome<T> = Result<T, Option<StoreError>>;

/// Runs `f` on the store with its lock taken (call without the GIL).
fn run_on<T>(inner: &Shared, f: impl FnOnce(&mut Store) -> Result<T, StoreError>) -> Outcome<T> {
    let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
    match guard.as_mut() {
        Some(store) => f(store).map_err(Some),
        None => Err(None),
    }
}

fn outcome_error(e: Option<StoreError>) -> PyErr {
    match e {
        Some(e) => store_error(e),
        None => config_error("the saver's database connection is closed"),
    }
}

/// A group's answers: each batch's row counts, or the exception that undid it alone.
fn group_to_py(
    py: Python<'_>,
    results: Vec<Result<Vec<usize>, StoreError>>,
) -> PyResult<Bound<'_, PyList>> {
    let items = results
        .into_iter()
        .map(|r| match r {
            Ok(counts) => Ok(counts.into_pyobject(py)?.into_any()),
            Err(e) => Ok(store_error(e).into_value(py).into_bound(py).into_any()),
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// A statement as converted under the GIL: its `Body` parameters are sealed
/// (`sealed`) later, by the thread that runs it, without the GIL.
struct Pending {
    sql: String,
    params: Vec<Param>,
    require_row: bool,
}

enum Param {
    Value(Value),
    Seal(Arc<Unsealed>),
}

fn sealed(stmts: Vec<Pending>) -> Vec<Stmt> {
    stmts
        .into_iter()
        .map(|p| Stmt {
            sql: p.sql,
            params: p
                .params
                .into_iter()
                .map(|v| match v {
                    Param::Value(v) => v,
                    Param::Seal(u) => Value::Blob(u.seal()),
                })
                .collect(),
            require_row: p.require_row,
        })
        .collect()
}

fn sealed_groups(groups: Vec<Vec<Pending>>) -> Vec<Vec<Stmt>> {
    groups.into_iter().map(sealed).collect()
}

fn to_param(obj: &Bound<'_, PyAny>) -> PyResult<Param> {
    Ok(Param::Value(if obj.is_none() {
        Value::Null
    } else if let Ok(s) = obj.downcast_exact::<PyString>() {
        Value::Text(s.to_str()?.to_owned())
    } else if let Ok(b) = obj.downcast_exact::<PyBytes>() {
        Value::Blob(b.as_bytes().to_vec())
    } else if let Ok(b) = obj.downcast_exact::<Body>() {
        return Ok(Param::Seal(b.get().0.clone()));
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
    }))
}

fn to_stmts(items: &Bound<'_, PyList>) -> PyResult<Vec<Pending>> {
    items
        .iter()
        .map(|item| {
            let t = item.downcast::<PyTuple>()?;
            let sql: String = t.get_item(0)?.extract()?;
            let params = t
                .get_item(1)?
                .try_iter()?
                .map(|p| to_param(&p?))
                .collect::<PyResult<Vec<_>>>()?;
            let require_row = t.len() > 2 && t.get_item(2)?.is_truthy()?;
            Ok(Pending {
                sql,
                params,
                require_row,
            })
        })
        .collect()
}

fn to_groups(batches: &Bound<'_, PyList>) -> PyResult<Vec<Vec<Pending>>> {
    batches
        .iter()
        .map(|b| to_stmts(b.downcast::<PyList>()?))
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
    /// Runs `f` on the store with the GIL released, on what `prepare` makes
    /// (statements with their bodies sealed) before the lock is taken: threads
    /// sharing the store compress side by side.
    fn with<P, T: Send>(
        &self,
        py: Python<'_>,
        prepare: impl FnOnce() -> P + Send,
        f: impl FnOnce(&mut Store, P) -> Result<T, StoreError> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let prepared = prepare();
            run_on(&self.inner, |s| f(s, prepared))
        })
        .map_err(outcome_error)
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
        if sqlite_api::bound().is_none() {
            // The first store of the process binds the SQLite Python's sqlite3 uses.
            let route: String = py
                .import("fastcheckpoint.sqlite._library")?
                .call_method0("bind")?
                .extract()?;
            if sqlite_api::bound().is_none() {
                return Err(config_error(format!(
                    "this Python's SQLite is reachable only through its sqlite3 module (route {route:?}): \
                     open stores with fastcheckpoint.sqlite._library.open_store"
                )));
            }
        }
        let store = py
            .detach(|| Store::open(&path, sync, timeout))
            .map_err(store_error)?;
        Ok(SqliteStore {
            inner: Arc::new(Mutex::new(Some(store))),
        })
    }

    /// Runs `[(sql, params, require_row), ...]` in one `BEGIN IMMEDIATE`
    /// transaction; returns the rows each statement changed (or returned).
    fn write(&self, py: Python<'_>, batch: &Bound<'_, PyList>) -> PyResult<Vec<usize>> {
        let stmts = to_stmts(batch)?;
        self.with(py, || sealed(stmts), |s, stmts| s.write(&stmts))
    }

    /// Runs several batches like `write`'s in one transaction (group commit);
    /// returns for each its row counts, or the typed error that undid it alone.
    /// An error of the transaction as a whole is raised: nothing was stored.
    fn write_group<'py>(
        &self,
        py: Python<'py>,
        batches: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyList>> {
        let batches = to_groups(batches)?;
        let results = self.with(py, || sealed_groups(batches), |s, b| s.write_group(&b))?;
        group_to_py(py, results)
    }

    /// A queue whose groups (as `write_group`'s) are committed in order by a
    /// thread of its own, which never takes the GIL; see [`CommitQueue`].
    #[cfg(unix)]
    fn commit_queue(&self) -> PyResult<CommitQueue> {
        CommitQueue::start(self.inner.clone())
    }

    /// Runs `[(sql, params), ...]` in one read transaction; returns each one's rows.
    fn read<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyList>,
    ) -> PyResult<Vec<Vec<Bound<'py, PyTuple>>>> {
        let stmts = to_stmts(queries)?;
        let results = self.with(py, || sealed(stmts), |s, stmts| s.read(&stmts))?;
        results
            .into_iter()
            .map(|rows| rows.into_iter().map(|r| row_to_py(py, r)).collect())
            .collect()
    }

    /// Runs a multi-statement script (schema set-up, maintenance).
    fn execute_script(&self, py: Python<'_>, sql: String) -> PyResult<()> {
        self.with(py, || sql, |s, sql| s.execute_script(&sql))
    }

    /// Closes the connection; later calls raise `ConfigError`.
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        });
    }
}

/// The typed exception (not raised) the store gives for an SQLite failure with
/// result code `code`: one mapping for the Rust store and its Python twin.
#[pyfunction]
pub fn sqlite_error(py: Python<'_>, code: i32, message: String) -> Py<PyAny> {
    store_error(StoreError::from_code(code, message))
        .into_value(py)
        .into_any()
}

/// `(version, route)` of the SQLite library the store calls, or `None`
/// before one is bound (see `fastcheckpoint.sqlite._library`).
#[pyfunction]
pub fn sqlite_binding() -> Option<(String, &'static str)> {
    sqlite_api::bound().map(|b| (b.version, b.route.name()))
}

/// Binds the store to the SQLite functions of the object at `path`, already
/// loaded (`None`: the process's global symbols), which must report
/// `expected` as its version. Raises `ConfigError` with the reason otherwise.
#[pyfunction]
#[pyo3(signature = (path, expected))]
pub fn bind_sqlite_symbols(path: Option<&str>, expected: &str) -> PyResult<(String, &'static str)> {
    #[cfg(feature = "runtime-sqlite")]
    let bound = sqlite_api::bind_symbols(path, false, Some(expected)).map_err(config_error)?;
    #[cfg(not(feature = "runtime-sqlite"))]
    let bound = {
        let _ = (path, expected);
        sqlite_api::bound().expect("a linked build is always bound")
    };
    Ok((bound.version, bound.route.name()))
}

/// SQLite's entry point for this module loaded as an extension
/// (`sqlite3.Connection.load_extension`): binds the store to the table of
/// the library that loaded it. Never unwinds into SQLite.
///
/// # Safety
/// Called by SQLite only, with its own function table.
#[cfg(feature = "runtime-sqlite")]
#[no_mangle]
pub unsafe extern "C" fn sqlite3_extension_init(
    _db: *mut std::ffi::c_void,
    _error: *mut *mut std::os::raw::c_char,
    api: *mut rusqlite::ffi::sqlite3_api_routines,
) -> std::os::raw::c_int {
    match std::panic::catch_unwind(|| sqlite_api::bind_table(api)) {
        Ok(Ok(_)) => rusqlite::ffi::SQLITE_OK,
        _ => rusqlite::ffi::SQLITE_ERROR,
    }
}

/// Group commits for an event loop. `submit` hands a group to the queue's
/// thread and returns its ticket at once; the thread commits groups in order
/// and, for each, stores the answer and writes a byte to a socket whose other
/// end (`fileno`) the loop watches; `completions` then hands the answers out.
/// The thread never needs the GIL, so a commit neither waits for the loop to
/// let go of it nor makes the loop wait: the loop encodes the next group's
/// puts while this one commits.
#[cfg(unix)]
#[pyclass(frozen, module = "fastcheckpoint._native")]
pub struct CommitQueue {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    answers: Arc<Mutex<Vec<(u64, GroupOutcome)>>>,
    wake: std::os::unix::net::UnixStream,
    next: std::sync::atomic::AtomicU64,
}

/// A group to commit and its ticket.
type Job = (u64, Vec<Vec<Pending>>);
type GroupOutcome = Outcome<Vec<Result<Vec<usize>, StoreError>>>;

#[cfg(unix)]
impl CommitQueue {
    fn start(store: Shared) -> PyResult<Self> {
        use std::io::Write;
        let io = |e: std::io::Error| storage_error(format!("cannot start the commit thread: {e}"));
        let (wake, mut signal) = std::os::unix::net::UnixStream::pair().map_err(io)?;
        wake.set_nonblocking(true).map_err(io)?;
        // Never block the thread: one byte waiting is enough to wake the loop.
        signal.set_nonblocking(true).map_err(io)?;
        let (jobs, queued) = mpsc::channel::<Job>();
        let answers = Arc::new(Mutex::new(Vec::new()));
        let out = answers.clone();
        let worker = std::thread::Builder::new()
            .name("fc-commit".into())
            .spawn(move || {
                for (ticket, batches) in queued {
                    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        // Sealed before the lock: a sync caller's write need not wait for it.
                        let batches = sealed_groups(batches);
                        run_on(&store, |s| s.write_group(&batches))
                    }))
                    .unwrap_or_else(|_| {
                        Err(Some(StoreError::Sqlite(
                            "the commit thread failed unexpectedly".into(),
                        )))
                    });
                    out.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((ticket, answer));
                    let _ = signal.write(&[1]);
                }
            })
            .map_err(io)?;
        Ok(CommitQueue {
            jobs: Mutex::new(Some(jobs)),
            worker: Mutex::new(Some(worker)),
            answers,
            wake,
            next: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

#[cfg(unix)]
#[pymethods]
impl CommitQueue {
    /// Queues a group (a list of `write` batches); returns its ticket.
    fn submit(&self, batches: &Bound<'_, PyList>) -> PyResult<u64> {
        let batches = to_groups(batches)?;
        let ticket = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        match jobs.as_ref().map(|j| j.send((ticket, batches))) {
            Some(Ok(())) => Ok(ticket),
            _ => Err(outcome_error(None)),
        }
    }

    /// The socket the loop watches: readable when answers are waiting.
    fn fileno(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.wake.as_raw_fd()
    }

    /// The answers ready: `(ticket, answer, failed)`; `answer` is the group's
    /// list (as `write_group` returns), or with `failed` the exception that
    /// undid the whole group.
    fn completions<'py>(&self, py: Python<'py>) -> Vec<(u64, Bound<'py, PyAny>, bool)> {
        use std::io::Read;
        // Empty the socket before taking the answers: an answer stored after
        // this point has its byte written after it too, so the loop wakes again.
        let mut buf = [0u8; 256];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        let ready = std::mem::take(&mut *self.answers.lock().unwrap_or_else(|p| p.into_inner()));
        let failed = |e: PyErr| (e.into_value(py).into_bound(py).into_any(), true);
        ready
            .into_iter()
            .map(|(ticket, answer)| {
                // An answer that cannot be built (MemoryError) still answers
                // its callers, with that error, rather than leave them waiting.
                let (answer, flag) = match answer {
                    Ok(results) => group_to_py(py, results)
                        .map(|list| (list.into_any(), false))
                        .unwrap_or_else(failed),
                    Err(e) => failed(outcome_error(e)),
                };
                (ticket, answer, flag)
            })
            .collect()
    }

    /// Stops taking groups and waits until those queued are answered.
    fn close(&self, py: Python<'_>) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(worker) = worker {
            py.detach(|| {
                let _ = worker.join();
            });
        }
    }
}
