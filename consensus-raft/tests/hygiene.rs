//! Workspace-wide rules that a compiler flag cannot check for us:
//!
//! * every crate root of the workspace (library, program, example, test and
//!   benchmark) forbids `unsafe` code;
//! * the runtime and every protocol crate refuse to build with
//!   `panic = "abort"`: supervision restarts a component whose handler
//!   panicked, which needs the panic to unwind.
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root (this crate sits one level below it).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate has a parent directory")
        .to_path_buf()
}

/// The workspace's member crates, from the root manifest.
fn members(root: &Path) -> Vec<PathBuf> {
    let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("root Cargo.toml");
    let start = manifest.find("members").expect("a members list");
    let list = &manifest[start..];
    let list = &list[list.find('[').expect("[")..=list.find(']').expect("]")];
    list.split('"')
        .skip(1)
        .step_by(2)
        .map(|m| root.join(m))
        .collect()
}

fn rust_files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    out.sort();
    out
}

/// Every crate root of `krate`: `src/lib.rs`, `src/main.rs`, `src/bin/*`,
/// and the single-file targets in `examples/`, `tests/` and `benches/`.
fn crate_roots(krate: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["src/lib.rs", "src/main.rs"]
        .iter()
        .map(|f| krate.join(f))
        .filter(|p| p.exists())
        .collect();
    for dir in ["src/bin", "examples", "tests", "benches"] {
        roots.extend(rust_files_in(&krate.join(dir)));
    }
    roots
}

#[test]
fn every_crate_root_forbids_unsafe_code() {
    let root = workspace();
    let krates = members(&root);
    assert!(krates.len() >= 8, "workspace members: {krates:?}");
    let mut missing = Vec::new();
    let mut seen = 0;
    for krate in &krates {
        for file in crate_roots(krate) {
            seen += 1;
            let text = fs::read_to_string(&file).expect("readable source");
            if !text.contains("#![forbid(unsafe_code)]") {
                missing.push(file.strip_prefix(&root).unwrap_or(&file).to_path_buf());
            }
        }
    }
    assert!(seen >= 20, "only {seen} crate roots found");
    assert!(
        missing.is_empty(),
        "crate roots without #![forbid(unsafe_code)]: {missing:?}"
    );
}

#[test]
fn the_runtime_and_the_protocols_refuse_panic_abort() {
    let root = workspace();
    let mut missing = Vec::new();
    for krate in [
        "consensus-actors",
        "consensus-raft",
        "consensus-paxos",
        "consensus-pbft",
        "model-agreement",
    ] {
        let text = fs::read_to_string(root.join(krate).join("src/lib.rs")).expect("lib.rs");
        let guarded = text
            .split("#[cfg(panic = \"abort\")]")
            .nth(1)
            .is_some_and(|after| after.trim_start().starts_with("compile_error!"));
        if !guarded {
            missing.push(krate);
        }
    }
    assert!(
        missing.is_empty(),
        "no compile_error! under cfg(panic = \"abort\") in: {missing:?}"
    );
}
