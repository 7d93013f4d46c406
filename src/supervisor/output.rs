//! Where the child's masked output goes: shroud's own stdout and stderr, a
//! buffer returned with the run (the API's buffered exec), or a channel (the
//! API's streamed exec); as the raw streams or as JSON lines.
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
    pub fn name(self) -> &'static str {
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

/// Where masked output is written.
#[derive(Debug)]
pub enum Destination {
    /// shroud's own stdout and stderr (JSON lines: stdout). A closed one is
    /// dropped and the child keeps running, as under a shell.
    Stdio,
    /// Kept in memory and returned in [`Captured`]; bound it with the
    /// plan's output limit.
    Capture,
    /// Each release (or JSON line) sent as it happens. Sending blocks while
    /// the channel is full, so a slow reader slows the child down like a
    /// full pipe would; a closed channel ends the run (its reader is gone).
    Channel(tokio::sync::mpsc::Sender<Chunk>),
    /// Each release handed to a sink of the caller's (a deployment's log),
    /// on the run's own thread.
    Sink(Box<dyn OutputSink>),
}

/// Takes a run's masked output as it comes ([`Destination::Sink`]).
pub trait OutputSink: Send {
    fn write(&mut self, stream: Stream, bytes: &[u8]);
    /// `stream` ended (what it holds back, a partial line, goes out now).
    fn finish(&mut self, stream: Stream);
}

/// Splits the masked output of a run's two streams into lines, for sinks
/// that keep or print whole lines (a deployment's log, a task's prefixed
/// lines): each complete line (without its `\n`) as soon as it ends; a
/// line that grows past `max` bytes in pieces of `max`; what is left at the
/// end of a stream with [`LineSplitter::finish`]. Only new bytes are
/// searched for line ends.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    partial: [Vec<u8>; 2],
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        LineSplitter {
            max: max.max(1),
            partial: [Vec::new(), Vec::new()],
        }
    }

    /// Hands every line `bytes` completes (or piece past `max`) to `line`.
    pub fn push(&mut self, stream: Stream, bytes: &[u8], mut line: impl FnMut(&[u8])) {
        let pending = &mut self.partial[stream as usize];
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            if pending.is_empty() {
                line(&rest[..at]);
            } else {
                pending.extend_from_slice(&rest[..at]);
                line(pending);
                pending.clear();
            }
            rest = &rest[at + 1..];
        }
        pending.extend_from_slice(rest);
        while pending.len() >= self.max {
            let piece: Vec<u8> = pending.drain(..self.max).collect();
            line(&piece);
        }
    }

    /// The stream ended: its partial last line, if any, goes to `line`.
    pub fn finish(&mut self, stream: Stream, mut line: impl FnMut(&[u8])) {
        let pending = std::mem::take(&mut self.partial[stream as usize]);
        if !pending.is_empty() {
            line(&pending);
        }
    }
}

impl std::fmt::Debug for dyn OutputSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputSink")
    }
}

/// One piece of output sent over a [`Destination::Channel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// `None` for a JSON line (it names its stream itself).
    pub stream: Option<Stream>,
    pub bytes: Vec<u8>,
}

/// Output kept by [`Destination::Capture`], masked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Captured {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// One release of masked output, in JSON mode.
#[derive(Debug, Serialize)]
struct OutputEvent<'a> {
    ts: String,
    stream: &'static str,
    data: std::borrow::Cow<'a, str>,
}

/// The exit event, last line of a JSON run. Beside the `code` of the
/// contract's JSON lines it carries the buffered API result's own field
/// names (`exit_code` and the flags), so that one reader handles both.
#[derive(Debug, Serialize)]
pub struct ExitEvent {
    pub ts: String,
    pub event: &'static str,
    pub code: u8,
    pub exit_code: u8,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    pub timed_out: bool,
    pub output_limit_reached: bool,
    pub cancelled: bool,
}

impl ExitEvent {
    /// The event of a run that ended as `report` says.
    pub fn of(report: &super::ExitReport) -> Self {
        ExitEvent {
            ts: crate::clock::rfc3339(crate::clock::now_ms()),
            event: "exit",
            code: report.code,
            exit_code: report.code,
            signal: report.signal,
            duration_ms: report.duration.as_millis() as u64,
            timed_out: report.timed_out,
            output_limit_reached: report.output_limit_reached,
            cancelled: report.cancelled,
        }
    }

    /// The last line of a run that shroud could not start or drive
    /// (`code`: the exit code it ends with), with an `error` that says so.
    pub fn failed(code: u8) -> serde_json::Value {
        let mut line = serde_json::json!(ExitEvent {
            ts: crate::clock::rfc3339(crate::clock::now_ms()),
            event: "exit",
            code,
            exit_code: code,
            signal: None,
            duration_ms: 0,
            timed_out: false,
            output_limit_reached: false,
            cancelled: false,
        });
        line["error"] = "the command could not be run".into();
        line
    }
}

struct StreamState {
    masker: Masker,
    /// JSON mode: the start of a UTF-8 character cut off at the last release.
    carry: Vec<u8>,
    finished: bool,
}

/// The writing end of a [`Destination`].
enum Writer {
    Stdio {
        stdout: Option<File>,
        stderr: Option<File>,
    },
    Capture(Captured),
    Sink(Box<dyn OutputSink>),
    Channel {
        /// `None` once the reader is gone.
        sender: Option<tokio::sync::mpsc::Sender<Chunk>>,
        /// Chunks waiting for room in the channel.
        pending: std::collections::VecDeque<Chunk>,
    },
}

