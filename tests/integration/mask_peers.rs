//! The masking test cases of three peer log maskers, run against ours.
//!
//! Each case is a peer's own test data (the secrets, the text) with the
//! output our masker must give under our rules: style Label, the secrets
//! named `S0`, `S1`, ... in the order the peer registers them (so an
//! occurrence becomes `<secret:s0>` ...), values under 4 bytes not masked,
//! overlapping occurrences merged into one replacement named after the
//! leftmost, then longest, occurrence, touching ones replaced one by one.
//! Where the peer's expectation differs from ours (its `***`/`[REDACTED]`/
//! `[MASKED]` aside) the case says so. `expected: None` means we are sure of
//! what must not survive but not of the exact text.
//!
//! Every case checks that no secret value (nor a line of a multi-line value)
//! of 4 bytes or more survives, that the output is `expected`, and that
//! feeding the input one byte at a time gives the same output as one call.
//! All failures are collected and reported at once.
//!
//! Where the cases come from:
//!
//! - GitHub Actions runner, `actions/runner`:
//!   `src/Test/L0/HostContextL0.cs` (`DefaultSecretMaskers`,
//!   `SecretMaskerForProxy`), `src/Test/L0/CommandLineParserL0.cs`
//!   (`MasksSecretArgs`), `src/Test/L0/Listener/CommandSettingsL0.cs`
//!   (`GetsArgSecretFromEnvVar`), `src/Test/L0/Worker/ActionCommandManagerL0.cs`
//!   (`StopProcessCommandMasksValidTokenForEntireRun`,
//!   `AddMaskWithMultilineValue`), `src/Test/L0/Worker/DapVariableProviderL0.cs`,
//!   `src/Test/L0/Worker/DapReplExecutorL0.cs`, `src/Test/L0/Worker/DapDebuggerL0.cs`;
//!   the encoders it registers (`src/Runner.Common/HostContext.cs`) are in
//!   `src/Sdk/DTLogging/Logging/ValueEncoders.cs`. There is no separate
//!   `SecretMaskerL0.cs` in the repository today.
//! - Buildkite agent, `buildkite/agent`: `internal/redact/redact_test.go`
//!   (`TestRedactString`), `internal/replacer/replacer_test.go`
//!   (`TestReplacerLoremIpsum`, `TestReplacerWriteBoundaries`,
//!   `TestReplacerMultibyte`, `TestReplacerMultiLine`),
//!   `internal/job/integration/redaction_integration_test.go`,
//!   `internal/job/integration/secrets_integration_test.go`,
//!   `internal/job/otlp_job_logger_test.go`.
//! - GitLab runner, `gitlab-org/gitlab-runner` (read from its GitHub mirror
//!   `gitlabhq/gitlab-runner`): `common/buildlogger/internal/masker/masker_test.go`
//!   (`TestMasking`; it was `helpers/trace/internal/masker/masker_test.go`,
//!   `|` in its inputs marks write boundaries and is removed here),
//!   `helpers/trace/buffer_test.go` (`TestVariablesMasking`, since removed,
//!   at commit 3911e3b7e), `common/buildtest/masking.go`
//!   (`RunBuildWithMasking`), `common/buildlogger/build_logger_step_runner_test.go`.
//!   GitLab masks no encoded forms, so it has no `ENCODED_FORM_CASES`.
//!
//! Out of scope on purpose (not in our masking contract):
//!
//! - actions/runner `HostContextL0.SecretSectionMasking` (8 cases): the
//!   PowerShell `&`/`&+` section encoders mask pieces of a secret that a
//!   PowerShell error splits with colour codes; we mask only whole forms.
//! - actions/runner `DefaultSecretMaskers` `123Pass''word''123!123`: the
//!   expression-string escape (`'` doubled) is not one of our forms.
//! - actions/runner `XmlDataEscape` writes `'` as `&apos;`
//!   (`SecurityElement.Escape`); our HTML form uses `&#39;`.
//! - actions/runner `CreateStepSummaryCommandL0` (`AddRegex` secrets) and
//!   `DapDebuggerL0.InitializeRequestOverSocketPreservesProtocolMetadataWhenSecretsCollide`
//!   (which DAP fields bypass the masker): regex secrets and transport fields.
//! - Buildkite `TestReplacerResetMidStream`, `TestAddingNeedles`,
//!   `jobapi/server_test.go` `TestCreateRedaction`, the late-bound secret of
//!   `otlp_job_logger_test.go` and the `redactor add` integration tests:
//!   secrets added in the middle of a stream; a `MaskSet` is fixed per run.
//! - Buildkite `TestVars`, `clicommand/redactor_add_test.go`: choosing which
//!   variables are secret and parsing `redactor add` input, not masking.
//! - Buildkite `TestURLCredentials`, GitLab `urlsanitizer_test.go`,
//!   `tokensanitizer/token_masker_test.go`, `build_logger_test.go`
//!   (`TestLogLineWithSecret`) and the `URL_MASKED_PARAM`/`TOKEN_REVEALS`
//!   parts of `masking.go`: passwords in URLs, sensitive URL parameters
//!   (matched case-insensitively) and `glpat-`-style token prefixes are masked
//!   without being registered as secrets.
//! - Buildkite's Go `%q` form of non-printable bytes (`\x01`, `\a`): our JSON
//!   form writes `\u0001`; its `%q` form of `\n`, `"`, `\` is covered.
//! - Buildkite `FuzzReplacer` corpus: random one- and two-byte secrets.
//! - GitLab `build_logger_step_runner_test.go` "pre-stamped passthrough does
//!   not mask": output already masked upstream is passed through.

