//! Python objects -> msgpack, byte-compatible with LangGraph's `JsonPlusSerializer`
//! (ormsgpack with `_msgpack_default`).
//!
//! Exact builtin types are recognised by pointer first; other types are classified
//! once per type object (`crate::classify`); rare types go to a Python cold path
//! (`fastcheckpoint._cold.default`) that mirrors upstream.

use std::io::Write;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};

use crate::classify::{entry, in_field_order, model_dict, Kind};
use crate::errors::serialization_error;
use crate::pyrefs::{std, Std};
use fastcheckpoint_core::wire::{ext, Marker, MAX_DEPTH};

/// Largest encoding we produce.
pub const MAX_OUTPUT: usize = 1 << 31;

pub struct Encoder<'py> {
    py: Python<'py>,
    s: &'static Std,
    pub buf: Vec<u8>,
    depth: usize,
    /// Pydantic models being written whose fields are being encoded: inside
    /// one, values are written as its `model_dump()` holds them (nested
    /// models and dataclasses as maps, named tuples as arrays), as upstream
    /// writes them.
    dumping: usize,
}

impl<'py> Encoder<'py> {
    pub fn new(py: Python<'py>) -> PyResult<Self> {
        Ok(Encoder {
            py,
            s: std(py)?,
            buf: Vec::with_capacity(256),
            depth: 0,
            dumping: 0,
        })
    }

    pub fn encode(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        self.value(obj)?;
        if self.buf.len() > MAX_OUTPUT {
            return Err(serialization_error("encoded value exceeds 2 GiB"));
        }
        Ok(())
    }

    fn str_bytes(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let s = obj.downcast::<PyString>()?;
        match s.to_str() {
            Ok(text) => {
                rmp::encode::write_str_len(&mut self.buf, text.len() as u32).ok();
                self.buf.extend_from_slice(text.as_bytes());
            }
            // Lone surrogates: ormsgpack's OPT_REPLACE_SURROGATES writes '?' for each.
            Err(_) => {
                let b = s.call_method1("encode", ("utf-8", "replace"))?;
                let b = b.downcast::<PyBytes>()?.as_bytes();
                rmp::encode::write_str_len(&mut self.buf, b.len() as u32).ok();
                self.buf.extend_from_slice(b);
            }
        }
        Ok(())
    }

