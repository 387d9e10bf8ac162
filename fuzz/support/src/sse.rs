//! A reference `text/event-stream` parser (WHATWG HTML, "Event stream
//! interpretation"), written independently of the filter's, to check what a
//! client would read from the filter's output.

/// The `data` of every event a client would dispatch from `stream`, in
/// order. Unlike a browser, an event left open at the end of the stream is
/// dispatched too (the filter checks those as well, so this is the stricter
/// reading), and events without data are kept (as `None`).
pub fn events(stream: &[u8]) -> Vec<Option<Vec<u8>>> {
    let stream = stream.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(stream);
    let mut out = Vec::new();
    let mut data: Option<Vec<u8>> = None;
    let mut open = false;
    let mut i = 0;
    while i <= stream.len() {
        // One line: up to CRLF, LF or CR (or the end).
        let rest = stream.get(i..).unwrap_or_default();
        let (line, next) = match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(p) => {
                let crlf = rest.get(p) == Some(&b'\r') && rest.get(p + 1) == Some(&b'\n');
                (&rest[..p], i + p + if crlf { 2 } else { 1 })
            }
            None => {
                if rest.is_empty() {
                    break;
                }
                (rest, stream.len() + 1)
            }
        };
        i = next;
        if line.is_empty() {
            if open {
                out.push(data.take());
            }
            open = false;
            continue;
        }
        open = true;
        if line.first() == Some(&b':') {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            match &mut data {
                None => data = Some(value.to_vec()),
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
            }
        }
    }
    if open {
        out.push(data.take());
    }
    out
}
