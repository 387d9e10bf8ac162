//! Cutting a PostgreSQL byte stream into messages without copying the ones
//! that pass through unchanged.
//!
//! A [`Sink`] sees every message header first and says whether it needs the
//! whole message ([`Verdict::Whole`], e.g. a Query to decide on) or lets it
//! stream ([`Verdict::Stream`], e.g. a DataRow: its bytes are forwarded as
//! they arrive, even across reads) or drops it as it streams
//! ([`Verdict::Skip`]). Only whole messages and split headers are ever
//! buffered. When every byte of a read passes unchanged, [`Scanner::run`]
//! returns `None` and the host leaves Envoy's buffer alone.

use crate::pg::codec::{Limits, PgError, Tag};

/// How the next message starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Type byte + length (every message after startup, both directions).
    Typed { frontend: bool },
    /// Length only: the client's first messages (StartupMessage,
    /// SSLRequest, GSSENCRequest, CancelRequest).
    Untyped,
    /// One byte: the server's answer to SSLRequest / GSSENCRequest.
    Single,
}

impl Framing {
    fn header_len(self) -> usize {
        match self {
            Framing::Typed { .. } => 5,
            Framing::Untyped => 4,
            Framing::Single => 1,
        }
    }

    /// `(type byte, whole message length)` from a complete header.
    fn parse(self, h: &[u8], limits: &Limits) -> Result<(Option<u8>, usize), PgError> {
        let len_of = |at: usize, tag: Tag| -> Result<usize, PgError> {
            let mut a = [0u8; 4];
            a.copy_from_slice(h.get(at..at + 4).ok_or(PgError::Malformed {
                tag,
                what: "header",
            })?);
            let len = i32::from_be_bytes(a);
            if len < 4 {
                return Err(PgError::ShortLength {
                    tag,
                    len: i64::from(len),
                });
            }
            usize::try_from(len).map_err(|_| PgError::Malformed {
                tag,
                what: "length",
            })
        };
        match self {
            Framing::Single => Ok((h.first().copied(), 1)),
            Framing::Untyped => {
                let tag = Tag(None);
                let len = len_of(0, tag)?;
                if len > limits.startup {
                    return Err(PgError::TooLong {
                        tag,
                        len,
                        max: limits.startup,
                    });
                }
                Ok((None, len))
            }
            Framing::Typed { frontend } => {
                let t = h.first().copied().unwrap_or(0);
                let tag = Tag(Some(t));
                if frontend && !crate::pg::codec::is_frontend_type(t) {
                    return Err(PgError::UnknownFrontendType(tag));
                }
                let len = len_of(1, tag)?;
                let max = if frontend {
                    limits.frontend(t)
                } else {
                    limits.backend(t)
                };
                if len > max {
                    return Err(PgError::TooLong { tag, len, max });
                }
                Ok((Some(t), len + 1))
            }
        }
    }
}

/// What to do with a message, decided from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward its bytes as they come.
    Stream,
    /// Drop its bytes as they come.
    Skip,
    /// Buffer it and hand it to [`Sink::frame`].
    Whole,
}

/// The consumer of one direction's messages.
pub trait Sink {
    /// How the next message starts.
    fn framing(&self) -> Framing;
    /// Stop reading this direction: the rest of the read is dropped.
    fn stopped(&self) -> bool;
    /// A message header: its type byte (none for untyped) and whole length.
    fn header(&mut self, tag: Option<u8>, len: usize) -> Verdict;
    /// A whole message: `None` forwards it unchanged, `Some(bytes)` replaces
    /// it (empty: dropped).
    fn frame(&mut self, frame: &[u8]) -> Option<Vec<u8>>;
}

/// The bytes to forward, built only when they differ from the read.
struct Out<'a> {
    data: &'a [u8],
    buf: Option<Vec<u8>>,
    /// Start of the run of read bytes not yet copied to `buf`.
    run: usize,
}

impl<'a> Out<'a> {
    fn new(data: &'a [u8]) -> Self {
        Out {
            data,
            buf: None,
            run: 0,
        }
    }

    /// Replace `data[start..end]` with `with`.
    fn splice(&mut self, start: usize, end: usize, with: &[u8]) {
        let data = self.data;
        let buf = self
            .buf
            .get_or_insert_with(|| Vec::with_capacity(data.len() + with.len()));
        buf.extend_from_slice(data.get(self.run..start).unwrap_or_default());
        buf.extend_from_slice(with);
        self.run = end;
    }

