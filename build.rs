//! Records the git revision for `nsexporter_build_info{revision}`, and with the `ebpf`
//! feature compiles src/ebpf/nsevents.bpf.c into the BPF object the binary embeds.
use std::process::Command;

fn main() {
    if std::env::var_os("CARGO_FEATURE_EBPF").is_some() {
        compile_bpf();
    }
    let revision = std::env::var("BUILD_GIT_REVISION")
        .ok()
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BUILD_GIT_REVISION={revision}");
    println!("cargo:rerun-if-env-changed=BUILD_GIT_REVISION");
    // Built again when HEAD moves: HEAD itself, and the branch it names, where git keeps them
    // (in a worktree `.git` is a file). Only this branch: another branch's commit, or a
    // worktree's, must not rebuild this one. A path that does not exist would rerun this script
    // at every build, so only those that do are named.
    let head = git(&["rev-parse", "--git-path", "HEAD"]);
    let branch = git(&["symbolic-ref", "-q", "HEAD"])
        .and_then(|name| git(&["rev-parse", "--git-path", &name]));
    let packed = git(&["rev-parse", "--git-path", "packed-refs"]);
    for path in [head, branch, packed].into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// What `git ARGS` prints, trimmed; `None` where git is missing, fails or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// clang -target bpf, with BTF (-g) for CO-RE. `CLANG` names another clang; the libbpf headers
/// (bpf_helpers.h, bpf_core_read.h) come from libbpf-dev. No kernel headers: task.h declares
/// what the program reads.
fn compile_bpf() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("nsevents.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c"])
        .arg("src/ebpf/nsevents.bpf.c")
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "{clang} failed on src/ebpf/nsevents.bpf.c ({s}): the ebpf feature needs clang and libbpf-dev (scripts/install-test-deps installs them)"
        ),
        Err(e) => panic!(
            "cannot run {clang}: {e}: the ebpf feature needs clang and libbpf-dev (scripts/install-test-deps installs them)"
        ),
    }
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed=src/ebpf/nsevents.bpf.c");
    println!("cargo:rerun-if-changed=src/ebpf/task.h");
}
