//! The tokenize engine: a reader thread cuts the corpus into chunks, a pool encodes them in
//! parallel, and the calling thread writes them in input order into shards, counts and the
//! resume journal. `pipeline::tokenize` wires it to inputs, tasks and the manifest.

mod chunks;
mod writer;

pub(crate) use chunks::{read_chunks, ChunkEncoder, Message};
pub(crate) use writer::{write_in_order, OutputWriter};
