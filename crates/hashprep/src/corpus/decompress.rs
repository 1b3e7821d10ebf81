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

#[cfg(test)]
mod tests {
    use super::*;

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
