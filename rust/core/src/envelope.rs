//! Our blob envelope: `"FC" | version | flags | crc32 | [delta header] | body`.
//!
//! The CRC32 covers every other byte (magic, version, flags, delta header, body),
//! so a flipped bit anywhere is detected before anything is decoded.
//! A zstd body additionally carries zstd's own content checksum.

use std::borrow::Cow;

use crate::{Error, Result};

pub const MAGIC: &[u8; 2] = b"FC";
pub const VERSION: u8 = 1;
const FLAG_ZSTD: u8 = 1;
const FLAG_DELTA: u8 = 2;
const HEADER: usize = 8;
/// Bodies at least this large are zstd-compressed (kept only when smaller):
/// even a checkpoint row shrinks (its version strings repeat), and so do most
/// deltas of one or two messages.
pub const COMPRESS_THRESHOLD: usize = 64;
/// Largest body we agree to decompress (a bound against decompression bombs).
pub const MAX_BODY: usize = 1 << 30;
const ZSTD_LEVEL: i32 = 1;

/// The header of a list delta: the stored value is `base[..keep] + body elements`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaHeader {
    /// Channel version of the blob this delta applies to.
    pub base: String,
    /// How many leading elements of the base are kept.
    pub keep: u32,
    /// Element count after applying the delta (a consistency check).
    pub total: u32,
}

/// An opened envelope: its delta header (if any) and its raw body.
#[derive(Debug)]
pub struct Opened<'a> {
    pub delta: Option<DeltaHeader>,
    pub body: Cow<'a, [u8]>,
}

/// A body and its delta header, to be sealed later by whoever writes it
/// (the SQLite store seals on the thread that commits, off the event loop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsealed {
    pub body: Vec<u8>,
    pub delta: Option<DeltaHeader>,
}

impl Unsealed {
    pub fn seal(&self) -> Vec<u8> {
        seal(&self.body, self.delta.as_ref())
    }
}

/// True when `blob` starts like one of our envelopes.
pub fn is_envelope(blob: &[u8]) -> bool {
    blob.len() >= HEADER && &blob[..2] == MAGIC
}

/// Wraps `body` (msgpack bytes) in an envelope, compressing large bodies.
pub fn seal(body: &[u8], delta: Option<&DeltaHeader>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() / 2 + 64);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    let mut flags = 0u8;
    if delta.is_some() {
        flags |= FLAG_DELTA;
    }
    let compressed = if body.len() >= COMPRESS_THRESHOLD {
        compress(body)
    } else {
        None
    };
    if compressed.is_some() {
        flags |= FLAG_ZSTD;
    }
    out.push(flags);
    out.extend_from_slice(&[0; 4]);
    if let Some(d) = delta {
        let base = d.base.as_bytes();
        out.extend_from_slice(&(base.len() as u16).to_le_bytes());
        out.extend_from_slice(base);
        out.extend_from_slice(&d.keep.to_le_bytes());
        out.extend_from_slice(&d.total.to_le_bytes());
    }
    out.extend_from_slice(compressed.as_deref().unwrap_or(body));
    let crc = checksum(&out);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

thread_local! {
    // One compression context per thread: creating one costs more than
    // compressing a small delta.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    // Likewise for reads: a fresh context costs ~10 µs, more than a small delta.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn decompress(body: &[u8], size: usize) -> Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(
                zstd::bulk::Decompressor::new().map_err(|e| Error::Decompress(e.to_string()))?,
            );
        }
        let dec = slot.as_mut().expect("set above");
        dec.decompress(body, size).map_err(|e| {
            // A failed frame may leave the context mid-stream: start the next afresh.
            *slot = None;
            Error::Decompress(e.to_string())
        })
    })
}

fn compress(body: &[u8]) -> Option<Vec<u8>> {
    let out = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let mut enc = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?;
            enc.include_checksum(true).ok()?;
            enc.include_contentsize(true).ok()?;
            *slot = Some(enc);
        }
        slot.as_mut()?.compress(body).ok()
    })?;
    // Keep the raw body when compression does not pay.
    (out.len() < body.len()).then_some(out)
}

fn checksum(blob: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&blob[..4]);
    h.update(&blob[HEADER..]);
    h.finalize()
}

