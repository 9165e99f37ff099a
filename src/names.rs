//! Lossless text form of names that may not be UTF-8, used in JSON output,
//! logs and reports.
//!
//! Valid UTF-8 is written as it is, except '%', which becomes "%25"; every
//! byte that is not part of valid UTF-8 becomes "%XX" (two upper-case hex
//! digits). `unescape` inverts it exactly.

use std::fmt::Write;

pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '%' {
                out.push_str("%25");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub fn escape_os(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    escape(name.as_bytes())
}

/// Inverse of [`escape`]; `None` for a malformed escape.
pub fn unescape(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_bytes() {
        for s in [&b"plain"[..], b"50%", b"\xff\xfe ok", "ümage".as_bytes(), b"%25"] {
            let e = escape(s);
            assert_eq!(unescape(&e).unwrap(), s, "{e}");
        }
        assert_eq!(escape(b"a\xffb%"), "a%FFb%25");
    }
}
