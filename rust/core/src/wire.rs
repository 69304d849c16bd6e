//! msgpack framing: find where values end without building them. The
//! vocabulary is shared: markers are `rmp::Marker`'s (re-exported here for
//! the codec), ext codes and the depth limit are defined below.

pub use rmp::Marker;

use crate::{Error, Result};

/// Deepest nesting accepted anywhere (arrays, maps, ext payloads), by the
/// framing here and by the codec's encoder and decoder alike.
pub const MAX_DEPTH: usize = 512;

/// LangGraph's msgpack ext codes (`langgraph.checkpoint.serde.jsonplus`): the
/// payload of each is `[module, name, arg(s)]` (plus a method name for 3 and,
/// from upstream's pydantic encoder, an unused one for 5).
pub mod ext {
    /// `cls(arg)`.
    pub const CONSTRUCTOR_SINGLE_ARG: i8 = 0;
    /// `cls(*args)`.
    pub const CONSTRUCTOR_POS_ARGS: i8 = 1;
    /// `cls(**kwargs)`.
    pub const CONSTRUCTOR_KW_ARGS: i8 = 2;
    /// `cls.method(arg)`.
    pub const METHOD_SINGLE_ARG: i8 = 3;
    /// A pydantic v1 model: `cls(**fields)`, else `cls.construct(**fields)`.
    pub const PYDANTIC_V1: i8 = 4;
    /// A pydantic v2 model: `cls(**fields)`, else `cls.model_construct(**fields)`.
    pub const PYDANTIC_V2: i8 = 5;
    /// A numpy array: `[dtype, shape, order, buffer]`.
    pub const NUMPY_ARRAY: i8 = 6;
    /// LangGraph's `_DeltaSnapshot(value)`.
    pub const DELTA_SNAPSHOT: i8 = 7;
}

fn need(buf: &[u8], pos: usize, n: usize) -> Result<()> {
    if buf.len().saturating_sub(pos) < n {
        Err(Error::Truncated)
    } else {
        Ok(())
    }
}

fn be(buf: &[u8], pos: usize, n: usize) -> Result<usize> {
    need(buf, pos, n)?;
    Ok(buf[pos..pos + n]
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | *b as usize))
}

/// Returns the offset just past the msgpack value starting at `pos`.
pub fn skip_value(buf: &[u8], pos: usize, depth: usize) -> Result<usize> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    need(buf, pos, 1)?;
    let p = pos + 1;
    let (skip, items) = match Marker::from_u8(buf[pos]) {
        Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::False | Marker::True => {
            (0, 0)
        }
        Marker::FixMap(n) => (0, 2 * n as usize),
        Marker::FixArray(n) => (0, n as usize),
        Marker::FixStr(n) => (n as usize, 0),
        Marker::Str8 | Marker::Bin8 => (1 + be(buf, p, 1)?, 0),
        Marker::Str16 | Marker::Bin16 => (2 + be(buf, p, 2)?, 0),
        Marker::Str32 | Marker::Bin32 => (4 + be(buf, p, 4)?, 0),
        // An ext: its length, its type byte, its data.
        Marker::Ext8 => (2 + be(buf, p, 1)?, 0),
        Marker::Ext16 => (3 + be(buf, p, 2)?, 0),
        Marker::Ext32 => (5 + be(buf, p, 4)?, 0),
        Marker::U8 | Marker::I8 => (1, 0),
        Marker::U16 | Marker::I16 => (2, 0),
        Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
        Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
        Marker::FixExt1 => (2, 0),
        Marker::FixExt2 => (3, 0),
        Marker::FixExt4 => (5, 0),
        Marker::FixExt8 => (9, 0),
        Marker::FixExt16 => (17, 0),
        Marker::Array16 => (2, be(buf, p, 2)?),
        Marker::Array32 => (4, be(buf, p, 4)?),
        Marker::Map16 => (2, 2 * be(buf, p, 2)?),
        Marker::Map32 => (4, 2 * be(buf, p, 4)?),
        Marker::Reserved => return Err(Error::Malformed("reserved marker 0xc1".into())),
    };
    need(buf, p, skip)?;
    let mut end = p + skip;
    // Every element takes at least one byte: reject impossible counts before looping.
    need(buf, end, items)?;
    for _ in 0..items {
        end = skip_value(buf, end, depth + 1)?;
    }
    Ok(end)
}

/// Reads an array header at `pos`: (element count, offset of the first element).
pub fn read_array_header(buf: &[u8], pos: usize) -> Result<(usize, usize)> {
    need(buf, pos, 1)?;
    match Marker::from_u8(buf[pos]) {
        Marker::FixArray(n) => Ok((n as usize, pos + 1)),
        Marker::Array16 => Ok((be(buf, pos + 1, 2)?, pos + 3)),
        Marker::Array32 => Ok((be(buf, pos + 1, 4)?, pos + 5)),
        _ => Err(Error::Malformed(format!(
            "expected an array, found marker {:#04x}",
            buf[pos]
        ))),
    }
}

/// Splits a msgpack array into the byte ranges of its elements.
pub fn split_array(buf: &[u8]) -> Result<Vec<std::ops::Range<usize>>> {
    let (n, mut pos) = read_array_header(buf, 0)?;
    need(buf, pos, n)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let end = skip_value(buf, pos, 1)?;
        out.push(pos..end);
        pos = end;
    }
    if pos != buf.len() {
        return Err(Error::Malformed("trailing bytes after array".into()));
    }
    Ok(out)
}

/// Appends the smallest msgpack array header for `n` elements.
pub fn write_array_header(out: &mut Vec<u8>, n: usize) {
    // Writing to a Vec cannot fail.
    let _ = rmp::encode::write_array_len(out, n as u32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_round_trip() {
        let mut buf = Vec::new();
        write_array_header(&mut buf, 3);
        rmp::encode::write_str(&mut buf, "héllo").unwrap();
        rmp::encode::write_map_len(&mut buf, 1).unwrap();
        rmp::encode::write_uint(&mut buf, 7).unwrap();
        rmp::encode::write_bin(&mut buf, &[1, 2, 3]).unwrap();
        rmp::encode::write_ext_meta(&mut buf, 4, 5).unwrap();
        buf.extend_from_slice(&[0x93, 1, 2, 3]);
        let parts = split_array(&buf).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].end, buf.len());
    }

    #[test]
    fn truncation_is_an_error_at_every_cut() {
        let mut buf = Vec::new();
        write_array_header(&mut buf, 2);
        rmp::encode::write_str(&mut buf, "abcdef").unwrap();
        rmp::encode::write_f64(&mut buf, 1.5).unwrap();
        for cut in 0..buf.len() {
            assert!(split_array(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn huge_declared_count_is_rejected_without_allocating() {
        let buf = [0xdd, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(split_array(&buf), Err(Error::Truncated));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut buf = vec![0x91; 10_000];
        buf.push(0x01);
        assert_eq!(skip_value(&buf, 0, 0), Err(Error::TooDeep(MAX_DEPTH)));
    }
}
