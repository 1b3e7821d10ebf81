//! Line splitting over a decompressed stream, with 1-based line numbers and UTF-8 checks.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::decompress::{Compression, InputStream};
use crate::error::{Error, Location, Result, SkipReason};

/// One line of input, without its `\n` (and without a `\r` before it).
pub(crate) enum Line {
    /// A valid UTF-8 line.
    Text(String),
    /// A line that is not valid UTF-8; the error names file, line and byte.
    Invalid(Error),
}

/// Reads lines from one input, tracking the line number for error messages.
pub(crate) struct Lines {
    stream: InputStream,
    path: PathBuf,
    line: u64,
    buf: Vec<u8>,
    finished: bool,
}

impl Lines {
    pub(crate) fn new(stream: InputStream, path: &Path) -> Self {
        Self {
            stream,
            path: path.to_path_buf(),
            line: 0,
            buf: Vec::new(),
            finished: false,
        }
    }

    /// Location of the line last returned.
    pub(crate) fn location(&self) -> Location {
        Location {
            path: self.path.clone(),
            line: self.line,
        }
    }

    /// 1-based number of the line last returned.
    pub(crate) fn line_number(&self) -> u64 {
        self.line
    }

    /// The next line; `Err` is fatal for this file (I/O failure or a corrupt compressed stream).
    pub(crate) fn next_line(&mut self) -> Option<Result<Line>> {
        if self.finished {
            return None;
        }
        self.buf.clear();
        match self.stream.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => {
                self.finished = true;
                None
            }
            Ok(_) => {
                self.line += 1;
                if self.buf.last() == Some(&b'\n') {
                    self.buf.pop();
                    if self.buf.last() == Some(&b'\r') {
                        self.buf.pop();
                    }
                }
                let bytes = std::mem::take(&mut self.buf);
                Some(Ok(match String::from_utf8(bytes) {
                    Ok(text) => Line::Text(text),
                    Err(e) => {
                        let valid_up_to = e.utf8_error().valid_up_to();
                        self.buf = e.into_bytes();
                        Line::Invalid(Error::BadRecord {
                            location: self.location(),
                            reason: SkipReason::InvalidUtf8,
                            detail: format!(
                                "invalid UTF-8 at byte {} of the line",
                                valid_up_to + 1
                            ),
                        })
                    }
                }))
            }
            Err(source) => {
                self.finished = true;
                Some(Err(self.read_error(source)))
            }
        }
    }

    fn read_error(&self, source: std::io::Error) -> Error {
        match self.stream.compression {
            Compression::None => Error::io(&self.path, source),
            codec => Error::CorruptStream {
                path: self.path.clone(),
                codec: codec.name(),
                offset: self.stream.consumed.load(Ordering::Relaxed),
                line: self.line,
                source,
            },
        }
    }
}
