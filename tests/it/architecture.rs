//! The house's one rule that a compiler does not keep: no import cycle between the modules of
//! `src/`. Data flows one way (/proc → scan → lifecycle → attribution → sharing → metrics →
//! http), and what two modules share goes below both. This reads every source file's
//! `crate::NAME` paths, outside its tests, and fails on a cycle, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level module a file of `src/` belongs to (`scan/pins/sockets.rs` is `scan`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// `text` without its test-only items: each `#[cfg(test)]` and the item after it, a line
/// ending in `;` or a block to its closing brace. The names of the test-only module files it
/// declares (`#[cfg(test)] mod scenario;`) are added to `test_files`.
fn without_tests(text: &str, test_files: &mut Vec<String>) -> String {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        if line.trim() != "#[cfg(test)]" {
            out.push(line);
            continue;
        }
        let mut depth = 0i32;
        for item in lines.by_ref() {
            let code = item.split("//").next().unwrap_or("");
            depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
            if depth == 0 && code.trim_end().ends_with(';') {
                let words: Vec<&str> = code.split_whitespace().collect();
                if let Some(at) = words.iter().position(|w| *w == "mod") {
                    test_files.push(words[at + 1].trim_end_matches(';').to_owned());
                }
                break;
            }
            if depth == 0 && code.contains('}') {
                break;
            }
        }
    }
    out.join("\n")
}

/// Every top-level module's imports of the others, from `crate::NAME` in its code.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    let mut stack = vec![src.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    // A module's tests may use anything; the code may not.
    let mut code = BTreeMap::new();
    let mut test_only = BTreeSet::new();
    for path in files {
        let mut test_mods = Vec::new();
        let text = without_tests(&std::fs::read_to_string(&path).unwrap(), &mut test_mods);
        let dir = match path.file_name().unwrap().to_str().unwrap() {
            "mod.rs" | "lib.rs" | "main.rs" => path.parent().unwrap().to_owned(),
            name => path.parent().unwrap().join(name.trim_end_matches(".rs")),
        };
        for m in test_mods {
            test_only.insert(dir.join(format!("{m}.rs")));
            test_only.insert(dir.join(m).join("mod.rs"));
        }
        code.insert(path, text);
    }
    for (path, code) in code {
        let module = module_of(src, &path);
        if module == "main" || module == "lib" || test_only.contains(&path) {
            continue;
        }
        let uses = graph.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                uses.insert(name);
            }
        }
    }
    graph
}

/// A cycle through `from`, if there is one: the modules along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        let here = path.last().unwrap().clone();
        for next in graph.get(&here).into_iter().flatten() {
            if let Some(at) = path.iter().position(|m| m == next) {
                let mut found = path[at..].to_vec();
                found.push(next.clone());
                return Some(found);
            }
            if done.insert(next.clone()) {
                path.push(next.clone());
                if let Some(found) = walk(graph, path, done) {
                    return Some(found);
                }
                path.pop();
            }
        }
        None
    }
    walk(graph, &mut vec![from.to_owned()], &mut BTreeSet::new())
}

#[test]
fn no_module_of_src_imports_one_that_imports_it() {
    let src = crate::support::manifest_dir().join("src");
    let graph = imports(&src);
    assert!(graph.len() > 10, "read {} modules: {graph:?}", graph.len());
    // metrics declares a test-only module before its imports: they are read all the same.
    assert!(graph["metrics"].contains("lifecycle"), "{graph:?}");
    let cycles: Vec<Vec<String>> = graph.keys().filter_map(|m| cycle(&graph, m)).collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:?}");
}

/// Only the tests are left out: a module's imports after a test-only item still count, and a
/// test-only module file declared by its parent is left out whole.
#[test]
fn only_test_items_are_left_out() {
    let text = "use crate::a;\n#[cfg(test)]\npub(crate) mod scenario;\nuse crate::b;\n\
                #[cfg(test)]\nmod tests {\n    use crate::c;\n    fn f() {}\n}\nuse crate::d;\n";
    let mut test_files = Vec::new();
    let code = without_tests(text, &mut test_files);
    assert_eq!(code, "use crate::a;\nuse crate::b;\nuse crate::d;");
    assert_eq!(test_files, ["scenario"]);
}

/// The check itself: a cycle made on purpose is found.
#[test]
fn a_cycle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("scan", &["model", "pins"][..]),
        ("pins", &["model", "scan"]),
        ("model", &[]),
    ]
    .into_iter()
    .map(|(m, uses)| (m.to_owned(), uses.iter().map(|u| u.to_string()).collect()))
    .collect();
    assert_eq!(
        cycle(&graph, "scan"),
        Some(vec!["scan".into(), "pins".into(), "scan".into()])
    );
    assert_eq!(cycle(&graph, "model"), None);
}
