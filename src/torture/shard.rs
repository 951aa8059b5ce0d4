//! Which cells of a torture matrix a shard runs, and the matrix's identity. Pure: no IO, no clock.
//!
//! The assignment function: the matrix is expanded into its list of cells in a fixed order (seeds
//! outermost, then workloads, then nemesis mixes, as listed; then the scenarios in file-name
//! order), numbered from 0; cell `i` belongs to shard `K/N` when `i mod N == K - 1`. It depends on
//! nothing but that list, so the same matrix gives every machine the same cells, and round-robin
//! over the seeds-outermost order gives each shard a share of every seed (shards stay within one
//! cell of each other in size).
//!
//! The identity of a matrix is a hash of the expanded list (every cell's name and `faultline test`
//! arguments, in order): two shards ran the same matrix if and only if they agree on it (up to a
//! 64-bit hash collision, which no accident produces in practice). It is FNV-1a 64 over a
//! length-prefixed encoding, written out here because it must never change with a Rust version or
//! a crate's.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `--shard K/N`: the K-th (1-based) of N shares of a matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Shard {
    /// 1 ..= count.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether cell `matrix_index` of the expanded matrix is this shard's (the assignment function).
    pub fn owns(self, matrix_index: usize) -> bool {
        matrix_index % self.count as usize == (self.index - 1) as usize
    }

    /// The matrix indices this shard runs, of a matrix of `n_cells` cells, in matrix order.
    pub fn cell_indices(self, n_cells: usize) -> Vec<usize> {
        (0..n_cells).filter(|&i| self.owns(i)).collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let (k, n) = text.split_once('/').ok_or_else(|| format!("`{text}` is not K/N (e.g. 2/4)"))?;
        let index: u32 = k.trim().parse().map_err(|_| format!("`{k}` in `{text}` is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| format!("`{n}` in `{text}` is not a number"))?;
        if count == 0 || index == 0 || index > count {
            return Err(format!("`{text}`: K/N needs 1 <= K <= N"));
        }
        Ok(Shard { index, count })
    }
}

/// What a matrix is, as recorded in torture.json: the hash of its expanded cell list and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixIdentity {
    /// `fnv1a64:` and 16 hex digits.
    pub hash: String,
    /// Cells in the whole matrix (all shards together).
    pub cells: usize,
}

/// The identity of a matrix given its expanded cells, each a name and its `faultline test` arguments.
pub fn matrix_identity<'a>(cells: impl IntoIterator<Item = (&'a str, &'a [String])>) -> MatrixIdentity {
    let mut hash = Fnv1a64::new();
    let mut n_cells = 0;
    for (name, args) in cells {
        n_cells += 1;
        hash.string(name);
        hash.bytes(&(args.len() as u64).to_le_bytes());
        for arg in args {
            hash.string(arg);
        }
    }
    MatrixIdentity { hash: format!("fnv1a64:{:016x}", hash.0), cells: n_cells }
}

struct Fnv1a64(u64);

impl Fnv1a64 {
    fn new() -> Fnv1a64 {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Length first, so ("ab", "c") and ("a", "bc") differ.
    fn string(&mut self, text: &str) {
        self.bytes(&(text.len() as u64).to_le_bytes());
        self.bytes(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(text: &str) -> Shard {
        text.parse().unwrap()
    }

    #[test]
    fn shards_split_a_matrix_into_disjoint_round_robin_shares_that_cover_it() {
        for n_cells in [0, 1, 5, 7, 16] {
            for count in 1..=6 {
                let mut seen = vec![0; n_cells];
                for index in 1..=count {
                    let indices = Shard { index, count }.cell_indices(n_cells);
                    assert!(indices.len().abs_diff(n_cells / count as usize) <= 1);
                    for i in indices {
                        seen[i] += 1;
                    }
                }
                assert!(seen.iter().all(|&times| times == 1), "{n_cells} cells, {count} shards: {seen:?}");
            }
        }
        assert_eq!(shard("1/3").cell_indices(8), [0, 3, 6]);
        assert_eq!(shard("3/3").cell_indices(8), [2, 5]);
        assert_eq!(shard("1/1").cell_indices(3), [0, 1, 2]);
    }

    #[test]
    fn shard_syntax_is_k_of_n_with_k_from_one() {
        assert_eq!(shard("2/4"), Shard { index: 2, count: 4 });
        assert_eq!(shard("2/4").to_string(), "2/4");
        for bad in ["0/2", "3/2", "1/0", "2", "a/2", "1/b", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_matrix_identity_is_a_fixed_function_of_names_and_arguments_in_order() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = args(&["--seed", "1"]);
        let b = args(&["--seed", "2"]);
        let id = matrix_identity([("x", &a[..]), ("y", &b[..])]);
        assert_eq!(id.cells, 2);
        // Pinned (cross-checked with an independent FNV-1a in Python): the same on every machine and
        // with every Rust version.
        assert_eq!(id, matrix_identity([("x", &a[..]), ("y", &b[..])]));
        assert_eq!(matrix_identity([]).hash, "fnv1a64:cbf29ce484222325");
        assert_eq!(id.hash, "fnv1a64:3007a1d1bd30330d");
        assert_ne!(id, matrix_identity([("y", &b[..]), ("x", &a[..])]), "order matters");
        assert_ne!(id, matrix_identity([("x", &b[..]), ("y", &a[..])]), "arguments matter");
        let joined = args(&["--seed1"]);
        assert_ne!(matrix_identity([("x", &a[..])]), matrix_identity([("x", &joined[..])]));
    }
}
