//! msgpack framing: find where values end without building them.

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
    let m = buf[pos];
    let p = pos + 1;
    let (skip, items) = match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
        0x80..=0x8f => (0, 2 * (m as usize & 0x0f)),
        0x90..=0x9f => (0, m as usize & 0x0f),
        0xa0..=0xbf => (m as usize & 0x1f, 0),
        0xc4 | 0xd9 => (1 + be(buf, p, 1)?, 0),
        0xc5 | 0xda => (2 + be(buf, p, 2)?, 0),
        0xc6 | 0xdb => (4 + be(buf, p, 4)?, 0),
        0xc7 => (2 + be(buf, p, 1)?, 0),
        0xc8 => (3 + be(buf, p, 2)?, 0),
        0xc9 => (5 + be(buf, p, 4)?, 0),
        0xca => (4, 0),
        0xcb => (8, 0),
        0xcc | 0xd0 => (1, 0),
        0xcd | 0xd1 => (2, 0),
        0xce | 0xd2 => (4, 0),
        0xcf | 0xd3 => (8, 0),
        0xd4 => (2, 0),
        0xd5 => (3, 0),
        0xd6 => (5, 0),
        0xd7 => (9, 0),
        0xd8 => (17, 0),
        0xdc => (2, be(buf, p, 2)?),
        0xdd => (4, be(buf, p, 4)?),
        0xde => (2, 2 * be(buf, p, 2)?),
        0xdf => (4, 2 * be(buf, p, 4)?),
        0xc1 => return Err(Error::Malformed("reserved marker 0xc1".into())),
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
    match buf[pos] {
        m @ 0x90..=0x9f => Ok((m as usize & 0x0f, pos + 1)),
        0xdc => Ok((be(buf, pos + 1, 2)?, pos + 3)),
        0xdd => Ok((be(buf, pos + 1, 4)?, pos + 5)),
        m => Err(Error::Malformed(format!(
            "expected an array, found marker {m:#04x}"
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
