//! The module graph of the library follows `docs/ARCHITECTURE.md` ("What may import what"):
//! no cycle between top-level modules, leaves that import no stage, and the scoring stages
//! (`prototype`, `baseline`, `guidance`) free of `backbone`. Read from the sources, so a new
//! `use crate::...` that breaks a rule fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules and the modules each one imports (`crate::x` outside doc comments, comments
/// and `#[cfg(test)]` modules).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        if name == "lib" {
            continue;
        }
        let mut files = Vec::new();
        collect_rs(&path, &mut files);
        let mut deps = BTreeSet::new();
        for file in files {
            for dep in crate_imports(&std::fs::read_to_string(&file).unwrap()) {
                if dep != name {
                    deps.insert(dep);
                }
            }
        }
        graph.insert(name, deps);
    }
    graph
}

fn collect_rs(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            collect_rs(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The first path segment after every `crate::` in code (not comments), stopping at the file's
/// `#[cfg(test)]` module.
fn crate_imports(source: &str) -> BTreeSet<String> {
    let code = match source.find("#[cfg(test)]\nmod tests") {
        Some(i) => &source[..i],
        None => source,
    };
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let segment: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !segment.is_empty() && segment.chars().next().unwrap().is_ascii_lowercase() {
                found.insert(segment);
            }
        }
    }
    found
}

/// A cycle through `start`, if any (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(dep, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = module_graph();
    assert!(
        graph.contains_key("model") && graph.contains_key("ops"),
        "{graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn leaves_and_scoring_stages_import_what_the_architecture_allows() {
    let graph = module_graph();
    let allowed: &[(&str, &[&str])] = &[
        ("ops", &["error"]),
        ("kernels", &["error"]),
        ("io", &["error"]),
        ("rng", &["error"]),
        ("data", &["error", "io", "rng", "ops"]),
        ("prototype", &["error", "ops", "rng", "baseline"]),
        ("baseline", &["error", "ops", "rng", "kernels"]),
        ("guidance", &["error", "ops", "prototype", "baseline"]),
        ("report", &["error", "data", "eval", "model", "io"]),
    ];
    for (module, ok) in allowed {
        let deps = &graph[*module];
        let extra: Vec<&String> = deps.iter().filter(|d| !ok.contains(&d.as_str())).collect();
        assert!(
            extra.is_empty(),
            "`{module}` imports {extra:?}; allowed: {ok:?}"
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    assert_eq!(
        crate_imports(
            "use crate::ops::x; // crate::model\n#[cfg(test)]\nmod tests { use crate::eval; }"
        ),
        BTreeSet::from(["ops".to_string()])
    );
}
