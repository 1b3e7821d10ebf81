//! End-to-end tests of `hashtrain` on real text: the shipped Wikitext-103 validation split
//! (training) and test split (validation), through a word-level vocabulary. Small models, CPU.

mod cli;
mod common;
mod cuda_link;
mod finetune;
mod integrity;
mod kinds;
mod learning;
mod pipelines;
mod precision;
mod resume;
mod seq2seq;
mod sweep;
