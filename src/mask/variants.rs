//! The encoded forms of a secret that are masked besides the value itself.
//!
//! A child rarely prints a secret only verbatim. For each value we also mask:
//!
//! - each line of a multi-line value (split at `\n` and `\r`, lines of 4
//!   bytes or more that are not only whitespace), so CRLF output and partial
//!   prints are covered;
//! - its standard and URL-safe base64 forms at all three byte alignments,
//!   keeping only the characters fully determined by the value's own bits, so
//!   `printf '%s\n' "$S" | base64` or a value embedded in a longer base64 blob
//!   is caught whatever the neighbouring bytes and the value's length; and,
//!   for base64 that ends where the value ends, the last characters too,
//!   with or without their `=` padding (then determined by the value alone);
//! - its standard base64 form as a wrapping encoder prints it across line
//!   ends (64 and 76 columns, `\n` or MIME's `\r\n`, every start column),
//!   so a value in the middle of `base64`, PEM or MIME output is caught even
//!   when a line break cuts it ([`wrapped_base64_forms`]; used for runs of
//!   up to 128 secrets);
//! - of the value and of each of its lines, the forms text encoders write:
//!   percent-encoding as real encoders do it (RFC 3986 with every reserved
//!   character encoded; `application/x-www-form-urlencoded` with `+` for a
//!   space, as `curl --data-urlencode`, Python's `quote_plus` and
//!   `URLSearchParams` write it; JavaScript's `encodeURIComponent`, which
//!   keeps `!'()*~`), each in upper- and lower-case hex; JSON string escaping
//!   (plain; all-ASCII `\uXXXX`; the HTML-safe forms of Go and PHP, `\u003c
//!   \u003e \u0026 \u0027` and `\/`, in either hex case); and HTML/XML
//!   escaping (`&lt; &gt; &amp;`, quotes as `&quot;` or `&#34;`, apostrophes
//!   as `&#39;`, `&#x27;` or `&apos;`); and how shells print a value back:
//!   single-quoted with `'` as `'\''` (bash's `set -x`, `${x@Q}`) and
//!   backslash-escaped (`printf %q`).
//!
//! Forms shorter than [`MIN_PATTERN_LEN`] are dropped (too likely to occur by
//! chance), as are duplicates (most values, made of letters and digits, have
//! one form per encoding family). Each form is secret material and is
//! returned in a zeroizing buffer.
//!
//! Out of reach on purpose: hex dumps, reversed or case-changed text,
//! compressed or encrypted output, and any transformation that mixes in
//! bytes the masker cannot know. Those would each need their own decoder in
//! front of the masker, and a program that means to hide a value from it can
//! always find one more; masking guards against accidents and ordinary
//! encoders, not a determined child.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use zeroize::Zeroizing;

/// Shortest pattern (value or variant) that is masked.
pub const MIN_PATTERN_LEN: usize = 4;

/// All forms of `value` to mask, the value itself first, deduplicated.
pub fn forms(value: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    let mut out: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    let mut add = |form: Zeroizing<Vec<u8>>| {
        if form.len() >= MIN_PATTERN_LEN {
            out.push(form);
        }
    };
    add(Zeroizing::new(value.to_vec()));
    // The value and each of its lines, as text encoders write them.
    let mut texts: Vec<&[u8]> = vec![value];
    if value.contains(&b'\n') || value.contains(&b'\r') {
        for line in value.split(|&b| b == b'\n' || b == b'\r') {
            let blank = line.iter().all(|b| b.is_ascii_whitespace());
            if !blank && line.len() >= MIN_PATTERN_LEN {
                add(Zeroizing::new(line.to_vec()));
                texts.push(line);
            }
        }
    }
    for alignment in 0..3 {
        for form in base64_forms(value, alignment) {
            add(form);
        }
    }
    for text in texts {
        for form in text_encodings(text) {
            add(form);
        }
    }
    without_repeats(out)
}

/// `forms` without the later copy of any form, in order: sorted once,
/// rather than each form compared with every one before it.
fn without_repeats(forms: Vec<Zeroizing<Vec<u8>>>) -> Vec<Zeroizing<Vec<u8>>> {
    let mut order: Vec<usize> = (0..forms.len()).collect();
    order.sort_by(|&a, &b| forms[a].as_slice().cmp(forms[b].as_slice()).then(a.cmp(&b)));
    let mut repeat = vec![false; forms.len()];
    for pair in order.windows(2) {
        if forms[pair[0]].as_slice() == forms[pair[1]].as_slice() {
            repeat[pair[1]] = true;
        }
    }
    forms
        .into_iter()
        .zip(repeat)
        .filter_map(|(form, repeat)| (!repeat).then_some(form))
        .collect()
}

