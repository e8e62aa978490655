//! What a worker writes to its stderr: a bounded tail for error messages, and whole
//! lines for the event listener.
//!
//! The tail keeps the last [`TAIL_LEN`] bytes, so a worker that writes without end
//! never grows the host's memory; a line longer than [`MAX_LINE_LEN`] is cut into pieces.

use std::collections::VecDeque;

/// Bytes of stderr kept for error messages.
pub(crate) const TAIL_LEN: usize = 4096;
/// Longest line handed to the listener as one event.
const MAX_LINE_LEN: usize = 8192;

/// The captured stderr of one worker.
#[derive(Default)]
pub(crate) struct StderrCapture {
    tail: VecDeque<u8>,
    /// Whether older bytes were dropped from `tail`.
    dropped: bool,
    line: Vec<u8>,
}

impl StderrCapture {
    /// Records `bytes`, and returns the lines they completed.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let keep = bytes.len().min(TAIL_LEN);
        let overflow = (self.tail.len() + keep).saturating_sub(TAIL_LEN);
        self.tail.drain(..overflow);
        self.dropped |= overflow > 0 || keep < bytes.len();
        self.tail.extend(&bytes[bytes.len() - keep..]);

        let mut lines = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                lines.push(self.take_line());
            } else {
                self.line.push(byte);
                if self.line.len() >= MAX_LINE_LEN {
                    lines.push(self.take_line());
                }
            }
        }
        lines
    }

    /// The unfinished last line, if any (at the end of the stream).
    pub(crate) fn finish(&mut self) -> Option<String> {
        (!self.line.is_empty()).then(|| self.take_line())
    }

    fn take_line(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.line).trim_end_matches('\r').to_string();
        self.line.clear();
        line
    }

    /// The last bytes written, as text, trimmed; when older bytes were dropped, it
    /// starts at a line boundary rather than in the middle of a line.
    pub(crate) fn tail(&self) -> String {
        let (a, b) = self.tail.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        let mut text = &bytes[..];
        if self.dropped {
            if let Some(newline) = text.iter().position(|&byte| byte == b'\n') {
                text = &text[newline + 1..];
            }
        }
        String::from_utf8_lossy(text).trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_chunks() {
        let mut capture = StderrCapture::default();
        assert_eq!(capture.push(b"hel"), Vec::<String>::new());
        assert_eq!(capture.push(b"lo\nwor"), vec!["hello"]);
        assert_eq!(capture.push(b"ld\r\n\n"), vec!["world", ""]);
        assert_eq!(capture.push(b"tail"), Vec::<String>::new());
        assert_eq!(capture.finish(), Some("tail".to_string()));
        assert_eq!(capture.finish(), None);
    }

    #[test]
    fn tail_is_bounded_and_keeps_the_end() {
        let mut capture = StderrCapture::default();
        for i in 0..10_000 {
            capture.push(format!("line {i}\n").as_bytes());
        }
        let tail = capture.tail();
        assert!(tail.len() <= TAIL_LEN);
        assert!(tail.ends_with("line 9999"));
        assert!(!tail.contains("line 1\n"));
        assert!(tail.starts_with("line "), "the tail starts at a line boundary: {tail:?}");
    }

    #[test]
    fn endless_lines_are_cut() {
        let mut capture = StderrCapture::default();
        let lines = capture.push(&vec![b'x'; MAX_LINE_LEN * 2 + 5]);
        assert_eq!(lines.len(), 2);
        assert_eq!(capture.finish().unwrap().len(), 5);
    }
}