fn le_u32(b: &[u8], pos: usize) -> Result<u32> {
    b.get(pos..pos + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(Error::Truncated)
}

/// Verifies the checksum and parses the header, without decompressing.
fn parse(blob: &[u8]) -> Result<(u8, Option<DeltaHeader>, usize)> {
    if blob.len() < HEADER {
        return Err(Error::Truncated);
    }
    // Checksum first: a flipped magic or version byte is corruption too.
    let stored = le_u32(blob, 4)?;
    let computed = checksum(blob);
    if stored != computed {
        return Err(Error::Checksum { stored, computed });
    }
    if &blob[..2] != MAGIC {
        return Err(Error::Malformed("not a fastcheckpoint envelope".into()));
    }
    if blob[2] != VERSION {
        return Err(Error::Malformed(format!(
            "unsupported envelope version {}",
            blob[2]
        )));
    }
    let flags = blob[3];
    if flags & !(FLAG_ZSTD | FLAG_DELTA) != 0 {
        return Err(Error::Malformed(format!(
            "unknown envelope flags {flags:#04x}"
        )));
    }
    let mut pos = HEADER;
    let delta = if flags & FLAG_DELTA != 0 {
        let len = blob
            .get(pos..pos + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
            .ok_or(Error::Truncated)?;
        pos += 2;
        let base = blob.get(pos..pos + len).ok_or(Error::Truncated)?;
        let base = std::str::from_utf8(base)
            .map_err(|_| Error::Malformed("delta base is not UTF-8".into()))?
            .to_owned();
        pos += len;
        let keep = le_u32(blob, pos)?;
        let total = le_u32(blob, pos + 4)?;
        pos += 8;
        if keep > total {
            return Err(Error::Malformed(
                "delta keeps more elements than it holds".into(),
            ));
        }
        Some(DeltaHeader { base, keep, total })
    } else {
        None
    };
    Ok((flags, delta, pos))
}

/// The delta base version of a blob, or None for a keyframe / plain value.
pub fn delta_base(blob: &[u8]) -> Result<Option<String>> {
    Ok(parse(blob)?.1.map(|d| d.base))
}

/// What a blob's header says, checksum verified, body not decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub delta: Option<DeltaHeader>,
    /// Bytes of the msgpack body once decompressed.
    pub body_len: usize,
    pub compressed: bool,
}

/// Verifies a blob's checksum and reads its header (for statistics and
/// verification: no decompression, no decoding).
pub fn info(blob: &[u8]) -> Result<Info> {
    let (flags, delta, pos) = parse(blob)?;
    let body = &blob[pos..];
    let compressed = flags & FLAG_ZSTD != 0;
    let body_len = if compressed {
        zstd::zstd_safe::get_frame_content_size(body)
            .ok()
            .flatten()
            .ok_or_else(|| Error::Decompress("frame without content size".into()))? as usize
    } else {
        body.len()
    };
    Ok(Info {
        delta,
        body_len,
        compressed,
    })
}

/// Verifies and opens an envelope.
pub fn open(blob: &[u8]) -> Result<Opened<'_>> {
    let (flags, delta, pos) = parse(blob)?;
    let body = &blob[pos..];
    let body = if flags & FLAG_ZSTD != 0 {
        let size = zstd::zstd_safe::get_frame_content_size(body)
            .ok()
            .flatten()
            .ok_or_else(|| Error::Decompress("frame without content size".into()))?
            as usize;
        if size > MAX_BODY {
            return Err(Error::TooLarge(size));
        }
        let out = decompress(body, size)?;
        if out.len() != size {
            return Err(Error::Decompress(
                "size differs from the frame header".into(),
            ));
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(body)
    };
    Ok(Opened { delta, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_small_and_large() {
        for body in [vec![0x93, 1, 2, 3], vec![0xa1; 100_000]] {
            let blob = seal(&body, None);
            let opened = open(&blob).unwrap();
            assert_eq!(opened.body.as_ref(), body.as_slice());
            assert!(opened.delta.is_none());
        }
        let big = seal(&vec![0xc0; 100_000], None);
        assert!(big.len() < 1000, "large repetitive body is compressed");
    }

    #[test]
    fn info_reports_header_without_decompressing() {
        let body = vec![7u8; 4096];
        let d = DeltaHeader {
            base: "v1".into(),
            keep: 2,
            total: 5,
        };
        let blob = seal(&body, Some(&d));
        let i = info(&blob).unwrap();
        assert_eq!(i.delta, Some(d));
        assert_eq!(i.body_len, 4096);
        assert!(i.compressed && blob.len() < 4096);
        let mut bad = blob.clone();
        bad[blob.len() - 1] ^= 1;
        assert!(info(&bad).is_err());
    }

    #[test]
    fn delta_header_round_trip() {
        let d = DeltaHeader {
            base: "00000000000000000000000000000003.0.5".into(),
            keep: 7,
            total: 9,
        };
        let blob = seal(&[0x01, 0x02], Some(&d));
        assert_eq!(delta_base(&blob).unwrap().as_deref(), Some(d.base.as_str()));
        assert_eq!(open(&blob).unwrap().delta, Some(d));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        for body in [vec![0x92, 0xa1, 0x61, 0x05], vec![0xa5; 5000]] {
            let blob = seal(&body, None);
            for i in 0..blob.len() {
                for bit in 0..8 {
                    let mut bad = blob.clone();
                    bad[i] ^= 1 << bit;
                    assert!(open(&bad).is_err(), "flip byte {i} bit {bit} undetected");
                }
            }
        }
    }

    #[test]
    fn truncations_are_errors() {
        let blob = seal(&[0xa5; 5000], None);
        for cut in 0..blob.len() {
            assert!(open(&blob[..cut]).is_err());
        }
    }
}
