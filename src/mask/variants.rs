//! The encoded forms of a secret that are masked besides the value itself.
//!
//! A child rarely prints a secret only verbatim. For each value we also mask:
//!
//! - each line of a multi-line value (lines of 4 bytes or more, a trailing
//!   `\r` removed), so CRLF output and partial prints are covered;
//! - its standard and URL-safe base64 forms at all three byte alignments,
//!   keeping only the characters fully determined by the value's own bits, so
//!   `printf '%s\n' "$S" | base64` or a value embedded in a longer base64 blob
//!   is caught whatever the neighbouring bytes and the value's length;
//! - its standard base64 form as a wrapping encoder prints it across line
//!   ends (64 and 76 columns, `\n` or MIME's `\r\n`, every start column),
//!   so a value in the middle of `base64`, PEM or MIME output is caught even
//!   when a line break cuts it ([`wrapped_base64_forms`]; used for runs of
//!   up to 128 secrets);
//! - its percent-encoded form (RFC 3986 unreserved characters kept) with upper-
//!   and lower-case hex;
//! - its JSON string-escaped form, and the all-ASCII (`\uXXXX`) form when the
//!   value has non-ASCII characters.
//!
//! Forms shorter than [`MIN_PATTERN_LEN`] are dropped (too likely to occur by
//! chance), as are duplicates. Each form is secret material and is returned
//! in a zeroizing buffer.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use zeroize::Zeroizing;

/// Shortest pattern (value or variant) that is masked.
pub const MIN_PATTERN_LEN: usize = 4;

/// All forms of `value` to mask, the value itself first, deduplicated.
pub fn forms(value: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    let mut out: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    let mut add = |form: Zeroizing<Vec<u8>>| {
        if form.len() >= MIN_PATTERN_LEN && !out.iter().any(|f| f.as_slice() == form.as_slice()) {
            out.push(form);
        }
    };
    add(Zeroizing::new(value.to_vec()));
    if value.contains(&b'\n') {
        for line in value.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            add(Zeroizing::new(line.to_vec()));
        }
    }
    for alignment in 0..3 {
        let standard = base64_core(value, alignment);
        let url_safe: Vec<u8> = standard
            .iter()
            .map(|&c| match c {
                b'+' => b'-',
                b'/' => b'_',
                c => c,
            })
            .collect();
        add(standard);
        add(Zeroizing::new(url_safe));
    }
    add(percent_encode(value, b"0123456789ABCDEF"));
    add(percent_encode(value, b"0123456789abcdef"));
    add(json_escape(value, false));
    add(json_escape(value, true));
    out
}

/// The base64 characters determined only by `value`'s bits when the value
/// starts `alignment` bytes into a 3-byte group.
fn base64_core(value: &[u8], alignment: usize) -> Zeroizing<Vec<u8>> {
    let mut data = Zeroizing::new(vec![0u8; alignment]);
    data.extend_from_slice(value);
    let encoded = Zeroizing::new(STANDARD_NO_PAD.encode(data.as_slice()).into_bytes());
    // Character c covers bits [6c, 6c + 6) of the stream; keep those inside
    // the value's bits [8 * alignment, 8 * (alignment + len)).
    let first = (8 * alignment).div_ceil(6);
    let last = (8 * (alignment + value.len())) / 6;
    Zeroizing::new(
        encoded
            .get(first..last.max(first))
            .unwrap_or_default()
            .to_vec(),
    )
}

/// How base64 is wrapped in practice: 64 columns (PEM, `openssl base64`),
/// 76 (`base64`), and 76 with CRLF line ends (MIME, RFC 2045).
pub const WRAP_STYLES: [(usize, &[u8]); 3] = [(64, b"\n"), (76, b"\n"), (76, b"\r\n")];

/// The standard base64 forms of `value` as a wrapping encoder prints them
/// when they cross a line end: for each alignment, each style of
/// [`WRAP_STYLES`] and each column the value's characters can start at
/// (the same residue mod 4 as the alignment's first character), the core
/// with `\n` where the lines break. Forms that fit in one line are not
/// repeated (the plain core covers them).
pub fn wrapped_base64_forms(value: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    let mut out = Vec::new();
    for alignment in 0..3 {
        let core = base64_core(value, alignment);
        // The core's first character sits at this offset in its 4-char group.
        let offset = (8 * alignment).div_ceil(6) % 4;
        for (width, line_end) in WRAP_STYLES {
            for column in (offset..width).step_by(4) {
                let first_line = width - column;
                if core.len() <= first_line {
                    continue;
                }
                let breaks = core.len() / width + 1;
                let mut form =
                    Zeroizing::new(Vec::with_capacity(core.len() + breaks * line_end.len()));
                form.extend_from_slice(&core[..first_line]);
                for line in core[first_line..].chunks(width) {
                    form.extend_from_slice(line_end);
                    form.extend_from_slice(line);
                }
                out.push(form);
            }
        }
    }
    out
}

fn percent_encode(value: &[u8], hex: &[u8; 16]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 3));
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', hex[(b >> 4) as usize], hex[(b & 15) as usize]]);
        }
    }
    out
}

