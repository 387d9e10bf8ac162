//! Server → client PostgreSQL messages: `decode_backend`, `Framer` and the
//! zero-copy `Scanner` over arbitrary read boundaries.
//!
//! Input: `flags:u8 nsizes:u8 sizes[nsizes % 8] stream`. Flag bit 0: the
//! stream starts with the one-byte answer to an SSLRequest.
//!
//! Checked: no panic; every decoded message re-encodes to a frame that
//! decodes back to itself (strings the decoder read lossily may change
//! bytes, so byte equality is not required); `Framer` cuts the same frames
//! whatever the reads, and the frames the decoder accepted are among them;
//! the `Scanner`'s output does not depend on the reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinhole_filter::pg::codec::{decode_backend, BackendPhase, Direction, Framer};
use pinhole_filter::pg::stream::Framing;
use pinhole_fuzz_support::{scan, splits, Bytes};

fn walk(mut data: &[u8], mut phase: BackendPhase) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Ok(Some((m, n))) = decode_backend(data, phase) {
        assert!(n > 0 && n <= data.len(), "consumed {n} of {}", data.len());
        let frame = &data[..n];
        let enc = m.encode();
        match decode_backend(&enc, phase) {
            Ok(Some((again, k))) => {
                assert_eq!(again, m, "{m:?} does not survive re-encoding");
                assert_eq!(k, enc.len());
            }
            other => panic!("{m:?} re-encoded does not decode: {other:?}"),
        }
        if n > 1 {
            match decode_backend(&frame[..n - 1], phase) {
                Ok(None) | Err(_) => {}
                Ok(Some((m2, _))) => panic!("a truncated frame decoded as {m2:?}"),
            }
        }
        frames.push(frame.to_vec());
        phase = BackendPhase::Normal;
        data = &data[n..];
    }
    frames
}

fn framer(data: &[u8], sizes: &[u8], phase: BackendPhase) -> (Vec<Vec<u8>>, bool) {
    let mut f = Framer::new(Direction::Backend(phase));
    let mut frames = Vec::new();
    for r in splits(data.len(), sizes) {
        f.push(&data[r]);
        loop {
            match f.next_frame() {
                Ok(Some(fr)) => frames.push(fr),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

fuzz_target!(|input: &[u8]| {
    let mut b = Bytes::new(input);
    let flags = b.u8();
    let n = usize::from(b.u8() % 8);
    let sizes = b.take(n).to_vec();
    let data = b.rest();

    let _ = decode_backend(data, BackendPhase::EncryptionResponse);
    let phase = if flags & 1 == 1 {
        BackendPhase::EncryptionResponse
    } else {
        BackendPhase::Normal
    };
    let decoded = walk(data, phase);

    let (whole, whole_err) = framer(data, &[], phase);
    let (cut, cut_err) = framer(data, &sizes, phase);
    assert_eq!(whole_err, cut_err, "framing errors depend on the reads");
    if !whole_err {
        assert_eq!(whole, cut, "frames depend on the reads");
    }
    assert!(
        whole.len() >= decoded.len() && whole[..decoded.len()] == decoded[..],
        "the framer and the decoder disagree"
    );

    let first = if phase == BackendPhase::EncryptionResponse {
        Framing::Single
    } else {
        Framing::Typed { frontend: false }
    };
    let a = scan::scan(data, &[], first, false, flags >> 1);
    let c = scan::scan(data, &sizes, first, false, flags >> 1);
    assert_eq!(
        a.is_some(),
        c.is_some(),
        "scanner errors depend on the reads"
    );
    if let (Some(a), Some(c)) = (a, c) {
        assert_eq!(a, c, "scanner output depends on the reads");
    }
});
