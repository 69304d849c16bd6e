//! Which SQLite library the store calls, decided at run time.
//!
//! The extension links no SQLite: rusqlite is built as a loadable extension
//! (`loadable_extension`), so every `sqlite3_*` call goes through a table of
//! function pointers that must be bound before the first connection opens. Two
//! copies of SQLite in one process do not see each other's POSIX locks on a
//! file (which corrupts databases), so the table must come from the library
//! Python's `sqlite3` module itself uses. Two ways to get it:
//!
//! * [`Route::Symbols`]: look the functions up in the shared library (or the
//!   extension module) that already provides them to `_sqlite3`, with
//!   `dlopen(RTLD_NOLOAD)` and `dlsym`. Nothing is loaded, nothing is enabled.
//! * [`Route::Extension`]: SQLite hands its own table to an extension it loads;
//!   the Python side loads our module into a private connection of Python's
//!   `sqlite3` and the exported entry point calls [`bind_table`].
//!
//! Where neither works, the Python side does its I/O through `sqlite3` itself.
//! The `second-sqlite` feature instead links a bundled copy: a deliberately
//! mis-built variant the one-SQLite check must refuse (tests only).

#[cfg(feature = "runtime-sqlite")]
use std::sync::Mutex;

/// How the store reached its SQLite library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Functions looked up in the library Python's `sqlite3` links.
    Symbols,
    /// The table SQLite handed our module, loaded as an extension.
    Extension,
    /// A copy linked in at build time (the `second-sqlite` test build).
    Linked,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Symbols => "symbols",
            Route::Extension => "extension",
            Route::Linked => "linked",
        }
    }
}

/// The library bound: its version (`sqlite3_libversion`) and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub version: String,
    pub route: Route,
}

#[cfg(feature = "runtime-sqlite")]
static BOUND: Mutex<Option<Binding>> = Mutex::new(None);

