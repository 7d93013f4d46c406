//! The masker's promise, checked against a naive reference (whose
//! occurrences the aho-corasick crate's overlapping search confirms, as an
//! independent oracle): every occurrence masked, overlaps merged (leftmost,
//! then longest), any chunking gives the same output, and bytes are held
//! only while they may be part of an occurrence. `PROPTEST_CASES=100000
//! cargo test masking` runs a long search.

use std::sync::Arc;

use proptest::prelude::*;
use shroud::mask::{MaskSet, MaskStyle, Masker};
use shroud::secret::SecretValue;

fn mask_set(secrets: &[(&str, &[u8])], style: MaskStyle) -> Arc<MaskSet> {
    let mut builder = MaskSet::builder(style);
    for (name, value) in secrets {
        builder.add(name, &SecretValue::from_slice(value));
    }
    builder.build()
}

/// Occurrence groups in `text`: (start, end, pattern id of the label).
fn reference_groups(set: &MaskSet, text: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut occurrences = naive_occurrences(set, text);
    // Leftmost, then longest, then first pattern: the first of each group labels it.
    occurrences.sort_by_key(|&(s, e, id)| (s, std::cmp::Reverse(e), id));
    let mut groups: Vec<(usize, usize, usize)> = Vec::new();
    for (start, end, id) in occurrences {
        match groups.last_mut() {
            Some(group) if start < group.1 => group.1 = group.1.max(end),
            _ => groups.push((start, end, id)),
        }
    }
    groups
}

/// Every occurrence of every pattern, found by the aho-corasick crate's
/// overlapping search: an oracle independent of both our automaton and the
/// naive scan above, which must agree with it exactly.
fn oracle_occurrences(set: &MaskSet, text: &[u8]) -> Vec<(usize, usize, usize)> {
    let patterns: Vec<&[u8]> = set.patterns().map(|(p, _)| p).collect();
    let searcher = aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::Standard)
        .build(&patterns)
        .expect("the patterns compile");
    let mut found: Vec<(usize, usize, usize)> = searcher
        .find_overlapping_iter(text)
        .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
        .collect();
    found.sort_unstable();
    found
}

/// Every occurrence, by the naive scan.
fn naive_occurrences(set: &MaskSet, text: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut found = Vec::new();
    for (id, (pattern, _)) in set.patterns().enumerate() {
        for start in 0..text.len() {
            if text[start..].starts_with(pattern) {
                found.push((start, start + pattern.len(), id));
            }
        }
    }
    found.sort_unstable();
    found
}

/// The naive reference masker applied to the whole input.
fn reference_mask(set: &MaskSet, text: &[u8]) -> Vec<u8> {
    let secret_of: Vec<u32> = set.patterns().map(|(_, s)| s).collect();
    let mut out = Vec::new();
    let mut at = 0;
    for (start, end, id) in reference_groups(set, text) {
        out.extend_from_slice(&text[at..start]);
        out.extend_from_slice(set.replacement_of_secret(secret_of[id]));
        at = end;
    }
    out.extend_from_slice(&text[at..]);
    out
}

/// How many trailing bytes of `prefix` a perfect streaming masker must hold:
/// from the start of the longest suffix that can still grow into an
/// occurrence, or from the start of an occurrence group reaching past it.
fn expected_held(set: &MaskSet, prefix: &[u8]) -> usize {
    let len = prefix.len();
    let live = (1..=len)
        .rev()
        .find(|&d| {
            set.patterns()
                .any(|(p, _)| d < p.len() && p.starts_with(&prefix[len - d..]))
        })
        .unwrap_or(0);
    let mut safe = len - live;
    for (start, end, _) in reference_groups(set, prefix) {
        if end > safe {
            safe = safe.min(start);
        }
    }
    len - safe
}

