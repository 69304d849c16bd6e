//! `AesEax`: AES in EAX mode, byte-compatible with the cipher of LangGraph's
//! `EncryptedSerializer.from_pycryptodome_aes()`: a body is `nonce (16) || tag
//! (16) || ciphertext`, the nonce random per body. It holds several keys so
//! that keys can rotate: it encrypts with the first and decrypts with whichever
//! opens the body (EAX authenticates, so a wrong key fails instead of yielding
//! other bytes).
//!
//! `encrypt_bound` makes the first `BOUND` bytes of the nonce a digest of the
//! row the body is stored in (the rest random). EAX authenticates its nonce, so
//! the body is bound to its row at no cost in size, and pycryptodome still
//! decrypts it like any other.

use aes::{Aes128, Aes192, Aes256};
use eax::aead::{AeadCore, AeadInPlace, KeyInit, Nonce, OsRng};
use eax::{Eax, Tag};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{config_error, decryption_error};

const NONCE: usize = 16;
const TAG: usize = 16;
/// Bytes of a bound nonce that name the row (the other 8 are random).
const BOUND: usize = 8;

enum Key {
    A128(Box<Eax<Aes128>>),
    A192(Box<Eax<Aes192>>),
    A256(Box<Eax<Aes256>>),
}

macro_rules! each_key {
    ($key:expr, $c:ident => $body:expr) => {
        match $key {
            Key::A128($c) => $body,
            Key::A192($c) => $body,
            Key::A256($c) => $body,
        }
    };
}

impl Key {
    fn new(bytes: &[u8]) -> Option<Self> {
        Some(match bytes.len() {
            16 => Key::A128(Box::new(Eax::new_from_slice(bytes).ok()?)),
            24 => Key::A192(Box::new(Eax::new_from_slice(bytes).ok()?)),
            32 => Key::A256(Box::new(Eax::new_from_slice(bytes).ok()?)),
            _ => return None,
        })
    }

    fn encrypt(&self, plaintext: &[u8], bound: Option<&[u8]>) -> Vec<u8> {
        let mut nonce = Eax::<Aes128>::generate_nonce(&mut OsRng);
        if let Some(row) = bound {
            nonce[..BOUND].copy_from_slice(row);
        }
        let mut out = Vec::with_capacity(NONCE + TAG + plaintext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&[0; TAG]);
        out.extend_from_slice(plaintext);
        let tag =
            each_key!(self, c => c.encrypt_in_place_detached(&nonce, b"", &mut out[NONCE + TAG..]))
                .expect("EAX encrypts any length");
        out[NONCE..NONCE + TAG].copy_from_slice(&tag);
        out
    }

    fn decrypt(&self, body: &[u8]) -> Option<Vec<u8>> {
        let nonce = Nonce::<Eax<Aes128>>::from_slice(&body[..NONCE]);
        let tag = Tag::from_slice(&body[NONCE..NONCE + TAG]);
        let mut out = body[NONCE + TAG..].to_vec();
        each_key!(self, c => c.decrypt_in_place_detached(nonce, b"", &mut out, tag)).ok()?;
        Some(out)
    }
}

/// AES-EAX under one or more keys (16, 24 or 32 bytes each).
#[pyclass(frozen, module = "fastcheckpoint._native")]
pub struct AesEax {
    keys: Vec<Key>,
}

#[pymethods]
impl AesEax {
    #[new]
    fn new(keys: Vec<Vec<u8>>) -> PyResult<Self> {
        if keys.is_empty() {
            return Err(config_error("AES needs at least one key"));
        }
        let keys = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Key::new(k).ok_or_else(|| {
                    config_error(format!(
                        "AES key {i} is {} bytes long; it must be 16, 24 or 32",
                        k.len()
                    ))
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(AesEax { keys })
    }

    /// `nonce || tag || ciphertext` of `plaintext` under the first key.
    fn encrypt<'py>(&self, py: Python<'py>, plaintext: &[u8]) -> Bound<'py, PyBytes> {
        let out = py.detach(|| self.keys[0].encrypt(plaintext, None));
        PyBytes::new(py, &out)
    }

    /// As `encrypt`, the nonce starting with `row` (8 bytes naming the row:
    /// whoever reads the body checks them).
    fn encrypt_bound<'py>(
        &self,
        py: Python<'py>,
        plaintext: &[u8],
        row: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        if row.len() != BOUND {
            return Err(config_error(format!("a row binding is {BOUND} bytes")));
        }
        let out = py.detach(|| self.keys[0].encrypt(plaintext, Some(row)));
        Ok(PyBytes::new(py, &out))
    }

    /// `(index of the key that opened it, plaintext)`; a `DecryptionError`
    /// when no key does (a wrong key, or a damaged or truncated body).
    fn open<'py>(&self, py: Python<'py>, body: &[u8]) -> PyResult<(usize, Bound<'py, PyBytes>)> {
        if body.len() < NONCE + TAG {
            return Err(decryption_error(format!(
                "encrypted body is {} bytes, shorter than its nonce and tag",
                body.len()
            )));
        }
        let opened = py.detach(|| {
            self.keys
                .iter()
                .enumerate()
                .find_map(|(i, k)| k.decrypt(body).map(|p| (i, p)))
        });
        match opened {
            Some((i, plain)) => Ok((i, PyBytes::new(py, &plain))),
            None => Err(decryption_error(
                "no key given opens the encrypted body: a wrong key, or a damaged or tampered body",
            )),
        }
    }

    /// How many keys it holds.
    fn __len__(&self) -> usize {
        self.keys.len()
    }
}
