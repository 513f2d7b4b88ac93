//! `cargo xtask tidy` (also the first step of `cargo xtask ci`): checks of the source tree
//! that neither rustc nor clippy makes, as rust-analyzer's `tidy`. Plain text analysis, no
//! dependencies:
//!
//! - The sans-IO crates ([`SANS_IO`]) name no async runtime, socket or TLS crate among their
//!   `[dependencies]` ([`RUNTIME_CRATES`]). `tokio-util` is allowed in `stratum-proto`
//!   only, for the `codec` traits (plain traits over `bytes::BytesMut`).
//! - No module import circle inside a crate: an edge `a → b` is a `crate::b` path in module
//!   `a` (its file `src/a.rs` or the files under `src/a/`), tests (`#[cfg(test)] mod …`) and
//!   comments left out; every strongly connected component of more than one module is a circle. The
//!   circles `proxy-core` still has are listed in [`KNOWN_CIRCLES`]: the check fails on any
//!   other circle, and on a listed one that is gone (so the list only shrinks).
//! - Every library crate takes the workspace lints (`[lints] workspace = true`: `missing_docs`,
//!   `unreachable_pub`) and none turns `missing_docs` off at its root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Crates that do no I/O and depend on no async runtime.
const SANS_IO: &[&str] = &["stratum-proto", "nonce-split", "stratum-session"];

/// Dependencies a sans-IO crate must not name.
const RUNTIME_CRATES: &[&str] = &[
    "tokio",
    "tokio-util",
    "tokio-rustls",
    "async-std",
    "smol",
    "mio",
    "futures",
    "futures-util",
    "socket2",
    "reqwest",
    "hyper",
    "axum",
];

/// `(crate, dependency)` pairs allowed despite [`RUNTIME_CRATES`].
const ALLOWED: &[(&str, &str)] = &[("stratum-proto", "tokio-util")];

/// Module circles allowed for now, by crate, each as its sorted module names. Empty since
/// issue 11 broke the last one (`conn` ↔ `miner`); kept for a restructuring done in steps.
/// The check fails when one is gone but still listed, so that this list stays true.
const KNOWN_CIRCLES: &[(&str, &[&str])] = &[];

/// Runs every check; fails with the list of what is wrong.
pub(crate) fn tidy(root: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for krate in crates(root)? {
        let manifest = std::fs::read_to_string(krate.dir.join("Cargo.toml"))
            .with_context(|| format!("reading {}/Cargo.toml", krate.dir.display()))?;
        if SANS_IO.contains(&krate.name.as_str()) {
            for dep in dependencies(&manifest) {
                if RUNTIME_CRATES.contains(&dep.as_str())
                    && !ALLOWED.contains(&(krate.name.as_str(), dep.as_str()))
                {
                    problems.push(format!(
                        "{}: a sans-IO crate depends on `{dep}`",
                        krate.name
                    ));
                }
            }
        }
        let lib = krate.dir.join("src/lib.rs");
        if lib.exists() {
            if !takes_workspace_lints(&manifest) {
                problems.push(format!(
                    "{}: library without `[lints] workspace = true` (missing_docs, unreachable_pub)",
                    krate.name
                ));
            }
            let root_text = std::fs::read_to_string(&lib)?;
            if root_text.contains("#![allow(missing_docs)]") {
                problems.push(format!(
                    "{}: `#![allow(missing_docs)]` at its root",
                    krate.name
                ));
            }
        }
        let known: BTreeSet<Vec<String>> = KNOWN_CIRCLES
            .iter()
            .filter(|(c, _)| *c == krate.name)
            .map(|(_, m)| m.iter().map(|s| s.to_string()).collect())
            .collect();
        let found: BTreeSet<Vec<String>> = circles(&krate.dir.join("src"))?.into_iter().collect();
        for c in found.difference(&known) {
            problems.push(format!(
                "{}: module import circle: {}",
                krate.name,
                c.join(" ↔ ")
            ));
        }
        for c in known.difference(&found) {
            problems.push(format!(
                "{}: the circle {} is gone: take it out of KNOWN_CIRCLES in xtask/src/tidy.rs",
                krate.name,
                c.join(" ↔ ")
            ));
        }
    }
    if problems.is_empty() {
        eprintln!("xtask tidy: ok");
        return Ok(());
    }
    for p in &problems {
        eprintln!("xtask tidy: {p}");
    }
    bail!("tidy: {} problem(s)", problems.len())
}