/// Streams `chunks` through a masker; checks that output only ever grows
/// into the final reference output and that exactly the right bytes are held.
fn stream_checked(set: &Arc<MaskSet>, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let expected = reference_mask(set, input);
    let mut masker = Masker::new(Arc::clone(set));
    let mut out = Vec::new();
    let mut previous = 0;
    for &cut in cuts.iter().chain([&input.len()]) {
        let cut = cut.clamp(previous, input.len());
        masker.push(&input[previous..cut], &mut out);
        previous = cut;
        assert!(
            expected.starts_with(&out),
            "emitted bytes that the full output does not start with"
        );
        assert_eq!(
            masker.held() as usize,
            expected_held(set, &input[..cut]),
            "held bytes after {cut} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    masker.finish(&mut out);
    out
}

fn mask_in_chunks(set: &Arc<MaskSet>, chunks: &[&[u8]]) -> Vec<u8> {
    let mut masker = Masker::new(Arc::clone(set));
    let mut out = Vec::new();
    for chunk in chunks {
        masker.push(chunk, &mut out);
    }
    masker.finish(&mut out);
    out
}

fn byte_by_byte(set: &Arc<MaskSet>, input: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = input.chunks(1).collect();
    mask_in_chunks(set, &chunks)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---- the cases that leaked in other systems ----

#[test]
fn gitlab_case_self_overlapping_secret_split_across_writes() {
    let set = mask_set(&[("PASS", b"pa55pa55word")], MaskStyle::Label);
    let mut masker = Masker::new(Arc::clone(&set));
    let mut out = Vec::new();
    masker.push(b"token=pa55pa5", &mut out);
    assert_eq!(out, b"token=", "only the live prefix `pa55pa5` is held");
    // Together: `token=pa55pa55pa55word`, whose occurrence starts at the
    // second `pa55`; the first goes out as it is, no byte of the secret does.
    masker.push(b"5pa55word", &mut out);
    masker.finish(&mut out);
    assert_eq!(out, b"token=pa55<secret:pass>");
}

#[test]
fn aba_then_bac_for_abac() {
    let set = mask_set(&[("S", b"abac")], MaskStyle::Stars);
    assert_eq!(mask_in_chunks(&set, &[b"aba", b"bac"]), b"ab********");
    assert_eq!(mask_in_chunks(&set, &[b"ab", b"abac!"]), b"ab********!");
}

#[test]
fn aaaab_byte_by_byte_for_aaab() {
    let set = mask_set(&[("S", b"aaab")], MaskStyle::Label);
    assert_eq!(byte_by_byte(&set, b"aaaab"), b"a<secret:s>");
    assert_eq!(
        byte_by_byte(&set, b"aaaaaaab aaab"),
        b"aaaa<secret:s> <secret:s>"
    );
}

#[test]
fn a_secret_inside_another_in_either_order() {
    for order in [
        [("OUTER", &b"abcdef"[..]), ("INNER", b"bcde")],
        [("INNER", b"bcde"), ("OUTER", b"abcdef")],
    ] {
        let set = mask_set(&order, MaskStyle::Label);
        for input in [&b"xabcdefx"[..], b"abcdef", b"bcde abcdef"] {
            let whole = set.mask_all(input);
            assert_eq!(byte_by_byte(&set, input), whole);
            assert!(
                !contains(&whole, b"bcde") && !contains(&whole, b"def"),
                "{}",
                String::from_utf8_lossy(&whole)
            );
        }
        assert_eq!(set.mask_all(b"xabcdefx"), b"x<secret:outer>x");
        assert_eq!(set.mask_all(b"-bcde-"), b"-<secret:inner>-");
    }
}

#[test]
fn abcdef_with_bcde_never_leaks_the_tail() {
    // aho-corasick's stream search reports `abc`... and leaks `def`; we merge.
    let set = mask_set(&[("A", b"abcd"), ("B", b"cdef")], MaskStyle::Label);
    assert_eq!(set.mask_all(b"abcdef"), b"<secret:a>");
    assert_eq!(byte_by_byte(&set, b"xxabcdefxx"), b"xx<secret:a>xx");
}

#[test]
fn touching_occurrences_are_replaced_one_by_one() {
    let set = mask_set(&[("A", b"abcd"), ("B", b"efgh")], MaskStyle::Label);
    assert_eq!(set.mask_all(b"abcdefgh"), b"<secret:a><secret:b>");
    assert_eq!(set.mask_all(b"abcdabcd"), b"<secret:a><secret:a>");
}

#[test]
fn leftmost_then_longest_names_the_group() {
    let set = mask_set(
        &[
            ("SHORT", b"abcd"),
            ("LONG", b"abcdefgh"),
            ("LATER", b"fghijk"),
        ],
        MaskStyle::Label,
    );
    assert_eq!(set.mask_all(b"abcdefghijk"), b"<secret:long>");
    assert_eq!(set.mask_all(b"zabcdz"), b"z<secret:short>z");
    // Leftmost wins over longest.
    let set = mask_set(
        &[("LEFT", b"abcd"), ("RIGHT", b"cdefghij")],
        MaskStyle::Label,
    );
    assert_eq!(set.mask_all(b"abcdefghij"), b"<secret:left>");
}

#[test]
fn labels_are_lower_cased_and_stars_are_always_eight() {
    let set = mask_set(&[("DATABASE_URL", b"pg://x")], MaskStyle::Label);
    assert_eq!(set.mask_all(b"url=pg://x;"), b"url=<secret:database_url>;");
    let stars = mask_set(
        &[("K", b"a-very-long-secret-value-indeed")],
        MaskStyle::Stars,
    );
    assert_eq!(
        stars.mask_all(b"[a-very-long-secret-value-indeed]"),
        b"[********]"
    );
}

#[test]
fn short_secrets_are_not_masked() {
    let set = mask_set(&[("PIN", b"123")], MaskStyle::Label);
    assert!(set.is_empty());
    assert_eq!(set.mask_all(b"pin 123"), b"pin 123");
}

#[test]
fn a_prompt_without_newline_is_not_held() {
    let set = mask_set(&[("PASS", b"hunter2-secret")], MaskStyle::Label);
    let mut masker = Masker::new(Arc::clone(&set));
    let mut out = Vec::new();
    masker.push(b"Password: ", &mut out);
    assert_eq!(out, b"Password: ");
    masker.push(b"hunter2-secret", &mut out);
    assert_eq!(
        out, b"Password: <secret:pass>",
        "a complete secret is replaced at once"
    );
    masker.push(b"\nhun", &mut out);
    assert_eq!(
        out, b"Password: <secret:pass>\n",
        "only the live prefix waits"
    );
    masker.finish(&mut out);
    assert_eq!(
        out, b"Password: <secret:pass>\nhun",
        "held bytes are flushed at the end"
    );
}

#[test]
fn binary_crlf_and_long_lines_pass_through_byte_for_byte() {
    let set = mask_set(&[("K", b"s3cr3t-value")], MaskStyle::Label);
    let mut input: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    input.extend_from_slice(b"\r\n\xff\xfe\x00 s3cr3t-value \r\n");
    input.extend(std::iter::repeat_n(b'x', 200_000));
    input.extend_from_slice(b"\xc3\x28 end");
    let out = set.mask_all(&input);
    let mut expected = input[..5000].to_vec();
    expected.extend_from_slice(b"\r\n\xff\xfe\x00 <secret:k> \r\n");
    expected.extend(std::iter::repeat_n(b'x', 200_000));
    expected.extend_from_slice(b"\xc3\x28 end");
    assert_eq!(out, expected);
    let chunks: Vec<&[u8]> = input.chunks(4093).collect();
    assert_eq!(mask_in_chunks(&set, &chunks), expected);
}

#[test]
fn variants_are_masked() {
    use base64::Engine as _;
    let value = b"correct horse/battery+staple\"q";
    let set = mask_set(&[("PW", value)], MaskStyle::Label);
    let standard = base64::engine::general_purpose::STANDARD;
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut with_newline = value.to_vec();
    with_newline.push(b'\n');
    let encodings = [
        standard.encode(&with_newline), // printf '%s\n' "$S" | base64
        standard.encode([b"x".as_slice(), value].concat()),
        url_safe.encode([b"xy".as_slice(), value, b"tail"].concat()),
        "correct%20horse%2Fbattery%2Bstaple%22q".to_owned(),
        "correct%20horse%2fbattery%2bstaple%22q".to_owned(),
        serde_json::to_string(std::str::from_utf8(value).unwrap()).unwrap(),
    ];
    for encoded in encodings {
        let line = format!("data: {encoded} end");
        let masked = set.mask_all(line.as_bytes());
        assert!(
            contains(&masked, b"<secret:pw>"),
            "{encoded} not masked: {}",
            String::from_utf8_lossy(&masked)
        );
        // What survives is only the encoding of the neighbouring bytes and
        // the characters that mix them in: a few, out of ~40.
        let visible = String::from_utf8_lossy(&masked).replace("<secret:pw>", "");
        let leftover = visible.len() - "data:  end".len();
        assert!(leftover <= 10, "{encoded}: {visible}");
    }
}

#[test]
fn each_line_of_a_multi_line_secret_is_masked_even_with_crlf() {
    let key = b"-----BEGIN KEY-----\nMIIEpAIBAAKCAQEA\n-----END KEY-----";
    let set = mask_set(&[("TLS_KEY", key)], MaskStyle::Stars);
    let crlf = b"-----BEGIN KEY-----\r\nMIIEpAIBAAKCAQEA\r\n-----END KEY-----\r\n";
    assert_eq!(set.mask_all(crlf), b"********\r\n********\r\n********\r\n");
    assert_eq!(set.mask_all(key), b"********");
}

#[test]
fn an_endless_run_of_overlaps_keeps_memory_bounded() {
    let set = mask_set(&[("A", b"aaaa")], MaskStyle::Label);
    let mut masker = Masker::new(Arc::clone(&set));
    let mut out = Vec::new();
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..64 {
        masker.push(&chunk, &mut out);
    }
    assert!(out.is_empty(), "one merged occurrence is still open");
    assert_eq!(masker.held(), 64 * 64 * 1024);
    let debug = format!("{masker:?}");
    assert!(debug.contains("pending: 1"), "{debug}");
    masker.push(b"b", &mut out);
    masker.finish(&mut out);
    assert_eq!(out, b"<secret:a>b");
}

// ---- the property test ----

const ALPHABET: &[u8] = b"abx\n\0\xff";

fn secret_strategy(lengths: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    // Mostly `a`/`b` so that overlapping and self-overlapping secrets are common.
    proptest::collection::vec(
        prop_oneof![4 => Just(b'a'), 3 => Just(b'b'), 1 => proptest::sample::select(ALPHABET)],
        lengths,
    )
}

/// Secrets with lengths in `lengths`, data made of noise, secrets and secret
/// halves, cut points, and the mask style.
fn case_strategy(
    lengths: std::ops::Range<usize>,
) -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<u8>, Vec<usize>, bool)> {
    sized_case_strategy(lengths, 30, 200)
}

/// [`case_strategy`] with up to `pieces` pieces of data and cuts below
/// `cut_limit`.
fn sized_case_strategy(
    lengths: std::ops::Range<usize>,
    pieces: usize,
    cut_limit: usize,
) -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<u8>, Vec<usize>, bool)> {
    proptest::collection::vec(secret_strategy(lengths), 1..5).prop_flat_map(move |secrets| {
        let pieces = proptest::collection::vec(
            prop_oneof![
                3 => proptest::collection::vec(proptest::sample::select(ALPHABET), 1..6),
                2 => proptest::sample::select(secrets.clone()),
                1 => proptest::sample::select(secrets.clone()).prop_map(|s| s[..s.len() / 2 + 1].to_vec()),
            ],
            0..pieces,
        );
        let data = pieces.prop_map(|p| p.concat());
        (Just(secrets), data, proptest::collection::vec(0usize..cut_limit, 0..12), any::<bool>())
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Short secrets: the prefilter samples every byte.
    #[test]
    fn streaming_matches_the_reference_for_any_chunking((secrets, data, cuts, stars) in case_strategy(4..9)) {
        check_case(&secrets, &data, cuts, stars, true)?;
    }

    /// Longer secrets: the prefilter skips, so windows and gaps are exercised.
    #[test]
    fn streaming_matches_the_reference_with_prefilter_skips((secrets, data, cuts, stars) in case_strategy(8..25)) {
        check_case(&secrets, &data, cuts, stars, true)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 4, ..ProptestConfig::default() })]

    /// Long data in long chunks: most of each chunk is scanned where it
    /// lies, behind a short bridge from the bytes held before it.
    #[test]
    fn streaming_matches_the_reference_in_long_chunks((secrets, data, cuts, stars) in sized_case_strategy(6..25, 300, 3000)) {
        // (Byte by byte is the short cases' work: here it would cost a
        // reference run per byte.)
        check_case(&secrets, &data, cuts, stars, false)?;
    }
}

fn check_case(
    secrets: &[Vec<u8>],
    data: &[u8],
    mut cuts: Vec<usize>,
    stars: bool,
    byte_by_byte_too: bool,
) -> Result<(), TestCaseError> {
    {
        let names: Vec<String> = (0..secrets.len()).map(|i| format!("k{i}")).collect();
        let pairs: Vec<(&str, &[u8])> = names
            .iter()
            .map(String::as_str)
            .zip(secrets.iter().map(Vec::as_slice))
            .collect();
        let style = if stars {
            MaskStyle::Stars
        } else {
            MaskStyle::Label
        };
        let set = mask_set(&pairs, style);
        // The two references agree on every occurrence before either is used.
        if !set.is_empty() {
            prop_assert_eq!(
                oracle_occurrences(&set, data),
                naive_occurrences(&set, data)
            );
        }
        let expected = reference_mask(&set, data);
        cuts.sort_unstable();
        prop_assert_eq!(&stream_checked(&set, data, &cuts), &expected);
        if byte_by_byte_too {
            let every_byte: Vec<usize> = (1..data.len()).collect();
            prop_assert_eq!(&stream_checked(&set, data, &every_byte), &expected);
        }
        prop_assert_eq!(&set.mask_all(data), &expected);
        for secret in secrets {
            prop_assert!(!contains(&expected, secret), "a secret survived");
        }
    }
    Ok(())
}

/// Values with every character some encoder changes.
const TRICKY: [&str; 3] = [
    "p@ss w/rd&<tag>'\"~*!()é",
    "a+b=c/d?e#f%g h",
    "line one\r\n  indented: <x & y>\n",
];

/// Encodes `value` with every encoder `script` (run by `program -c`)
/// prints, one JSON string per line.
fn encoded_by(program: &str, script: &str, value: &str) -> Option<Vec<String>> {
    let out = std::process::Command::new(program)
        .arg(if program == "node" { "-e" } else { "-c" })
        .arg(script)
        .env("VALUE", value)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<String>(l).unwrap())
            .collect(),
    )
}

