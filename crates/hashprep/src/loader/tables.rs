//! The routing tables a loader routes with, each file read, checked and fingerprinted once,
//! and the handles by which a consumer finds a table layer's routes in every batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::integrity::fingerprint_bytes;
use crate::table::{Method, RoutingTable};

/// Table files opened once. Loaders over several tokenize outputs of one tokenizer (training
/// and validation data) share one set; files with the same bytes share their routes.
#[derive(Debug, Clone, Default)]
pub struct TableSet {
    files: Vec<TableFile>,
}

#[derive(Debug, Clone)]
struct TableFile {
    path: PathBuf,
    fingerprint: String,
    /// The file's bytes: part of a loader state's identity.
    bytes: Arc<[u8]>,
    table: Arc<RoutingTable>,
    /// Index of the first file with the same bytes (itself when it is the first).
    same_as: usize,
}

impl TableSet {
    /// Reads every file of `paths` (Arrow or `.npy` tables).
    ///
    /// # Errors
    /// A file that cannot be read or is not a table, named.
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files: Vec<TableFile> = Vec::with_capacity(paths.len());
        for path in paths {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let fingerprint = fingerprint_bytes(&bytes);
            let file = match files.iter().position(|f| f.fingerprint == fingerprint) {
                Some(first) => TableFile {
                    path: path.clone(),
                    fingerprint,
                    bytes: files[first].bytes.clone(),
                    table: files[first].table.clone(),
                    same_as: first,
                },
                None => TableFile {
                    path: path.clone(),
                    fingerprint,
                    bytes: Arc::from(bytes.as_slice()),
                    table: Arc::new(RoutingTable::from_bytes(path, bytes)?),
                    same_as: files.len(),
                },
            };
            files.push(file);
        }
        Ok(Self { files })
    }

    /// The files, in the order given.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// The fingerprint (`blake3:` of the bytes) of the file at `index`, in the order given.
    pub(crate) fn fingerprint(&self, index: usize) -> &str {
        &self.files[index].fingerprint
    }

    /// The fingerprint (`blake3:` of the bytes) of each file, in the order given.
    pub fn fingerprints(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|f| f.fingerprint.as_str())
    }

    /// The table read from `path`, one of the set's files.
    pub fn table(&self, path: &Path) -> Option<&RoutingTable> {
        self.position(path).map(|i| &*self.files[i].table)
    }

    fn position(&self, path: &Path) -> Option<usize> {
        self.files.iter().position(|f| f.path == path)
    }

    /// The distinct tables (by bytes), in the order given: each contributes its routes.
    pub(crate) fn distinct(&self) -> impl Iterator<Item = (usize, &Arc<RoutingTable>)> {
        self.files
            .iter()
            .enumerate()
            .filter(|(i, f)| f.same_as == *i)
            .map(|(i, f)| (i, &f.table))
    }

    /// The bytes of every file in order: part of a loader state's identity.
    pub(crate) fn contents(&self) -> impl Iterator<Item = &[u8]> {
        self.files.iter().map(|f| &*f.bytes)
    }

    /// The file `same_as` index of `path`, for looking up routes.
    pub(crate) fn first_with_bytes_of(&self, path: &Path) -> Option<usize> {
        self.position(path).map(|i| self.files[i].same_as)
    }
}

/// Which route of a batch a consumer reads: returned by [`Loader::route_handles`], used with
/// [`Batch::route`]. Valid for the batches of the loader that handed it out (and of loaders
/// over other data with the same tables, in the same order).
///
/// [`Loader::route_handles`]: super::Loader::route_handles
/// [`Batch::route`]: super::Batch::route
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RouteHandle(pub(crate) usize);

impl RouteHandle {
    /// The route's position in [`Batch::routes`](super::Batch::routes).
    pub fn index(self) -> usize {
        self.0
    }
}

/// What one route of every batch routes: returned by [`Loader::routes`](super::Loader::routes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteInfo {
    /// How to find it in a batch.
    pub handle: RouteHandle,
    /// The table file (the first given, when several files have the same bytes).
    pub table: PathBuf,
    /// How the table was built.
    pub method: Method,
    /// Layer of the table.
    pub layer: u32,
    /// Hash within the layer (MultiHash).
    pub hash: u32,
    /// Number of experts K.
    pub experts: u32,
    /// Experts per token k.
    pub top_k: u32,
    /// The table file's fingerprint (`blake3:` of its bytes).
    pub fingerprint: String,
}
