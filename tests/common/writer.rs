//! A writer busy in a directory (through a view, while its layer moves):
//! files created, rewritten, renamed and removed, and a log appended to
//! through one handle all along; it keeps what it expects to find there.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What a writer left in its directory: name -> content.
pub type Written = BTreeMap<String, String>;

/// Writer `k` creates `dir` and works in it until `stop` (20 rounds at
/// least, one every `pause`); any error panics, naming the writer. The
/// answer: what it left there, and how many rounds it made.
pub fn write_until(k: usize, dir: &Path, stop: &AtomicBool, pause: Duration) -> (Written, u64) {
    fs::create_dir(dir).unwrap_or_else(|e| panic!("writer {k}: {}: {e}", dir.display()));
    let mut model = Written::new();
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))
        .unwrap_or_else(|e| panic!("writer {k}: opening the log: {e}"));
    let mut logged = String::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) || n < 20 {
        let name = format!("f{n}");
        let body = format!("{k}:{n}:").repeat(1 + (n as usize % 50));
        fs::write(dir.join(&name), &body).unwrap_or_else(|e| panic!("writer {k}: writing {name}: {e}"));
        model.insert(name, body);
        if n % 3 == 2 {
            let (from, to) = (format!("f{}", n - 1), format!("g{}", n - 1));
            fs::rename(dir.join(&from), dir.join(&to)).unwrap_or_else(|e| panic!("writer {k}: {from}: {e}"));
            let b = model.remove(&from).expect("written the round before");
            model.insert(to, b);
        }
        if n % 5 == 4 {
            let gone = format!("f{}", n - 2);
            if model.remove(&gone).is_some() {
                fs::remove_file(dir.join(&gone)).unwrap_or_else(|e| panic!("writer {k}: {gone}: {e}"));
            }
        }
        let line = format!("{n}\n");
        log.write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("writer {k}: the log: {e}"));
        logged.push_str(&line);
        n += 1;
        std::thread::sleep(pause);
    }
    model.insert("log".into(), logged);
    (model, n)
}

/// What a directory holds: name -> content (files only).
pub fn read_back(dir: &Path) -> Written {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            let content = fs::read_to_string(e.path()).unwrap_or_else(|x| panic!("{}: {x}", e.path().display()));
            (e.file_name().into_string().expect("names the writer chose"), content)
        })
        .collect()
}
