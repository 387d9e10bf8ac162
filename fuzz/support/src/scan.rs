//! A [`Sink`] for driving `pg::stream::Scanner` from fuzz input: its
//! verdicts and rewrites are a pure function of each message, so the
//! scanner's output must not depend on how the stream is cut into reads.

use pinhole_filter::pg::stream::{Framing, Scanner, Sink, Verdict};

pub struct TestSink {
    /// How the first message starts; every later one is typed.
    pub first: Framing,
    pub frontend: bool,
    pub seen: usize,
    /// Mixed into the verdicts, so the fuzzer explores them.
    pub salt: u8,
}

impl TestSink {
    pub fn new(first: Framing, frontend: bool, salt: u8) -> Self {
        TestSink {
            first,
            frontend,
            seen: 0,
            salt,
        }
    }
}

impl Sink for TestSink {
    fn framing(&self) -> Framing {
        if self.seen == 0 {
            self.first
        } else {
            Framing::Typed {
                frontend: self.frontend,
            }
        }
    }

    fn stopped(&self) -> bool {
        false
    }

    fn header(&mut self, tag: Option<u8>, len: usize) -> Verdict {
        self.seen += 1;
        let h = tag.unwrap_or(0) ^ (len as u8) ^ self.salt;
        match h % 3 {
            0 => Verdict::Stream,
            1 => Verdict::Skip,
            _ => Verdict::Whole,
        }
    }

    fn frame(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        match frame.len() % 3 {
            0 => None,
            1 => Some(Vec::new()),
            _ => Some(frame.iter().rev().copied().collect()),
        }
    }
}

/// Runs `data` through a fresh scanner in reads cut by `sizes`: the bytes
/// passed on, or `None` on an error.
pub fn scan(
    data: &[u8],
    sizes: &[u8],
    first: Framing,
    frontend: bool,
    salt: u8,
) -> Option<Vec<u8>> {
    let mut s = Scanner::new();
    let mut sink = TestSink::new(first, frontend, salt);
    let mut out = Vec::new();
    for r in crate::splits(data.len(), sizes) {
        let piece = &data[r];
        match s.run(piece, &mut sink) {
            Ok(None) => out.extend_from_slice(piece),
            Ok(Some(b)) => out.extend(b),
            Err(_) => return None,
        }
    }
    Some(out)
}
