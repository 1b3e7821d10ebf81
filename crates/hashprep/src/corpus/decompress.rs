//! Opening an input file: compression is detected by magic bytes, never by file name.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Compression of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// Plain bytes.
    None,
    /// Zstandard (frames may need a window up to 2 GiB, as pushshift dumps do).
    Zstd,
    /// XZ / LZMA2.
    Xz,
    /// Bzip2.
    Bzip2,
    /// Gzip.
    Gzip,
}

impl Compression {
    /// Recognises a compressed stream from its first bytes.
    pub(crate) fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
            Compression::Zstd
        } else if head.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0x1F, 0x8B]) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// A short name for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Compression::None => "plain",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
            Compression::Gzip => "gzip",
        }
    }
}

/// Buffer size of each decoder.
const CAP: usize = 1 << 20;

/// Largest zstd window accepted: 2^31 bytes, what pushshift's `--long=31` dumps need.
pub(crate) const ZSTD_WINDOW_LOG_MAX: u32 = 31;

/// Counts the bytes read from the file itself (compressed bytes), for progress and error offsets.
struct CountingReader<R> {
    inner: R,
    local: Arc<AtomicU64>,
    global: Option<Arc<AtomicU64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.local.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(global) = &self.global {
            global.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// A decompressed byte stream over one input file.
pub(crate) struct InputStream {
    /// The decompressed bytes.
    pub reader: Box<dyn BufRead + Send>,
    /// The detected compression.
    pub compression: Compression,
    /// Compressed bytes consumed so far (for error messages).
    pub consumed: Arc<AtomicU64>,
}

/// Opens `path`, detects its compression and returns a buffered decompressed stream.
/// `progress` (if given) is advanced by the number of on-disk bytes read.
///
/// # Errors
/// The file cannot be opened or read, or the zstd decoder cannot be set up.
pub(crate) fn open_input(path: &Path, progress: Option<Arc<AtomicU64>>) -> Result<InputStream> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let consumed = Arc::new(AtomicU64::new(0));
    let counting = CountingReader {
        inner: file,
        local: consumed.clone(),
        global: progress,
    };
    let mut raw = BufReader::with_capacity(1 << 20, counting);
    let head = raw.fill_buf().map_err(|e| Error::io(path, e))?;
    let compression = Compression::detect(head);
    let reader: Box<dyn BufRead + Send> = match compression {
        Compression::None => Box::new(raw),
        Compression::Zstd => {
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| Error::io(path, e))?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| Error::io(path, e))?;
            Box::new(BufReader::with_capacity(CAP, decoder))
        }
        Compression::Xz => Box::new(BufReader::with_capacity(
            CAP,
            xz2::bufread::XzDecoder::new_multi_decoder(raw),
        )),
        Compression::Bzip2 => Box::new(BufReader::with_capacity(
            CAP,
            bzip2::bufread::MultiBzDecoder::new(raw),
        )),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            CAP,
            flate2::bufread::MultiGzDecoder::new(raw),
        )),
    };
    Ok(InputStream {
        reader,
        compression,
        consumed,
    })
}

/// Opens the lines of an uncompressed file that start in bytes `[start, end)`: a line belongs to
/// the range its first byte lies in, so ranges that tile a file give every line exactly once.
/// `progress` is advanced by the bytes read.
///
/// # Errors
/// The file cannot be opened, read or sought.
pub(crate) fn open_range(
    path: &Path,
    [start, end]: [u64; 2],
    progress: Option<Arc<AtomicU64>>,
) -> Result<InputStream> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let consumed = Arc::new(AtomicU64::new(0));
    // The range's first line starts after the first `\n` at or after byte `start - 1`.
    let mut position = start.saturating_sub(1);
    io::Seek::seek(&mut file, io::SeekFrom::Start(position)).map_err(|e| Error::io(path, e))?;
    let mut raw = BufReader::with_capacity(
        CAP,
        CountingReader {
            inner: file,
            local: consumed.clone(),
            global: progress,
        },
    );
    if start > 0 {
        let mut skipped = Vec::new();
        position += raw
            .read_until(b'\n', &mut skipped)
            .map_err(|e| Error::io(path, e))? as u64;
    }
    let reader = LineRange {
        inner: raw,
        before_end: end.saturating_sub(position),
        line_open: false,
        done: false,
    };
    Ok(InputStream {
        reader: Box::new(BufReader::with_capacity(CAP, reader)),
        compression: Compression::None,
        consumed,
    })
}