    fn finish(self) -> Option<Vec<u8>> {
        let mut buf = self.buf?;
        buf.extend_from_slice(self.data.get(self.run..).unwrap_or_default());
        Some(buf)
    }
}

/// One direction's framing state across reads.
#[derive(Debug, Default)]
pub struct Scanner {
    /// A split header, or a whole message being gathered.
    hold: Vec<u8>,
    /// `hold` is a message whose header was already judged `Whole`.
    gathering: Option<usize>,
    /// Bytes of a streamed (or skipped) message still to come.
    rest: usize,
    rest_keep: bool,
    limits: Limits,
}

impl Scanner {
    pub fn new() -> Self {
        Scanner::default()
    }

    /// How many leading bytes of `data` finish a message already partly
    /// forwarded (`keep`: they must be forwarded too, so the peer's framing
    /// stays intact), consuming them.
    pub fn finish_partial(&mut self, data: &[u8]) -> (usize, bool) {
        let n = self.rest.min(data.len());
        self.rest -= n;
        (n, self.rest_keep)
    }

    /// Whether a streamed message is still partly forwarded.
    pub fn mid_message(&self) -> bool {
        self.rest > 0
    }

    /// Bytes buffered, waiting for the rest of a message.
    pub fn held(&self) -> usize {
        self.hold.len()
    }

