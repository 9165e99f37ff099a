//! Hostile and extreme roots: every input gets a clear report, changes
//! nothing outside ROOT, loses nothing, and uses bounded memory and time.

mod common;

use common::*;
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

fn hex_id(n: usize) -> String {
    format!("{:064x}", n as u128 * 0x9e37_79b9_7f4a_7c15 + 1)
}

/// A legacy image with a one-file layer.
fn image(root: &Path, id: &str, parent: Option<&str>) {
    let dir = root.join("graph").join(id);
    fs::create_dir_all(dir.join("layer")).unwrap();
    let json = match parent {
        Some(p) => format!(r#"{{"id":"{id}","parent":"{p}"}}"#),
        None => format!(r#"{{"id":"{id}"}}"#),
    };
    fs::write(dir.join("json"), json).unwrap();
    fs::write(dir.join("layer").join("file"), id.as_bytes()).unwrap();
}

fn item<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item {id} in {doc}"))
}

/// Gives a symlink itself an old atime (which relatime would update on any
/// read of the link).
fn set_link_atime(link: &Path, secs: i64) {
    let times = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    let c = std::ffi::CString::new(link.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C path and two timespecs.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(r, 0, "utimensat {}", link.display());
}

fn sha(p: &Path) -> [u8; 32] {
    Sha256::digest(fs::read(p).unwrap()).into()
}

/// Peak resident memory of the children this test process waited for, in KiB.
fn children_peak_kib() -> i64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) }, 0);
    ru.ru_maxrss
}

fn scratch() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(root.join("graph")).unwrap();
    fs::create_dir_all(root.join("containers")).unwrap();
    (t, root)
}

