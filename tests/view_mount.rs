//! Mounting the read-only view: what `graph2aufs mount` refuses, `--daemon`,
//! ending a mount by signal or umount, and the commands that refuse a ROOT
//! covered by a view. What the view shows: tests/view_ro.rs.

mod common;
use common::*;

#[path = "view/fixture.rs"]
mod fixture;
use fixture::*;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rustix::process::{Pid, Signal};

/// How long a `graph2aufs mount` that must be refused may take.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `graph2aufs ARGS`, which must mount nothing at any of
/// `mountpoints`; if it does, detaches it and fails naming `row`.
#[track_caller]
fn run_refused(row: &str, args: &[OsString], mountpoints: &[PathBuf]) -> RunResult {
    struct Detach<'a>(&'a [PathBuf]);
    impl Drop for Detach<'_> {
        fn drop(&mut self) {
            for mp in self.0.iter().filter(|mp| is_mounted(mp)) {
                lazy_umount(mp);
            }
        }
    }
    let guard = Detach(mountpoints);
    let timeout = if args[0] == "mount" {
        REFUSAL_TIMEOUT
    } else {
        RUN_TIMEOUT
    };
    let result = run_command(g2a(args), timeout);
    let mounted: Vec<&PathBuf> = mountpoints.iter().filter(|mp| is_mounted(mp)).collect();
    drop(guard);
    assert!(
        mounted.is_empty(),
        "[{row}] {} mounted something at {mounted:?}:\n{result}",
        result.command
    );
    result
}

/// Where a command of a refusal row runs: on ROOT alone, or with a
/// read-only view of ROOT mounted elsewhere (at VIEW_MP) or over ROOT
/// itself.
#[derive(Clone, Copy, Debug)]
enum Scene {
    Alone,
    ViewElsewhere,
    ViewOverRoot,
}

/// A row of [`refusals_say_why_and_change_nothing`]: in `scene`, `args`
/// exit with `code`, and standard error says each of `says`. In both,
/// these words stand for paths: ROOT; NO_ROOT and NO_MP (missing, beside
/// ROOT); MP (an empty directory beside ROOT), FULL_MP (one holding a
/// file), MP_IN_ROOT (ROOT/volumes/view); VIEW_MP (the scene's view).
struct Refusal {
    row: &'static str,
    scene: Scene,
    args: &'static [&'static str],
    code: i32,
    says: &'static [&'static str],
}

const REFUSALS: &[Refusal] = &[
    Refusal {
        row: "mount of a missing ROOT",
        scene: Scene::Alone,
        args: &["mount", "NO_ROOT", "MP", "--read-only"],
        code: 2,
        says: &["NO_ROOT"],
    },
    Refusal {
        row: "mount on a missing mount point",
        scene: Scene::Alone,
        args: &["mount", "ROOT", "NO_MP", "--read-only"],
        code: 2,
        says: &["NO_MP"],
    },
    Refusal {
        row: "mount on a non-empty mount point other than ROOT",
        scene: Scene::Alone,
        args: &["mount", "ROOT", "FULL_MP", "--read-only"],
        code: 2,
        says: &["not empty"],
    },
    Refusal {
        row: "migrate of a ROOT covered by a view",
        scene: Scene::ViewOverRoot,
        args: &["migrate", "ROOT"],
        code: 2,
        says: &["covered by a live graph2aufs mount"],
    },
    Refusal {
        row: "verify of a ROOT covered by a view",
        scene: Scene::ViewOverRoot,
        args: &["verify", "ROOT"],
        code: 2,
        says: &["covered by a live graph2aufs mount"],
    },
    Refusal {
        row: "rollback of a ROOT covered by a view",
        scene: Scene::ViewOverRoot,
        args: &["rollback", "ROOT"],
        code: 2,
        says: &["covered by a live graph2aufs mount"],
    },
    Refusal {
        row: "a read-write mount while another view shows ROOT",
        scene: Scene::ViewElsewhere,
        args: &["mount", "ROOT", "MP"],
        code: 2,
        says: &["live graph2aufs mount", "VIEW_MP"],
    },
    Refusal {
        row: "a read-write mount --daemon while another view shows ROOT",
        scene: Scene::ViewElsewhere,
        args: &["mount", "ROOT", "MP", "--daemon"],
        code: 2,
        says: &["live graph2aufs mount", "VIEW_MP"],
    },
    Refusal {
        row: "mount on a mount point inside ROOT",
        scene: Scene::Alone,
        args: &["mount", "ROOT", "MP_IN_ROOT", "--read-only"],
        code: 2,
        says: &["inside ROOT"],
    },
    Refusal {
        row: "migrate of a ROOT a view shows from elsewhere",
        scene: Scene::ViewElsewhere,
        args: &["migrate", "ROOT"],
        code: 2,
        says: &["shown by a live graph2aufs mount"],
    },
    Refusal {
        row: "rollback of a ROOT a view shows from elsewhere",
        scene: Scene::ViewElsewhere,
        args: &["rollback", "ROOT"],
        code: 2,
        says: &["shown by a live graph2aufs mount"],
    },
    // Not refused: plan reads a viewed ROOT (1: it reports its broken items).
    Refusal {
        row: "plan of a ROOT a view shows from elsewhere",
        scene: Scene::ViewElsewhere,
        args: &["plan", "ROOT"],
        code: 1,
        says: &[],
    },
];