use std::sync::Arc;

use shroud::mask::{MaskSet, MaskStyle, Masker};
use shroud::secret::SecretValue;

struct PeerCase {
    peer: &'static str,
    /// Repository and test.
    source: &'static str,
    secrets: &'static [&'static str],
    input: &'static str,
    /// Our exact output, when it can be derived with certainty.
    expected: Option<&'static str>,
}

/// A peer case about an encoded form of a secret.
struct EncodedCase {
    peer: &'static str,
    source: &'static str,
    secrets: &'static [&'static str],
    input: &'static str,
    /// The encoded forms (as they appear in `input`) that must not survive.
    encoded: &'static [&'static str],
    expected: Option<&'static str>,
}

const GH: &str = "actions/runner";
const BK: &str = "buildkite/agent";
const GL: &str = "gitlab-org/gitlab-runner";

/// `HostContextL0.DefaultSecretMaskers`, in its order.
const GH_DEFAULT: &[&str] = &[
    "Password123!",
    "Pass\"word\"123!",
    "Pass word 123!",
    "Pass<word>123!",
    "Pass'word'123!",
    "\"Password123!!\"",
    "\"short\"",
];

/// `ActionCommandManagerL0.AddMaskWithMultilineValue`: the two `add-mask`
/// values after percent-decoding.
const GH_MULTILINE: &[&str] = &["abc\rdef\nghi\r\njkl", " \r  \n   \r\n    \r"];

const LIPSUM: &str = "Lorem ipsum dolor sit amet";

const BK_KEY: &str =
    "-----BEGIN OPENSSH PRIVATE KEY-----\nasdf\n-----END OPENSSH PRIVATE KEY-----\n";

const GL_VARIABLES: &[&str] = &[
    "is",
    "duplicateValue",
    "duplicateValue",
    ":secret",
    "cont@ining",
    "fix",
    "prefix",
    "prefix_mask",
    "suffix",
    "mask_suffix",
    "dd",
    "middle",
    "",
];

const GL_JOB_FAILED: &[&str] = &[
    "Job failed: exit code 1",
    "Job failed: exit status 1",
    "Job failed: run exit (exit code: 1)",
    "Job failed: command terminated with exit code 1",
    "Job failed: step \"user_script\": exec: executing script: exit status 1",
];

/// GitLab's "large secret": 16,000 underscores, written in two halves.
const GL_LARGE_LEN: usize = 16_000;
const GL_LARGE_PREFIX: &[u8] = b"large secret: ";
const GL_LARGE_SECRET_BYTES: [u8; GL_LARGE_LEN] = [b'_'; GL_LARGE_LEN];
const GL_LARGE_INPUT_BYTES: [u8; GL_LARGE_PREFIX.len() + GL_LARGE_LEN] = {
    let mut bytes = [b'_'; GL_LARGE_PREFIX.len() + GL_LARGE_LEN];
    let mut i = 0;
    while i < GL_LARGE_PREFIX.len() {
        bytes[i] = GL_LARGE_PREFIX[i];
        i += 1;
    }
    bytes
};
const GL_LARGE_SECRET: &str = ascii(&GL_LARGE_SECRET_BYTES);
const GL_LARGE_INPUT: &str = ascii(&GL_LARGE_INPUT_BYTES);

const fn ascii(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => panic!("not UTF-8"),
    }
}

