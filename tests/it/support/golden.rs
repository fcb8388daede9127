//! A golden file: the output compared with the file, or written to it with `UPDATE_GOLDEN=1`.
//! Standalone (std only), so that the library's own tests include it too (`#[path]`).

use std::path::Path;

/// Fails, showing the first ten lines that differ, unless `got` is the file at `path`;
/// with `UPDATE_GOLDEN` set, writes `got` there first.
pub fn assert_golden(path: &Path, got: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, got).unwrap();
    }
    let want = std::fs::read_to_string(path).expect("golden file; UPDATE_GOLDEN=1 writes it");
    if got != want {
        let diff: Vec<String> = got
            .lines()
            .zip(want.lines())
            .filter(|(g, w)| g != w)
            .take(10)
            .map(|(g, w)| format!("got:  {g}\nwant: {w}"))
            .collect();
        panic!(
            "output differs from {} (UPDATE_GOLDEN=1 to accept):\n{}\n(lines: got {}, want {})",
            path.display(),
            diff.join("\n"),
            got.lines().count(),
            want.lines().count()
        );
    }
}
