//! One mapping from Rust errors to the Python exception tree defined in
//! `fastcheckpoint.errors` (defined in Python so classes can also subclass
//! `TypeError` / `ValueError` for compatibility with upstream callers).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use fastcheckpoint_core::store::StoreError;
use fastcheckpoint_core::Error as CoreError;

macro_rules! py_error {
    ($fn_name:ident, $class:literal) => {
        pub fn $fn_name(msg: impl Into<String>) -> PyErr {
            static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
            let msg = msg.into();
            Python::attach(
                |py| match CELL.import(py, "fastcheckpoint.errors", $class) {
                    Ok(cls) => PyErr::from_type(cls.clone(), msg),
                    Err(e) => e,
                },
            )
        }
    };
}

py_error!(serialization_error, "SerializationError");
py_error!(deserialization_error, "DeserializationError");
py_error!(disallowed_type_error, "DisallowedTypeError");
py_error!(corrupt_data_error, "CorruptDataError");
py_error!(config_error, "ConfigError");
py_error!(storage_error, "StorageError");
py_error!(database_locked_error, "DatabaseLockedError");
py_error!(disk_full_error, "DiskFullError");
py_error!(missing_row_error, "MissingRowError");
py_error!(decryption_error, "DecryptionError");

/// Core errors: checksum and chain failures are corruption, the rest malformed input.
pub fn core_error(e: CoreError) -> PyErr {
    match e {
        CoreError::Checksum { .. } | CoreError::BrokenChain(_) | CoreError::Decompress(_) => {
            corrupt_data_error(e.to_string())
        }
        _ => deserialization_error(e.to_string()),
    }
}

/// Store errors: each kind its own class, all under `StorageError`.
pub fn store_error(e: StoreError) -> PyErr {
    let msg = e.to_string();
    match e {
        StoreError::Busy(_) => database_locked_error(msg),
        StoreError::Full(_) => disk_full_error(msg),
        StoreError::Corrupt(_) => corrupt_data_error(msg),
        StoreError::MissingRow(_) => missing_row_error(msg),
        StoreError::Sqlite(_) => storage_error(msg),
    }
}
