//! Client → server PostgreSQL messages: `decode_frontend` in both phases,
//! `Framer` and the zero-copy `Scanner` over arbitrary read boundaries.
//!
//! Input: `flags:u8 nsizes:u8 sizes[nsizes % 8] stream`. Flag bit 0: the
//! stream starts after the startup (typed messages) instead of before it.
//!
//! Checked: no panic; every decoded message re-encodes to exactly the bytes
//! it was decoded from and decodes back to itself; the phase follows
//! `next_phase`; `Framer` cuts the same frames whatever the reads, and the
//! frames the decoder accepted are among them; the `Scanner`'s output does
//! not depend on the reads either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinhole_filter::pg::codec::{decode_frontend, Direction, Framer, FrontendPhase};
use pinhole_filter::pg::stream::Framing;
use pinhole_fuzz_support::{scan, splits, Bytes};

/// The decoder's walk over `data` from `phase`: the frames it accepted.
fn walk(mut data: &[u8], mut phase: FrontendPhase) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Ok(Some((m, n))) = decode_frontend(data, phase) {
        assert!(n > 0 && n <= data.len(), "consumed {n} of {}", data.len());
        let frame = &data[..n];
        let enc = m.encode();
        assert_eq!(enc, frame, "re-encoding {m:?} changed its bytes");
        match decode_frontend(&enc, phase) {
            Ok(Some((again, k))) => {
                assert_eq!(again, m);
                assert_eq!(k, enc.len());
            }
            other => panic!("{m:?} re-encoded does not decode: {other:?}"),
        }
        // A frame cut short is incomplete, never another message.
        if n > 1 {
            match decode_frontend(&frame[..n - 1], phase) {
                Ok(None) | Err(_) => {}
                Ok(Some((m2, _))) => panic!("a truncated frame decoded as {m2:?}"),
            }
        }
        frames.push(frame.to_vec());
        phase = m.next_phase(phase);
        data = &data[n..];
    }
    frames
}

fn framer(data: &[u8], sizes: &[u8], phase: FrontendPhase) -> (Vec<Vec<u8>>, bool) {
    let mut f = Framer::new(Direction::Frontend(phase));
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

    for phase in [FrontendPhase::Startup, FrontendPhase::Normal] {
        let _ = decode_frontend(data, phase);
    }
    let phase = if flags & 1 == 0 {
        FrontendPhase::Startup
    } else {
        FrontendPhase::Normal
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

    let first = if phase == FrontendPhase::Startup {
        Framing::Untyped
    } else {
        Framing::Typed { frontend: true }
    };
    let a = scan::scan(data, &[], first, true, flags >> 1);
    let c = scan::scan(data, &sizes, first, true, flags >> 1);
    assert_eq!(
        a.is_some(),
        c.is_some(),
        "scanner errors depend on the reads"
    );
    if let (Some(a), Some(c)) = (a, c) {
        assert_eq!(a, c, "scanner output depends on the reads");
    }
});
