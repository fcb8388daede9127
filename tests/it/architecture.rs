//! The house's one rule that a compiler does not keep: no import circle between the modules of
//! `src/`, at any depth. Data flows one way (/proc → scan → lifecycle → attribution → sharing →
//! metrics → http), and what two modules share goes below both.
//!
//! This parses `src/` with `syn`, follows its `mod` declarations (`#[path]` too) from `lib.rs`,
//! and resolves every path its code names, outside its tests (`use` trees, paths in types and
//! expressions, `crate::…` in macro input), to the module that holds the item, through
//! re-exports. Then, under every module, it checks the graph of its children: one child
//! imports another if anything in the first's subtree names anything in the second's. A
//! module and its own submodules are left out of it: a parent declaring a child, or a child
//! naming its parent, is not a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use syn::visit::Visit;

/// A module by its path from the crate root (`["attribution", "names"]`); the root is `[]`.
type ModPath = Vec<String>;

/// One module of the crate, with what its code names.
#[derive(Default)]
struct Module {
    children: BTreeSet<String>,
    /// The names its `use` items bind, each with the path it stands for, as written.
    uses: BTreeMap<String, Vec<String>>,
    /// The modules of its glob imports (`use x::*`), as written.
    globs: Vec<Vec<String>>,
    /// Every path of two segments or more that its code names, and every `use` path, as
    /// written.
    names: Vec<Vec<String>>,
}

/// The crate's modules, parsed from its files.
#[derive(Default)]
struct Crate {
    modules: BTreeMap<ModPath, Module>,
}

/// Reads a source file; `None` if there is none (the other candidate path is then tried).
type Read<'a> = &'a dyn Fn(&Path) -> Option<String>;

/// Whether an item's attributes make it test-only: `#[cfg(test)]` or `#[cfg(all(test, …))]`.
/// A module's tests may use anything; the code may not.
fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        if !attr.path().is_ident("cfg") {
            return false;
        }
        let Ok(meta) = attr.parse_args::<syn::Meta>() else {
            return false;
        };
        match &meta {
            syn::Meta::Path(p) => p.is_ident("test"),
            syn::Meta::List(list) if list.path.is_ident("all") => list
                .parse_args_with(
                    syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated,
                )
                .is_ok_and(|args| args.iter().any(|a| a.path().is_ident("test"))),
            _ => false,
        }
    })
}

/// The `#[path = "…"]` of a `mod` declaration.
fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| match &attr.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// The bindings of a `use` tree under `prefix`: (name bound, path), and its globs.
fn use_tree(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Option<String>, Vec<String>)>,
    globs: &mut Vec<Vec<String>>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_tree(&p.tree, prefix, out, globs);
            prefix.pop();
        }
        syn::UseTree::Name(n) if n.ident == "self" => {
            out.push((prefix.last().cloned(), prefix.clone()));
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            path.push(n.ident.to_string());
            out.push((Some(n.ident.to_string()), path));
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            let name = (r.rename != "_").then(|| r.rename.to_string());
            out.push((name, path));
        }
        syn::UseTree::Glob(_) => globs.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_tree(t, prefix, out, globs);
            }
        }
    }
}

