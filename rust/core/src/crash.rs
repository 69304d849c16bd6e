//! Crash points for the reliability suite: with the `crash-points` feature, a
//! process whose `FASTCHECKPOINT_CRASH_AT` is `NAME:N` aborts the N-th time it
//! reaches point `NAME`, leaving the database exactly as a crash there would.
//! The points on a write batch, in order: `begin` (before BEGIN), `row` (after
//! each statement), `commit` (before COMMIT), `committed` (after COMMIT, before
//! returning). Release wheels are built without the feature, so the points compile to
//! nothing and no environment variable can stop a user's process.

#[cfg(feature = "crash-points")]
pub fn point(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var("FASTCHECKPOINT_CRASH_AT").ok()?;
        let (at, nth) = spec.split_once(':')?;
        Some((at.to_owned(), nth.parse().ok()?))
    });
    if let Some((at, nth)) = target {
        if at == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
            // abort(), not a panic: nothing unwinds, flushes or rolls back.
            std::process::abort();
        }
    }
}

#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_name: &str) {}