const PEER_CASES: &[PeerCase] = &[
    // ---- GitHub Actions runner ----
    PeerCase {
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: plain value",
        secrets: GH_DEFAULT,
        input: "123Password123!123",
        expected: Some("123<secret:s0>123"),
    },
    PeerCase {
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: other case is not masked",
        secrets: GH_DEFAULT,
        input: "password123",
        expected: Some("password123"),
    },
    PeerCase {
        // The peer gives `123***123`: it also masks `"Password123!!"` with its
        // quotes trimmed (TrimDoubleQuotes). We mask `Password123!` only.
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: quoted value, quotes trimmed",
        secrets: GH_DEFAULT,
        input: "123Password123!!123",
        expected: Some("123<secret:s0>!123"),
    },
    PeerCase {
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: `\"short\"` without its quotes",
        secrets: GH_DEFAULT,
        input: "123short123",
        expected: Some("123short123"),
    },
    PeerCase {
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: `\"short\"` with its quotes",
        secrets: GH_DEFAULT,
        input: "123\"short\"123",
        expected: Some("123<secret:s6>123"),
    },
    PeerCase {
        peer: GH,
        source: "HostContextL0.SecretMaskerForProxy (the proxy password is a secret)",
        secrets: &["password123"],
        input: "http://user:password123@127.0.0.1:8888",
        expected: Some("http://user:<secret:s0>@127.0.0.1:8888"),
    },
    PeerCase {
        peer: GH,
        source: "CommandLineParserL0.MasksSecretArgs: first",
        secrets: &["secret value 1", "secret value 2"],
        input: "secret value 1",
        expected: Some("<secret:s0>"),
    },
    PeerCase {
        peer: GH,
        source: "CommandLineParserL0.MasksSecretArgs: second",
        secrets: &["secret value 1", "secret value 2"],
        input: "secret value 2",
        expected: Some("<secret:s1>"),
    },
    PeerCase {
        peer: GH,
        source: "CommandSettingsL0.GetsArgSecretFromEnvVar",
        secrets: &["some secret token value"],
        input: "some secret token value",
        expected: Some("<secret:s0>"),
    },
    PeerCase {
        peer: GH,
        source: "ActionCommandManagerL0.StopProcessCommandMasksValidTokenForEntireRun",
        secrets: &["randomToken"],
        input: "randomToken",
        expected: Some("<secret:s0>"),
    },
    // The peer splits an add-mask value on \r and \n and masks each 3-byte
    // piece; we split on \n (a trailing \r removed) and mask lines of 4 bytes
    // or more that are not only whitespace: `abc\rdef` is a line of ours.
    PeerCase {
        peer: GH,
        source: "ActionCommandManagerL0.AddMaskWithMultilineValue: `abc` (3 bytes)",
        secrets: GH_MULTILINE,
        input: "abc",
        expected: Some("abc"),
    },
    PeerCase {
        peer: GH,
        source: "ActionCommandManagerL0.AddMaskWithMultilineValue: `def` (3 bytes)",
        secrets: GH_MULTILINE,
        input: "def",
        expected: Some("def"),
    },
    PeerCase {
        peer: GH,
        source: "ActionCommandManagerL0.AddMaskWithMultilineValue: `ghi` (3 bytes)",
        secrets: GH_MULTILINE,
        input: "ghi",
        expected: Some("ghi"),
    },
    PeerCase {
        peer: GH,
        source: "ActionCommandManagerL0.AddMaskWithMultilineValue: `jkl` (3 bytes)",
        secrets: GH_MULTILINE,
        input: "jkl",
        expected: Some("jkl"),
    },
    PeerCase {
        peer: GH,
        source: "ActionCommandManagerL0.AddMaskWithMultilineValue: whole value",
        secrets: GH_MULTILINE,
        input: "abc\rdef\nghi\r\njkl",
        expected: Some("<secret:s0>"),
    },
    PeerCase {
        peer: GH,
        source: "ActionCommandManagerL0.AddMaskWithMultilineValue: empty",
        secrets: GH_MULTILINE,
        input: "",
        expected: Some(""),
    },
    PeerCase {
        peer: GH,
        source: "ActionCommandManagerL0.AddMaskWithMultilineValue: 1 space",
        secrets: GH_MULTILINE,
        input: " ",
        expected: Some(" "),
    },
    PeerCase {
        peer: GH,
        source: "ActionCommandManagerL0.AddMaskWithMultilineValue: 2 spaces",
        secrets: GH_MULTILINE,
        input: "  ",
        expected: Some("  "),
    },
    PeerCase {
        peer: GH,
        source: "ActionCommandManagerL0.AddMaskWithMultilineValue: 3 spaces",
        secrets: GH_MULTILINE,
        input: "   ",
        expected: Some("   "),
    },
    PeerCase {
        // `    \r` is a line of the second value: only whitespace, no pattern.
        peer: GH,
        source: "ActionCommandManagerL0.AddMaskWithMultilineValue: 4 spaces (a whitespace-only line)",
        secrets: GH_MULTILINE,
        input: "    ",
        expected: Some("    "),
    },
    PeerCase {
        peer: GH,
        source: "DapVariableProviderL0.GetVariables_NonSecretScopeValuesMaskedBySecretMasker: LEAKED",
        secrets: &["super-secret-token"],
        input: "prefix-super-secret-token-suffix",
        expected: Some("prefix-<secret:s0>-suffix"),
    },
    PeerCase {
        peer: GH,
        source: "DapVariableProviderL0.GetVariables_NonSecretScopeValuesMaskedBySecretMasker: SAFE",
        secrets: &["super-secret-token"],
        input: "hello world",
        expected: Some("hello world"),
    },
    PeerCase {
        peer: GH,
        source: "DapVariableProviderL0.EvaluateExpression_MasksSecretInResult",
        secrets: &["super-secret"],
        input: "super-secret",
        expected: Some("<secret:s0>"),
    },
    PeerCase {
        peer: GH,
        source: "DapReplExecutorL0.ExecuteRunCommand_MasksSecretsInStdout",
        secrets: &["super-secret-token"],
        input: "the token is super-secret-token\nsecond line\n",
        expected: Some("the token is <secret:s0>\nsecond line\n"),
    },
    PeerCase {
        peer: GH,
        source: "DapDebuggerL0.WelcomeMessageMasksSecrets",
        secrets: &["super-secret-token"],
        input: "Welcome! Token: super-secret-token",
        expected: Some("Welcome! Token: <secret:s0>"),
    },
    // ---- Buildkite agent ----
    PeerCase {
        peer: BK,
        source: "redact_test.go TestRedactString: no needles",
        secrets: &[],
        input: "secret 1 secret 2 secret 3 s",
        expected: Some("secret 1 secret 2 secret 3 s"),
    },
    PeerCase {
        peer: BK,
        source: "redact_test.go TestRedactString: one needle",
        secrets: &["secret 2"],
        input: "secret 1 secret 2 secret 3 s",
        expected: Some("secret 1 <secret:s0> secret 3 s"),
    },
    PeerCase {
        peer: BK,
        source: "redact_test.go TestRedactString: three needles",
        secrets: &["secret 1", "secret 2", "secret 3"],
        input: "secret 1 secret 2 secret 3 s",
        expected: Some("<secret:s0> <secret:s1> <secret:s2> s"),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerLoremIpsum: Empty needles",
        secrets: &[],
        input: LIPSUM,
        expected: Some(LIPSUM),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerLoremIpsum: ipsum",
        secrets: &["ipsum"],
        input: LIPSUM,
        expected: Some("Lorem <secret:s0> dolor sit amet"),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerLoremIpsum: ipsum, amet",
        secrets: &["ipsum", "amet"],
        input: LIPSUM,
        expected: Some("Lorem <secret:s0> dolor sit <secret:s1>"),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerLoremIpsum: First secret contains second",
        secrets: &["ipsum dolor", "dolor"],
        input: LIPSUM,
        expected: Some("Lorem <secret:s0> sit amet"),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerLoremIpsum: Second secret contains first",
        secrets: &["ipsum", "ipsum dolor"],
        input: LIPSUM,
        expected: Some("Lorem <secret:s1> sit amet"),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerLoremIpsum: Overlapping secrets",
        secrets: &["ipsum dolor", "dolor sit"],
        input: LIPSUM,
        expected: Some("Lorem <secret:s0> amet"),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerLoremIpsum: Overlapping secrets 2",
        secrets: &["ipsum dolor", "dolor sEt", "sit amet"],
        input: LIPSUM,
        expected: Some("Lorem <secret:s0> <secret:s2>"),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerLoremIpsum: Overlapping secrets 3",
        secrets: &["Lorem ipsum dolor sEt", "ipsum", "dolor"],
        input: LIPSUM,
        expected: Some("Lorem <secret:s1> <secret:s2> sit amet"),
    },
    PeerCase {
        // The peer masks each one-letter vowel; ours are under 4 bytes.
        peer: BK,
        source: "replacer_test.go TestReplacerLoremIpsum: Vowels",
        secrets: &["a", "e", "i", "o", "u", "Lorem ipsum dolor sit am3t"],
        input: LIPSUM,
        expected: Some(LIPSUM),
    },
    PeerCase {
        // `do` is under 4 bytes; the other six nest into one group.
        peer: BK,
        source: "replacer_test.go TestReplacerLoremIpsum: Tower of secrets",
        secrets: &[
            "do",
            " dol",
            "m dolo",
            "um dolor",
            "sum dolor ",
            "psum dolor s",
            "ipsum dolor si",
        ],
        input: LIPSUM,
        expected: Some("Lorem <secret:s6>t amet"),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerWriteBoundaries: Break stream mid-secret",
        secrets: &["ipsum"],
        input: "Lorem ipsum dolor sit amet",
        expected: Some("Lorem <secret:s0> dolor sit amet"),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerWriteBoundaries: mid-secret with pending redaction",
        secrets: &["ipsum dolor", "um do"],
        input: "Lorem ipsum dolor sit amet",
        expected: Some("Lorem <secret:s0> sit amet"),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerWriteBoundaries: multiple pending redactions",
        secrets: &["ipsum dolor", "sum", "do", "dolor"],
        input: "Lorem ipsum dolor sit amet",
        expected: Some("Lorem <secret:s0> sit amet"),
    },
    PeerCase {
        // `ÿ` is 2 bytes: under our minimum.
        peer: BK,
        source: "replacer_test.go TestReplacerMultibyte",
        secrets: &["ÿ"],
        input: "fooÿbar",
        expected: Some("fooÿbar"),
    },
    PeerCase {
        // The value ends with \n, so the whole value, newline included, is
        // one occurrence (the peer keeps that newline).
        peer: BK,
        source: "replacer_test.go TestReplacerMultiLine: exact",
        secrets: &[BK_KEY],
        input: "lalalala\n-----BEGIN OPENSSH PRIVATE KEY-----\nasdf\n-----END OPENSSH PRIVATE KEY-----\nlalalala\n",
        expected: Some("lalalala\n<secret:s0>lalalala\n"),
    },
    PeerCase {
        // The peer masks the key as one, whatever the whitespace; we mask
        // each line.
        peer: BK,
        source: "replacer_test.go TestReplacerMultiLine: cr-lf line endings",
        secrets: &[BK_KEY],
        input: "lalalala\r\n-----BEGIN OPENSSH PRIVATE KEY-----\r\nasdf\r\n-----END OPENSSH PRIVATE KEY-----\r\nlalalala\r\n",
        expected: Some("lalalala\r\n<secret:s0>\r\n<secret:s0>\r\n<secret:s0>\r\nlalalala\r\n"),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerMultiLine: cr-cr-lf line endings",
        secrets: &[BK_KEY],
        input: "lalalala\r\r\n-----BEGIN OPENSSH PRIVATE KEY-----\r\r\nasdf\r\r\n-----END OPENSSH PRIVATE KEY-----\r\r\nlalalala\r\r\n",
        expected: Some(
            "lalalala\r\r\n<secret:s0>\r\r\n<secret:s0>\r\r\n<secret:s0>\r\r\nlalalala\r\r\n",
        ),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerMultiLine: spaces instead of newlines",
        secrets: &[BK_KEY],
        input: "lalalala -----BEGIN OPENSSH PRIVATE KEY----- asdf -----END OPENSSH PRIVATE KEY----- lalalala\n",
        expected: Some("lalalala <secret:s0> <secret:s0> <secret:s0> lalalala\n"),
    },
    PeerCase {
        peer: BK,
        source: "replacer_test.go TestReplacerMultiLine: mixed whitespace garbage",
        secrets: &[BK_KEY],
        input: "lalalala\n\n\r\n-----BEGIN OPENSSH PRIVATE KEY-----\n\n \n\u{b}asdf\n\t\t\n  \n-----END OPENSSH PRIVATE KEY-----\n\n\nlalalala",
        expected: Some(
            "lalalala\n\n\r\n<secret:s0>\n\n \n\u{b}<secret:s0>\n\t\t\n  \n<secret:s0>\n\n\nlalalala",
        ),
    },
    PeerCase {
        peer: BK,
        source: "redaction_integration_test.go TestRedactorRedactsAgentToken",
        secrets: &["test-token-please-ignore"],
        input: "The agent token is: test-token-please-ignore\n",
        expected: Some("The agent token is: <secret:s0>\n"),
    },
    PeerCase {
        peer: BK,
        source: "secrets_integration_test.go TestSecretsIntegration_Redaction",
        secrets: &["very-sensitive-secret-value-123"],
        input: "The sensitive token is: very-sensitive-secret-value-123\n",
        expected: Some("The sensitive token is: <secret:s0>\n"),
    },
    PeerCase {
        peer: BK,
        source: "secrets_integration_test.go multiline secret",
        secrets: &["line1\nline2\nline3"],
        input: "Multiline secret: line1\nline2\nline3\n",
        expected: Some("Multiline secret: <secret:s0>\n"),
    },
    PeerCase {
        peer: BK,
        source: "otlp_job_logger_test.go TestOTLPJobLoggerEmitsRedactedOutput (split write)",
        secrets: &["supersekret-value"],
        input: "before supersekret-value after\nstart supersekret-value end\n",
        expected: Some("before <secret:s0> after\nstart <secret:s0> end\n"),
    },
    // ---- GitLab runner ----
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: empty secrets have no affect",
        secrets: &[""],
        input: "empty secrets have no affect",
        expected: Some("empty secrets have no affect"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: no escaping at all",
        secrets: &[],
        input: "no escaping at all",
        expected: Some("no escaping at all"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: secrets",
        secrets: &["secrets"],
        input: "secrets",
        expected: Some("<secret:s0>"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: secret|s",
        secrets: &["secrets"],
        input: "secrets",
        expected: Some("<secret:s0>"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: s|ecrets",
        secrets: &["secrets"],
        input: "secrets",
        expected: Some("<secret:s0>"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: secretssecrets (touching)",
        secrets: &["secrets"],
        input: "secretssecrets",
        expected: Some("<secret:s0><secret:s0>"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: ssecrets",
        secrets: &["secrets"],
        input: "ssecrets",
        expected: Some("s<secret:s0>"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: s|secrets",
        secrets: &["secrets"],
        input: "ssecrets",
        expected: Some("s<secret:s0>"),
    },
    PeerCase {
        // `at` is under 4 bytes (the peer masks it).
        peer: GL,
        source: "masker_test.go TestMasking: at the start of the buffer",
        secrets: &["at"],
        input: "at the start of the buffer",
        expected: Some("at the start of the buffer"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: in the middle of the buffer",
        secrets: &["middle"],
        input: "in the middle of the buffer",
        expected: Some("in the <secret:s0> of the buffer"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: at the end of the buffer",
        secrets: &["buffer"],
        input: "at the end of the buffer",
        expected: Some("at the end of the <secret:s0>"),
    },
    PeerCase {
        // `all` and `are` are under 4 bytes.
        peer: GL,
        source: "masker_test.go TestMasking: all values are masked",
        secrets: &["all", "values", "are", "masked"],
        input: "all values are masked",
        expected: Some("all <secret:s1> are <secret:s3>"),
    },
    PeerCase {
        // `foo` and `bar` are under 4 bytes.
        peer: GL,
        source: "masker_test.go TestMasking: prefixed and suffixed",
        secrets: &["foo", "bar"],
        input: "prefixed and suffixed: xfoox ybary ffoo barr ffooo bbarr",
        expected: Some("prefixed and suffixed: xfoox ybary ffoo barr ffooo bbarr"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: prefixed, suffixed and split",
        secrets: &["foo", "bar"],
        input: "prefixed, suffixed and split: xfoox ybary ffoo barr ffooo bbarr",
        expected: Some("prefixed, suffixed and split: xfoox ybary ffoo barr ffooo bbarr"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: sp|lit al|l val|ues ar|e |mask|ed",
        secrets: &["split", "all", "values", "are", "masked"],
        input: "split all values are masked",
        expected: Some("<secret:s0> all <secret:s2> are <secret:s4>"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: prefix_mask mask prefix_|mask prefix_ma|sk mas|k",
        secrets: &["mask", "prefix_mask"],
        input: "prefix_mask mask prefix_mask prefix_mask mask",
        expected: Some("<secret:s1> <secret:s0> <secret:s1> <secret:s1> <secret:s0>"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: large secret (16,000 bytes)",
        secrets: &[GL_LARGE_SECRET],
        input: GL_LARGE_INPUT,
        expected: Some("large secret: <secret:s0>"),
    },
    PeerCase {
        peer: GL,
        source: "masker_test.go TestMasking: overlap: this is the en| foobar",
        secrets: &["this is the end", "en foobar", "en"],
        input: "overlap: this is the en foobar",
        expected: Some("overlap: this is the <secret:s1>"),
    },
    PeerCase {
        // The second `duplicateValue` adds nothing: the first keeps its label.
        peer: GL,
        source: "helpers/trace/buffer_test.go TestVariablesMasking (at 3911e3b7e)",
        secrets: GL_VARIABLES,
        input: "This is the secret message cont@ining :secret duplicateValues ffixx prefix prefix_mask suffix mask_suffix middle dd",
        expected: Some("This is the secret message <secret:s4> <secret:s3> <secret:s1>s ffixx <secret:s6> <secret:s7> <secret:s8> <secret:s9> <secret:s11> dd"),
    },
    PeerCase {
        peer: GL,
        source: "buildtest/masking.go testBuildWithMasking: MASKED_KEY, MASKED_KEY_OTHER",
        secrets: &["MASKED_VALUE", "MASKED_VALUE_OTHER"],
        input: "MASKED_KEY=MASKED_VALUE\nCLEARTEXT_KEY=CLEARTEXT_VALUE\nMASKED_KEY_OTHER=MASKED_VALUE_OTHER\n",
        expected: Some("MASKED_KEY=<secret:s0>\nCLEARTEXT_KEY=CLEARTEXT_VALUE\nMASKED_KEY_OTHER=<secret:s1>\n"),
    },
    PeerCase {
        peer: GL,
        source: "buildtest/masking.go testBuildWithMasking: ::add-mask:: (proxy exec)",
        secrets: &["ADD_MASK_SECRET_VALUE"],
        input: "ADD_MASK_SECRET=ADD_MASK_SECRET_VALUE\n",
        expected: Some("ADD_MASK_SECRET=<secret:s0>\n"),
    },
    PeerCase {
        peer: GL,
        source: "buildtest/masking.go RunBuildWithMasking: failed job (can mask error message)",
        secrets: GL_JOB_FAILED,
        input: "ERROR: Job failed: exit code 1\n",
        expected: Some("ERROR: <secret:s0>\n"),
    },
    PeerCase {
        peer: GL,
        source: "build_logger_step_runner_test.go: plain data is masked by the wrap chain",
        secrets: &["secret-token"],
        input: "contains secret-token literally\n",
        expected: Some("contains <secret:s0> literally\n"),
    },
];

/// Peer cases about encoded forms. Those marked "derived" apply an encoder
/// the peer registers (actions/runner `ValueEncoders`) to one of its test
/// values, where its own test has no assertion for that pair.
const ENCODED_FORM_CASES: &[EncodedCase] = &[
    // ---- GitHub Actions runner: HostContextL0.DefaultSecretMaskers ----
    EncodedCase {
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: JsonStringEscape / CommandLineArgumentEscape",
        secrets: GH_DEFAULT,
        input: "123Pass\\\"word\\\"123!123",
        encoded: &["Pass\\\"word\\\"123!"],
        expected: Some("123<secret:s1>123"),
    },
    EncodedCase {
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: UriDataEscape",
        secrets: GH_DEFAULT,
        input: "123Pass%20word%20123%21123",
        encoded: &["Pass%20word%20123%21"],
        expected: Some("123<secret:s2>123"),
    },
    EncodedCase {
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: XmlDataEscape",
        secrets: GH_DEFAULT,
        input: "123Pass&lt;word&gt;123!123",
        encoded: &["Pass&lt;word&gt;123!"],
        expected: Some("123<secret:s3>123"),
    },
    // base64(prefix + "Password123!"): the value ends where the base64 ends,
    // so everything from the first character fully determined by the value
    // to the end, `=` padding included, is masked. The peer keeps one more
    // character (`OlBh***`, `YTpQ***`, ...).
    EncodedCase {
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: base64(\":Password123!\")",
        secrets: GH_DEFAULT,
        input: "OlBhc3N3b3JkMTIzIQ==",
        encoded: &["Bhc3N3b3JkMTIzIQ=="],
        expected: Some("Ol<secret:s0>"),
    },
    EncodedCase {
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: base64(\"a:Password123!\")",
        secrets: GH_DEFAULT,
        input: "YTpQYXNzd29yZDEyMyE=",
        encoded: &["QYXNzd29yZDEyMyE="],
        expected: Some("YTp<secret:s0>"),
    },
    EncodedCase {
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: base64(\"ab:Password123!\")",
        secrets: GH_DEFAULT,
        input: "YWI6UGFzc3dvcmQxMjMh",
        encoded: &["UGFzc3dvcmQxMjMh"],
        expected: Some("YWI6<secret:s0>"),
    },
    EncodedCase {
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: base64(\"abc:Password123!\")",
        secrets: GH_DEFAULT,
        input: "YWJjOlBhc3N3b3JkMTIzIQ==",
        encoded: &["Bhc3N3b3JkMTIzIQ=="],
        expected: Some("YWJjOl<secret:s0>"),
    },
    EncodedCase {
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: base64(\"abcd:Password123!\")",
        secrets: GH_DEFAULT,
        input: "YWJjZDpQYXNzd29yZDEyMyE=",
        encoded: &["QYXNzd29yZDEyMyE="],
        expected: Some("YWJjZDp<secret:s0>"),
    },
    EncodedCase {
        peer: GH,
        source: "HostContextL0.DefaultSecretMaskers: base64(\"abcde:Password123!\")",
        secrets: GH_DEFAULT,
        input: "YWJjZGU6UGFzc3dvcmQxMjMh",
        encoded: &["UGFzc3dvcmQxMjMh"],
        expected: Some("YWJjZGU6<secret:s0>"),
    },
    EncodedCase {
        peer: GH,
        source: "ValueEncoders.Base64StringEscape (derived): base64(\"Pass word 123!\") with `=` padding",
        secrets: GH_DEFAULT,
        input: "UGFzcyB3b3JkIDEyMyE=",
        encoded: &["UGFzcyB3b3JkIDEyMyE="],
        expected: Some("<secret:s2>"),
    },
    EncodedCase {
        peer: GH,
        source: "ValueEncoders.XmlDataEscape (derived): `\"` as &quot;",
        secrets: GH_DEFAULT,
        input: "123Pass&quot;word&quot;123!123",
        encoded: &["Pass&quot;word&quot;123!"],
        expected: Some("123<secret:s1>123"),
    },
    EncodedCase {
        peer: GH,
        source: "ValueEncoders.UriDataEscape (derived): Uri.EscapeDataString(\"Pass<word>123!\")",
        secrets: GH_DEFAULT,
        input: "123Pass%3Cword%3E123%21123",
        encoded: &["Pass%3Cword%3E123%21"],
        expected: Some("123<secret:s3>123"),
    },
    // ---- Buildkite agent: its needles include the Go %q-escaped value ----
    EncodedCase {
        peer: BK,
        source: "redact_test.go TestRedactString: needle with newline in two forms",
        secrets: &["secret\n1"],
        input: "secret\n1 secret\\n1 s",
        encoded: &["secret\\n1"],
        expected: Some("<secret:s0> <secret:s0> s"),
    },
];

fn mask_set(secrets: &[&str]) -> Arc<MaskSet> {
    let mut builder = MaskSet::builder(MaskStyle::Label);
    for (i, value) in secrets.iter().enumerate() {
        builder.add(&format!("S{i}"), &SecretValue::from_slice(value.as_bytes()));
    }
    builder.build()
}

fn byte_by_byte(set: &Arc<MaskSet>, input: &[u8]) -> Vec<u8> {
    let mut masker = Masker::new(Arc::clone(set));
    let mut out = Vec::new();
    for byte in input.chunks(1) {
        masker.push(byte, &mut out);
    }
    masker.finish(&mut out);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The output with every label replaced by a NUL, so a label's own text
/// (`<secret:...>`) is never taken for a surviving secret.
fn without_labels(output: &[u8], secrets: usize) -> Vec<u8> {
    let mut text = output.to_vec();
    for i in (0..secrets).rev() {
        let label = format!("<secret:s{i}>").into_bytes();
        let mut out = Vec::with_capacity(text.len());
        let mut at = 0;
        while at < text.len() {
            if text[at..].starts_with(&label) {
                out.push(0);
                at += label.len();
            } else {
                out.push(text[at]);
                at += 1;
            }
        }
        text = out;
    }
    text
}

/// The values of `secrets` that must never survive: each value of 4 bytes or
/// more and each line (a trailing `\r` removed) of 4 bytes or more that is
/// not only whitespace.
fn raw_forms(secrets: &[&str]) -> Vec<Vec<u8>> {
    let mut forms = Vec::new();
    for value in secrets {
        let value = value.as_bytes();
        if value.len() < 4 {
            continue;
        }
        forms.push(value.to_vec());
        if value.contains(&b'\n') {
            for line in value.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.len() >= 4 && !line.iter().all(u8::is_ascii_whitespace) {
                    forms.push(line.to_vec());
                }
            }
        }
    }
    forms
}

fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.chars().count() > 160 {
        let head: String = text.chars().take(160).collect();
        format!("{head:?}... ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

/// Runs one case; returns what is wrong with it, if anything.
fn check(
    secrets: &[&str],
    input: &str,
    must_not_survive: &[Vec<u8>],
    expected: Option<&str>,
) -> Vec<String> {
    let set = mask_set(secrets);
    let output = set.mask_all(input.as_bytes());
    let mut problems = Vec::new();
    let stripped = without_labels(&output, secrets.len());
    for form in must_not_survive {
        if contains(&stripped, form) {
            problems.push(format!("survived: {}", show(form)));
        }
    }
    if let Some(expected) = expected {
        if output != expected.as_bytes() {
            problems.push(format!("expected {}", show(expected.as_bytes())));
        }
    }
    let streamed = byte_by_byte(&set, input.as_bytes());
    if streamed != output {
        problems.push(format!("byte by byte it gives {}", show(&streamed)));
    }
    if problems.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "input {}\n    secrets {}\n    output {}\n    {}",
            show(input.as_bytes()),
            secrets
                .iter()
                .map(|s| show(s.as_bytes()))
                .collect::<Vec<_>>()
                .join(", "),
            show(&output),
            problems.join("\n    ")
        )]
    }
}

#[test]
fn peer_cases_hold_under_our_rules() {
    let mut failures = Vec::new();
    for case in PEER_CASES {
        for problem in check(
            case.secrets,
            case.input,
            &raw_forms(case.secrets),
            case.expected,
        ) {
            failures.push(format!("[{}] {}\n    {problem}", case.peer, case.source));
        }
    }
    for case in ENCODED_FORM_CASES {
        let mut forms = raw_forms(case.secrets);
        forms.extend(case.encoded.iter().map(|f| f.as_bytes().to_vec()));
        for problem in check(case.secrets, case.input, &forms, case.expected) {
            failures.push(format!(
                "[{}] (encoded form) {}\n    {problem}",
                case.peer, case.source
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} peer cases fail:\n\n{}",
        failures.len(),
        PEER_CASES.len() + ENCODED_FORM_CASES.len(),
        failures.join("\n\n")
    );
}
