//! What the gzip splice pays (`nsexporter::metrics::gzip::Spliced`): after a sweep or a batch
//! of events the exposition's live families change and the scan's do not, so the scan's
//! deflate is copied and only the live tail is compressed. The alternative is to compress the
//! whole text again. Both are timed here on the same texts, in the same run, at the same
//! compression level, in rotation:
//!
//! - the fixture: `tests/fixtures/e2e-output.txt`, the exporter's golden exposition of the
//!   committed procfs tree;
//! - a crowded tree: the exposition the release exporter served in `benches/scan.rs` at that
//!   bench's load, saved there with `NSX_BENCH_SAVE_METRICS=PATH` and read here from
//!   `NSX_BENCH_TEXT=PATH` (left out where that is not set).
//!
//! Knobs: `NSX_BENCH_ROUNDS` (200). Run: `cargo bench --bench gzip`.

use std::hint::black_box;
use std::time::Instant;

use nsexporter::metrics::families::{FAMILIES, Part};
use nsexporter::metrics::gzip::Spliced;

fn main() {
    let rounds: usize = std::env::var("NSX_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .max(1);
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/e2e-output.txt");
    let mut texts = vec![("fixture", std::fs::read(fixture).expect("the fixture text"))];
    if let Ok(path) = std::env::var("NSX_BENCH_TEXT") {
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        texts.push(("crowded tree", text));
    }
    println!(
        "| text | text bytes | live tail bytes | gzip bytes | splice, median | re-compress, median | re-compress / splice |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (what, text) in &texts {
        let head_len = live_start(text);
        let tail = &text[head_len..];
        let spliced = Spliced::new(text, head_len);
        let (mut splice, mut whole) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let start = Instant::now();
            black_box(spliced.with(black_box(tail)).exposition());
            splice.push(start.elapsed().as_secs_f64());
            let start = Instant::now();
            black_box(Spliced::new(black_box(text), head_len).exposition());
            whole.push(start.elapsed().as_secs_f64());
        }
        let (splice, whole) = (median(&mut splice), median(&mut whole));
        println!(
            "| {what} | {} | {} | {} | {:.1} µs | {:.1} µs | {:.0} |",
            text.len(),
            tail.len(),
            spliced.gzip_len(),
            splice * 1e6,
            whole * 1e6,
            whole / splice
        );
        assert_eq!(spliced.with(tail).text(), *text, "the splice is the text");
    }
}

/// Where the live families begin: the first of their HELP lines (the scan's families come
/// first, each part in name order).
fn live_start(text: &[u8]) -> usize {
    let text = std::str::from_utf8(text).expect("an exposition is UTF-8");
    FAMILIES
        .iter()
        .filter(|f| f.part == Part::Live)
        .filter_map(|f| text.find(&format!("# HELP {} ", f.name)))
        .min()
        .unwrap_or(text.len())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
