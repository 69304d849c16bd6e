use std::fmt;

/// Every failure of the core, mapped once to a Python exception by the bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes end before the value they announce.
    Truncated,
    /// The bytes are not valid for the format (bad marker, bad UTF-8, bad header).
    Malformed(String),
    /// The stored checksum does not match the stored bytes.
    Checksum { stored: u32, computed: u32 },
    /// Nesting deeper than the decoder accepts.
    TooDeep(usize),
    /// A declared size beyond what the decoder accepts.
    TooLarge(usize),
    /// zstd refused the body (includes zstd's own content checksum failure).
    Decompress(String),
    /// A delta chain that does not end in a keyframe, or is inconsistent.
    BrokenChain(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => write!(f, "truncated data: the bytes end inside a value"),
            Error::Malformed(m) => write!(f, "malformed data: {m}"),
            Error::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x} (corrupted row)"
            ),
            Error::TooDeep(d) => write!(f, "nesting deeper than {d} levels"),
            Error::TooLarge(n) => write!(f, "declared size {n} exceeds the limit"),
            Error::Decompress(m) => write!(f, "zstd decompression failed: {m}"),
            Error::BrokenChain(m) => write!(f, "broken delta chain: {m}"),
        }
    }
}

impl std::error::Error for Error {}