/// What `graph2aufs mount` refuses, and the commands that refuse a ROOT a
/// view covers or shows (each row of [`REFUSALS`]): the exit code, a
/// message that says why, nothing mounted, and ROOT as it was.
#[test]
fn refusals_say_why_and_change_nothing() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(71);
    let (mp, full_mp, view_mp) = (fx.scratch("mp"), fx.scratch("full-mp"), fx.scratch("view-mp"));
    fs::write(full_mp.join("something"), b"in the way\n").expect("a file in the mount point");
    let mp_in_root = fx.root.join("volumes").join("view");
    let paths = [
        ("NO_ROOT", fx.dir.path().join("no-such-root")),
        ("ROOT", fx.root.clone()),
        ("NO_MP", fx.dir.path().join("no-such-mountpoint")),
        ("FULL_MP", full_mp),
        ("MP_IN_ROOT", mp_in_root.clone()),
        ("VIEW_MP", view_mp.clone()),
        ("MP", mp),
    ];
    let path = |word: &str| paths.iter().find(|(w, _)| *w == word).map(|(_, p)| p.clone());
    for refusal in REFUSALS {
        let Refusal {
            row,
            scene,
            args,
            code,
            says,
        } = refusal;
        let uses = |word: &str| args.contains(&word);
        // (Made and removed in the row: it changes ROOT.)
        if uses("MP_IN_ROOT") {
            fs::create_dir_all(&mp_in_root).expect("a mount point inside ROOT");
        }
        let before = snapshot(&fx.root);
        let view = match scene {
            Scene::Alone => None,
            Scene::ViewElsewhere => Some(Mount::start(&fx.root, &view_mp, &["--read-only"], BOUND)),
            Scene::ViewOverRoot => Some(Mount::start(&fx.root, &fx.root, &["--read-only"], BOUND)),
        };
        let args: Vec<OsString> = args
            .iter()
            .map(|a| path(a).map_or_else(|| OsString::from(a), PathBuf::into_os_string))
            .collect();
        let watched: Vec<PathBuf> = ["MP", "NO_MP", "FULL_MP", "MP_IN_ROOT"]
            .into_iter()
            .filter_map(path)
            .collect();
        let r = run_refused(row, &args, &watched);
        assert_eq!(r.code, *code, "[{row}] exit code {code} ({scene:?}):\n{r}");
        for said in *says {
            let said = path(said).map_or_else(|| said.to_string(), |p| p.display().to_string());
            assert!(r.stderr.contains(&said), "[{row}] the message says {said:?}:\n{r}");
        }
        if let Some(view) = view {
            unmount_cleanly(view);
        }
        assert_same(
            &before,
            &snapshot(&fx.root),
            &format!("[{row}] ROOT before (a) and after (b)"),
        );
        if uses("MP_IN_ROOT") {
            fs::remove_dir(&mp_in_root).expect("the mount point inside ROOT is removed");
        }
    }
}