#[test]
fn the_forms_real_encoders_write_are_masked() {
    // Python's and Node's own encoders, not our idea of them.
    let python = r#"
import os, json, base64, html, urllib.parse as u
v = os.environ['VALUE']
for e in [u.quote(v, safe=''), u.quote_plus(v), u.quote(v, safe='').lower(),
          u.urlencode({'k': v})[2:], json.dumps(v)[1:-1],
          json.dumps(v, ensure_ascii=False)[1:-1], html.escape(v),
          html.escape(v, quote=False), base64.b64encode(v.encode()).decode(),
          base64.urlsafe_b64encode(v.encode()).decode().rstrip('='),
          base64.b64encode(b'x' + v.encode()).decode(),
          base64.b64encode(b'xy' + v.encode()).decode()]:
    print(json.dumps(e))
"#;
    let node = r#"
const v = process.env.VALUE;
for (const e of [encodeURIComponent(v), new URLSearchParams({k: v}).toString().slice(2),
                 JSON.stringify(v).slice(1, -1), Buffer.from(v).toString('base64'),
                 Buffer.from(v).toString('base64url')]) console.log(JSON.stringify(e));
"#;
    let mut checked = 0;
    for (program, script) in [("python3", python), ("node", node)] {
        for value in TRICKY {
            let Some(encodings) = encoded_by(program, script, value) else {
                eprintln!("SKIPPED: {program} is not installed, its encoders are not checked");
                break;
            };
            let set = mask_set(&[("TRICKY", value.as_bytes())], MaskStyle::Label);
            for encoded in encodings {
                let text = format!("before {encoded} after");
                let masked = String::from_utf8(set.mask_all(text.as_bytes())).unwrap();
                assert!(
                    !masked.contains(&encoded) && masked.contains("<secret:tricky>"),
                    "{program}: {encoded:?} of {value:?} came out as {masked:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no encoder could be run");
}

#[test]
fn the_html_safe_json_of_go_and_php_is_masked() {
    // Go's json.Marshal escapes < > & as \u003c \u003e \u0026; PHP's
    // json_encode escapes / as \/ (and, with JSON_HEX_*, ' and upper-case hex).
    let value = "a<b>&c'd/e\"f";
    let set = mask_set(&[("HTML_SAFE", value.as_bytes())], MaskStyle::Label);
    for written in [
        "a\\u003cb\\u003e\\u0026c'd/e\\\"f",
        "a<b>&c'd\\/e\\\"f",
        "a\\u003Cb\\u003E\\u0026c\\u0027d\\/e\\\"f",
        "a&lt;b&gt;&amp;c&#39;d/e&quot;f",
        "a&lt;b&gt;&amp;c&#x27;d/e&#34;f",
        "a&lt;b&gt;&amp;c&apos;d/e&quot;f",
    ] {
        let masked = set.mask_all(format!("[{written}]").as_bytes());
        assert_eq!(masked, b"[<secret:html_safe>]", "{written}");
    }
}

#[test]
fn a_set_of_many_secrets_has_every_form_of_each_in_order_whoever_made_it() {
    // Past 512 secrets the builder hands chunks of values to a thread that
    // makes their forms while more are added; the set must be the one the
    // forms of every value, in order, make.
    let values: Vec<Vec<u8>> = (0..1300)
        .map(|i| format!("chunked-value-{i:05}-q7Zx/+").into_bytes())
        .collect();
    let names: Vec<String> = (0..values.len()).map(|i| format!("S{i}")).collect();
    let secrets: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&values)
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let set = mask_set(&secrets, MaskStyle::Label);
    let expected: Vec<(Vec<u8>, u32)> = values
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            shroud::mask::variants::forms(v)
                .into_iter()
                .map(move |form| (form.to_vec(), i as u32))
        })
        .collect();
    let got: Vec<(Vec<u8>, u32)> = set.patterns().map(|(p, s)| (p.to_vec(), s)).collect();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "the patterns differ from the forms in order"
    );
    for i in [0usize, 511, 512, 1023, 1024, 1299] {
        let text = format!("a {} b", String::from_utf8_lossy(&values[i]));
        assert_eq!(
            set.mask_all(text.as_bytes()),
            format!("a <secret:s{i}> b").into_bytes()
        );
    }
}

#[test]
fn a_deferred_set_masks_whether_its_compile_was_started_or_not() {
    // `build_deferred` leaves the compile of a set of four or more secrets
    // to `start_compiling` (a run calls it once its command is spawned);
    // a set used before that compiles where it is used.
    let values: Vec<String> = (0..6).map(|i| format!("deferred-value-{i}-x9Q")).collect();
    for start in [false, true] {
        let mut builder = MaskSet::builder(MaskStyle::Label);
        for (i, value) in values.iter().enumerate() {
            builder.add(&format!("D{i}"), &SecretValue::from_slice(value.as_bytes()));
        }
        let set = builder.build_deferred();
        if start {
            set.start_compiling();
            set.start_compiling();
        }
        let text = format!("{} and {}", values[0], values[5]);
        assert_eq!(
            set.mask_all(text.as_bytes()),
            b"<secret:d0> and <secret:d5>",
            "started: {start}"
        );
        set.start_compiling();
        assert_eq!(set.pattern_count(), set.patterns().count());
    }
}