/// The body of a JSON string holding `value` (invalid UTF-8 bytes are kept
/// as they are: no encoder can produce them, so they match verbatim).
fn json_escape(value: &[u8], ascii_only: bool) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() + 8));
    let push_u = |out: &mut Vec<u8>, unit: u16| {
        out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
    };
    for chunk in value.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\u{8}' => out.extend_from_slice(b"\\b"),
                '\u{c}' => out.extend_from_slice(b"\\f"),
                c if (c as u32) < 0x20 => push_u(&mut out, c as u16),
                c if ascii_only && !c.is_ascii() => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        push_u(&mut out, *unit);
                    }
                }
                c => {
                    let mut bytes = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut bytes).as_bytes());
                }
            }
        }
        out.extend_from_slice(chunk.invalid());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    fn has(forms: &[Zeroizing<Vec<u8>>], needle: &[u8]) -> bool {
        forms.iter().any(|f| f.as_slice() == needle)
    }

    fn contains_some_form(haystack: &[u8], forms: &[Zeroizing<Vec<u8>>]) -> bool {
        forms[1..]
            .iter()
            .any(|f| haystack.windows(f.len()).any(|w| w == f.as_slice()))
    }

    #[test]
    fn plain_value_has_only_itself_when_nothing_encodes_differently() {
        let forms = forms(b"abc");
        assert!(!has(&forms, b"abc"), "shorter than 4 bytes");
        let forms = super::forms(b"Token");
        assert_eq!(forms[0].as_slice(), b"Token");
        assert!(!forms.iter().skip(1).any(|f| f.as_slice() == b"Token"));
    }

    #[test]
    fn base64_of_the_value_is_covered_at_every_alignment_and_length() {
        for value in [
            &b"hunter2!"[..],
            b"s3cr3t",
            b"abcd",
            b"correct horse battery staple?>",
        ] {
            let forms = forms(value);
            for prefix_len in 0..6 {
                for suffix in [&b""[..], b"\n", b"xy", b"\xff\xfe\xfd"] {
                    let mut data = vec![b'Q'; prefix_len];
                    data.extend_from_slice(value);
                    data.extend_from_slice(suffix);
                    for encoded in [STANDARD.encode(&data), URL_SAFE.encode(&data)] {
                        assert!(
                            contains_some_form(encoded.as_bytes(), &forms),
                            "{value:?} at prefix {prefix_len} suffix {suffix:?}: {encoded}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn wrapped_base64_is_covered_wherever_the_value_starts() {
        let value = b"sk-live-4f9a8b7c6d5e3f2a1b0c9d8e"; // 32 bytes: 43 characters
        let wrapped = wrapped_base64_forms(value);
        for (width, line_end) in WRAP_STYLES {
            for prefix_len in 0..80 {
                let mut data = vec![b'Q'; prefix_len];
                data.extend_from_slice(value);
                data.extend_from_slice(b"tail");
                let encoded = STANDARD.encode(&data).into_bytes();
                let lines: Vec<u8> = encoded
                    .chunks(width)
                    .flat_map(|line| line.iter().chain(line_end).copied())
                    .collect();
                let mut all = forms(value);
                all.extend(wrapped.iter().cloned());
                assert!(
                    contains_some_form(&lines, &all),
                    "width {width}, prefix {prefix_len}"
                );
            }
        }
    }

    #[test]
    fn base64_core_keeps_only_determined_characters() {
        // "abc" at alignment 0 is exactly "YWJj"; the 4th byte's first 6 bits
        // give one more character.
        assert_eq!(base64_core(b"abcd", 0).as_slice(), b"YWJjZ");
        // At alignment 1 the first character mixes the unknown byte.
        let core = base64_core(b"abcd", 1);
        assert!(STANDARD
            .encode(b"\x00abcd")
            .contains(std::str::from_utf8(&core).unwrap()));
        assert!(STANDARD
            .encode(b"\xffabcd")
            .contains(std::str::from_utf8(&core).unwrap()));
    }

    #[test]
    fn percent_and_json_forms() {
        let forms = forms(b"p@ss w/rd\"\\\n\xc3\xa9");
        assert!(has(&forms, b"p%40ss%20w%2Frd%22%5C%0A%C3%A9"));
        assert!(has(&forms, b"p%40ss%20w%2frd%22%5c%0a%c3%a9"));
        assert!(has(&forms, "p@ss w/rd\\\"\\\\\\n\u{e9}".as_bytes()));
        assert!(has(&forms, b"p@ss w/rd\\\"\\\\\\n\\u00e9"));
        let serde = serde_json::to_string("p@ss w/rd\"\\\n\u{e9}").unwrap();
        assert!(has(&forms, serde.trim_matches('"').as_bytes()));
    }

    #[test]
    fn lines_of_multi_line_values() {
        let forms = forms(b"-----BEGIN KEY-----\r\nMIIEabc\nxyz\n");
        assert!(has(&forms, b"-----BEGIN KEY-----"));
        assert!(has(&forms, b"MIIEabc"));
        assert!(!has(&forms, b"xyz"), "lines under 4 bytes are not masked");
    }
}
