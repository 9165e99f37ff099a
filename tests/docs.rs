//! The project's documents (README.md and docs/*.md) point only at what the
//! repository has: every relative link resolves to a file in it (and a
//! `#fragment` to a heading of the Markdown file it names), and every
//! Markdown file they name, linked or not, is in the repository.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file under docs/.
fn documents() -> Vec<PathBuf> {
    let mut out = vec![repo().join("README.md")];
    let docs = repo().join("docs");
    // (A repository without docs/ still has its README checked.)
    let mut entries: Vec<PathBuf> = fs::read_dir(&docs)
        .into_iter()
        .flatten()
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    entries.sort();
    out.extend(entries);
    out
}

#[track_caller]
fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The lines outside fenced code blocks.
fn outside_fences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => out.push(line),
            _ => {}
        }
    }
    out
}

/// The text outside fenced code blocks, line by line, with inline code
/// spans blanked (they hold examples, not links).
fn prose(text: &str) -> Vec<String> {
    outside_fences(text)
        .into_iter()
        .map(|line| line.split('`').step_by(2).collect())
        .collect()
}

/// The targets of inline links `[text](target "title")` and of reference
/// definitions `[label]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        out.push(target.trim_matches(|c| c == '<' || c == '>').to_string());
        rest = &after[end..];
    }
    let t = line.trim_start();
    if let (true, Some(i)) = (t.starts_with('['), t.find("]:")) {
        if let Some(target) = t[i + 2..].split_whitespace().next() {
            out.push(target.to_string());
        }
    }
    out
}

/// A URL with a scheme (`https:`, `mailto:`), not a path in the repository.
fn is_external(target: &str) -> bool {
    match (target.find(':'), target.find(['/', '#'])) {
        (Some(colon), Some(path)) => colon < path,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// GitHub's anchor for a heading: lower case, without punctuation, spaces
/// as hyphens; repeated headings get `-1`, `-2`, ...
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for line in outside_fences(markdown) {
        let title = line.trim_start_matches('#');
        if title.len() == line.len() || !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 { slug.clone() } else { format!("{slug}-{n}") });
        *n += 1;
    }
    out
}

/// `path` without `.` and `..` components (never above the repository).
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves_to_a_file_in_the_repository() {
    let root = repo();
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = read(&doc);
        let name = doc.strip_prefix(&root).expect("inside the repository").to_path_buf();
        for (n, line) in prose(&text).iter().enumerate() {
            for target in link_targets(line) {
                if target.is_empty() || is_external(&target) {
                    continue;
                }
                checked += 1;
                let (file, fragment) = match target.split_once('#') {
                    Some((f, frag)) => (f, Some(frag)),
                    None => (target.as_str(), None),
                };
                let rel = if file.is_empty() {
                    Some(name.clone())
                } else {
                    normalize(&name.parent().expect("a parent").join(file))
                };
                let at = format!("{}:{}: {target}", name.display(), n + 1);
                let Some(rel) = rel.filter(|r| !r.starts_with("target")) else {
                    problems.push(format!("{at}: outside the repository"));
                    continue;
                };
                let full = root.join(&rel);
                if !full.exists() {
                    problems.push(format!("{at}: no {}", rel.display()));
                    continue;
                }
                if let (Some(frag), Some("md")) = (fragment, rel.extension().and_then(|x| x.to_str())) {
                    let known = anchors(&read(&full));
                    if !known.contains(frag) {
                        problems.push(format!("{at}: {} has no heading #{frag}", rel.display()));
                    }
                }
            }
        }
    }
    assert!(checked > 0, "the documents have relative links");
    assert!(problems.is_empty(), "links that lead nowhere:\n{}", problems.join("\n"));
}

#[test]
fn every_markdown_file_the_readme_and_docs_name_is_in_the_repository() {
    let root = repo();
    let mut missing = BTreeSet::new();
    for doc in documents() {
        let dir = doc.parent().expect("a parent").to_path_buf();
        for line in prose(&read(&doc)) {
            let words = line.split(|c: char| !(c.is_alphanumeric() || "_./-".contains(c)));
            for word in words.filter(|w| w.ends_with(".md") && w.len() > 3) {
                // Named bare ("FORMATS.md") or by a path from the document.
                let found = [dir.join(word), root.join(word), root.join("docs").join(word)]
                    .iter()
                    .any(|p| p.is_file());
                if !found && !word.contains("://") {
                    missing.insert(format!(
                        "{} names {word}",
                        doc.strip_prefix(&root).expect("inside").display()
                    ));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "Markdown files named but not in the repository:\n{}",
        missing.iter().cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn anchors_follow_githubs_rules() {
    let a = anchors("# 1. The legacy root\n## 4.3 The init layer\n### What `migrate` does\n## Notes\n## Notes\n```\n# not a heading\n```\n");
    let want: BTreeSet<String> = [
        "1-the-legacy-root",
        "43-the-init-layer",
        "what-migrate-does",
        "notes",
        "notes-1",
    ]
    .map(String::from)
    .into();
    assert_eq!(a, want);
}