/// The library the store calls, if one is bound yet.
pub fn bound() -> Option<Binding> {
    #[cfg(not(feature = "runtime-sqlite"))]
    {
        Some(Binding {
            version: rusqlite::version().to_owned(),
            route: Route::Linked,
        })
    }
    #[cfg(feature = "runtime-sqlite")]
    {
        BOUND.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(feature = "runtime-sqlite")]
pub use runtime::*;

#[cfg(feature = "runtime-sqlite")]
mod runtime {
    use super::{Binding, Route, BOUND};
    use rusqlite::ffi::sqlite3_api_routines;
    use std::ffi::CStr;

    /// Binds the table SQLite handed an extension it loaded. The first binding
    /// stays: a second one (another connection loading us again) is a no-op.
    ///
    /// # Safety
    /// `api` must be the table SQLite passes to an extension's entry point
    /// (its pointers stay valid for the life of the process).
    pub unsafe fn bind_table(api: *mut sqlite3_api_routines) -> Result<Binding, String> {
        if api.is_null() {
            return Err("SQLite passed no function table".into());
        }
        install(api, Route::Extension)
    }

    unsafe fn install(api: *mut sqlite3_api_routines, route: Route) -> Result<Binding, String> {
        let mut bound = BOUND.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = bound.as_ref() {
            return Ok(b.clone());
        }
        rusqlite::ffi::rusqlite_extension_init2(api).map_err(|e| e.to_string())?;
        let version = CStr::from_ptr(rusqlite::ffi::sqlite3_libversion())
            .to_string_lossy()
            .into_owned();
        let b = Binding { version, route };
        *bound = Some(b.clone());
        Ok(b)
    }

    #[cfg(unix)]
    pub use symbols::bind_symbols;

    /// Where there is no `dlopen` (Windows), the symbols route is unavailable:
    /// the extension and Python routes remain.
    #[cfg(not(unix))]
    pub fn bind_symbols(
        _path: Option<&str>,
        _load: bool,
        _expected: Option<&str>,
    ) -> Result<Binding, String> {
        Err("looking SQLite's functions up needs dlopen (Unix)".into())
    }

    /// The symbols route: `dlopen` / `dlsym` (Unix).
    #[cfg(unix)]
    mod symbols {
        use super::{install, Binding, Route};
        use rusqlite::ffi::sqlite3_api_routines;
        use std::ffi::{c_void, CStr, CString};

        /// Binds the SQLite functions found in the object at `path`, already
        /// loaded by this process, and in the libraries it links (`None`: the
        /// process's global symbols). With `load`, the object is loaded if it is
        /// not yet (tests of this crate, which have no Python). The library must
        /// report `expected` as its version when given, or nothing is bound.
        pub fn bind_symbols(
            path: Option<&str>,
            load: bool,
            expected: Option<&str>,
        ) -> Result<Binding, String> {
            if let Some(b) = crate::sqlite_api::bound() {
                return Ok(b);
            }
            let (lib, version) = library_version(path, load)?;
            if let Some(expected) = expected {
                if version != expected {
                    return Err(format!(
                        "{} provides SQLite {version}, not the {expected} Python's sqlite3 reports",
                        lib.name
                    ));
                }
            }
            // SAFETY: every field is an `Option` of a function pointer, so all-zero is all `None`.
            let mut api: sqlite3_api_routines = unsafe { std::mem::zeroed() };
            fill_table(&mut api, |name| lib.symbol(name));
            // The pointers stay valid while the library stays mapped: `lib` is never closed.
            let api = Box::leak(Box::new(api));
            // SAFETY: the table holds the library's own functions (or `None`).
            unsafe { install(api, Route::Symbols) }
        }

        /// The object at `path` (see [`bind_symbols`]) and the version of the
        /// SQLite it provides; an error if it cannot be opened or has none.
        fn library_version(path: Option<&str>, load: bool) -> Result<(Library, String), String> {
            let lib = Library::open(path, load)?;
            // SAFETY: `sqlite3_libversion` takes nothing and returns a static C string.
            let libversion: Option<unsafe extern "C" fn() -> *const std::os::raw::c_char> =
                unsafe { as_fn(lib.symbol(c"sqlite3_libversion")) };
            let Some(libversion) = libversion else {
                return Err(format!("{} exports no SQLite functions", lib.name));
            };
            // SAFETY: as above.
            let version = unsafe { CStr::from_ptr(libversion()).to_string_lossy().into_owned() };
            Ok((lib, version))
        }

        /// A library handle from `dlopen`, never closed.
        struct Library {
            handle: *mut c_void,
            name: String,
        }

        impl Library {
            fn open(path: Option<&str>, load: bool) -> Result<Library, String> {
                let name = path.unwrap_or("the process").to_owned();
                let flags =
                    libc::RTLD_NOW | libc::RTLD_LOCAL | if load { 0 } else { libc::RTLD_NOLOAD };
                let c_path = path
                    .map(|p| CString::new(p).map_err(|_| format!("{p:?} is not a valid path")))
                    .transpose()?;
                // SAFETY: a valid C string or null (the main program); RTLD_NOLOAD
                // only finds an object already loaded.
                let handle = unsafe {
                    libc::dlopen(
                        c_path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
                        flags,
                    )
                };
                if handle.is_null() {
                    return Err(format!("cannot open {name}: {}", dl_error()));
                }
                Ok(Library { handle, name })
            }

            fn symbol(&self, name: &CStr) -> *mut c_void {
                // SAFETY: a live handle and a C string.
                unsafe { libc::dlsym(self.handle, name.as_ptr()) }
            }
        }

        fn dl_error() -> String {
            // SAFETY: dlerror returns null or a C string valid until the next dl* call.
            unsafe {
                let e = libc::dlerror();
                if e.is_null() {
                    "unknown error".into()
                } else {
                    CStr::from_ptr(e).to_string_lossy().into_owned()
                }
            }
        }

        /// A looked-up symbol as a field's function pointer (`None` when absent).
        ///
        /// # Safety
        /// `F` must be a function pointer type matching the symbol's function.
        unsafe fn as_fn<F>(symbol: *mut c_void) -> Option<F> {
            assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
            (!symbol.is_null()).then(|| std::mem::transmute_copy::<*mut c_void, F>(&symbol))
        }

        /// Fills each field of SQLite's extension table with the function of the
        /// same name (`sqlite3_` + field), as SQLite's own `sqlite3ext.h` maps them;
        /// a function the library lacks stays `None` (rusqlite refuses to call it).
        fn fill_table(api: &mut sqlite3_api_routines, lookup: impl Fn(&CStr) -> *mut c_void) {
            macro_rules! fill {
                ($($field:ident),* $(,)?; $($odd:ident = $symbol:literal),* $(,)?) => {
                    $(
                        // SAFETY: the symbol of that name is that function.
                        api.$field = unsafe {
                            as_fn(lookup(
                                CStr::from_bytes_with_nul(concat!("sqlite3_", stringify!($field), "\0").as_bytes())
                                    .expect("a C name"),
                            ))
                        };
                    )*
                    $(
                        // SAFETY: as above.
                        api.$odd = unsafe { as_fn(lookup($symbol)) };
                    )*
                };
            }
            fill!(
                aggregate_context, aggregate_count, bind_blob, bind_double, bind_int, bind_int64,
                bind_null, bind_parameter_count, bind_parameter_index, bind_parameter_name, bind_text,
                bind_text16, bind_value, busy_handler, busy_timeout, changes, close, collation_needed,
                collation_needed16, column_blob, column_bytes, column_bytes16, column_count,
                column_database_name, column_database_name16, column_decltype, column_decltype16,
                column_double, column_int, column_int64, column_name, column_name16, column_origin_name,
                column_origin_name16, column_table_name, column_table_name16, column_text, column_text16,
                column_type, column_value, commit_hook, complete, complete16, create_collation,
                create_collation16, create_function, create_function16, create_module, data_count,
                db_handle, declare_vtab, enable_shared_cache, errcode, errmsg, errmsg16, exec, expired,
                finalize, free, free_table, get_autocommit, get_auxdata, get_table, global_recover,
                last_insert_rowid, libversion, libversion_number, malloc, mprintf, open, open16, prepare,
                prepare16, profile, progress_handler, realloc, reset, result_blob, result_double,
                result_error, result_error16, result_int, result_int64, result_null, result_text,
                result_text16, result_text16be, result_text16le, result_value, rollback_hook,
                set_authorizer, set_auxdata, snprintf, step, table_column_metadata, thread_cleanup,
                total_changes, trace, transfer_bindings, update_hook, user_data, value_blob, value_bytes,
                value_bytes16, value_double, value_int, value_int64, value_numeric_type, value_text,
                value_text16, value_text16be, value_text16le, value_type, vmprintf, overload_function,
                prepare_v2, prepare16_v2, clear_bindings, create_module_v2, bind_zeroblob, blob_bytes,
                blob_close, blob_open, blob_read, blob_write, create_collation_v2, file_control,
                memory_highwater, memory_used, mutex_alloc, mutex_enter, mutex_free, mutex_leave,
                mutex_try, open_v2, release_memory, result_error_nomem, result_error_toobig, sleep,
                soft_heap_limit, vfs_find, vfs_register, vfs_unregister, result_zeroblob,
                result_error_code, test_control, randomness, context_db_handle, extended_result_codes,
                limit, next_stmt, sql, status, backup_finish, backup_init, backup_pagecount,
                backup_remaining, backup_step, compileoption_get, compileoption_used, create_function_v2,
                db_config, db_mutex, db_status, extended_errcode, log, soft_heap_limit64, sourceid,
                stmt_status, strnicmp, unlock_notify, wal_autocheckpoint, wal_checkpoint, wal_hook,
                blob_reopen, vtab_config, vtab_on_conflict, close_v2, db_filename, db_readonly,
                db_release_memory, errstr, stmt_busy, stmt_readonly, stricmp, uri_boolean, uri_int64,
                uri_parameter, vsnprintf, wal_checkpoint_v2, auto_extension, bind_blob64, bind_text64,
                cancel_auto_extension, load_extension, malloc64, msize, realloc64, reset_auto_extension,
                result_blob64, result_text64, strglob, value_dup, value_free, result_zeroblob64,
                bind_zeroblob64, value_subtype, result_subtype, status64, strlike, db_cacheflush,
                system_errno, trace_v2, expanded_sql,
                ;
                interruptx = c"sqlite3_interrupt",
                xthreadsafe = c"sqlite3_threadsafe",
            );
        }

        #[cfg(test)]
        mod tests {
            use super::*;

            #[test]
            fn a_library_not_loaded_is_never_loaded_by_the_lookup() {
                let err = library_version(Some("libsqlite3-not-here.so.0"), false)
                    .err()
                    .expect("RTLD_NOLOAD finds no such object");
                assert!(err.contains("cannot open"), "{err}");
            }

            #[test]
            fn an_object_without_sqlite_is_refused() {
                let err = library_version(Some("libc.so.6"), false)
                    .err()
                    .expect("libc has no SQLite");
                assert!(err.contains("exports no SQLite functions"), "{err}");
            }

            #[test]
            fn the_shared_library_reports_its_version() {
                let (_, version) = library_version(Some("libsqlite3.so.0"), true).unwrap();
                assert!(version.starts_with("3."), "{version}");
            }
        }
    }
}
