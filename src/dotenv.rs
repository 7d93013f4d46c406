//! The dotenv format: reading a `.env` file into names and values, and
//! writing values so that reading them gives them back exactly.
//!
//! Reading follows the convention the common loaders share (python-dotenv,
//! Node's dotenv, docker compose):
//! - blank lines and lines starting with `#` are skipped; an `export `
//!   prefix is allowed; spaces around the name and after `=` are dropped;
//! - an unquoted value runs to the end of the line, loses its trailing
//!   spaces, and ends at ` #` (a `#` after a space starts a comment; one
//!   inside a word, `a#b`, does not);
//! - a value in single quotes is literal (no escapes but `\'` and `\\`)
//!   and may span lines;
//! - a value in double quotes may span lines and knows the escapes `\n`,
//!   `\r`, `\t`, `\"`, `\'`, `\\`, `\$` and `` \` ``; any other backslash
//!   stays as it is. After the closing quote only spaces and a comment may
//!   follow.
//!
//! No `${VAR}` expansion: a value is what the file says. A syntax error
//! names its line, never the value. Writing quotes every value, in single
//! quotes when it holds no quote, backslash or line break, else in double
//! quotes with `\ " $ `` ` `` and line breaks escaped: what [`parse`] reads
//! back exactly, and what `sh` sources without running anything (though sh
//! keeps `\n` as two characters: `--format shell` is exact for sh).

use zeroize::Zeroizing;

/// One `NAME=VALUE` of a file.
pub struct Entry {
    pub name: String,
    pub value: Zeroizing<String>,
    /// Where it starts (1-based), for messages.
    pub line: usize,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("line", &self.line)
            .finish()
    }
}

/// Why a file could not be read (its line; never a value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: &'static str,
}

/// Reads every entry of `text`, in order (a name given twice appears
/// twice: the caller decides; the last one is what loaders keep).
pub fn parse(text: &str) -> Result<Vec<Entry>, ParseError> {
    // A byte-order mark some editors write is not part of the first name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    let mut rest = text;
    let mut line = 1;
    while !rest.is_empty() {
        let (this_line, after) = split_line(rest);
        let trimmed = this_line.trim_start_matches([' ', '\t']);
        if trimmed.trim_end().is_empty() || trimmed.starts_with('#') {
            rest = after;
            line += 1;
            continue;
        }
        let start_line = line;
        let error = |reason| ParseError {
            line: start_line,
            reason,
        };
        let body = match trimmed.strip_prefix("export") {
            Some(tail) if tail.starts_with([' ', '\t']) => tail.trim_start_matches([' ', '\t']),
            _ => trimmed,
        };
        let eq = body.find('=').ok_or(error("expected NAME=VALUE"))?;
        let name = body[..eq].trim_matches([' ', '\t']);
        if name.is_empty() {
            return Err(error("a name is missing before `=`"));
        }
        // The value starts after `=` and its spaces; from here on it is read
        // from the whole remaining text (a quoted value may span lines).
        let offset = text.len() - rest.len()
            + (this_line.len() - trimmed.len())
            + (trimmed.len() - body.len())
            + eq
            + 1;
        let from_value = text[offset..].trim_start_matches([' ', '\t']);
        let (value, consumed_to) = match from_value.chars().next() {
            Some(quote @ ('\'' | '"')) => {
                let (value, end) =
                    read_quoted(&from_value[1..], quote).ok_or(error(if quote == '"' {
                        "a double quote is not closed"
                    } else {
                        "a single quote is not closed"
                    }))?;
                let after_quote = &from_value[1 + end + 1..];
                let (line_rest, _) = split_line(after_quote);
                let tail = line_rest.trim_matches([' ', '\t', '\r']);
                if !(tail.is_empty() || tail.starts_with('#')) {
                    return Err(error("something follows the closing quote"));
                }
                (value, text.len() - after_quote.len() + line_rest.len())
            }
            _ => {
                let (raw, _) = split_line(from_value);
                let value = match comment_start(raw) {
                    Some(hash) => &raw[..hash],
                    None => raw,
                };
                let value = value.trim_end_matches([' ', '\t', '\r']);
                (
                    Zeroizing::new(value.to_owned()),
                    text.len() - from_value.len() + raw.len(),
                )
            }
        };
        entries.push(Entry {
            name: name.to_owned(),
            value,
            line: start_line,
        });
        // Count the lines the entry took, then skip to the next line.
        line += text[text.len() - rest.len()..consumed_to]
            .matches('\n')
            .count();
        rest = &text[consumed_to..];
        let (_, after) = split_line(rest);
        rest = after;
        line += 1;
    }
    Ok(entries)
}

/// The line at the start of `text` (without its `\n`) and what follows it.
fn split_line(text: &str) -> (&str, &str) {
    match text.find('\n') {
        Some(end) => (&text[..end], &text[end + 1..]),
        None => (text, ""),
    }
}

/// Where an inline comment starts in an unquoted value: a `#` after a
/// space or tab.
fn comment_start(raw: &str) -> Option<usize> {
    let bytes = raw.as_bytes();
    (1..bytes.len()).find(|&i| bytes[i] == b'#' && matches!(bytes[i - 1], b' ' | b'\t'))
}

/// Reads a quoted value up to its closing `quote`; returns it and the
/// closing quote's offset in `text`.
fn read_quoted(text: &str, quote: char) -> Option<(Zeroizing<String>, usize)> {
    let mut value = Zeroizing::new(String::new());
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        if c == quote {
            return Some((value, at));
        }
        if c != '\\' {
            value.push(c);
            continue;
        }
        let Some((_, next)) = chars.next() else {
            value.push('\\');
            break;
        };
        let escaped = match (quote, next) {
            ('"', 'n') => Some('\n'),
            ('"', 'r') => Some('\r'),
            ('"', 't') => Some('\t'),
            ('"', '$') => Some('$'),
            ('"', '`') => Some('`'),
            (_, '\\') => Some('\\'),
            (_, '\'') => Some('\''),
            ('"', '"') => Some('"'),
            _ => None,
        };
        match escaped {
            Some(c) => value.push(c),
            None => {
                value.push('\\');
                value.push(next);
            }
        }
    }
    None
}

