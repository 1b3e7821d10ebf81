//! Helpers both crates use by name: the fixed integer mixer behind tables and seeds, and file
//! writes that are atomic (a file under its final name is always complete).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use tempfile::TempPath;

use crate::error::{Error, Result};

/// SplitMix64 finalizer: a bijective 64-bit mixer. Part of the table format (`random` and
/// `bigram` tables are defined by it, see `schemas/table.md`), and the trainer derives its
/// per-step dropout seeds from it.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Serde default of settings that are 1 unless given (`#[serde(default = "crate::util::one")]`).
/// The value of `all` called `name` (by `name_of`), or an error naming the `setting` and the
/// names there are: how every option's value is looked up by name, in the library and from
/// Python alike.
pub(crate) fn by_name<T: Copy>(
    setting: &'static str,
    name: &str,
    all: &[T],
    name_of: impl Fn(T) -> &'static str,
) -> crate::Result<T> {
    all.iter()
        .copied()
        .find(|&v| name_of(v) == name)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|&v| name_of(v)).collect();
            crate::Error::setting(setting, format!("{name:?} is none of {}", names.join(", ")))
        })
}

pub(crate) fn one<T: From<u8>>() -> T {
    T::from(1)
}

/// Serde `skip_serializing_if` of such settings: absent when 1, so files and fingerprints
/// written before the setting existed stay the same.
pub(crate) fn is_one<T: From<u8> + PartialEq>(value: &T) -> bool {
    *value == T::from(1)
}

/// Maps `file` read-only; with `populate`, all its pages are faulted in at once (for a file
/// read whole). Only for files nobody truncates or rewrites while they are mapped: shards once
/// renamed to their final name, spill files once phase 1 has written them.
pub(crate) fn map_file(file: &File, populate: bool) -> std::io::Result<memmap2::Mmap> {
    let mut options = memmap2::MmapOptions::new();
    if populate {
        options.populate();
    }
    // SAFETY: the files mapped are not changed while mapped (above): a file truncated
    // underneath would fault, as with pyarrow.memory_map.
    #[allow(unsafe_code)]
    unsafe {
        options.map(file)
    }
}

/// Starts writing `file`'s dirty pages back to disk without waiting for them (Linux; elsewhere
/// nothing), so that a later sync finds little left to write. A failure is left to that sync.
pub(crate) fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; the call only schedules I/O on it.
        #[allow(unsafe_code)]
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// What a caught panic says (its `&str` or `String` payload; empty otherwise).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Creates the output directory `dir` (and its parents) unless it exists.
///
/// # Errors
/// `dir` names an existing file (bad input), or the directory cannot be created.
pub fn create_output_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Output {
            dir: dir.to_owned(),
            problem: crate::error::OutputProblem::NotADirectory,
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// Writes `bytes` to `path` atomically: to a unique temporary file beside it, flushed to
/// disk, then renamed over `path`.
///
/// # Errors
/// Any I/O failure; `path` is then untouched and the temporary file removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let (mut file, temp) = temp_file_beside(path)?;
    file.write_all(bytes).map_err(|e| Error::io(&temp, e))?;
    file.sync_all().map_err(|e| Error::io(&temp, e))?;
    drop(file);
    persist(temp, path)
}

/// A new file with a unique name beside `path` (`.NAME.XXXXXX.tmp`), deleted when the
/// returned [`TempPath`] drops unless [`persist`]ed. Leftovers of a killed process end in
/// `.tmp`, which is how tokenize output directories recognize them.
pub(crate) fn temp_file_beside(path: &Path) -> Result<(File, TempPath)> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = output_builder()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))?;
    Ok(temp.into_parts())
}

/// A [`tempfile::Builder`] for outputs: files made with it get the mode a new file gets (0666
/// less the umask: 0644 under umask 022), not tempfile's 0600, which survives the rename and
/// would leave outputs nobody else can read.
pub fn output_builder<'a, 'b>() -> tempfile::Builder<'a, 'b> {
    builder_with_mode(0o666)
}

/// [`output_builder`] for a directory written under a temporary name and renamed when complete
/// (0777 less the umask).
pub fn output_dir_builder<'a, 'b>() -> tempfile::Builder<'a, 'b> {
    builder_with_mode(0o777)
}

fn builder_with_mode<'a, 'b>(mode: u32) -> tempfile::Builder<'a, 'b> {
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder
}

/// Renames a complete temporary file to `path` and syncs the directory, so the rename
/// survives a crash.
///
/// # Errors
/// The rename fails.
pub(crate) fn persist(temp: TempPath, path: &Path) -> Result<()> {
    temp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_parent(path);
    Ok(())
}

/// Renames `from` to `to` (a file, or a directory written completely under a temporary name)
/// and syncs the parent directory so the rename survives a crash.
///
/// # Errors
/// The rename fails.
pub fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    sync_parent(to);
    Ok(())
}

fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
}

/// `message` with every setting named in backticks (`` `eos_token` ``) that `is_flag` knows as
/// a command-line option (`eos-token`) written as that option (`--eos-token`). Library errors
/// name settings as their programs' users set them in configs; command-line programs print
/// them as flags.
pub fn settings_as_flags(message: &str, is_flag: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find('`') {
        let Some(len) = rest[open + 1..].find('`') else {
            break;
        };
        let name = &rest[open + 1..open + 1 + len];
        let flag = name.replace('_', "-");
        out.push_str(&rest[..open]);
        if !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            && is_flag(&flag)
        {
            out.push_str("--");
            out.push_str(&flag);
        } else {
            out.push_str(&rest[open..open + len + 2]);
        }
        rest = &rest[open + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_is_found_by_the_name_it_writes_and_others_are_refused_by_setting() {
        use crate::{ExportTarget, OnError, SpecialTokens, TableFormat};
        for v in OnError::ALL {
            assert_eq!(OnError::from_name(v.name()).unwrap(), v);
        }
        for v in SpecialTokens::ALL {
            assert_eq!(SpecialTokens::from_name(v.name()).unwrap(), v);
        }
        for v in TableFormat::ALL {
            assert_eq!(TableFormat::from_name(v.name()).unwrap(), v);
        }
        for v in ExportTarget::ALL {
            assert_eq!(ExportTarget::from_name(v.name()).unwrap(), v);
        }
        let err = ExportTarget::from_name("onnx").unwrap_err();
        assert!(err.is_bad_input());
        assert_eq!(
            err.to_string(),
            "`to` \"onnx\" is none of hf-deepseek-v4, npy"
        );
    }

    #[test]
    fn settings_become_flags_only_when_the_program_has_them() {
        let is_flag = |f: &str| ["eos-token", "force"].contains(&f);
        assert_eq!(
            settings_as_flags(
                "name one with `eos_token`, `force` or `no_eos`; device `cuda:9`",
                is_flag
            ),
            "name one with --eos-token, --force or `no_eos`; device `cuda:9`"
        );
        assert_eq!(
            settings_as_flags("an odd ` quote", is_flag),
            "an odd ` quote"
        );
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }
}
