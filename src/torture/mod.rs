//! The parts of `faultline torture` beyond running a matrix (`torture_cmd.rs`): the typed summary
//! torture.json with its junit.xml and index.html views (`summary.rs`), the assignment of cells to
//! shards and the matrix's identity (`shard.rs`, pure), and merging shards (`merge.rs`).

pub mod merge;
pub mod shard;
pub mod summary;