/// The lines of `path` before the first line of the range that starts at byte `start`
/// ([`open_range`]): for error messages, which name lines of the whole file.
///
/// # Errors
/// The file cannot be read.
pub(crate) fn lines_before_range(path: &Path, start: u64) -> io::Result<u64> {
    if start == 0 {
        return Ok(0);
    }
    let mut reader = BufReader::with_capacity(CAP, File::open(path)?);
    let mut lines = 0;
    let mut left = start - 1;
    while left > 0 {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        let n = available
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        lines += memchr::memchr_iter(b'\n', &available[..n]).count() as u64;
        reader.consume(n);
        left -= n as u64;
    }
    let mut rest = Vec::new();
    reader.read_until(b'\n', &mut rest)?;
    Ok(lines + u64::from(rest.ends_with(b"\n")))
}

/// The bytes of a file up to `before_end` more, then through the end of the line they stop in.
struct LineRange<R> {
    inner: R,
    before_end: u64,
    /// The last byte given was not a `\n`.
    line_open: bool,
    done: bool,
}

impl<R: BufRead> Read for LineRange<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let available = self.inner.fill_buf()?;
        if available.is_empty() {
            self.done = true;
            return Ok(0);
        }
        let n = if self.before_end > 0 {
            let limit = usize::try_from(self.before_end).unwrap_or(usize::MAX);
            available.len().min(buf.len()).min(limit)
        } else if self.line_open {
            // Past the end: finish the line that started before it.
            match memchr::memchr(b'\n', available) {
                Some(at) if at < buf.len() => {
                    self.done = true;
                    at + 1
                }
                _ => available.len().min(buf.len()),
            }
        } else {
            self.done = true;
            return Ok(0);
        };
        buf[..n].copy_from_slice(&available[..n]);
        self.line_open = available[n - 1] != b'\n';
        self.before_end = self.before_end.saturating_sub(n as u64);
        self.inner.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `text` in `[start, end)`, read through [`open_range`].
    fn lines_in(path: &Path, range: [u64; 2]) -> Vec<String> {
        let mut text = String::new();
        open_range(path, range, None)
            .unwrap()
            .reader
            .read_to_string(&mut text)
            .unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn ranges_that_tile_a_file_give_each_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines");
        let lines: Vec<String> = (0..200)
            .map(|i| "x".repeat((i * 7919) % 37) + &i.to_string())
            .collect();
        let mut text = lines.join("\n");
        for ending in ["", "\n"] {
            text.push_str(ending);
            std::fs::write(&path, &text).unwrap();
            let len = text.len() as u64;
            // Cut points everywhere: inside lines, on a `\n`, just after one, and empty ranges.
            for step in [1, 2, 13, 37, 64, 500, len] {
                let mut cuts: Vec<u64> = (0..len).step_by(step as usize).collect();
                cuts.push(len);
                let got: Vec<String> = cuts
                    .windows(2)
                    .flat_map(|w| lines_in(&path, [w[0], w[1]]))
                    .collect();
                assert_eq!(got, lines, "step {step}, ending {ending:?}");
                for w in cuts.windows(2) {
                    let first = lines_in(&path, [w[0], w[1]]).into_iter().next();
                    let before = lines_before_range(&path, w[0]).unwrap() as usize;
                    assert_eq!(
                        first.as_ref(),
                        lines.get(before).filter(|_| first.is_some())
                    );
                }
            }
        }
    }

    #[test]
    fn detects_each_magic() {
        let cases: [(&[u8], Compression); 6] = [
            (&[0x28, 0xB5, 0x2F, 0xFD, 0], Compression::Zstd),
            (&[0xFD, b'7', b'z', b'X', b'Z', 0, 0], Compression::Xz),
            (b"BZh91AY", Compression::Bzip2),
            (&[0x1F, 0x8B, 8], Compression::Gzip),
            (b"hello", Compression::None),
            (b"", Compression::None),
        ];
        for (head, expected) in cases {
            assert_eq!(Compression::detect(head), expected, "{head:?}");
        }
    }
}
