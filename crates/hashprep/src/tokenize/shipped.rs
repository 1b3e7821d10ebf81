//! The check of the data the fast path ships in the binary (GPT-2's ranks and merges, the first
//! plane of common character classes) against what the libraries it stands for give.

/// Asserts that `shipped` (zstd-compressed, `file` under `src/tokenize/`) holds `expected`, what
/// `source` gives; with the environment variable `rewrite_with` set, `file` is first rewritten.
pub(crate) fn check(shipped: &[u8], expected: &[u8], file: &str, source: &str, rewrite_with: &str) {
    if std::env::var_os(rewrite_with).is_some() {
        let path = format!("{}/src/tokenize/{file}", env!("CARGO_MANIFEST_DIR"));
        std::fs::write(path, zstd::encode_all(expected, 19).unwrap()).unwrap();
    }
    assert!(
        zstd::decode_all(shipped).unwrap() == expected,
        "{file} is not {source}: rerun with {rewrite_with}=1 (and build again)"
    );
}