/// `value` quoted so that [`parse`] (and the common loaders) read it back
/// exactly.
pub fn quote(value: &str) -> Zeroizing<String> {
    let literal = !value.contains(['\'', '\\', '\n', '\r']);
    let mut out = Zeroizing::new(String::with_capacity(value.len() + 2));
    if literal {
        out.push('\'');
        out.push_str(value);
        out.push('\'');
        return out;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '$' => out.push_str("\\$"),
            // Escaped so that `set -a; . ./.env` in sh runs nothing.
            '`' => out.push_str("\\`"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `value` as one POSIX shell word: single quotes, a `'` written `'\''`
/// (any bytes, UTF-8 or not).
pub fn shell_quote(value: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() + 2));
    out.push(b'\'');
    for &b in value {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value.to_string()))
            .collect()
    }

    fn one(text: &str) -> String {
        let mut all = pairs(text);
        assert_eq!(all.len(), 1, "{text:?}");
        all.remove(0).1
    }

    #[test]
    fn the_conventions_of_the_common_loaders() {
        assert_eq!(one("A=plain"), "plain");
        assert_eq!(one("export A=plain"), "plain");
        assert_eq!(one("  A  =   spaced out   "), "spaced out");
        assert_eq!(one("A=value # a comment"), "value");
        assert_eq!(one("A=no#comment"), "no#comment");
        assert_eq!(one("A='single # kept' # gone"), "single # kept");
        assert_eq!(one("A=\"double # kept\""), "double # kept");
        assert_eq!(one("A='lit\\n'"), "lit\\n");
        assert_eq!(one("A=\"esc\\n\\t\\\"\\\\\\$x\\q\""), "esc\n\t\"\\$x\\q");
        assert_eq!(one("A='it\\'s'"), "it's");
        assert_eq!(one("A=\"line one\nline two\""), "line one\nline two");
        assert_eq!(one("A='  padded  '"), "  padded  ");
        assert_eq!(one("A="), "");
        assert_eq!(one("A=a=b=c"), "a=b=c");
        assert_eq!(one("A=ünïcødé ✓"), "ünïcødé ✓");
        assert_eq!(one("A=crlf\r\n"), "crlf");
        assert_eq!(one("exported=x"), "x");
        // A name the store will refuse is still an entry (refused by name).
        assert_eq!(pairs("bad name=x")[0].0, "bad name");
    }

    #[test]
    fn entries_lines_and_comments() {
        let text = "# a header\n\nA=1\nexport B='two\nlines'\n  # indented comment\nC=\"3\" # trailing\nA=again\n";
        let entries = parse(text).unwrap();
        let got: Vec<_> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("A", "1", 3),
                ("B", "two\nlines", 4),
                ("C", "3", 7),
                ("A", "again", 8)
            ]
        );
    }

    #[test]
    fn syntax_errors_name_the_line_never_the_value() {
        for (text, line) in [
            ("A=1\nnot an entry\n", 2),
            ("A=1\nB=\"unclosed-secret\n", 2),
            ("A='unclosed-secret", 1),
            ("A=\"x\" trailing-secret", 1),
            ("=value-secret", 1),
        ] {
            let error = parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }

    #[test]
    fn what_quote_writes_parse_reads_back() {
        let tricky = [
            "plain",
            "with 'single' quotes",
            "with \"double\" quotes",
            "both ' and \"",
            "back\\slash",
            "dollar $HOME ${HOME}",
            "it's `touch /tmp/pwned` $(id) `",
            "hash # and = signs",
            "multi\nline\nvalue",
            "crlf\r\nvalue",
            "  leading and trailing  ",
            "\ttab",
            "ünïcødé ✓ 日本",
            "ends with backslash\\",
            "'",
            "\"",
            "#",
            "=",
            "",
        ];
        for value in tricky {
            let text = format!("NAME={}\n", quote(value).as_str());
            assert_eq!(one(&text), value, "{text:?}");
        }
        // All of them in one file, each after the other.
        let file: String = tricky
            .iter()
            .enumerate()
            .map(|(i, v)| format!("export N{i}={}\n", quote(v).as_str()))
            .collect();
        let back: Vec<String> = pairs(&file).into_iter().map(|(_, v)| v).collect();
        assert_eq!(back, tricky);
    }

    #[test]
    fn sourcing_the_dotenv_form_with_sh_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let value = format!(
            "it's `touch {m}` $(touch {m}) ${{X:-$(touch {m})}} \\ \"q\"",
            m = marker.display()
        );
        let file = dir.path().join(".env");
        std::fs::write(&file, format!("V={}\n", quote(&value).as_str())).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("set -a; . \"$0\"; printf %s \"$V\"")
            .arg(&file)
            .output()
            .unwrap();
        assert!(!marker.exists(), "sourcing ran a command");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), value);
        assert_eq!(one(&std::fs::read_to_string(&file).unwrap()), value);
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_name() {
        assert_eq!(pairs("\u{feff}FIRST=1\n")[0].0, "FIRST");
    }

    #[test]
    fn shell_quoting_survives_sh() {
        let value = "it's $HOME `date` \"q\" \\ \n end";
        let script = format!(
            "printf %s {}",
            String::from_utf8(shell_quote(value.as_bytes()).to_vec()).unwrap()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), value);
    }
}
