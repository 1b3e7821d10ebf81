//! A tokenizer's `tokenizer.json` bytes: at hand, or being built by a thread started on
//! loading. GPT-2's are built from its ranks (14 ms); a run needs them only at its end, where
//! they are written beside the shards, so they are built while it encodes.

use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

pub(super) struct JsonBytes {
    bytes: OnceLock<Vec<u8>>,
    builder: Mutex<Option<JoinHandle<Vec<u8>>>>,
}

/// Runs the build kept in `build` (once).
fn run<F: FnOnce() -> Vec<u8>>(build: &Mutex<Option<F>>) -> Vec<u8> {
    let build = build.lock().expect("not poisoned").take();
    build.expect("built once")()
}

impl JsonBytes {
    pub(super) fn ready(bytes: Vec<u8>) -> Self {
        Self {
            bytes: OnceLock::from(bytes),
            builder: Mutex::new(None),
        }
    }

    /// The bytes `build` gives, built on a thread of their own (here, where none can start).
    pub(super) fn built_by(build: impl FnOnce() -> Vec<u8> + Send + 'static) -> Self {
        // A thread that fails to start drops what it was given: the build is shared.
        let build = Arc::new(Mutex::new(Some(build)));
        let on_thread = build.clone();
        let thread = std::thread::Builder::new().name("hashprep-json".into());
        match thread.spawn(move || run(&on_thread)) {
            Ok(handle) => Self {
                bytes: OnceLock::new(),
                builder: Mutex::new(Some(handle)),
            },
            Err(_) => Self::ready(run(&build)),
        }
    }

    pub(super) fn get(&self) -> &[u8] {
        self.bytes.get_or_init(|| {
            let handle = (self.builder.lock().expect("not poisoned").take())
                .expect("a builder until the bytes are set");
            handle.join().expect("building the bytes does not panic")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_bytes_are_the_builds_from_any_thread() {
        let json = Arc::new(JsonBytes::built_by(|| b"{}".to_vec()));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let json = json.clone();
                std::thread::spawn(move || json.get().to_vec())
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.join().unwrap(), b"{}");
        }
        assert_eq!(JsonBytes::ready(b"[]".to_vec()).get(), b"[]");
    }
}
