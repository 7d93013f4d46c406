//! Where the child's masked output goes: shroud's own stdout and stderr, or
//! JSON lines on stdout.
//!
//! Each of the child's streams has its own [`Masker`]; whatever a masker
//! releases is written at once (no line buffering, so prompts show). In JSON
//! mode each release becomes `{"ts","stream","data"}`; a UTF-8 character
//! split across two releases is carried over so `data` is never mangled, and
//! bytes that are not UTF-8 become U+FFFD. The last line is the exit event.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::Arc;

use serde::Serialize;

use crate::clock::{now_ms, rfc3339};
use crate::mask::{MaskSet, Masker};

/// Which of the child's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// How the run reports its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// The child's stdout to ours, its stderr to ours.
    Streams,
    /// JSON lines on our stdout.
    JsonLines,
}

/// One release of masked output, in JSON mode.
#[derive(Debug, Serialize)]
struct OutputEvent<'a> {
    ts: String,
    stream: &'static str,
    data: std::borrow::Cow<'a, str>,
}

/// The exit event, last line of a JSON run.
#[derive(Debug, Serialize)]
pub struct ExitEvent {
    pub ts: String,
    pub event: &'static str,
    pub code: u8,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

struct StreamState {
    masker: Masker,
    /// JSON mode: the start of a UTF-8 character cut off at the last release.
    carry: Vec<u8>,
    finished: bool,
}

/// Masks both streams and writes them out.
pub struct OutputSinks {
    mode: OutputMode,
    stdout: Option<File>,
    stderr: Option<File>,
    streams: [StreamState; 2],
    masked: Vec<u8>,
}

fn dup_file(fd: std::os::fd::BorrowedFd<'_>) -> Option<File> {
    fd.try_clone_to_owned().ok().map(File::from)
}

impl OutputSinks {
    pub fn new(mode: OutputMode, set: &Arc<MaskSet>) -> Self {
        let state = || StreamState {
            masker: Masker::new(Arc::clone(set)),
            carry: Vec::new(),
            finished: false,
        };
        OutputSinks {
            mode,
            stdout: dup_file(std::io::stdout().as_fd()),
            stderr: dup_file(std::io::stderr().as_fd()),
            streams: [state(), state()],
            masked: Vec::with_capacity(256 * 1024),
        }
    }

    fn index(stream: Stream) -> usize {
        match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    /// Masks and forwards bytes the child wrote.
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) {
        let mut masked = std::mem::take(&mut self.masked);
        masked.clear();
        self.streams[Self::index(stream)]
            .masker
            .push(bytes, &mut masked);
        self.forward(stream, &masked);
        self.masked = masked;
    }

    /// The stream ended: flush what its masker held.
    pub fn finish(&mut self, stream: Stream) {
        let state = &mut self.streams[Self::index(stream)];
        if state.finished {
            return;
        }
        state.finished = true;
        let mut masked = std::mem::take(&mut self.masked);
        masked.clear();
        state.masker.finish(&mut masked);
        let carry = std::mem::take(&mut state.carry);
        if self.mode == OutputMode::JsonLines && !carry.is_empty() {
            // An incomplete character at the very end: emit it (lossily).
            let mut rest = carry;
            rest.extend_from_slice(&masked);
            self.emit_json(stream, &rest, true);
        } else {
            self.forward(stream, &masked);
        }
        self.masked = masked;
    }

    fn forward(&mut self, stream: Stream, masked: &[u8]) {
        if masked.is_empty() {
            return;
        }
        match self.mode {
            OutputMode::Streams => {
                let sink = match stream {
                    Stream::Stdout => &mut self.stdout,
                    Stream::Stderr => &mut self.stderr,
                };
                if let Some(file) = sink {
                    // A closed terminal or pipe: keep draining the child, drop output.
                    if file.write_all(masked).is_err() {
                        *sink = None;
                    }
                }
            }
            OutputMode::JsonLines => self.emit_json(stream, masked, false),
        }
    }

    fn emit_json(&mut self, stream: Stream, masked: &[u8], last: bool) {
        let state = &mut self.streams[Self::index(stream)];
        let mut bytes = std::mem::take(&mut state.carry);
        bytes.extend_from_slice(masked);
        if !last {
            // Keep an incomplete trailing UTF-8 sequence for the next event.
            let keep = incomplete_utf8_suffix(&bytes);
            state.carry = bytes.split_off(bytes.len() - keep);
        }
        if bytes.is_empty() {
            return;
        }
        let event = OutputEvent {
            ts: rfc3339(now_ms()),
            stream: stream.name(),
            data: String::from_utf8_lossy(&bytes),
        };
        let line = serde_json::to_string(&event).expect("output event serializes");
        self.write_line(&line);
    }

    fn write_line(&mut self, line: &str) {
        if let Some(file) = &mut self.stdout {
            let mut text = Vec::with_capacity(line.len() + 1);
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
            if file.write_all(&text).is_err() {
                self.stdout = None;
            }
        }
    }

    /// JSON mode: writes the exit event.
    pub fn exit_event(&mut self, event: &ExitEvent) {
        if self.mode == OutputMode::JsonLines {
            let line = serde_json::to_string(event).expect("exit event serializes");
            self.write_line(&line);
        }
    }
}

/// How many trailing bytes form the start of a UTF-8 character that is not
/// complete yet (0 to 3).
fn incomplete_utf8_suffix(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let b = bytes[bytes.len() - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: look further back
        }
        let needed = match b {
            0b1100_0000..=0b1101_1111 => 2,
            0b1110_0000..=0b1110_1111 => 3,
            0b1111_0000..=0b1111_0111 => 4,
            _ => return 0,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::incomplete_utf8_suffix;

    #[test]
    fn split_characters_are_detected() {
        let euro = "€".as_bytes(); // 3 bytes
        assert_eq!(incomplete_utf8_suffix(b"abc"), 0);
        assert_eq!(incomplete_utf8_suffix(&euro[..1]), 1);
        assert_eq!(
            incomplete_utf8_suffix(&[b"a".as_slice(), &euro[..2]].concat()),
            2
        );
        assert_eq!(incomplete_utf8_suffix(euro), 0);
        assert_eq!(incomplete_utf8_suffix(b"\xff"), 0);
    }
}
