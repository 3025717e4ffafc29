//! The module layering of `probes/src` and `exporter/src`, as ARCHITECTURE.md's "Layers" section writes it:
//! each crate's top-level modules, lowest first, and a module may name (`crate::module...`, in a `use` or a
//! path) only modules listed before it. So no two modules can import each other, directly or around a
//! circle. The order is read from ARCHITECTURE.md, so it is written once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The layer lines of ARCHITECTURE.md: `- <crate>: a, b, c` under `## Layers`.
fn layers() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let section = text.split("\n## Layers").nth(1).expect("ARCHITECTURE.md has a `## Layers` section");
    let section = section.split("\n## ").next().unwrap();
    let mut found = BTreeMap::new();
    for line in section.lines() {
        let Some(rest) = line.strip_prefix("- `") else { continue };
        let Some((krate, modules)) = rest.split_once("`: ") else { continue };
        let modules = modules.trim_end_matches('.').split(", ").map(|m| m.trim_matches('`').to_owned()).collect();
        found.insert(krate.to_owned(), modules);
    }
    found
}

/// Every `.rs` file under `dir`, with the top-level module it belongs to (None for the crate root).
fn files(dir: &Path, top: Option<&str>, out: &mut Vec<(PathBuf, Option<String>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let module = top.map(str::to_owned).or_else(|| (name != "lib" && name != "main").then(|| name.clone()));
        if path.is_dir() {
            files(&path, Some(module.as_deref().unwrap_or(&name)), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((path, module));
        }
    }
}

/// The top-level modules `line` names through `crate::` (a `use`, a path, or a `use crate::{a, b}` group).
fn named_modules(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with("pub(") || code[..at].ends_with("in ") {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        let heads: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
            None => vec![rest],
        };
        for head in heads {
            let ident: String = head.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // A lowercase first segment is a module; `crate::Label` is an item of the root.
            if ident.starts_with(|c: char| c.is_ascii_lowercase()) && ident != "self" {
                found.push(ident);
            }
        }
    }
    found
}

/// Every (importer, imported, file:line) of the top-level modules of the crate whose sources are in `src`.
fn imports(src: &Path) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    files(src, None, &mut all);
    let mut found = Vec::new();
    for (path, module) in all {
        let Some(module) = module else { continue };
        let text = std::fs::read_to_string(&path).unwrap();
        // A multi-line `use crate::{...}` group is read as one line.
        let joined = text.replace(",\n", ", ").replace("{\n", "{");
        for (number, line) in joined.lines().enumerate() {
            for imported in named_modules(line) {
                if imported != module {
                    let at = format!("{}:{}", path.display(), number + 1);
                    found.push((module.clone(), imported, at));
                }
            }
        }
    }
    found
}

/// What breaks the order in the crate whose sources are in `src`: a module not listed, an import of a module
/// not below the importer.
fn check(src: &Path, order: &[String]) -> Vec<String> {
    let rank: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
    let mut problems = Vec::new();
    let mut modules = Vec::new();
    files(src, None, &mut modules);
    let present: BTreeSet<String> = modules.into_iter().filter_map(|(_, m)| m).collect();
    for module in &present {
        if !rank.contains_key(module.as_str()) {
            problems.push(format!("{}: module `{module}` is not in ARCHITECTURE.md's layers", src.display()));
        }
    }
    for (from, to, at) in imports(src) {
        match (rank.get(from.as_str()), rank.get(to.as_str())) {
            (Some(a), Some(b)) if b >= a => {
                problems.push(format!("{at}: `{from}` imports `{to}`, which is not below it"));
            }
            _ => {}
        }
    }
    problems
}

#[test]
fn every_module_imports_only_modules_below_it() {
    let layers = layers();
    for krate in ["probes", "exporter"] {
        let order = layers.get(krate).unwrap_or_else(|| panic!("ARCHITECTURE.md lists no layers for {krate}"));
        let problems = check(&repo().join(krate).join("src"), order);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

#[test]
fn the_check_reports_a_back_import_a_grouped_one_and_an_unlisted_module() {
    assert_eq!(named_modules("use crate::record::Recorder;"), ["record"]);
    assert_eq!(named_modules("use crate::{signals, state, web};"), ["signals", "state", "web"]);
    assert_eq!(named_modules("    let x = crate::clock::now(); // crate::web"), ["clock"]);
    assert_eq!(named_modules("pub(crate) fn f() {}"), Vec::<String>::new());
    assert_eq!(named_modules("use crate::{Label, Probe};"), Vec::<String>::new());
    // A crate where `record` and `schedule` import each other (as they once did) and `web` is not listed.
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("main.rs"), "mod record;\nmod schedule;\nmod web;\n").unwrap();
    std::fs::create_dir(src.path().join("record")).unwrap();
    std::fs::write(src.path().join("record/mod.rs"), "use crate::{clock,\n    schedule::driver::Round};\n").unwrap();
    std::fs::write(src.path().join("schedule.rs"), "use crate::record::Recorder;\n").unwrap();
    std::fs::write(src.path().join("web.rs"), "").unwrap();
    let order = ["clock", "record", "schedule"].map(str::to_owned);
    let problems = check(src.path(), &order);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("`web` is not in")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("record/mod.rs:1: `record` imports `schedule`")), "{problems:?}");
}

/// Every path ARCHITECTURE.md names (a backticked word with a `/` ending in a file extension or a `/`) exists:
/// from the repository's root, or from the folder its table row speaks of (`exporter/src`, `probes/src`,
/// `tests`, `deploy`, ...). A file moved or removed without the document following fails here.
#[test]
fn every_path_architecture_names_exists() {
    let text = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let bases = ["", "exporter/src", "exporter/src/remote_write", "probes/src", "tests", "deploy", "deploy/launchd"];
    let mut missing = Vec::new();
    let mut checked = 0;
    for (i, word) in text.split('`').enumerate() {
        // Odd pieces are inside backticks.
        let is_path = i % 2 == 1
            && word.contains('/')
            && !word.starts_with('/')
            && !word.contains("://")
            && word.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/@".contains(c))
            && (word.ends_with('/') || word.rsplit('/').next().is_some_and(|name| name.contains('.')));
        if !is_path {
            continue;
        }
        checked += 1;
        if !bases.iter().any(|base| repo().join(base).join(word.trim_end_matches('/')).exists()) {
            missing.push(word.to_owned());
        }
    }
    assert!(checked > 50, "only {checked} paths found: is the test reading the document?");
    assert!(missing.is_empty(), "ARCHITECTURE.md names paths that do not exist: {missing:?}");
}

/// No source file of the two crates is over 600 lines: a module that grows past it is split along its own
/// seams (ARCHITECTURE.md, "Sizes"). Functions are kept under 120 lines by clippy (`too_many_lines`).
#[test]
fn no_source_file_is_over_600_lines() {
    let mut files = Vec::new();
    for krate in ["probes/src", "exporter/src"] {
        self::files(&repo().join(krate), None, &mut files);
    }
    assert!(files.len() > 50, "only {} files found", files.len());
    let long: Vec<String> = files
        .iter()
        .filter_map(|(path, _)| {
            let lines = std::fs::read_to_string(path).unwrap().lines().count();
            (lines > 600).then(|| format!("{} ({lines})", path.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over 600 lines: {long:?}");
}