struct Crate {
    name: String,
    dir: PathBuf,
}

/// The workspace's crates: `crates/*` and `xtask`, named by their directory.
fn crates(root: &Path) -> anyhow::Result<Vec<Crate>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root.join("crates"))? {
        let dir = entry?.path();
        if dir.join("Cargo.toml").exists() {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(Crate { name, dir });
        }
    }
    out.push(Crate {
        name: "xtask".into(),
        dir: root.join("xtask"),
    });
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The dependency names of a manifest's `[dependencies]` section (not dev or build ones).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if !inside || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split(['=', '.', ' ']).next().unwrap_or("").trim();
        if !key.is_empty() {
            out.push(key.trim_matches('"').to_string());
        }
    }
    out
}

fn takes_workspace_lints(manifest: &str) -> bool {
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[lints]";
        } else if inside && line.replace(' ', "") == "workspace=true" {
            return true;
        }
    }
    false
}

/// The module of a source file: the first path component under `src`, without `.rs`;
/// `None` for the crate root (`lib.rs`, `main.rs`) and binaries.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    if first == "bin" {
        return None;
    }
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib" && name != "main").then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The text of a file without its test modules: everything from `#[cfg(test)]` followed by a
/// `mod` line on.
fn without_tests(text: &str) -> &str {
    let mut at = 0;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            return &text[..at];
        }
        at += line.len();
    }
    text
}

/// The modules a file's text points at with `crate::name` paths, including inside
/// `use crate::{a, b::c}` groups.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::{c, d}, e}`: the first name of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphanumeric() || c == '_') => {
                        out.insert(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Every module circle of the crate whose sources are in `src`: the strongly connected
/// components of more than one module, each as its sorted module names.
fn circles(src: &Path) -> anyhow::Result<Vec<Vec<String>>> {
    let mut files = Vec::new();
    if src.exists() {
        rust_files(src, &mut files)?;
    }
    let mut modules = BTreeSet::new();
    for f in &files {
        if let Some(m) = module_of(src, f) {
            modules.insert(m);
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(from) = module_of(src, f) else {
            continue;
        };
        let text = std::fs::read_to_string(f)?;
        // Comments (doc links) are no imports.
        let code: String = without_tests(&text)
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for to in crate_refs(&code) {
            if to != from && modules.contains(&to) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    Ok(strongly_connected(&modules, &edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .collect())
}

/// Tarjan's algorithm over a small graph; each component sorted.
fn strongly_connected(
    nodes: &BTreeSet<String>,
    edges: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(next) = s.edges.get(v) {
            for w in next {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(lw));
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(iw));
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            comp.sort();
            s.out.push(comp);
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for n in nodes {
        if !s.index.contains_key(n.as_str()) {
            visit(&mut s, n);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_paths_and_use_groups_name_their_first_module() {
        let refs = crate_refs(
            "use crate::a::X;\nuse crate::{b, c::{D, E}, lock};\nfn f() { crate::d::g(); }",
        );
        let want: BTreeSet<String> = ["a", "b", "c", "lock", "d"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(refs, want);
    }

    #[test]
    fn test_modules_are_left_out() {
        let text = "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n";
        assert_eq!(without_tests(text), "use crate::a;\n");
    }

    #[test]
    fn a_circle_is_a_component_of_more_than_one_module() {
        let nodes: BTreeSet<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut edge = |x: &str, y: &str| {
            edges.entry(x.into()).or_default().insert(y.into());
        };
        edge("a", "b");
        edge("b", "c");
        edge("c", "a");
        edge("c", "d");
        let found: Vec<_> = strongly_connected(&nodes, &edges)
            .into_iter()
            .filter(|c| c.len() > 1)
            .collect();
        assert_eq!(found, vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    }

    #[test]
    fn only_the_dependencies_section_is_read() {
        let m = "[dependencies]\nfoo.workspace = true\nbar = \"1\"\n\"baz\" = { version = \"1\" }\n[dev-dependencies]\ntokio = \"1\"\n";
        assert_eq!(dependencies(m), vec!["foo", "bar", "baz"]);
    }
}