/// The base64 forms of `value` starting `alignment` bytes into a 3-byte
/// group, in both alphabets: the characters determined by the value's bits
/// whatever follows, and those of base64 that ends where the value ends
/// (its last characters, with and without `=` padding).
fn base64_forms(value: &[u8], alignment: usize) -> Vec<Zeroizing<Vec<u8>>> {
    let core = base64_core(value, alignment);
    let mut data = Zeroizing::new(vec![0u8; alignment]);
    data.extend_from_slice(value);
    let first = (8 * alignment).div_ceil(6);
    let tail = |encoded: String| {
        let encoded = Zeroizing::new(encoded.into_bytes());
        Zeroizing::new(encoded.get(first..).unwrap_or_default().to_vec())
    };
    let padded = tail(STANDARD.encode(data.as_slice()));
    let unpadded = tail(STANDARD_NO_PAD.encode(data.as_slice()));
    let mut forms = Vec::new();
    for standard in [core, padded, unpadded] {
        forms.push(url_safe(&standard));
        forms.push(standard);
    }
    forms
}

/// The URL-safe alphabet's spelling of a standard base64 form.
fn url_safe(standard: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(
        standard
            .iter()
            .map(|&c| match c {
                b'+' => b'-',
                b'/' => b'_',
                c => c,
            })
            .collect(),
    )
}

/// How a percent-encoder treats the bytes it does not encode.
struct PercentStyle {
    /// Bytes kept as they are, beside ASCII letters and digits.
    keep: &'static [u8],
    /// A space as `+` (form encoding) rather than `%20`.
    plus_for_space: bool,
}

/// RFC 3986 with every reserved character encoded; form encoding as
/// `quote_plus` and `curl --data-urlencode` write it; `URLSearchParams`
/// (which keeps `*` and encodes `~`); `encodeURIComponent`; Python's
/// `urllib.parse.quote` as called by default (it keeps `/`); JavaScript's
/// `encodeURI` (it keeps the reserved characters); Go's `url.PathEscape`.
const PERCENT_STYLES: [PercentStyle; 7] = [
    PercentStyle {
        keep: b"-._~",
        plus_for_space: false,
    },
    PercentStyle {
        keep: b"-._~",
        plus_for_space: true,
    },
    PercentStyle {
        keep: b"*-._",
        plus_for_space: true,
    },
    PercentStyle {
        keep: b"-_.!~*'()",
        plus_for_space: false,
    },
    PercentStyle {
        keep: b"-._~/",
        plus_for_space: false,
    },
    PercentStyle {
        keep: b"-_.!~*'();,/?:@&=+$#",
        plus_for_space: false,
    },
    PercentStyle {
        keep: b"-._~$&+,:;=@",
        plus_for_space: false,
    },
];

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// What bash's `printf %q` escapes with a backslash (and `#`, `~` at the
/// start of a word).
const SHELL_ESCAPED: &[u8] = b" !\"$&'(),;<>?[\\]^`{|}*";

/// The forms text encoders write of `text`: percent-encoding, JSON string
/// escaping and HTML/XML escaping, each in the variants real encoders use.
fn text_encodings(text: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    let mut forms = Vec::new();
    // Most values (letters, digits, `-._`) read the same in every encoding:
    // skip the families that would change nothing.
    let percent = text
        .iter()
        .any(|&b| !b.is_ascii_alphanumeric() && !b"-._".contains(&b));
    let json = text
        .iter()
        .any(|&b| !(0x20..0x80).contains(&b) || b"\"\\/<>&'".contains(&b));
    let html = text.iter().any(|&b| b"&<>\"'".contains(&b));
    let shell = text.iter().any(|&b| SHELL_ESCAPED.contains(&b));
    if !percent && !json && !html && !shell {
        return forms;
    }
    if shell {
        // How shells print a value back: bash's `set -x` and `${x@Q}`
        // single-quote it (`'` as `'\''`), `printf %q` backslash-escapes.
        let mut quoted = Zeroizing::new(Vec::with_capacity(text.len() + 8));
        let mut escaped = Zeroizing::new(Vec::with_capacity(text.len() * 2));
        for (i, &b) in text.iter().enumerate() {
            if b == b'\'' {
                quoted.extend_from_slice(b"'\\''");
            } else {
                quoted.push(b);
            }
            if SHELL_ESCAPED.contains(&b) || (i == 0 && (b == b'#' || b == b'~')) {
                escaped.push(b'\\');
            }
            escaped.push(b);
        }
        forms.push(quoted);
        forms.push(escaped);
    }
    for style in PERCENT_STYLES.iter().filter(|_| percent) {
        for hex in [HEX_UPPER, HEX_LOWER] {
            forms.push(percent_encode(text, style, hex));
        }
    }
    for escape_slash in [false, true].into_iter().filter(|_| json) {
        for html in [
            Html::None,
            Html::TagsAndAmpersand,
            Html::TagsAmpersandApostrophe,
        ] {
            for ascii_only in [false, true] {
                for hex in [HEX_LOWER, HEX_UPPER] {
                    forms.push(json_escape(
                        text,
                        &JsonStyle {
                            escape_slash,
                            html,
                            ascii_only,
                            hex,
                        },
                    ));
                }
            }
        }
    }
    for quote in [&b"&quot;"[..], b"&#34;", b"\""]
        .into_iter()
        .filter(|_| html)
    {
        for apostrophe in [&b"&#39;"[..], b"&#x27;", b"&apos;", b"'"] {
            forms.push(html_escape(text, quote, apostrophe));
        }
    }
    forms
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

fn percent_encode(value: &[u8], style: &PercentStyle, hex: &[u8; 16]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 3));
    for &b in value {
        if b.is_ascii_alphanumeric() || style.keep.contains(&b) {
            out.push(b);
        } else if b == b' ' && style.plus_for_space {
            out.push(b'+');
        } else {
            out.extend_from_slice(&[b'%', hex[(b >> 4) as usize], hex[(b & 15) as usize]]);
        }
    }
    out
}

