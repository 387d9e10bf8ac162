//! Native cost of masking PostgreSQL result rows, per DataRow, as the
//! session does it (`filter/src/pg/session.rs` `mask_frame`): the rows of
//! scripts/bench-postgres.py's masked workload (`bench_customers(id, name,
//! email, card, note)`, email and card `partial: 4`, note `redact`).
//!
//! ```sh
//! cargo run --release -p pinhole-filter --example pg_mask_rows
//! ```
//!
//! Prints ns per row (median of five batches of at least 0.2 s) for:
//! - `decode`: the DataRow frame decoded into owned values;
//! - `decode_mask_encode`: decode, mask, encode: what the session did per
//!   row before masking worked on the frame;
//! - `mask_frame`: [`RowMasker::mask_frame`], the session's path: the
//!   frame's values masked into a new frame without decoding it;
//! - `plan`: building the [`RowMasker`] from the RowDescription (once per
//!   result, not per row).

// A measuring tool on fixed inputs: a failure is a bug to see at once.
#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use pinhole_filter::mask::{ColumnRule, MaskSpec, Masker, Strategy};
use pinhole_filter::pg::codec::{self, BackendMessage, BackendPhase, FieldDescription};

fn field(name: &str, attr: i16, type_oid: u32) -> FieldDescription {
    FieldDescription {
        name: name.into(),
        table_oid: 16_390,
        column_attr: attr,
        type_oid,
        type_size: -1,
        type_modifier: -1,
        format: 0,
    }
}

fn time_per_op(ops: usize, mut f: impl FnMut()) -> f64 {
    let batch = Duration::from_millis(200);
    let mut results = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0usize;
        while start.elapsed() < batch {
            f();
            n += ops;
        }
        results.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    results.sort_by(f64::total_cmp);
    results[2]
}

fn main() {
    let rule = |c: &str, s: Strategy| ColumnRule {
        column: format!("bench_customers.{c}"),
        strategy: s,
    };
    let spec = MaskSpec {
        columns: vec![
            rule("email", Strategy::Partial { keep: 4 }),
            rule("card", Strategy::Partial { keep: 4 }),
            rule("note", Strategy::Redact { text: None }),
        ],
        ..MaskSpec::default()
    };
    let masker = Masker::new(&spec, None).expect("spec");
    let fields = vec![
        field("id", 1, 23),
        field("name", 2, 25),
        field("email", 3, 25),
        field("card", 4, 25),
        field("note", 5, 25),
    ];
    let rows: Vec<Vec<u8>> = (1..=60u32)
        .map(|i| {
            BackendMessage::DataRow {
                values: vec![
                    Some(i.to_string().into_bytes()),
                    Some(format!("Customer {i}").into_bytes()),
                    Some(format!("customer{i}@example.test").into_bytes()),
                    Some(
                        format!("4000 {:04} {:04} 8951", i % 10_000, (i * 7) % 10_000).into_bytes(),
                    ),
                    Some(
                        format!("account opened 2015-01-{:02}, tier {}", i % 28 + 1, i % 5)
                            .into_bytes(),
                    ),
                ],
            }
            .encode()
        })
        .collect();
    let plan = masker.row_masker(&fields, &());
    let n = rows.len();

    let decode = time_per_op(n, || {
        for r in &rows {
            black_box(codec::decode_backend(black_box(r), BackendPhase::Normal).ok());
        }
    });
    let decode_mask_encode = time_per_op(n, || {
        for r in &rows {
            let Ok(Some((BackendMessage::DataRow { mut values }, _))) =
                codec::decode_backend(black_box(r), BackendPhase::Normal)
            else {
                panic!("row")
            };
            let formats = plan.description_formats().to_vec();
            let k = plan.mask_data_row(&mut values, &formats).expect("mask");
            black_box((k, BackendMessage::DataRow { values }.encode()));
        }
    });
    let mask_frame = time_per_op(n, || {
        for r in &rows {
            black_box(
                plan.mask_frame(black_box(r), plan.description_formats())
                    .expect("mask"),
            );
        }
    });
    let plan_ns = time_per_op(1, || {
        black_box(masker.row_masker(black_box(&fields), &()));
    });
    // Both paths give the same bytes.
    for r in &rows {
        let Ok(Some((BackendMessage::DataRow { mut values }, _))) =
            codec::decode_backend(r, BackendPhase::Normal)
        else {
            panic!("row")
        };
        let k = plan.mask_data_row(&mut values, &[]).expect("mask");
        let (frame, k2) = plan.mask_frame(r, &[]).expect("mask").expect("masked");
        assert_eq!(
            (frame, k2),
            (BackendMessage::DataRow { values }.encode(), k)
        );
    }
    println!(
        "{{\"rows\": {n}, \"decode_ns\": {decode:.0}, \"decode_mask_encode_ns\": {decode_mask_encode:.0}, \
         \"mask_frame_ns\": {mask_frame:.0}, \"plan_ns\": {plan_ns:.0}}}"
    );
}
