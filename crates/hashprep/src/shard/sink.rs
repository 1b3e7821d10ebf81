//! The file sink shards are written through. On Linux it writes with direct I/O (`O_DIRECT`)
//! where the filesystem takes it: a shard is written once, synced, and read much later, so its
//! gigabytes gain nothing from passing through the page cache, and copying them there was about
//! a tenth of the CPU time of a Reddit run (2.7x the tokens of its bodies). Elsewhere, and on
//! filesystems that refuse direct I/O (tmpfs), it writes through the page cache as usual.

use std::fs::File;
use std::io::{self, Write};

/// Direct I/O needs buffers, lengths and file offsets aligned to the device's logical block:
/// 4 KiB covers 512-byte and 4 KiB devices.
const ALIGN: usize = 4096;

/// Bytes gathered before a write (a multiple of `ALIGN`).
const BLOCK_BYTES: usize = 4 << 20;

/// A buffered writer over `file` that writes whole aligned blocks directly while it can. The
/// last partial block goes through the page cache on [`Write::flush`]: direct I/O is turned off
/// for the file then, so a flush loses nothing whatever follows it.
pub(crate) struct ShardSink {
    file: File,
    /// `BLOCK_BYTES` aligned bytes starting at `start`.
    buffer: Vec<u8>,
    start: usize,
    /// Bytes waiting in the buffer.
    len: usize,
    direct: bool,
}

impl ShardSink {
    pub(crate) fn new(file: File) -> Self {
        let direct = set_direct(&file, true);
        let buffer = vec![0; BLOCK_BYTES + ALIGN];
        let start = buffer.as_ptr().align_offset(ALIGN);
        Self {
            file,
            buffer,
            start,
            len: 0,
            direct,
        }
    }

    /// Whether writes still bypass the page cache.
    #[cfg(test)]
    fn is_direct(&self) -> bool {
        self.direct
    }

    /// The file, everything written flushed to it (not synced).
    ///
    /// # Errors
    /// The last write fails.
    pub(crate) fn into_file(mut self) -> io::Result<File> {
        self.flush()?;
        Ok(self.file)
    }

    /// Writes the buffered bytes: all of them when `all` or once direct I/O is off, else only
    /// whole aligned blocks (the rest moves to the front of the buffer).
    fn write_buffered(&mut self, all: bool) -> io::Result<()> {
        let mut done = 0;
        loop {
            let end = if self.direct {
                self.len / ALIGN * ALIGN
            } else {
                self.len
            };
            if done >= end {
                if all && done < self.len {
                    // A partial last block: the page cache takes it, direct I/O cannot.
                    self.stop_direct()?;
                    continue;
                }
                break;
            }
            let pending = &self.buffer[self.start + done..self.start + end];
            match self.file.write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    if self.direct && done % ALIGN != 0 {
                        self.stop_direct()?; // a short write left the file unaligned
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Some filesystems take the O_DIRECT flag and refuse the writes.
                Err(e) if self.direct && e.raw_os_error() == Some(EINVAL) => self.stop_direct()?,
                Err(e) => return Err(e),
            }
        }
        let region = self.start..self.start + self.len;
        self.buffer
            .copy_within(region.start + done..region.end, region.start);
        self.len -= done;
        Ok(())
    }

    fn stop_direct(&mut self) -> io::Result<()> {
        if self.direct && !set_direct(&self.file, false) {
            return Err(io::Error::other(
                "cannot turn off direct I/O on a shard file",
            ));
        }
        self.direct = false;
        Ok(())
    }
}

impl Write for ShardSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.len == BLOCK_BYTES {
            self.write_buffered(false)?;
        }
        let n = data.len().min(BLOCK_BYTES - self.len);
        let at = self.start + self.len;
        self.buffer[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_buffered(true)?;
        self.file.flush()
    }
}

#[cfg(target_os = "linux")]
const EINVAL: i32 = libc::EINVAL;
#[cfg(not(target_os = "linux"))]
const EINVAL: i32 = 22;

/// Turns direct I/O on or off for `file`; false when the filesystem refuses (or off Linux).
#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> bool {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL and F_SETFL on a descriptor `file` keeps open; no memory is passed.
    #[allow(unsafe_code)]
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return false;
        }
        let flags = if on {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        libc::fcntl(fd, libc::F_SETFL, flags) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_file: &File, on: bool) -> bool {
    !on
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ at every position, in writes of uneven sizes.
    fn write_pattern(sink: &mut ShardSink, total: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..total).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut at = 0;
        for size in [1usize, 4095, 3, 5 << 20, 8191, 100_000].iter().cycle() {
            if at == total {
                break;
            }
            let end = (at + size).min(total);
            sink.write_all(&data[at..end]).unwrap();
            at = end;
        }
        data
    }

    #[test]
    fn every_byte_arrives_in_order_across_blocks_and_a_partial_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard");
        let mut sink = ShardSink::new(File::create(&path).unwrap());
        let data = write_pattern(&mut sink, 3 * BLOCK_BYTES + 12_345);
        sink.into_file().unwrap().sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn writes_after_a_flush_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard");
        let mut sink = ShardSink::new(File::create(&path).unwrap());
        let mut data = write_pattern(&mut sink, BLOCK_BYTES + 77);
        sink.flush().unwrap();
        assert!(!sink.is_direct(), "a partial block turns direct I/O off");
        let more = write_pattern(&mut sink, 2 * BLOCK_BYTES + 5);
        data.extend(more);
        sink.into_file().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn an_empty_sink_writes_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard");
        ShardSink::new(File::create(&path).unwrap())
            .into_file()
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }
}