    fn int(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        // Overflow is reported by a flag, not an exception: no error built for big ints.
        let mut overflow = 0;
        let v = unsafe { pyo3::ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &mut overflow) };
        if v == -1 && overflow == 0 {
            if let Some(e) = PyErr::take(self.py) {
                return Err(e);
            }
        }
        if overflow == 0 {
            if v >= 0 {
                rmp::encode::write_uint(&mut self.buf, v as u64).ok();
            } else {
                rmp::encode::write_sint(&mut self.buf, v).ok();
            }
            Ok(())
        } else if let Ok(v) = obj.extract::<u64>() {
            rmp::encode::write_uint(&mut self.buf, v).ok();
            Ok(())
        } else {
            Err(serialization_error(
                "Integer exceeds 64-bit range (LangGraph's msgpack format cannot store it)",
            ))
        }
    }

    fn enter(&mut self) -> PyResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(serialization_error(format!(
                "value nested deeper than {MAX_DEPTH} levels (or self-referencing)"
            )));
        }
        Ok(())
    }

    fn seq<I: ExactSizeIterator<Item = Bound<'py, PyAny>>>(&mut self, items: I) -> PyResult<()> {
        rmp::encode::write_array_len(&mut self.buf, items.len() as u32).ok();
        self.enter()?;
        for it in items {
            self.value(&it)?;
        }
        self.depth -= 1;
        Ok(())
    }

    fn dict(&mut self, d: &Bound<'py, PyDict>) -> PyResult<()> {
        rmp::encode::write_map_len(&mut self.buf, d.len() as u32).ok();
        self.enter()?;
        for (k, v) in d.iter() {
            self.key(&k)?;
            self.value(&v)?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// Map keys as ormsgpack's OPT_NON_STR_KEYS writes them. Exact builtin
    /// types are settled first by pointer; an enum is found by its type's MRO
    /// (a Python-level isinstance would dispatch through the metaclass).
    fn key(&mut self, k: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        let s = self.s;
        if k.is_exact_instance_of::<PyString>() {
            return self.str_bytes(k);
        }
        if k.is_none()
            || k.is_exact_instance_of::<PyInt>()
            || k.is_exact_instance_of::<PyFloat>()
            || k.is_exact_instance_of::<PyBool>()
            || k.is_exact_instance_of::<PyBytes>()
        {
            return self.value(k);
        }
        let ty = k.get_type();
        if ty.is(s.uuid.bind(py)) {
            // str(uuid) without running UUID.__str__ (Python code).
            let n: u128 = k.getattr(intern!(py, "int"))?.extract()?;
            let text = uuid_text(n);
            rmp::encode::write_str(
                &mut self.buf,
                std::str::from_utf8(&text).unwrap_or_default(),
            )
            .ok();
            return Ok(());
        }
        if ty.is(s.date.bind(py)) {
            let (y, m, d): (u16, u8, u8) = (
                k.getattr(intern!(py, "year"))?.extract()?,
                k.getattr(intern!(py, "month"))?.extract()?,
                k.getattr(intern!(py, "day"))?.extract()?,
            );
            let mut text = [0u8; 10];
            write!(&mut text[..], "{y:04}-{m:02}-{d:02}").ok();
            rmp::encode::write_str(
                &mut self.buf,
                std::str::from_utf8(&text).unwrap_or_default(),
            )
            .ok();
            return Ok(());
        }
        if let Ok(t) = k.downcast_exact::<PyTuple>() {
            return self.key_tuple(t);
        }
        // SAFETY: two live type objects.
        if unsafe { ffi::PyType_IsSubtype(ty.as_type_ptr(), s.enum_base.bind(py).as_type_ptr()) }
            != 0
        {
            return self.key(&k.getattr("value")?);
        }
        if k.is_instance_of::<PyString>() {
            return self.str_bytes(k);
        }
        if k.is_instance_of::<PyInt>()
            || k.is_instance_of::<PyFloat>()
            || k.is_instance_of::<PyBytes>()
        {
            return self.value(k);
        }
        if let Ok(t) = k.downcast::<PyTuple>() {
            return self.key_tuple(t);
        }
        if k.is_instance(s.uuid.bind(py))? {
            return self.str_bytes(&k.str()?.into_any());
        }
        if k.is_instance(s.date.bind(py))? || k.is_instance(s.time.bind(py))? {
            return self.str_bytes(&k.call_method0("isoformat")?);
        }
        Err(serialization_error(format!(
            "Dict key must a type serializable with OPT_NON_STR_KEYS, got {}",
            k.get_type().name()?
        )))
    }

    fn key_tuple(&mut self, t: &Bound<'py, PyTuple>) -> PyResult<()> {
        rmp::encode::write_array_len(&mut self.buf, t.len() as u32).ok();
        self.enter()?;
        for it in t.iter() {
            self.key(&it)?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// Writes an ext whose payload is produced by `f`, with the smallest header.
    fn ext(&mut self, code: i8, f: impl FnOnce(&mut Self) -> PyResult<()>) -> PyResult<()> {
        // Room for an ext16 header, the usual size of a model's payload; the
        // payload is moved only when its header turns out shorter or longer.
        const RESERVED: usize = 4;
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; RESERVED]);
        self.enter()?;
        f(self)?;
        self.depth -= 1;
        let len = self.buf.len() - start - RESERVED;
        let mut head = Vec::with_capacity(6);
        rmp::encode::write_ext_meta(&mut head, len as u32, code).ok();
        if head.len() < RESERVED {
            self.buf.copy_within(start + RESERVED.., start + head.len());
            self.buf.truncate(start + head.len() + len);
        } else if head.len() > RESERVED {
            let grow = head.len() - RESERVED;
            self.buf.extend_from_slice(&[0; 2][..grow]);
            self.buf
                .copy_within(start + RESERVED..start + RESERVED + len, start + head.len());
        }
        self.buf[start..start + head.len()].copy_from_slice(&head);
        Ok(())
    }

    /// `(module, name, <payload>)` or with a trailing method name.
    fn tuple_ext(
        &mut self,
        code: i8,
        head: &[u8],
        method: Option<&str>,
        payload: impl FnOnce(&mut Self) -> PyResult<()>,
    ) -> PyResult<()> {
        self.ext(code, |e| {
            rmp::encode::write_array_len(&mut e.buf, if method.is_some() { 4 } else { 3 }).ok();
            e.buf.extend_from_slice(head);
            payload(e)?;
            if let Some(m) = method {
                rmp::encode::write_str(&mut e.buf, m).ok();
            }
            Ok(())
        })
    }

    /// A pydantic model whose `fields` (its `model_dump()`) are written by
    /// `fields`: an ext at the top, a plain map inside another model's dump.
    fn model(
        &mut self,
        head: &[u8],
        fields: impl FnOnce(&mut Self) -> PyResult<()>,
    ) -> PyResult<()> {
        self.dumping += 1;
        let res = if self.dumping > 1 {
            fields(self)
        } else {
            self.tuple_ext(ext::PYDANTIC_V2, head, Some("model_validate_json"), fields)
        };
        self.dumping -= 1;
        res
    }

    fn attr_map(&mut self, obj: &Bound<'py, PyAny>, fields: &[Py<PyString>]) -> PyResult<()> {
        rmp::encode::write_map_len(&mut self.buf, fields.len() as u32).ok();
        for f in fields {
            let f = f.bind(self.py);
            self.str_bytes(f.as_any())?;
            self.value(&obj.getattr(f)?)?;
        }
        Ok(())
    }

    pub fn value(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        // Hot path: exact builtin types, by pointer.
        if obj.is_exact_instance_of::<PyString>() {
            return self.str_bytes(obj);
        }
        if obj.is_none() {
            self.buf.push(Marker::Null.to_u8());
            return Ok(());
        }
        if obj.is_exact_instance_of::<PyBool>() {
            self.buf.push(
                if obj.is_truthy()? {
                    Marker::True
                } else {
                    Marker::False
                }
                .to_u8(),
            );
            return Ok(());
        }
        if obj.is_exact_instance_of::<PyInt>() {
            return self.int(obj);
        }
        if obj.is_exact_instance_of::<PyFloat>() {
            rmp::encode::write_f64(&mut self.buf, obj.downcast::<PyFloat>()?.value()).ok();
            return Ok(());
        }
        if let Ok(d) = obj.downcast_exact::<PyDict>() {
            return self.dict(d);
        }
        if let Ok(l) = obj.downcast_exact::<PyList>() {
            return self.seq(l.iter());
        }
        if let Ok(t) = obj.downcast_exact::<PyTuple>() {
            return self.seq(t.iter());
        }
        if let Ok(b) = obj.downcast_exact::<PyBytes>() {
            rmp::encode::write_bin(&mut self.buf, b.as_bytes()).ok();
            return Ok(());
        }
        if let Ok(b) = obj.downcast_exact::<PyByteArray>() {
            rmp::encode::write_bin(&mut self.buf, &b.to_vec()).ok();
            return Ok(());
        }
        if obj.get_type().is(self.s.memoryview.bind(self.py)) {
            let b = obj.call_method0("tobytes")?;
            rmp::encode::write_bin(&mut self.buf, b.downcast::<PyBytes>()?.as_bytes()).ok();
            return Ok(());
        }
        self.rich(obj)
    }

    fn rich(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        let e = entry(py, &obj.get_type())?;
        let head = e.head.as_slice();
        match &e.kind {
            Kind::Str => self.str_bytes(obj),
            Kind::Int => self.int(obj),
            Kind::Dict => self.dict(obj.downcast::<PyDict>()?),
            Kind::List => self.seq(obj.downcast::<PyList>()?.iter()),
            Kind::DeltaSnapshot => {
                let v = obj.getattr("value")?;
                self.ext(ext::DELTA_SNAPSHOT, |e| e.value(&v))
            }
            Kind::PydanticFields {
                fields,
                extra,
                traceable,
                ..
            } => {
                let dict = if *traceable {
                    model_dict(obj)?
                } else {
                    obj.getattr(intern!(py, "__dict__"))?
                };
                let dict = dict.downcast::<PyDict>()?;
                let mut vals = Vec::with_capacity(fields.len());
                // Usually every field, in order, without a lookup each; any
                // after the first out of place are looked up.
                in_field_order(dict, fields.iter().map(|f| &f.name), |v| {
                    vals.push(v.to_owned())
                });
                for f in fields.iter().skip(vals.len()) {
                    match dict.get_item(f.name.bind(py))? {
                        Some(v) => vals.push(v),
                        // A field missing from __dict__: let pydantic decide, as upstream.
                        None => {
                            let dumped = obj.call_method0("model_dump")?;
                            return self.model(head, |e| e.value(&dumped));
                        }
                    }
                }
                let extras = if *extra {
                    e.extras(obj)?.downcast_into::<PyDict>().ok()
                } else {
                    None
                };
                self.model(head, |e| {
                    let n = fields.len() + extras.as_ref().map_or(0, |x| x.len());
                    rmp::encode::write_map_len(&mut e.buf, n as u32).ok();
                    for (f, v) in fields.iter().zip(vals) {
                        e.buf.extend_from_slice(&f.packed);
                        e.value(&v)?;
                    }
                    if let Some(x) = extras {
                        for (k, v) in x.iter() {
                            e.key(&k)?;
                            e.value(&v)?;
                        }
                    }
                    Ok(())
                })
            }
            Kind::PydanticDump => {
                let dumped = obj.call_method0("model_dump")?;
                self.model(head, |e| e.value(&dumped))
            }
            Kind::NamedTuple if self.dumping > 0 => self.seq(obj.downcast::<PyTuple>()?.iter()),
            Kind::NamedTuple => {
                let d = obj.call_method0("_asdict")?;
                self.tuple_ext(ext::CONSTRUCTOR_KW_ARGS, head, None, |e| e.value(&d))
            }
            Kind::Uuid => {
                let hex = obj.getattr("hex")?;
                self.tuple_ext(ext::CONSTRUCTOR_SINGLE_ARG, head, None, |e| e.value(&hex))
            }
            Kind::Decimal => {
                let s = obj.str()?.into_any();
                self.tuple_ext(ext::CONSTRUCTOR_SINGLE_ARG, head, None, |e| e.value(&s))
            }
            Kind::Collection => {
                let items: Vec<Bound<'py, PyAny>> = obj.try_iter()?.collect::<PyResult<_>>()?;
                self.tuple_ext(ext::CONSTRUCTOR_SINGLE_ARG, head, None, |e| {
                    e.seq(items.into_iter())
                })
            }
            Kind::Datetime => {
                let iso = obj.call_method0("isoformat")?;
                self.tuple_ext(ext::METHOD_SINGLE_ARG, head, Some("fromisoformat"), |e| {
                    e.value(&iso)
                })
            }
            Kind::Timedelta => {
                let args = [
                    obj.getattr("days")?,
                    obj.getattr("seconds")?,
                    obj.getattr("microseconds")?,
                ];
                self.tuple_ext(ext::CONSTRUCTOR_POS_ARGS, head, None, |e| {
                    e.seq(args.into_iter())
                })
            }
            Kind::Date => {
                let args = [
                    obj.getattr("year")?,
                    obj.getattr("month")?,
                    obj.getattr("day")?,
                ];
                self.tuple_ext(ext::CONSTRUCTOR_POS_ARGS, head, None, |e| {
                    e.seq(args.into_iter())
                })
            }
            Kind::Time => {
                const F: [&str; 6] = ["hour", "minute", "second", "microsecond", "tzinfo", "fold"];
                self.tuple_ext(ext::CONSTRUCTOR_KW_ARGS, head, None, |e| {
                    rmp::encode::write_map_len(&mut e.buf, F.len() as u32).ok();
                    for f in F {
                        rmp::encode::write_str(&mut e.buf, f).ok();
                        e.value(&obj.getattr(f)?)?;
                    }
                    Ok(())
                })
            }
            Kind::Timezone => {
                let args = obj.call_method0("__getinitargs__")?;
                self.tuple_ext(ext::CONSTRUCTOR_POS_ARGS, head, None, |e| e.value(&args))
            }
            Kind::Enum => {
                let v = obj.getattr("value")?;
                self.tuple_ext(ext::CONSTRUCTOR_SINGLE_ARG, head, None, |e| e.value(&v))
            }
            Kind::Send => {
                let mut args = vec![obj.getattr("node")?, obj.getattr("arg")?];
                let timeout = obj.getattr("timeout").ok().filter(|t| !t.is_none());
                args.extend(timeout);
                self.tuple_ext(ext::CONSTRUCTOR_POS_ARGS, head, None, |e| {
                    e.seq(args.into_iter())
                })
            }
            Kind::Dataclass { fields } if self.dumping > 0 => self.attr_map(obj, fields),
            Kind::Dataclass { fields } => {
                self.tuple_ext(ext::CONSTRUCTOR_KW_ARGS, head, None, |e| {
                    e.attr_map(obj, fields)
                })
            }
            Kind::Item { slots } => self.tuple_ext(ext::CONSTRUCTOR_KW_ARGS, head, None, |e| {
                e.attr_map(obj, slots)
            }),
            Kind::Cold => self.cold(obj),
        }
    }

    /// Rare types: `_cold.default(obj)` returns `(code, payload)` for an ext, or
    /// `(None, replacement)` for a value written in place of the object.
    fn cold(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let r = self.s.cold.bind(self.py).call_method1("default", (obj,))?;
        let (code, payload): (Option<i8>, Bound<'py, PyAny>) = r.extract()?;
        self.enter()?;
        let res = match code {
            Some(c) => self.ext(c, |e| e.value(&payload)),
            None => self.value(&payload),
        };
        self.depth -= 1;
        res
    }
}

/// `str(uuid)` of the 128-bit value: 8-4-4-4-12 lowercase hex digits.
fn uuid_text(n: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut at = 0;
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            out[at] = b'-';
            at += 1;
        }
        out[at] = HEX[(n >> (124 - 4 * i)) as usize & 0xf];
        at += 1;
    }
    out
}