/// The paths `a::b::c` in a macro's input, whose tokens `syn` leaves unparsed (`$crate` is
/// `crate`).
fn token_paths(tokens: proc_macro2::TokenStream, out: &mut Vec<Vec<String>>) {
    use proc_macro2::TokenTree;
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Group(g) => token_paths(g.stream(), out),
            TokenTree::Ident(first) => {
                let mut path = vec![first.to_string()];
                let mut j = i + 1;
                while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(next)) =
                    (tokens.get(j), tokens.get(j + 1), tokens.get(j + 2))
                {
                    let TokenTree::Ident(next) = next else { break };
                    if a.as_char() != ':' || b.as_char() != ':' {
                        break;
                    }
                    path.push(next.to_string());
                    j += 3;
                }
                // `::a::b` names another crate; `x: a::b` (one colon) is a path all the same.
                let colon = |k: Option<usize>| matches!(k.and_then(|k| tokens.get(k)), Some(TokenTree::Punct(p)) if p.as_char() == ':');
                let after_colons = colon(i.checked_sub(1)) && colon(i.checked_sub(2));
                if path.len() > 1 && !after_colons {
                    out.push(path);
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

/// Collects the paths named inside an item that is not a module: types, expressions,
/// patterns, `use` in function bodies, macro input. Test-only items inside it are skipped.
struct Names<'m> {
    module: &'m mut Module,
}

impl<'ast> Visit<'ast> for Names<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if !test_only(item_attrs(item)) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs = match item {
            syn::ImplItem::Const(c) => &c.attrs,
            syn::ImplItem::Fn(f) => &f.attrs,
            syn::ImplItem::Type(t) => &t.attrs,
            syn::ImplItem::Macro(m) => &m.attrs,
            _ => return syn::visit::visit_impl_item(self, item),
        };
        if !test_only(attrs) {
            syn::visit::visit_impl_item(self, item);
        }
    }

    // A module inside a function body: none in src/, and it would need a scope of its own.
    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {}

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        add_use(self.module, item);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() > 1 {
            let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.module.names.push(segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        token_paths(mac.tokens.clone(), &mut self.module.names);
        syn::visit::visit_macro(self, mac);
    }
}