    /// Runs one read through `sink`. `Ok(None)`: forward the read as is.
    pub fn run(&mut self, data: &[u8], sink: &mut dyn Sink) -> Result<Option<Vec<u8>>, PgError> {
        let mut out = Out::new(data);
        let mut i = 0usize;
        let len = data.len();
        while i < len {
            let remaining = len - i;
            if self.rest > 0 {
                let n = self.rest.min(remaining);
                if !self.rest_keep {
                    out.splice(i, i + n, &[]);
                }
                self.rest -= n;
                i += n;
                continue;
            }
            if sink.stopped() {
                out.splice(i, len, &[]);
                break;
            }
            // A message being gathered across reads.
            if let Some(total) = self.gathering {
                let n = (total - self.hold.len()).min(remaining);
                self.hold
                    .extend_from_slice(data.get(i..i + n).unwrap_or_default());
                out.splice(i, i + n, &[]);
                i += n;
                if self.hold.len() == total {
                    self.gathering = None;
                    let frame = std::mem::take(&mut self.hold);
                    match sink.frame(&frame) {
                        None => out.splice(i, i, &frame),
                        Some(b) => out.splice(i, i, &b),
                    }
                }
                continue;
            }
            let framing = sink.framing();
            let hlen = framing.header_len();
            if !self.hold.is_empty() || remaining < hlen {
                // A header split across reads.
                let n = (hlen - self.hold.len()).min(remaining);
                self.hold
                    .extend_from_slice(data.get(i..i + n).unwrap_or_default());
                out.splice(i, i + n, &[]);
                i += n;
                if self.hold.len() < hlen {
                    break;
                }
                let (tag, total) = framing.parse(&self.hold, &self.limits)?;
                match sink.header(tag, total) {
                    Verdict::Stream => {
                        let h = std::mem::take(&mut self.hold);
                        out.splice(i, i, &h);
                        self.rest = total - hlen;
                        self.rest_keep = true;
                    }
                    Verdict::Skip => {
                        self.hold.clear();
                        self.rest = total - hlen;
                        self.rest_keep = false;
                    }
                    Verdict::Whole => {
                        if total == hlen {
                            let frame = std::mem::take(&mut self.hold);
                            match sink.frame(&frame) {
                                None => out.splice(i, i, &frame),
                                Some(b) => out.splice(i, i, &b),
                            }
                        } else {
                            self.gathering = Some(total);
                        }
                    }
                }
                continue;
            }
            let (tag, total) =
                framing.parse(data.get(i..i + hlen).unwrap_or_default(), &self.limits)?;
            match sink.header(tag, total) {
                Verdict::Stream => {
                    let n = total.min(remaining);
                    i += n;
                    self.rest = total - n;
                    self.rest_keep = true;
                }
                Verdict::Skip => {
                    let n = total.min(remaining);
                    out.splice(i, i + n, &[]);
                    i += n;
                    self.rest = total - n;
                    self.rest_keep = false;
                }
                Verdict::Whole => {
                    if let Some(frame) = data.get(i..i + total) {
                        if let Some(b) = sink.frame(frame) {
                            out.splice(i, i + total, &b);
                        }
                        i += total;
                    } else {
                        self.hold
                            .extend_from_slice(data.get(i..).unwrap_or_default());
                        out.splice(i, len, &[]);
                        self.gathering = Some(total);
                        i = len;
                    }
                }
            }
        }
        Ok(out.finish())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::pg::codec::{BackendMessage, FrontendMessage};

    /// Streams DataRows, drops ParseComplete, rewrites CommandComplete.
    struct Test {
        seen: Vec<u8>,
    }

    impl Sink for Test {
        fn framing(&self) -> Framing {
            Framing::Typed { frontend: false }
        }
        fn stopped(&self) -> bool {
            false
        }
        fn header(&mut self, tag: Option<u8>, _len: usize) -> Verdict {
            let t = tag.unwrap();
            self.seen.push(t);
            match t {
                b'D' => Verdict::Stream,
                b'1' => Verdict::Skip,
                _ => Verdict::Whole,
            }
        }
        fn frame(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
            if frame[0] == b'C' {
                Some(BackendMessage::CommandComplete { tag: "X".into() }.encode())
            } else {
                None
            }
        }
    }

    fn stream() -> (Vec<u8>, Vec<u8>) {
        let mut input = Vec::new();
        let mut want = Vec::new();
        let row = BackendMessage::DataRow {
            values: vec![Some(vec![7u8; 300]), None],
        }
        .encode();
        input.extend(BackendMessage::ParseComplete.encode());
        for _ in 0..3 {
            input.extend(&row);
            want.extend(&row);
        }
        input.extend(
            BackendMessage::CommandComplete {
                tag: "SELECT 3".into(),
            }
            .encode(),
        );
        want.extend(BackendMessage::CommandComplete { tag: "X".into() }.encode());
        let rfq = BackendMessage::ReadyForQuery { status: b'I' }.encode();
        input.extend(&rfq);
        want.extend(&rfq);
        (input, want)
    }

    #[test]
    fn any_split_gives_the_same_output() {
        let (input, want) = stream();
        for chunk in [1usize, 2, 3, 4, 5, 6, 7, 50, 301, 1000, input.len()] {
            let mut s = Scanner::new();
            let mut sink = Test { seen: Vec::new() };
            let mut got = Vec::new();
            for c in input.chunks(chunk) {
                match s.run(c, &mut sink).unwrap() {
                    None => got.extend(c),
                    Some(b) => got.extend(b),
                }
            }
            assert_eq!(got, want, "chunk {chunk}");
            assert_eq!(sink.seen, b"1DDDCZ", "chunk {chunk}");
            assert_eq!(s.held(), 0);
        }
    }

    #[test]
    fn untouched_reads_are_not_copied() {
        let row = BackendMessage::DataRow {
            values: vec![Some(b"abc".to_vec())],
        }
        .encode();
        let mut s = Scanner::new();
        let mut sink = Test { seen: Vec::new() };
        let mut two = row.clone();
        two.extend(&row);
        assert_eq!(s.run(&two, &mut sink).unwrap(), None);
        // A DataRow split mid-way streams too.
        assert_eq!(s.run(&row[..7], &mut sink).unwrap(), None);
        assert_eq!(s.run(&row[7..], &mut sink).unwrap(), None);
    }

    #[test]
    fn bad_lengths_are_errors() {
        let mut s = Scanner::new();
        let mut sink = Test { seen: Vec::new() };
        assert!(s.run(b"D\0\0\0\x02", &mut sink).is_err());
        let mut s = Scanner::new();
        assert!(s.run(b"D\x7f\xff\xff\xff", &mut sink).is_err());
        struct Front;
        impl Sink for Front {
            fn framing(&self) -> Framing {
                Framing::Typed { frontend: true }
            }
            fn stopped(&self) -> bool {
                false
            }
            fn header(&mut self, _: Option<u8>, _: usize) -> Verdict {
                Verdict::Whole
            }
            fn frame(&mut self, _: &[u8]) -> Option<Vec<u8>> {
                None
            }
        }
        let mut s = Scanner::new();
        assert!(s.run(b"GET / HTTP/1.1\r\n", &mut Front).is_err());
        let mut s = Scanner::new();
        let q = FrontendMessage::Query {
            sql: "select 1".into(),
        }
        .encode();
        assert_eq!(s.run(&q, &mut Front).unwrap(), None);
    }
}