#[test]
fn a_chain_1000_images_deep_migrates_with_every_ancestor_in_the_deepest_layers_file() {
    let (_t, root) = scratch();
    let ids: Vec<String> = (0..1000).map(hex_id).collect();
    for (i, id) in ids.iter().enumerate() {
        image(&root, id, i.checked_sub(1).map(|p| ids[p].as_str()));
    }
    let (code, plan) = run_json(["plan".as_ref(), root.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(plan["totals"]["pending"], 1000);
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(0);
    let deepest = fs::read_to_string(root.join("aufs/layers").join(&ids[999])).unwrap();
    let expected: String = ids[..999].iter().rev().map(|id| format!("{id}\n")).collect();
    assert_eq!(deepest, expected);
    run(["verify".as_ref(), root.as_os_str()]).expect_code(0);
}

#[test]
fn a_parent_id_of_4000_bytes_is_reported_and_never_used_as_a_name() {
    let (_t, root) = scratch();
    let id = hex_id(1);
    let long = "a".repeat(4000);
    image(&root, &id, Some(&long));
    let (code, plan) = run_json(["plan".as_ref(), root.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 1);
    let it = item(&plan, &id);
    assert_eq!(it["state"], "quarantined");
    assert!(it["reason"].as_str().unwrap().contains("4000 bytes"), "{it}");
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(1);
    assert_eq!(
        fs::read(root.join(".graph2aufs/quarantine/graph").join(&id).join("layer/file")).unwrap(),
        id.as_bytes()
    );
}

#[test]
fn a_json_of_100_mb_is_refused_without_being_read() {
    let (_t, root) = scratch();
    let id = hex_id(2);
    image(&root, &id, None);
    let json = fs::OpenOptions::new()
        .write(true)
        .open(root.join("graph").join(&id).join("json"))
        .unwrap();
    json.set_len(100 << 20).unwrap();
    let before = children_peak_kib();
    let (code, plan) = run_json(["plan".as_ref(), root.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 1);
    let reason = item(&plan, &id)["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("larger than"), "{reason}");
    let peak = children_peak_kib().max(before);
    assert!(peak < 64 * 1024, "plan of a 100 MB JSON peaked at {peak} KiB");
}

#[test]
fn a_layers_file_of_several_megabytes_is_set_aside_not_overwritten_and_rollback_restores_it() {
    let (_t, root) = scratch();
    let id = hex_id(3);
    image(&root, &id, None);
    fs::create_dir_all(root.join("aufs/layers")).unwrap();
    let junk: Vec<u8> = (0..6 << 20).map(|i: u32| b'a' + (i % 26) as u8).collect();
    let layers = root.join("aufs/layers").join(&id);
    fs::write(&layers, &junk).unwrap();
    let digest = sha(&layers);
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(0);
    assert_eq!(fs::read(&layers).unwrap(), b"", "a base layer's file is empty");
    assert_eq!(sha(&root.join(".graph2aufs/quarantine/aufs/layers").join(&id)), digest);
    run(["rollback".as_ref(), root.as_os_str()]).expect_code(0);
    assert_eq!(sha(&layers), digest, "rollback puts the original layers/ file back");
    assert!(root.join("graph").join(&id).join("layer/file").exists());
}

#[test]
fn symlinks_out_of_root_at_an_image_directory_are_reported_and_never_followed() {
    let (t, root) = scratch();
    let outside = t.path().join("outside");
    let id = hex_id(4);
    image(&outside, &id, None);
    symlink(outside.join("graph").join(&id), root.join("graph").join(&id)).unwrap();
    let before = snapshot(&outside);
    let (code, plan) = run_json(["plan".as_ref(), root.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 1);
    let it = item(&plan, &id);
    assert_eq!(it["state"], "quarantined");
    assert!(it["reason"].as_str().unwrap().contains("symlink"), "{it}");
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(1);
    assert_same(&before, &snapshot(&outside), "the directory outside ROOT");
    assert!(fs::symlink_metadata(root.join("graph").join(&id))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_symlinked_aufs_directory_is_refused_with_a_clear_error_and_nothing_changes() {
    let (t, root) = scratch();
    image(&root, &hex_id(5), None);
    let outside = t.path().join("elsewhere");
    fs::create_dir_all(outside.join("diff")).unwrap();
    symlink(&outside, root.join("aufs")).unwrap();
    let before_root = snapshot(&root);
    let before_out = snapshot(&outside);
    let r = run(["migrate".as_ref(), root.as_os_str()]);
    r.expect_code(2);
    assert!(r.stderr.contains("aufs") && r.stderr.contains("symlink"), "{r}");
    assert_same(
        &before_out,
        &snapshot(&outside),
        "the directory the aufs symlink points to",
    );
    assert_same(
        &before_root.without([".graph2aufs"]),
        &snapshot(&root).without([".graph2aufs"]),
        "ROOT",
    );
}

#[test]
fn hard_links_to_files_outside_the_layer_keep_their_content_and_links() {
    let (t, root) = scratch();
    let id = hex_id(6);
    image(&root, &id, None);
    let outside = t.path().join("outside-file");
    fs::write(&outside, b"shared").unwrap();
    fs::hard_link(&outside, root.join("graph").join(&id).join("layer/linked")).unwrap();
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(0);
    let moved = root.join("aufs/diff").join(&id).join("linked");
    assert_eq!(
        fs::metadata(&outside).unwrap().ino(),
        fs::metadata(&moved).unwrap().ino()
    );
    assert_eq!(fs::metadata(&outside).unwrap().nlink(), 2);
    assert_eq!(fs::read(&outside).unwrap(), b"shared");
}

#[test]
fn a_layer_of_100000_entries_in_one_directory_moves_whole() {
    let (_t, root) = scratch();
    let id = hex_id(7);
    image(&root, &id, None);
    let big = root.join("graph").join(&id).join("layer/big");
    fs::create_dir(&big).unwrap();
    for i in 0..100_000 {
        fs::File::create(big.join(format!("f{i}"))).unwrap();
    }
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(0);
    assert_eq!(
        fs::read_dir(root.join("aufs/diff").join(&id).join("big"))
            .unwrap()
            .count(),
        100_000
    );
    run(["verify".as_ref(), root.as_os_str()]).expect_code(0);
}

#[test]
fn ids_that_would_escape_or_collide_are_quarantined_by_name() {
    let (_t, root) = scratch();
    for (dir, json_id) in [
        ("x-removing", "x-removing"),
        (".graph2aufs-evil", ".graph2aufs-evil"),
        ("a:b", "a:b"),
    ] {
        let d = root.join("graph").join(dir);
        fs::create_dir_all(d.join("layer")).unwrap();
        fs::write(d.join("json"), format!(r#"{{"id":"{json_id}"}}"#)).unwrap();
    }
    let good = hex_id(8);
    image(&root, &good, Some("../../etc"));
    let (code, plan) = run_json(["plan".as_ref(), root.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 1, "{plan}");
    assert_eq!(item(&plan, "x-removing")["state"], "quarantined");
    assert_eq!(item(&plan, "a:b")["state"], "quarantined");
    let parent_reason = item(&plan, &good)["reason"].as_str().unwrap().to_string();
    assert!(parent_reason.contains("not a safe id"), "{parent_reason}");
    let names = plan["notes"].as_array().unwrap();
    assert!(names.iter().any(|n| n["path"] == "graph/.graph2aufs-evil"), "{plan}");
}

#[test]
fn a_directory_of_100000_entries_lists_and_stats_through_the_read_only_view() {
    if !require_root_and_fuse() {
        return;
    }
    let (t, root) = scratch();
    let id = hex_id(9);
    image(&root, &id, None);
    let big = root.join("graph").join(&id).join("layer/big");
    fs::create_dir(&big).unwrap();
    for i in 0..100_000 {
        fs::File::create(big.join(format!("f{i}"))).unwrap();
    }
    let mp = t.path().join("view");
    fs::create_dir(&mp).unwrap();
    let mount = Mount::start(&root, &mp, &["--read-only"], std::time::Duration::from_secs(300));
    // Every entry looked up stays known to the kernel, each with a
    // descriptor in the server: far more than a default descriptor limit.
    let mut n = 0;
    for dir in [
        mp.join("aufs/diff").join(&id).join("big"),
        mp.join("aufs/mnt").join(&id).join("big"),
    ] {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            fs::symlink_metadata(e.path()).unwrap_or_else(|err| panic!("stat {}: {err}", e.path().display()));
            n += 1;
        }
    }
    assert_eq!(n, 200_000);
    mount.unmount();
}

fn run_code(args: &[&std::ffi::OsStr]) -> RunResult {
    run(args.iter().copied())
}

/// A Docker-1.8 registration of an image: the symlink, the layers file, the
/// mount point.
fn docker18(root: &Path, id: &str) {
    for d in ["diff", "layers", "mnt"] {
        fs::create_dir_all(root.join("aufs").join(d)).unwrap();
    }
    symlink(
        root.join("graph").join(id).join("layer"),
        root.join("aufs/diff").join(id),
    )
    .unwrap();
    fs::write(root.join("aufs/layers").join(id), b"").unwrap();
    fs::create_dir(root.join("aufs/mnt").join(id)).unwrap();
}

#[test]
fn a_broken_image_docker_18_registered_is_quarantined_with_its_registration_and_rollback_restores_all() {
    let (_t, root) = scratch();
    let id = hex_id(10);
    image(&root, &id, None);
    docker18(&root, &id);
    fs::write(root.join("graph").join(&id).join("json"), b"{not json").unwrap();
    let before = snapshot(&root);
    run_code(&["migrate".as_ref(), root.as_os_str()]).expect_code(1);
    for d in ["diff", "layers", "mnt"] {
        assert!(
            fs::symlink_metadata(root.join("aufs").join(d).join(&id)).is_err(),
            "aufs/{d}/{id} left in Docker's way"
        );
        assert!(fs::symlink_metadata(root.join(".graph2aufs/quarantine/aufs").join(d).join(&id)).is_ok());
    }
    let v = run_code(&["verify".as_ref(), root.as_os_str()]);
    v.expect_code(1);
    assert!(
        !v.stdout.contains("has no aufs/diff") && !v.stdout.contains("is a symlink"),
        "{v}"
    );
    run_code(&["rollback".as_ref(), root.as_os_str()]).expect_code(0);
    assert_same(&before, &snapshot(&root), "the root after rollback");
}

#[test]
fn an_item_quarantined_then_migrated_by_a_later_run_rolls_back_to_its_legacy_place() {
    let (_t, root) = scratch();
    let (base, kid) = (hex_id(11), hex_id(12));
    image(&root, &kid, Some(&base));
    let with_kid = snapshot(&root);
    run_code(&["migrate".as_ref(), root.as_os_str()]).expect_code(1);
    assert!(root
        .join(".graph2aufs/quarantine/graph")
        .join(&kid)
        .join("layer")
        .is_dir());
    image(&root, &base, None);
    let before = snapshot(&root).without([".graph2aufs"]);
    run_code(&["migrate".as_ref(), root.as_os_str()]).expect_code(0);
    assert_eq!(
        fs::read_to_string(root.join("aufs/layers").join(&kid)).unwrap(),
        format!("{base}\n")
    );
    let r = run_code(&["rollback".as_ref(), root.as_os_str()]);
    r.expect_code(0);
    let after = snapshot(&root);
    assert!(after.get(Path::new(".graph2aufs")).is_none(), "{r}");
    // The kid is back in graph/ (where it was before the first run), not lost.
    assert_same(
        &before.without([""]).normalized(|_, e| e.mtime_ns = 0),
        &after.without([""]).normalized(|_, e| e.mtime_ns = 0),
        "the root after rollback",
    );
    drop(with_kid);
}

#[test]
fn a_container_whose_image_is_another_container_is_quarantined() {
    let (_t, root) = scratch();
    let img = hex_id(13);
    image(&root, &img, None);
    let (a, b) = (hex_id(14), hex_id(15));
    for (c, image) in [(&a, &img), (&b, &a)] {
        let d = root.join("containers").join(c);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("config.json"), format!(r#"{{"ID":"{c}","Image":"{image}"}}"#)).unwrap();
    }
    let (code, plan) = run_json(["plan".as_ref(), root.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 1, "{plan}");
    assert_eq!(item(&plan, &a)["state"], "pending");
    assert_eq!(item(&plan, &b)["state"], "quarantined");
    assert!(
        item(&plan, &b)["reason"].as_str().unwrap().contains("does not exist"),
        "{plan}"
    );
}

#[test]
fn an_id_too_long_for_the_names_derived_from_it_is_quarantined_before_anything_moves() {
    let (_t, root) = scratch();
    let long = "b".repeat(231);
    image(&root, &long, None);
    let (code, plan) = run_json(["plan".as_ref(), root.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 1);
    assert!(
        item(&plan, &long)["reason"].as_str().unwrap().contains("at most 230"),
        "{plan}"
    );
    run_code(&["migrate".as_ref(), root.as_os_str()]).expect_code(1);
    assert!(root
        .join(".graph2aufs/quarantine/graph")
        .join(&long)
        .join("layer/file")
        .is_file());
}

#[test]
fn plan_reads_no_symlink_so_their_access_times_stay() {
    let (_t, root) = scratch();
    let id = hex_id(16);
    image(&root, &id, None);
    docker18(&root, &id);
    let link = root.join("aufs/diff").join(&id);
    // An old atime: relatime would update it on any read of the link.
    set_link_atime(&link, 1_000_000);
    run_code(&["plan".as_ref(), root.as_os_str()]).expect_code(0);
    assert_eq!(
        fs::symlink_metadata(&link).unwrap().atime(),
        1_000_000,
        "plan read the symlink"
    );
}

#[test]
fn when_both_repositories_files_exist_the_legacy_one_is_set_aside_and_the_view_shows_it_there() {
    let (t, root) = scratch();
    let id = hex_id(17);
    image(&root, &id, None);
    let legacy = format!(r#"{{"Repositories":{{"old":{{"latest":"{id}"}}}}}}"#);
    fs::write(root.join("repositories"), &legacy).unwrap();
    fs::write(root.join("repositories-aufs"), br#"{"Repositories":{}}"#).unwrap();
    let before = snapshot(&root);
    if require_root_and_fuse() {
        let mp = t.path().join("view");
        fs::create_dir(&mp).unwrap();
        let mount = Mount::start(&root, &mp, &["--read-only"], std::time::Duration::from_secs(60));
        assert!(
            fs::symlink_metadata(mp.join("repositories")).is_err(),
            "the view hides repositories"
        );
        assert_eq!(
            fs::read(mp.join("repositories-aufs")).unwrap(),
            br#"{"Repositories":{}}"#
        );
        assert_eq!(
            fs::read_to_string(mp.join(".graph2aufs/quarantine/repositories")).unwrap(),
            legacy
        );
        mount.unmount();
    }
    let (code, doc) = run_json(["migrate".as_ref(), root.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 1, "a conflict is a problem reported: {doc}");
    assert_eq!(doc["repositories"]["action"], "set-aside", "{doc}");
    assert!(
        fs::symlink_metadata(root.join("repositories")).is_err(),
        "Docker's Migrate would rename it over"
    );
    assert_eq!(
        fs::read_to_string(root.join(".graph2aufs/quarantine/repositories")).unwrap(),
        legacy
    );
    assert_eq!(
        fs::read(root.join("repositories-aufs")).unwrap(),
        br#"{"Repositories":{}}"#
    );
    run(["rollback".as_ref(), root.as_os_str()]).expect_code(0);
    assert_same(&before, &snapshot(&root), "the root after rollback");
}

#[test]
fn a_failed_item_is_tried_again_and_its_children_wait_for_it() {
    let (_t, root) = scratch();
    let (a, b, c) = (hex_id(20), hex_id(21), hex_id(22));
    image(&root, &a, None);
    image(&root, &b, Some(&a));
    image(&root, &c, Some(&b));
    fs::create_dir_all(root.join("aufs/mnt")).unwrap();
    fs::write(root.join("aufs/mnt").join(&b), b"in the way").unwrap();
    let (code, doc) = run_json(["migrate".as_ref(), root.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(item(&doc, &b)["state"], "failed");
    assert_eq!(
        item(&doc, &c)["state"],
        "failed",
        "never registered on an unregistered parent"
    );
    assert!(!root.join("aufs/layers").join(&c).exists());
    let (_, status) = run_json(["status".as_ref(), root.as_os_str(), "--json".as_ref()]);
    assert_eq!(item(&status, &b)["state"], "failed", "status reports why: {status}");
    fs::remove_file(root.join("aufs/mnt").join(&b)).unwrap();
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(0);
    run(["verify".as_ref(), root.as_os_str()]).expect_code(0);
}

#[test]
fn an_item_quarantined_with_its_docker_18_registration_then_migrated_rolls_back_exactly() {
    let (_t, root) = scratch();
    let (base, kid) = (hex_id(23), hex_id(24));
    image(&root, &kid, Some(&base));
    docker18(&root, &kid);
    let before = snapshot(&root);
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(1);
    image(&root, &base, None);
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(0);
    assert!(fs::symlink_metadata(root.join("aufs/diff").join(&kid))
        .unwrap()
        .is_dir());
    run(["rollback".as_ref(), root.as_os_str()]).expect_code(0);
    assert!(
        fs::symlink_metadata(root.join(".graph2aufs")).is_err(),
        "nothing of graph2aufs is left"
    );
    let after = snapshot(&root);
    for sub in [
        format!("graph/{kid}"),
        "aufs/diff".into(),
        "aufs/layers".into(),
        "aufs/mnt".into(),
    ] {
        assert_same(
            &before.subtree(&sub).without([""]),
            &after.subtree(&sub).without([""]),
            &sub,
        );
    }
}

#[test]
fn rollback_gives_back_an_empty_aufs_diff_directory_with_its_mode_owner_and_mtime() {
    if !require_root() {
        return;
    }
    let (_t, root) = scratch();
    let id = hex_id(25);
    image(&root, &id, None);
    let empty = root.join("aufs/diff").join(&id);
    fs::create_dir_all(&empty).unwrap();
    std::os::unix::fs::chown(&empty, Some(1), Some(2)).unwrap();
    fs::set_permissions(&empty, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let before = snapshot(&root);
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(0);
    run(["rollback".as_ref(), root.as_os_str()]).expect_code(0);
    assert_same(&before, &snapshot(&root), "the root after rollback");
}

#[test]
fn a_damaged_record_entry_is_refused_before_anything_of_its_item_moves() {
    let (_t, root) = scratch();
    let id = hex_id(26);
    image(&root, &id, None);
    docker18(&root, &id);
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(0);
    let rec = root.join(".graph2aufs/record.json");
    let mut doc: serde_json::Value = serde_json::from_slice(&fs::read(&rec).unwrap()).unwrap();
    doc["items"][format!("image/{id}")]["prior"]["symlink"]["text"] = "abc%".into();
    fs::write(&rec, serde_json::to_vec(&doc).unwrap()).unwrap();
    let r = run(["rollback".as_ref(), root.as_os_str()]);
    r.expect_code(1);
    assert!(r.stdout.contains("damaged"), "{r}");
    assert!(
        root.join("aufs/diff").join(&id).is_dir(),
        "the item stays migrated, whole"
    );
    assert!(root.join("aufs/layers").join(&id).exists());
}

#[test]
fn reading_symlinks_through_the_read_only_view_leaves_their_access_times() {
    if !require_root_and_fuse() {
        return;
    }
    let (t, root) = scratch();
    let id = hex_id(27);
    image(&root, &id, None);
    let link = root.join("graph").join(&id).join("layer/link");
    symlink("file", &link).unwrap();
    set_link_atime(&link, 1_000_000);
    let mp = t.path().join("view");
    fs::create_dir(&mp).unwrap();
    let mount = Mount::start(&root, &mp, &["--read-only"], std::time::Duration::from_secs(60));
    for p in [
        mp.join("aufs/diff").join(&id).join("link"),
        mp.join("aufs/mnt").join(&id).join("link"),
    ] {
        assert_eq!(fs::read_link(&p).unwrap(), Path::new("file"));
    }
    assert_eq!(
        fs::read(mp.join("aufs/mnt").join(&id).join("link")).unwrap(),
        id.as_bytes()
    );
    mount.unmount();
    assert_eq!(
        fs::symlink_metadata(&link).unwrap().atime(),
        1_000_000,
        "the view changed a symlink's atime"
    );
}