#[test]
fn daemon_returns_once_the_view_is_usable_and_umount_ends_the_server() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(73);
    let mp = fs::canonicalize(fx.scratch("mp")).expect("a canonical mount point");
    // `--daemon` returns while its server keeps the mount: the guard watches a
    // shell that runs it, reports its exit code and its output, then stays
    // while the view is mounted.
    let script = r#""$0" mount "$1" "$2" --read-only --daemon; echo "daemon exit $?";
        while grep -q " $2 " /proc/self/mounts; do sleep 0.05; done"#;
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg(bin()).arg(&fx.root).arg(&mp);
    let mount = Mount::start_command(cmd, &mp, BOUND);
    let code = wait_for(Duration::from_secs(10), || {
        let log = mount.log();
        let line = log.lines().find_map(|l| l.strip_prefix("daemon exit "))?;
        Some(line.trim().to_string())
    })
    .unwrap_or_else(|| panic!("`mount --daemon` did not return; the log:\n{}", mount.log()));
    assert_eq!(code, "0", "`mount --daemon` exits 0; the log:\n{}", mount.log());
    let names = names_in(&mp).expect("the view answers once --daemon has returned");
    assert!(
        names.contains(OsStr::new("aufs")) && names.contains(OsStr::new("repositories-aufs")),
        "{names:?}"
    );
    let log = mount.log();
    let pid: i32 = log
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("`mount --daemon` prints the server's pid; the log:\n{log}"));
    assert!(!has_ended(pid), "the server {pid} runs while the view is mounted");
    let r = run_command(
        {
            let mut c = Command::new("umount");
            c.arg(&mp);
            c
        },
        REFUSAL_TIMEOUT,
    );
    assert_eq!(r.code, 0, "umount:\n{r}");
    assert!(
        ends_within(pid, Duration::from_secs(10)),
        "the server {pid} ends once unmounted"
    );
    assert!(!is_mounted(&mp));
    drop(mount);
}

#[test]
fn sigterm_and_sigint_unmount_a_foreground_mount_cleanly() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(74);
    let mp = fx.scratch("mp");
    for signal in [Signal::TERM, Signal::INT] {
        let mount = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
        names_in(&mp).expect("the view answers");
        let pid = Pid::from_raw(mount.pid() as i32).expect("a server pid");
        rustix::process::kill_process(pid, signal).expect("signalling the server");
        let status = mount
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("the server did not exit on {signal:?}; its log:\n{}", mount.log()));
        assert!(
            status.success(),
            "{signal:?}: the server exited with {status}; its log:\n{}",
            mount.log()
        );
        assert!(
            !is_mounted(&mp),
            "{signal:?}: nothing is left mounted at {}",
            mp.display()
        );
        drop(mount);
    }
}

/// A signal that comes while something holds the view for a moment (a
/// process whose working directory is in it, a path walk under way) still
/// unmounts it once that lets go, as `umount` does for the caller who
/// retries: the server tried once, met EBUSY, and stayed mounted forever.
#[test]
fn a_signal_while_the_view_is_busy_for_a_moment_still_unmounts_it() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(75);
    let mp = fx.scratch("mp");
    let mount = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
    names_in(&mp).expect("the view answers");
    // Busy for 0.5 s: a shell whose working directory is the view.
    let mut holder = std::process::Command::new("sh")
        .args(["-c", "sleep 0.5"])
        .current_dir(&mp)
        .spawn()
        .expect("starting a process in the view");
    let pid = Pid::from_raw(mount.pid() as i32).expect("a server pid");
    rustix::process::kill_process(pid, Signal::TERM).expect("signalling the server");
    let held = holder.wait().expect("the holder ends");
    assert!(held.success());
    let status = mount.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "the server did not exit once the view was free; its log:\n{}",
            mount.log()
        )
    });
    assert!(
        status.success(),
        "the server exited with {status}; its log:\n{}",
        mount.log()
    );
    assert!(!is_mounted(&mp), "nothing is left mounted at {}", mp.display());
    drop(mount);
}
