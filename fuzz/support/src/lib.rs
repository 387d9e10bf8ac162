//! Shared pieces of Pinhole's fuzz targets and of `seedgen`, which writes
//! their seed corpora: input formats, the fake PostgreSQL authority and the
//! session harness, fixed JWT keys, the example policies and a reference
//! SSE parser.
//!
//! Everything here is deterministic: a crash found by a target reproduces
//! from its input file alone.

pub mod jwt;
pub mod mcp;
pub mod pg;
pub mod policies;
pub mod scan;
pub mod sse;

/// Reads an input front to back; running out yields zeros / empty slices,
/// so every byte string is a valid input.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let r = self.data;
        self.data = &[];
        r
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Cuts `len` bytes into reads whose sizes come from `sizes` (cycled; a
/// zero size means "the rest"). Empty `sizes`: one read.
pub fn splits(len: usize, sizes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < len {
        let n = match sizes.get(i % sizes.len().max(1)) {
            None | Some(0) => len - at,
            Some(&s) => usize::from(s),
        };
        let end = (at + n).min(len);
        out.push(at..end);
        at = end;
        i += 1;
    }
    out
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