/// An item's attributes (`syn` has no accessor for them).
fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::ExternCrate(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::ForeignMod(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::TraitAlias(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// Records a `use` item in `module`: the names it binds, and its paths as imports.
fn add_use(module: &mut Module, item: &syn::ItemUse) {
    let mut bound = Vec::new();
    let mut globs = Vec::new();
    use_tree(&item.tree, &mut Vec::new(), &mut bound, &mut globs);
    if item.leading_colon.is_some() {
        return; // `use ::x`: another crate.
    }
    for (name, path) in bound {
        if let Some(name) = name {
            module.uses.insert(name, path.clone());
        }
        module.names.push(path);
    }
    module.names.extend(globs.iter().cloned());
    module.globs.extend(globs);
}

impl Crate {
    /// The crate rooted at `root` (`src/lib.rs`), its files read by `read`.
    fn parse(root: &Path, read: Read) -> Crate {
        let mut krate = Crate::default();
        let text = read(root).unwrap_or_else(|| panic!("no {}", root.display()));
        let dir = root.parent().unwrap().to_owned();
        krate.file(Vec::new(), root, &text, dir, read);
        krate
    }

    /// Reads the module `at`, whose source is the file `file`; its children's files are
    /// looked for in `dir`.
    fn file(&mut self, at: ModPath, file: &Path, text: &str, dir: PathBuf, read: Read) {
        let ast = syn::parse_file(text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        self.items(at, &ast.items, file, &dir, true, read);
    }

    fn items(
        &mut self,
        at: ModPath,
        items: &[syn::Item],
        file: &Path,
        dir: &Path,
        top_of_file: bool,
        read: Read,
    ) {
        self.modules.entry(at.clone()).or_default();
        for item in items {
            if test_only(item_attrs(item)) {
                continue;
            }
            match item {
                syn::Item::Mod(m) => {
                    let name = m.ident.to_string();
                    self.modules
                        .get_mut(&at)
                        .unwrap()
                        .children
                        .insert(name.clone());
                    let mut child = at.clone();
                    child.push(name.clone());
                    if let Some((_, inline)) = &m.content {
                        self.items(child, inline, file, &dir.join(&name), false, read);
                        continue;
                    }
                    self.declared(child, &m.attrs, file, dir, top_of_file, read);
                }
                syn::Item::Use(u) => add_use(self.modules.get_mut(&at).unwrap(), u),
                other => Names {
                    module: self.modules.get_mut(&at).unwrap(),
                }
                .visit_item(other),
            }
        }
    }

    /// The file of a `mod NAME;` declared in `file` (`dir` being where its children live) and
    /// the module read from it.
    fn declared(
        &mut self,
        child: ModPath,
        attrs: &[syn::Attribute],
        file: &Path,
        dir: &Path,
        top_of_file: bool,
        read: Read,
    ) {
        let name = child.last().unwrap().clone();
        // `#[path]` is relative to the declaring file's directory, or inside an inline module
        // to where that module's children live (the Reference, "The path attribute").
        let (path, text) = if let Some(p) = path_attr(attrs) {
            let base = if top_of_file {
                file.parent().unwrap()
            } else {
                dir
            };
            let path = base.join(p);
            let text = read(&path).unwrap_or_else(|| panic!("no {}", path.display()));
            (path, text)
        } else {
            let flat = dir.join(format!("{name}.rs"));
            let nested = dir.join(&name).join("mod.rs");
            match read(&flat) {
                Some(text) => (flat, text),
                None => {
                    let text = read(&nested).unwrap_or_else(|| panic!("no {}", nested.display()));
                    (nested, text)
                }
            }
        };
        let child_dir = if path.file_name().unwrap() == "mod.rs" || path_attr(attrs).is_some() {
            path.parent().unwrap().to_owned()
        } else {
            path.with_extension("")
        };
        self.file(child, &path, &text, child_dir, read);
    }

    /// The module that holds what `path`, written in module `at`, names; `None` if it is
    /// outside the crate (std, a dependency) or a local name (a variable, an item of `at`'s
    /// own scope, an enum's variant).
    fn resolve(&self, at: &[String], path: &[String], depth: usize) -> Option<ModPath> {
        if depth > 16 {
            return None; // A `use` loop: the compiler would have refused it.
        }
        let (first, rest) = path.split_first()?;
        let (mut here, rest): (ModPath, &[String]) = match first.as_str() {
            "crate" => (Vec::new(), rest),
            "self" => (at.to_vec(), rest),
            "super" => (at[..at.len().checked_sub(1)?].to_vec(), rest),
            _ if self.modules.get(at)?.children.contains(first) => (at.to_vec(), path),
            _ => {
                // A name `at` imports, or else nothing of this crate.
                let target = self.modules[at].uses.get(first)?;
                if target.first() == Some(first) {
                    return None; // `use regex;`: a crate.
                }
                let mut full = target.clone();
                full.extend(rest.iter().cloned());
                return self.resolve(at, &full, depth + 1);
            }
        };
        for (i, segment) in rest.iter().enumerate() {
            if segment == "super" {
                here.pop();
                continue;
            }
            let module = self.modules.get(&here)?;
            if module.children.contains(segment) {
                here.push(segment.clone());
                continue;
            }
            // An item of `here`, or a name it imports (a re-export): follow the import.
            if let Some(target) = module.uses.get(segment) {
                let mut full = target.clone();
                full.extend(rest[i + 1..].iter().cloned());
                return self.resolve(&here, &full, depth + 1).or(Some(here));
            }
            for glob in &module.globs {
                if let Some(base) = self.resolve(&here, glob, depth + 1)
                    && let Some(m) = self.modules.get(&base)
                    && (m.children.contains(segment) || m.uses.contains_key(segment))
                {
                    let mut full = glob.clone();
                    full.extend(rest[i..].iter().cloned());
                    return self.resolve(&here, &full, depth + 1).or(Some(here));
                }
            }
            return Some(here);
        }
        Some(here)
    }

    /// Every import of one module by another: (importer, imported, the path as written).
    fn imports(&self) -> Vec<(ModPath, ModPath, String)> {
        let mut out = Vec::new();
        for (at, module) in &self.modules {
            for path in &module.names {
                if let Some(to) = self.resolve(at, path, 0)
                    && to != *at
                {
                    out.push((at.clone(), to, path.join("::")));
                }
            }
        }
        out
    }
}

/// A module's path as Rust writes it.
fn show(m: &[String]) -> String {
    if m.is_empty() {
        "crate".to_owned()
    } else {
        m.join("::")
    }
}

/// Under each module, its children's graph: an arrow from one child to another when
/// something in the first's subtree names something in the second's, with the first such
/// import as its example. Arrows between a module and its own ancestors are not in it.
type Rooms = BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, String>>>;

fn rooms(imports: &[(ModPath, ModPath, String)]) -> Rooms {
    let mut rooms: Rooms = BTreeMap::new();
    for (from, to, written) in imports {
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        if common == from.len() || common == to.len() {
            continue; // One is the other's ancestor.
        }
        rooms
            .entry(from[..common].to_vec())
            .or_default()
            .entry(from[common].clone())
            .or_default()
            .entry(to[common].clone())
            .or_insert_with(|| format!("{} names {written}", show(from)));
    }
    rooms
}

/// A circle through `from` among one module's children, if there is one: the children along
/// it, back to `from`.
fn cycle(graph: &BTreeMap<String, BTreeMap<String, String>>, from: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        let here = path.last().unwrap().clone();
        for next in graph.get(&here).into_iter().flat_map(|m| m.keys()) {
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

/// Every circle among each module's children (one per set of children on it), printed with
/// the import behind each arrow.
fn circles(rooms: &Rooms) -> Vec<String> {
    let mut out = Vec::new();
    for (parent, graph) in rooms {
        let mut seen = BTreeSet::new();
        for found in graph.keys().filter_map(|m| cycle(graph, m)) {
            if !seen.insert(found.iter().cloned().collect::<BTreeSet<_>>()) {
                continue;
            }
            let mut text = format!("under {}: {}", show(parent), found.join(" → "));
            for pair in found.windows(2) {
                text += &format!(
                    "\n    {} → {}: {}",
                    pair[0], pair[1], graph[&pair[0]][&pair[1]]
                );
            }
            out.push(text);
        }
    }
    out
}

/// The imports of `src/`, parsed once for every test that reads them.
fn src() -> &'static [(ModPath, ModPath, String)] {
    static IMPORTS: OnceLock<Vec<(ModPath, ModPath, String)>> = OnceLock::new();
    IMPORTS.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let krate = Crate::parse(&src.join("lib.rs"), &|p| std::fs::read_to_string(p).ok());
        // Every room and most of their files: the parse followed the `mod` declarations.
        assert!(
            krate.modules.len() > 40,
            "read {} modules",
            krate.modules.len()
        );
        krate.imports()
    })
}

#[test]
fn no_module_of_src_imports_one_that_imports_it() {
    let rooms = rooms(src());
    let circles = circles(&rooms);
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

/// The top-level rooms in the pipeline's order: none imports a room after it.
#[test]
fn the_rooms_import_down_the_pipeline() {
    const PIPELINE: [&str; 6] = [
        "scan",
        "lifecycle",
        "attribution",
        "sharing",
        "metrics",
        "http",
    ];
    let rooms = rooms(src());
    let top = &rooms[&Vec::new()];
    // metrics reads what lifecycle made; the parse saw that far.
    assert!(top["metrics"].contains_key("lifecycle"), "{top:?}");
    for (i, room) in PIPELINE.iter().enumerate() {
        for later in &PIPELINE[i + 1..] {
            if let Some(why) = top.get(*room).and_then(|g| g.get(*later)) {
                panic!("{room} imports {later}, later in the pipeline: {why}");
            }
        }
    }
}

/// A crate made of the given files under `/src`.
fn crate_of(files: &[(&str, &str)]) -> Crate {
    let files: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(p, t)| (Path::new("/src").join(p), t.to_string()))
        .collect();
    Crate::parse(Path::new("/src/lib.rs"), &|p| files.get(p).cloned())
}

/// The check itself: a circle made on purpose between two submodules is found, through a
/// parent's re-export, an inline path in an expression and a `#[path]` file, and printed.
#[test]
fn a_circle_at_depth_is_found_and_printed() {
    let krate = crate_of(&[
        ("lib.rs", "pub mod model; pub mod attribution;"),
        ("model.rs", "pub struct Pid;"),
        (
            "attribution/mod.rs",
            "mod names; #[path = \"sources/docker.rs\"] mod docker;\n\
             pub use names::ContainerNames;",
        ),
        (
            "attribution/names.rs",
            "pub struct ContainerNames;\n\
             fn refresh() { let _ = super::docker::DockerStore::read(); }",
        ),
        (
            "attribution/sources/docker.rs",
            "use crate::model::Pid;\n\
             pub struct DockerStore(super::ContainerNames, Pid);",
        ),
    ]);
    let circles = circles(&rooms(&krate.imports()));
    assert_eq!(
        circles,
        ["under attribution: docker → names → docker\n    \
             docker → names: attribution::docker names super::ContainerNames\n    \
             names → docker: attribution::names names super::docker::DockerStore::read"]
    );
}

/// A parent and its child name each other freely; so does a module's test code; and a use
/// in a function body, `crate::` in a macro's input and a nested `self`/`super` all count.
#[test]
fn only_code_outside_tests_between_non_relatives_counts() {
    let krate = crate_of(&[
        (
            "lib.rs",
            "mod scan; mod cgroup;\n\
             #[cfg(test)] mod tests { use crate::scan::Scanner; }",
        ),
        (
            "scan/mod.rs",
            "mod reader; pub struct Scanner;\n\
             fn f() { tracing::debug!(\"{:?}\", S { x: crate::cgroup::parse() }); }\n\
             #[cfg(test)] fn t() { crate::attribution::x(); }",
        ),
        (
            "scan/reader.rs",
            "use super::Scanner; fn g() { use super::super::cgroup::{self}; }",
        ),
        ("cgroup.rs", "pub fn parse() {}"),
    ]);
    let mut imports: Vec<String> = krate
        .imports()
        .into_iter()
        .map(|(from, to, _)| format!("{} → {}", show(&from), show(&to)))
        .collect();
    imports.sort();
    imports.dedup();
    assert_eq!(
        imports,
        [
            "scan → cgroup",
            "scan::reader → cgroup",
            "scan::reader → scan"
        ]
    );
    let rooms = rooms(&krate.imports());
    assert!(circles(&rooms).is_empty());
    assert_eq!(rooms[&Vec::new()].len(), 1, "{rooms:?}");
}

/// The longest an impl block or a function may be, in lines, tests included: past that a room
/// does more than one job (issue 26).
const MOST_LINES: usize = 250;

/// Every impl block and function (free, in an impl or a trait) of `text` longer than
/// [`MOST_LINES`], as `name: N lines at line L`.
fn too_long(text: &str) -> Vec<String> {
    use syn::spanned::Spanned;
    struct Lengths(Vec<String>);
    impl Lengths {
        fn check(&mut self, what: String, span: proc_macro2::Span) {
            let lines = span.end().line - span.start().line + 1;
            if lines > MOST_LINES {
                self.0.push(format!(
                    "{what}: {lines} lines at line {}",
                    span.start().line
                ));
            }
        }
    }
    impl<'ast> Visit<'ast> for Lengths {
        fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
            let ty = &item.self_ty;
            self.check(format!("impl {}", quote_type(ty)), item.span());
            syn::visit::visit_item_impl(self, item);
        }
        fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
            self.check(format!("fn {}", item.sig.ident), item.span());
            syn::visit::visit_item_fn(self, item);
        }
        fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
            self.check(format!("fn {}", item.sig.ident), item.span());
            syn::visit::visit_impl_item_fn(self, item);
        }
        fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
            self.check(format!("fn {}", item.sig.ident), item.span());
            syn::visit::visit_trait_item_fn(self, item);
        }
    }
    fn quote_type(ty: &syn::Type) -> String {
        match ty {
            syn::Type::Path(p) => p
                .path
                .segments
                .last()
                .map_or_else(String::new, |s| s.ident.to_string()),
            _ => "…".into(),
        }
    }
    let file = syn::parse_file(text).unwrap_or_else(|e| panic!("{e}"));
    let mut lengths = Lengths(Vec::new());
    lengths.visit_file(&file);
    lengths.0
}

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_impl_block_or_function_is_over_250_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("crates"), &mut files);
    files.sort();
    let long: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let at = f.strip_prefix(root).unwrap().display().to_string();
            too_long(&text)
                .into_iter()
                .map(move |l| format!("{at}: {l}"))
        })
        .collect();
    assert!(long.is_empty(), "{long:#?}");
}

#[test]
fn a_long_function_is_found() {
    let body = "    let _ = 1;\n".repeat(MOST_LINES);
    let text = format!("fn short() {{}}\nimpl S {{\n    fn long() {{\n{body}    }}\n}}\n");
    let long = too_long(&text);
    assert_eq!(long.len(), 2, "{long:?}");
    assert!(
        long[0].starts_with("impl S: 254 lines at line 2"),
        "{long:?}"
    );
    assert!(
        long[1].starts_with("fn long: 252 lines at line 3"),
        "{long:?}"
    );
}