/// Which HTML-significant characters a JSON encoder escapes as `\uXXXX`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Html {
    None,
    /// `<`, `>` and `&` (Go's `json.Marshal`, PHP's JSON_HEX_TAG|AMP).
    TagsAndAmpersand,
    /// The same and `'` (PHP's JSON_HEX_APOS too).
    TagsAmpersandApostrophe,
}

/// How a JSON encoder writes a string.
struct JsonStyle {
    /// `/` as `\/` (PHP's default).
    escape_slash: bool,
    html: Html,
    /// Every non-ASCII character as `\uXXXX` (UTF-16 units).
    ascii_only: bool,
    /// The hex digits of `\uXXXX` escapes.
    hex: &'static [u8; 16],
}

/// The body of a JSON string holding `value` (invalid UTF-8 bytes are kept
/// as they are: no encoder can produce them, so they match verbatim).
fn json_escape(value: &[u8], style: &JsonStyle) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() + 8));
    let push_u = |out: &mut Vec<u8>, unit: u16| {
        out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            out.push(style.hex[((unit >> shift) & 15) as usize]);
        }
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
                '/' if style.escape_slash => out.extend_from_slice(b"\\/"),
                '<' | '>' | '&' if style.html != Html::None => push_u(&mut out, c as u16),
                '\'' if style.html == Html::TagsAmpersandApostrophe => push_u(&mut out, c as u16),
                '\u{2028}' | '\u{2029}' if style.html != Html::None => push_u(&mut out, c as u16),
                c if (c as u32) < 0x20 => push_u(&mut out, c as u16),
                c if style.ascii_only && !c.is_ascii() => {
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

/// `value` HTML/XML-escaped: `&`, `<`, `>` always, `"` as `quote` and `'`
/// as `apostrophe` (either may be the character itself).
fn html_escape(value: &[u8], quote: &[u8], apostrophe: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() + 16));
    for &b in value {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(quote),
            b'\'' => out.extend_from_slice(apostrophe),
            b => out.push(b),
        }
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
    fn shell_quoted_forms() {
        let forms = forms(b"it's-my-pw");
        assert!(has(&forms, b"it'\\''s-my-pw"), "set -x");
        assert!(has(&forms, b"it\\'s-my-pw"), "printf %q");
        let forms = super::forms(b"x y!z$w&v");
        assert!(has(&forms, b"x\\ y\\!z\\$w\\&v"));
        // Nothing to quote: no extra form.
        assert_eq!(
            super::forms(b"plainvalue123").len(),
            super::forms(b"plainvalue124").len()
        );
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
        // The encoders that keep some reserved characters as they are.
        let forms = self::forms(b"ab/c d+@");
        assert!(has(&forms, b"ab/c%20d%2B%40"), "Python's quote keeps /");
        assert!(has(&forms, b"ab/c%20d+@"), "encodeURI keeps the reserved");
        assert!(has(&forms, b"ab%2Fc%20d+@"), "Go's PathEscape");
    }

    #[test]
    fn base64_that_ends_with_the_value_is_covered_to_its_padding() {
        let value = b"Password123!"; // 12 bytes: alignment 1 and 2 end mid-group
        let forms = forms(value);
        for prefix in [&b""[..], b":", b"a:", b"abc:", b"abcd:"] {
            let mut data = prefix.to_vec();
            data.extend_from_slice(value);
            let encoded = STANDARD.encode(&data);
            let tail_start = (8 * prefix.len()).div_ceil(6);
            assert!(
                has(&forms, &encoded.as_bytes()[tail_start..]),
                "{encoded} after {prefix:?}"
            );
        }
    }

    #[test]
    fn a_line_of_only_whitespace_is_not_a_form() {
        let forms = forms(b"key: \n    \n\t \r\nsecond-line");
        assert!(!has(&forms, b"    "));
        assert!(has(&forms, b"second-line"));
    }

    #[test]
    fn lines_of_multi_line_values() {
        let forms = forms(b"-----BEGIN KEY-----\r\nMIIEabc\nxyz\n");
        assert!(has(&forms, b"-----BEGIN KEY-----"));
        assert!(has(&forms, b"MIIEabc"));
        assert!(!has(&forms, b"xyz"), "lines under 4 bytes are not masked");
    }
}
