//! Line splitting over a decompressed stream, with 1-based line numbers and UTF-8 checks: one
//! line at a time, or whole lines in blocks whose runs of lines are parsed in parallel.

use std::io::{BufRead, Read};
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
    /// The line being read; between blocks, the partial line after a block's last `\n`.
    buf: Vec<u8>,
    /// Blocks' bytes handed back, to read the next blocks into.
    spare: Vec<Vec<u8>>,
    finished: bool,
}

/// Bytes asked of the stream at a time once a block is long enough but has no whole line yet.
const READ_BYTES: usize = 1 << 20;

impl Lines {
    pub(crate) fn new(stream: InputStream, path: &Path) -> Self {
        Self {
            stream,
            path: path.to_path_buf(),
            line: 0,
            buf: Vec::new(),
            spare: Vec::new(),
            finished: false,
        }
    }

    /// Goes on to the next input, keeping the blocks' buffers (fresh memory for each file's
    /// blocks, and their growth, took a tenth of phase 1's time).
    pub(crate) fn restart(&mut self, stream: InputStream, path: &Path) {
        let spare = std::mem::take(&mut self.spare);
        *self = Self {
            spare,
            ..Self::new(stream, path)
        };
    }

    /// Location of the line last returned.
    pub(crate) fn location(&self) -> Location {
        Location {
            path: self.path.clone(),
            line: self.line,
        }
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
                        Line::Invalid(invalid_utf8(self.location(), valid_up_to))
                    }
                }))
            }
            Err(source) => {
                self.finished = true;
                Some(Err(self.read_error(source)))
            }
        }
    }

    /// The next whole lines, at least `min_bytes` of them where the file has that many (a
    /// partial last line waits for the next block). An empty block with no `ended` error is the
    /// end of the file. Not to be mixed with [`Lines::next_line`] on one file.
    pub(crate) fn next_block(&mut self, min_bytes: usize) -> LineBlock {
        let mut bytes = self.spare.pop().unwrap_or_default();
        bytes.clear();
        // Room for the block and its last read at once: not grown (copied) as it is read.
        bytes.reserve(min_bytes.max(self.buf.len()) + READ_BYTES);
        bytes.append(&mut self.buf);
        let mut failure = None;
        // The carried partial line holds no `\n`; a block needs one unless the file ends.
        let mut has_newline = false;
        while !(self.finished || has_newline && bytes.len() >= min_bytes) {
            let before = bytes.len();
            let want = min_bytes.saturating_sub(before).max(READ_BYTES) as u64;
            match (&mut self.stream.reader).take(want).read_to_end(&mut bytes) {
                Ok(0) => self.finished = true,
                Ok(_) => has_newline |= memchr::memchr(b'\n', &bytes[before..]).is_some(),
                Err(source) => {
                    self.finished = true;
                    failure = Some(source);
                }
            }
        }
        let whole = memchr::memrchr(b'\n', &bytes).map_or(0, |at| at + 1);
        if !self.finished {
            self.buf.extend_from_slice(&bytes[whole..]);
            bytes.truncate(whole);
        } else if failure.is_some() {
            // As with `next_line`, the partial line a read error cuts off is not a line.
            bytes.truncate(whole);
        }
        let first_line = self.line + 1;
        self.line += count_lines(&bytes);
        LineBlock {
            bytes,
            first_line,
            ended: failure.map(|source| self.read_error(source)),
        }
    }

    /// Takes back a block's bytes, to read a later block into.
    pub(crate) fn recycle(&mut self, block: LineBlock) {
        // Two blocks are in use at a time: one parsed, the next read.
        if self.spare.len() < 2 {
            self.spare.push(block.bytes);
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

/// The error of a line that is not UTF-8.
fn invalid_utf8(location: Location, valid_up_to: usize) -> Error {
    Error::BadRecord {
        location,
        reason: SkipReason::InvalidUtf8,
        detail: format!("invalid UTF-8 at byte {} of the line", valid_up_to + 1),
    }
}

/// The lines in `bytes`: one per `\n`, plus a last line without one.
fn count_lines(bytes: &[u8]) -> u64 {
    let newlines = memchr::memchr_iter(b'\n', bytes).count() as u64;
    newlines + u64::from(!bytes.is_empty() && !bytes.ends_with(b"\n"))
}

/// Whole lines read together by [`Lines::next_block`], and the error that ended the file after
/// them, if one did.
#[derive(Default)]
pub(crate) struct LineBlock {
    bytes: Vec<u8>,
    first_line: u64,
    pub(crate) ended: Option<Error>,
}

impl LineBlock {
    /// True when the block holds no line.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The block cut into runs of whole lines of about `run_bytes` each, in order, their
    /// lines' errors naming `path`.
    pub(crate) fn runs<'a>(&'a self, run_bytes: usize, path: &'a Path) -> Vec<LineRun<'a>> {
        let mut runs = Vec::new();
        let (mut start, mut first_line) = (0, self.first_line);
        while start < self.bytes.len() {
            // The run ends after the first `\n` at or past `run_bytes`.
            let cut = start + run_bytes.max(1);
            let end = match self.bytes.get(cut - 1..) {
                Some(rest) => memchr::memchr(b'\n', rest).map_or(self.bytes.len(), |at| cut + at),
                None => self.bytes.len(),
            };
            let bytes = &self.bytes[start..end];
            let lines = count_lines(bytes);
            runs.push(LineRun {
                bytes,
                first_line,
                lines,
                path,
            });
            first_line += lines;
            start = end;
        }
        runs
    }
}

/// Some whole lines of a [`LineBlock`].
pub(crate) struct LineRun<'a> {
    bytes: &'a [u8],
    first_line: u64,
    lines: u64,
    path: &'a Path,
}

impl<'a> LineRun<'a> {
    /// Bytes of the run, its line ends included.
    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// The file the run is from.
    pub(crate) fn path(&self) -> &'a Path {
        self.path
    }

    /// Number of lines in the run.
    pub(crate) fn line_count(&self) -> usize {
        usize::try_from(self.lines).unwrap_or(usize::MAX)
    }

    /// Each line with its 1-based number: its text without the `\n` (and a `\r` before it),
    /// or the error of a line that is not UTF-8, as [`Lines::next_line`] gives them.
    pub(crate) fn lines(&self) -> impl Iterator<Item = (u64, Result<&'a str>)> + '_ {
        let mut rest = self.bytes;
        let mut number = self.first_line;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let line = match memchr::memchr(b'\n', rest) {
                Some(at) => {
                    let line = &rest[..at];
                    rest = &rest[at + 1..];
                    line.strip_suffix(b"\r").unwrap_or(line)
                }
                None => std::mem::take(&mut rest),
            };
            let text = std::str::from_utf8(line).map_err(|e| {
                let location = Location {
                    path: self.path.to_path_buf(),
                    line: number,
                };
                invalid_utf8(location, e.valid_up_to())
            });
            number += 1;
            Some((number - 1, text))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::open_input;
    use std::io::Write;

    type Seen = Vec<(u64, std::result::Result<String, String>)>;

    fn numbered_lines(n: usize) -> String {
        (0..n)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    fn by_line(path: &Path) -> Seen {
        let mut lines = Lines::new(open_input(path, None).unwrap(), path);
        let mut seen = Seen::new();
        while let Some(line) = lines.next_line() {
            let number = lines.location().line;
            seen.push(match line {
                Ok(Line::Text(text)) => (number, Ok(text)),
                Ok(Line::Invalid(e)) => (number, Err(e.to_string())),
                Err(e) => (number, Err(format!("ended: {e}"))),
            });
        }
        seen
    }

    fn by_block(path: &Path, min_bytes: usize, run_bytes: usize) -> Seen {
        let mut lines = Lines::new(open_input(path, None).unwrap(), path);
        let mut seen = Seen::new();
        loop {
            let mut block = lines.next_block(min_bytes);
            if block.is_empty() && block.ended.is_none() {
                return seen;
            }
            for run in block.runs(run_bytes, path) {
                let before = seen.len();
                seen.extend(
                    run.lines()
                        .map(|(n, text)| (n, text.map(str::to_owned).map_err(|e| e.to_string()))),
                );
                assert_eq!(seen.len() - before, run.line_count());
            }
            if let Some(e) = block.ended.take() {
                seen.push((lines.location().line, Err(format!("ended: {e}"))));
                return seen;
            }
            lines.recycle(block);
        }
    }

    #[test]
    fn blocks_and_runs_give_the_lines_one_at_a_time_gives() {
        let long = "x".repeat(5000);
        let inputs: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\n".to_vec(),
            b"\n\n\r\n".to_vec(),
            b"one".to_vec(),
            b"one\r".to_vec(),
            b"a\r\nb\nc".to_vec(),
            b"ok\nbad \xff byte\n\xc3\n\xc3\xa9t\xc3\xa9\n".to_vec(),
            format!("{long}\nshort\n{long}{long}\nend").into_bytes(),
            numbered_lines(3000).into_bytes(),
        ];
        let tmp = tempfile::tempdir().unwrap();
        for (i, input) in inputs.iter().enumerate() {
            let path = tmp.path().join(format!("in{i}"));
            std::fs::write(&path, input).unwrap();
            let expected = by_line(&path);
            for min_bytes in [1, 7, 64, 4096, 1 << 20] {
                for run_bytes in [1, 5, 100, 1 << 20] {
                    assert_eq!(
                        by_block(&path, min_bytes, run_bytes),
                        expected,
                        "input {i}, blocks of {min_bytes}, runs of {run_bytes}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_stream_cut_short_ends_the_blocks_after_its_whole_lines() {
        let text = numbered_lines(20_000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cut.gz");
        std::fs::write(&path, &gz[..gz.len() * 2 / 3]).unwrap();
        let expected = by_line(&path);
        let (last, ended) = expected.last().unwrap();
        assert!(ended.as_ref().unwrap_err().contains("gzip"), "{ended:?}");
        assert!(*last > 1000 && *last < 20_000);
        for min_bytes in [1, 1000, 1 << 20] {
            assert_eq!(by_block(&path, min_bytes, 512), expected);
        }
    }
}
