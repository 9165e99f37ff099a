//! Items the daemon removed after graph2aufs registered them (issue 13,
//! item 15): an interrupted `docker rm` leaves `containers/<id>` without
//! its driver layers, an interrupted `docker rmi` `graph/<id>` without its
//! layer. `plan`, `status` and `migrate` report them as `removed` and never
//! make their layers again. Offline (`migrate`); the live view's side is in
//! `tests/live.rs`.

mod common;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};

use g2a_genroot::{generate, Options, Summary};
use serde_json::Value;

fn opts(seed: u64) -> Options {
    Options {
        seed,
        images: 6,
        max_chain: 3,
        containers: 4,
        entries_per_layer: 8,
        ..Options::default()
    }
}

/// A generated legacy root, migrated offline.
fn migrated(seed: u64) -> (tempfile::TempDir, PathBuf, Summary) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let root = dir.path().join("root");
    let summary = generate(&root, &opts(seed)).unwrap_or_else(|e| panic!("generating {}: {e}", root.display()));
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(0);
    (dir, root, summary)
}

/// What Docker's aufs driver Remove leaves of layer `id`: nothing in
/// `aufs/diff`, `aufs/layers` and `aufs/mnt`.
#[track_caller]
fn docker_remove(root: &Path, id: &str) {
    for d in ["diff", "mnt"] {
        let p = root.join("aufs").join(d).join(id);
        let removing = root.join("aufs").join(d).join(format!("{id}-removing"));
        fs::rename(&p, &removing).unwrap_or_else(|e| panic!("renaming {}: {e}", p.display()));
        fs::remove_dir_all(&removing).unwrap();
    }
    let l = root.join("aufs/layers").join(id);
    fs::remove_file(&l).unwrap_or_else(|e| panic!("removing {}: {e}", l.display()));
}

#[track_caller]
fn item<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item {id} in {doc}"))
}

fn json_of(cmd: &str, root: &Path) -> (i32, Value) {
    run_json([cmd.as_ref(), root.as_os_str(), "--json".as_ref()])
}

/// The tree without graph2aufs's own bookkeeping.
fn tree(root: &Path) -> Tree {
    snapshot(root).without([".graph2aufs"])
}

#[test]
fn a_container_whose_layers_the_daemon_removed_is_reported_and_never_made_again() {
    let (_dir, root, s) = migrated(151);
    let (cid, _, _) = s.containers.iter().find(|c| c.2).expect("a started container").clone();
    // `docker rm`, interrupted after the driver removed both layers.
    docker_remove(&root, &cid);
    docker_remove(&root, &format!("{cid}-init"));
    assert!(root.join("containers").join(&cid).is_dir());
    let before = tree(&root);
    for cmd in ["plan", "status"] {
        let (_, doc) = json_of(cmd, &root);
        let it = item(&doc, &cid);
        assert_eq!(it["state"], "removed", "{cmd}: {it}");
        assert!(
            it["reason"].as_str().unwrap_or("").contains("removed by the daemon"),
            "{cmd}: {it}"
        );
        assert_eq!(doc["totals"]["removed"], 1, "{cmd}: {}", doc["totals"]);
    }
    let r = run(["migrate".as_ref(), root.as_os_str()]);
    for name in [cid.clone(), format!("{cid}-init")] {
        for d in ["diff", "layers", "mnt"] {
            let p = root.join("aufs").join(d).join(&name);
            assert!(
                fs::symlink_metadata(&p).is_err(),
                "migrate made {} again for a container the daemon removed\n{r}",
                p.display()
            );
        }
    }
    assert_same(&before, &tree(&root), "ROOT after migrate");
    assert_eq!(r.code, 0, "a removed item is no problem:\n{r}");
    let (code, doc) = json_of("status", &root);
    assert_eq!(item(&doc, &cid)["state"], "removed");
    assert_eq!(code, 0, "status: {doc}");
}

#[test]
fn an_image_whose_layer_the_daemon_removed_is_reported_and_left_alone() {
    let (_dir, root, s) = migrated(155);
    let id = leaf_images(&s).into_iter().next().expect("a leaf image");
    // `docker rmi`, interrupted after the driver removed the layer.
    docker_remove(&root, &id);
    let before = tree(&root);
    let (_, doc) = json_of("status", &root);
    let it = item(&doc, &id);
    assert_eq!(it["state"], "removed", "{it}");
    assert_eq!(it["action"], "none", "{it}");
    let r = run(["migrate".as_ref(), root.as_os_str()]);
    assert_same(&before, &tree(&root), "ROOT after migrate");
    assert_eq!(r.code, 0, "{r}");
    let verify = run(["verify".as_ref(), root.as_os_str()]);
    assert_eq!(verify.code, 0, "{verify}");
}

/// An item the record does not say graph2aufs registered (it never was):
/// planned as before (a container that never ran gets its empty layer).
#[test]
fn a_container_graph2aufs_never_registered_is_still_migrated() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let root = dir.path().join("root");
    let s = generate(&root, &opts(153)).unwrap();
    let (cid, _, _) = s
        .containers
        .iter()
        .find(|c| !c.2)
        .expect("a container that never ran")
        .clone();
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(0);
    assert!(root.join("aufs/diff").join(&cid).is_dir());
    // The record forgotten (a root migrated by hand, say): nothing says
    // graph2aufs registered it.
    fs::remove_dir_all(root.join(".graph2aufs")).unwrap();
    docker_remove(&root, &cid);
    docker_remove(&root, &format!("{cid}-init"));
    let (_, doc) = json_of("status", &root);
    assert_eq!(item(&doc, &cid)["state"], "pending", "{doc}");
}