impl Writer {
    /// Writes `bytes` of `stream` (`None`: a JSON line, to stdout).
    fn write(&mut self, stream: Option<Stream>, bytes: &[u8]) {
        match self {
            Writer::Stdio { stdout, stderr } => {
                let sink = match stream {
                    Some(Stream::Stderr) => stderr,
                    _ => stdout,
                };
                if let Some(file) = sink {
                    // A closed terminal or pipe: keep draining the child, drop output.
                    if file.write_all(bytes).is_err() {
                        *sink = None;
                    }
                }
            }
            Writer::Capture(captured) => match stream {
                Some(Stream::Stderr) => captured.stderr.extend_from_slice(bytes),
                _ => captured.stdout.extend_from_slice(bytes),
            },
            Writer::Sink(sink) => sink.write(stream.unwrap_or(Stream::Stdout), bytes),
            Writer::Channel { sender, pending } => {
                if sender.is_some() {
                    pending.push_back(Chunk {
                        stream,
                        bytes: bytes.to_vec(),
                    });
                }
            }
        }
        self.flush();
    }

    /// Channel: sends what is pending, as far as the channel has room.
    fn flush(&mut self) {
        use tokio::sync::mpsc::error::TrySendError;
        let Writer::Channel { sender, pending } = self else {
            return;
        };
        let Some(channel) = sender else {
            pending.clear();
            return;
        };
        while let Some(chunk) = pending.pop_front() {
            match channel.try_send(chunk) {
                Ok(()) => {}
                Err(TrySendError::Full(chunk)) => {
                    pending.push_front(chunk);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    *sender = None;
                    pending.clear();
                    return;
                }
            }
        }
    }

    fn backlogged(&self) -> bool {
        matches!(self, Writer::Channel { pending, .. } if !pending.is_empty())
    }
}

/// Masks both streams and writes them out.
pub struct OutputSinks {
    mode: OutputMode,
    writer: Writer,
    streams: [StreamState; 2],
    masked: Vec<u8>,
}

fn dup_file(fd: std::os::fd::BorrowedFd<'_>) -> Option<File> {
    fd.try_clone_to_owned().ok().map(File::from)
}

impl OutputSinks {
    pub fn new(mode: OutputMode, destination: Destination, set: &Arc<MaskSet>) -> Self {
        let state = || StreamState {
            masker: Masker::new(Arc::clone(set)),
            carry: Vec::new(),
            finished: false,
        };
        OutputSinks {
            mode,
            writer: match destination {
                Destination::Stdio => Writer::Stdio {
                    stdout: dup_file(std::io::stdout().as_fd()),
                    stderr: dup_file(std::io::stderr().as_fd()),
                },
                Destination::Capture => Writer::Capture(Captured::default()),
                Destination::Sink(sink) => Writer::Sink(sink),
                Destination::Channel(sender) => Writer::Channel {
                    sender: Some(sender),
                    pending: std::collections::VecDeque::new(),
                },
            },
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
        if let Writer::Sink(sink) = &mut self.writer {
            sink.finish(stream);
        }
    }

    fn forward(&mut self, stream: Stream, masked: &[u8]) {
        if masked.is_empty() {
            return;
        }
        match self.mode {
            OutputMode::Streams => self.writer.write(Some(stream), masked),
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
        let mut text = Vec::with_capacity(line.len() + 1);
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
        self.writer.write(None, &text);
    }

    /// True when the reader of a channel destination went away: nobody will
    /// see the rest of the output, so the run should end.
    pub fn reader_gone(&self) -> bool {
        matches!(self.writer, Writer::Channel { sender: None, .. })
    }

    /// Sends output waiting for room in a channel destination, as far as
    /// there is room now.
    pub fn flush(&mut self) {
        self.writer.flush();
    }

    /// True while output waits for room in a channel destination: the
    /// supervisor stops reading the child until there is.
    pub fn backlogged(&self) -> bool {
        self.writer.backlogged()
    }

    /// At the end of a run: waits up to `limit` for the channel to take
    /// what is pending, then drops the rest.
    pub fn flush_within(&mut self, limit: std::time::Duration) {
        let give_up = std::time::Instant::now() + limit;
        self.flush();
        while self.backlogged() && std::time::Instant::now() < give_up {
            std::thread::sleep(std::time::Duration::from_millis(2));
            self.flush();
        }
    }

    /// The captured output (empty unless the destination was `Capture`).
    pub fn into_captured(self) -> Captured {
        match self.writer {
            Writer::Capture(captured) => captured,
            _ => Captured::default(),
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
    use super::{incomplete_utf8_suffix, LineSplitter, Stream};

    #[test]
    fn lines_are_split_as_they_end_and_long_ones_in_pieces() {
        let mut splitter = LineSplitter::new(4);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        splitter.push(Stream::Stdout, b"ab", |l| lines.push(l.to_vec()));
        splitter.push(Stream::Stderr, b"x\n", |l| lines.push(l.to_vec()));
        splitter.push(Stream::Stdout, b"c\nde", |l| lines.push(l.to_vec()));
        splitter.push(Stream::Stdout, b"fghij", |l| lines.push(l.to_vec()));
        splitter.finish(Stream::Stdout, |l| lines.push(l.to_vec()));
        let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        assert_eq!(lines, [&b"x"[..], b"abc", b"defg", b"hij"]);
    }

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
