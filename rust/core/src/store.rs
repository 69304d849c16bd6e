//! The SQLite store: one connection, transactions that run a batch of
//! statements, and nothing else. The SQL (schema, queries) lives with the
//! Python saver, so one place describes the tables; this module owns what must
//! be right at the I/O level: WAL, `synchronous`, `BEGIN IMMEDIATE` for writes,
//! a wait-and-retry on lock contention, cached prepared statements, and
//! rollback on any failure (so a failed put leaves nothing behind).
//!
//! No SQLite is linked in: the store calls the library bound by
//! [`crate::sqlite_api`], the copy Python's `sqlite3` module uses, so both see
//! each other's POSIX locks on a shared file (two copies would silently lose them).

use std::fmt;
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use crate::crash;

/// One statement of a batch: SQL, bound parameters, and what it must do.
pub struct Stmt {
    pub sql: String,
    pub params: Vec<Value>,
    /// A query that must return at least one row, or the batch is rolled back
    /// with [`StoreError::MissingRow`] (e.g. a delta's base blob must exist).
    pub require_row: bool,
}

pub type Row = Vec<Value>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The lock stayed taken longer than the busy timeout.
    Busy(String),
    /// A `require_row` statement found nothing (index in the batch).
    MissingRow(usize),
    /// The disk (or the database size limit) is full.
    Full(String),
    /// The file is not a database or is damaged.
    Corrupt(String),
    /// Any other SQLite failure (I/O error, constraint, read-only file...).
    Sqlite(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Busy(m) => write!(f, "database stayed locked past the busy timeout: {m}"),
            StoreError::MissingRow(i) => write!(f, "statement {i} of the batch found no row"),
            StoreError::Full(m) => write!(f, "database or disk is full: {m}"),
            StoreError::Corrupt(m) => write!(f, "database file is damaged or not a database: {m}"),
            StoreError::Sqlite(m) => write!(f, "sqlite error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// The error for an SQLite failure with this (primary or extended) result
    /// code, wherever it was raised: rusqlite here, Python's `sqlite3` on the
    /// store's Python route.
    pub fn from_code(code: i32, msg: String) -> StoreError {
        Self::classify(Some(rusqlite::ffi::Error::new(code).code), msg)
    }

    fn classify(code: Option<ErrorCode>, msg: String) -> StoreError {
        match code {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy(msg),
            Some(ErrorCode::DiskFull) => StoreError::Full(msg),
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt(msg),
            _ => StoreError::Sqlite(msg),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        let code = e.sqlite_error_code();
        Self::classify(code, e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// How much a committed write survives: NORMAL survives a process crash (WAL
/// is written before the commit returns, fsync at checkpoints), FULL also
/// survives power loss (fsync at every commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Normal,
    Full,
}

pub struct Store {
    conn: Connection,
    busy_timeout: Duration,
}

impl Store {
    /// Opens (creating if needed) the database at `path`; `":memory:"` is a
    /// private in-memory database.
    pub fn open(path: &str, sync: Synchronous, busy_timeout: Duration) -> Result<Store> {
        if crate::sqlite_api::bound().is_none() {
            return Err(StoreError::Sqlite(
                "no SQLite library is bound yet (fastcheckpoint binds the one Python's sqlite3 uses \
                 before the first database opens)"
                    .into(),
            ));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(busy_timeout)?;
        conn.set_prepared_statement_cache_capacity(64);
        let store = Store { conn, busy_timeout };
        // Switching to WAL needs a moment of exclusive access: retried like a write.
        store.retrying(|c| {
            c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
            Ok(())
        })?;
        let level = match sync {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        store.conn.execute_batch(&format!(
            "PRAGMA synchronous={level}; PRAGMA foreign_keys=OFF;"
        ))?;
        Ok(store)
    }

    /// Runs `f` again while SQLite reports contention the busy handler did
    /// not absorb (e.g. WAL recovery by another process), up to the timeout.
    fn retrying<T>(&self, mut f: impl FnMut(&Connection) -> Result<T>) -> Result<T> {
        let deadline = Instant::now() + self.busy_timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match f(&self.conn) {
                Err(StoreError::Busy(m)) => {
                    if Instant::now() >= deadline {
                        return Err(StoreError::Busy(m));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Runs every statement in one `BEGIN IMMEDIATE` transaction and commits;
    /// any failure rolls the whole batch back. Returns the rows each statement
    /// changed (queries: the rows they returned).
    pub fn write(&mut self, batch: &[Stmt]) -> Result<Vec<usize>> {
        self.retrying(|c| Self::write_once(c, batch))
    }

    fn write_once(conn: &Connection, batch: &[Stmt]) -> Result<Vec<usize>> {
        crash::point("begin");
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        // On an error, dropping `tx` rolls back.
        let counts = Self::run(conn, batch)?;
        crash::point("commit");
        tx.commit()?;
        crash::point("committed");
        Ok(counts)
    }

    /// Runs several callers' batches in one `BEGIN IMMEDIATE` transaction
    /// (group commit: one lock, one commit and one write of each page touched
    /// for all of them). Each batch runs inside its own savepoint, so a batch
    /// that fails is undone alone and gets its error while the others commit.
    /// An error that ends the transaction itself (the commit, a full disk, an
    /// I/O error) is the whole group's: nothing of it is stored.
    pub fn write_group(&mut self, batches: &[Vec<Stmt>]) -> Result<Vec<Result<Vec<usize>>>> {
        self.retrying(|c| Self::write_group_once(c, batches))
    }

    fn write_group_once(
        conn: &Connection,
        batches: &[Vec<Stmt>],
    ) -> Result<Vec<Result<Vec<usize>>>> {
        crash::point("begin");
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            conn.execute_batch("SAVEPOINT fc_batch")?;
            match Self::run(conn, batch) {
                Ok(counts) => {
                    conn.execute_batch("RELEASE fc_batch")?;
                    out.push(Ok(counts));
                }
                // SQLite may have rolled the whole transaction back by itself.
                Err(e) if matches!(e, StoreError::Busy(_)) || conn.is_autocommit() => {
                    return Err(e)
                }
                Err(e) => {
                    conn.execute_batch("ROLLBACK TO fc_batch; RELEASE fc_batch")?;
                    out.push(Err(e));
                }
            }
        }
        crash::point("commit");
        tx.commit()?;
        crash::point("committed");
        Ok(out)
    }

    /// The statements of one batch, in the open transaction: the rows each
    /// changed (queries: the rows they returned).
    fn run(conn: &Connection, batch: &[Stmt]) -> Result<Vec<usize>> {
        let mut counts = Vec::with_capacity(batch.len());
        for (i, s) in batch.iter().enumerate() {
            let mut st = conn.prepare_cached(&s.sql)?;
            let params = rusqlite::params_from_iter(s.params.iter());
            let n = if st.readonly() {
                let mut rows = st.query(params)?;
                let mut n = 0;
                while rows.next()?.is_some() {
                    n += 1;
                }
                n
            } else {
                st.execute(params)?
            };
            if s.require_row && n == 0 {
                return Err(StoreError::MissingRow(i));
            }
            counts.push(n);
            crash::point("row");
        }
        Ok(counts)
    }

    /// Runs queries in one read transaction (one consistent snapshot) and
    /// returns every row of each.
    pub fn read(&mut self, queries: &[Stmt]) -> Result<Vec<Vec<Row>>> {
        self.retrying(|c| Self::read_once(c, queries))
    }

    fn read_once(conn: &Connection, queries: &[Stmt]) -> Result<Vec<Vec<Row>>> {
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Deferred)?;
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            let mut st = tx.prepare_cached(&q.sql)?;
            let ncol = st.column_count();
            let mut rows = st.query(rusqlite::params_from_iter(q.params.iter()))?;
            let mut got = Vec::new();
            while let Some(r) = rows.next()? {
                let mut row = Vec::with_capacity(ncol);
                for c in 0..ncol {
                    row.push(r.get::<_, Value>(c)?);
                }
                got.push(row);
            }
            out.push(got);
        }
        tx.commit()?;
        Ok(out)
    }

    /// Runs a script (schema set-up, VACUUM) outside any batch.
    pub fn execute_script(&mut self, sql: &str) -> Result<()> {
        self.retrying(|c| Ok(c.execute_batch(sql)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The machine's shared SQLite, as Python's `sqlite3` links it on Linux.
    pub(crate) fn bind_system_sqlite() {
        #[cfg(feature = "runtime-sqlite")]
        crate::sqlite_api::bind_symbols(Some("libsqlite3.so.0"), true, None)
            .expect("libsqlite3.so.0 (Debian's libsqlite3-0) for the store's tests");
    }

    fn stmt(sql: &str, params: Vec<Value>, require_row: bool) -> Stmt {
        Stmt {
            sql: sql.into(),
            params,
            require_row,
        }
    }

    #[test]
    fn batch_is_atomic() {
        bind_system_sqlite();
        let mut s = Store::open(":memory:", Synchronous::Normal, Duration::from_secs(1)).unwrap();
        s.execute_script("CREATE TABLE t(k TEXT PRIMARY KEY, v BLOB)")
            .unwrap();
        let ok = s
            .write(&[stmt(
                "INSERT INTO t VALUES (?, ?)",
                vec![Value::Text("a".into()), Value::Blob(vec![1])],
                false,
            )])
            .unwrap();
        assert_eq!(ok, vec![1]);
        let err = s
            .write(&[
                stmt(
                    "INSERT INTO t VALUES (?, ?)",
                    vec![Value::Text("b".into()), Value::Null],
                    false,
                ),
                stmt(
                    "SELECT 1 FROM t WHERE k = ?",
                    vec![Value::Text("zz".into())],
                    true,
                ),
            ])
            .unwrap_err();
        assert_eq!(err, StoreError::MissingRow(1));
        let rows = s
            .read(&[stmt("SELECT k FROM t ORDER BY k", vec![], false)])
            .unwrap();
        assert_eq!(rows, vec![vec![vec![Value::Text("a".into())]]]);
    }

    #[test]
    fn sql_errors_are_typed() {
        bind_system_sqlite();
        let mut s = Store::open(":memory:", Synchronous::Full, Duration::from_secs(1)).unwrap();
        let err = s
            .write(&[stmt("INSERT INTO missing VALUES (1)", vec![], false)])
            .unwrap_err();
        assert!(matches!(err, StoreError::Sqlite(_)), "{err:?}");
    }
}
