//! The generator's promises, checked on real generated roots (run as root: the
//! roots hold device nodes and files of many owners).

use std::collections::BTreeSet;
use std::fs;
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use clock::{Stamp, DAY, EPOCH};
use layer::{Role, Spec};
use names::seed_for;

fn json_of(path: &Path) -> serde_json::Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The id or ID key, as Go's case-insensitive decoding reads it.
fn key<'a>(json: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    json.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

fn everything() -> Options {
    Options {
        broken: true,
        docker18: true,
        ..Options::default()
    }
}

/// A snapshot with the root's own absolute paths replaced, so that two roots
/// at different places compare.
fn normalized(dir: &Path, root: &Path, outside: Option<&Path>) -> Snapshot {
    let mut snap = snapshot(dir).unwrap();
    for node in snap.values_mut() {
        if let Some(t) = &node.target {
            let mut s = t.to_string_lossy().into_owned();
            if let Some(o) = outside {
                s = s.replace(&*o.to_string_lossy(), "OUTSIDE");
            }
            s = s.replace(&*root.to_string_lossy(), "ROOT");
            node.target = Some(PathBuf::from(s));
        }
    }
    snap
}

fn assert_same(a: &Snapshot, b: &Snapshot) {
    let keys_a: BTreeSet<_> = a.keys().collect();
    let keys_b: BTreeSet<_> = b.keys().collect();
    assert_eq!(
        keys_a.symmetric_difference(&keys_b).collect::<Vec<_>>(),
        Vec::<&&PathBuf>::new(),
        "different names"
    );
    for (path, node) in a {
        assert_eq!(node, &b[path], "{} differs", path.display());
    }
}

#[test]
fn the_same_seed_gives_identical_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let (ra, rb) = (tmp.path().join("a"), tmp.path().join("b"));
    let sa = generate(&ra, &everything()).unwrap();
    let sb = generate(&rb, &everything()).unwrap();
    let (oa, ob) = (sa.outside.clone().unwrap(), sb.outside.clone().unwrap());
    assert_eq!(Summary { outside: None, ..sa }, Summary { outside: None, ..sb });
    let (ra, rb) = (ra.canonicalize().unwrap(), rb.canonicalize().unwrap());
    assert_same(&normalized(&ra, &ra, Some(&oa)), &normalized(&rb, &rb, Some(&ob)));
    assert_same(&snapshot(&oa).unwrap(), &snapshot(&ob).unwrap());
}

#[test]
fn a_different_seed_gives_a_different_root() {
    let tmp = tempfile::tempdir().unwrap();
    let (ra, rb) = (tmp.path().join("a"), tmp.path().join("b"));
    let sa = generate(&ra, &Options::default()).unwrap();
    let sb = generate(
        &rb,
        &Options {
            seed: 2,
            ..Options::default()
        },
    )
    .unwrap();
    assert_ne!(sa.images, sb.images);
    assert_ne!(sa.containers, sb.containers);
    let (a, b) = (normalized(&ra, &ra, None), normalized(&rb, &rb, None));
    assert_ne!(a, b);
    let layer = PathBuf::from("graph/base-ubuntu/layer/etc/motd");
    assert_ne!(a[&layer].content, b[&layer].content, "same id, different content");
}

#[test]
fn a_non_empty_root_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("precious"), "x").unwrap();
    let err = generate(tmp.path(), &Options::default()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn good_chains_are_acyclic_and_good_containers_run_existing_images() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let opts = Options {
        images: 40,
        max_chain: 5,
        containers: 12,
        entries_per_layer: 10,
        ..everything()
    };
    let s = generate(&root, &opts).unwrap();
    assert_eq!(s.images.len(), 40);
    let position = |id: &str| s.images.iter().position(|i| i == id);
    let mut deepest = 0;
    for (i, id) in s.images.iter().enumerate() {
        let json = json_of(&root.join("graph").join(id).join("json"));
        assert_eq!(key(&json, "id"), Some(id.as_str()));
        assert_eq!(key(&json, "parent"), s.parents[id].as_deref(), "{id}");
        assert!(root.join("graph").join(id).join("layer").is_dir());
        // Parents come first, so following them always ends.
        let (mut depth, mut at) = (1, s.parents[id].clone());
        while let Some(p) = at {
            assert!(position(&p).unwrap() < i, "{p} after its child {id}");
            depth += 1;
            at = s.parents[&p].clone();
        }
        assert!(depth <= opts.max_chain, "{id}: chain of {depth}");
        deepest = deepest.max(depth);
    }
    assert_eq!(deepest, opts.max_chain);
    assert!(s.parents.values().filter(|p| p.is_none()).count() > 1, "several chains");

    assert_eq!(s.containers.len(), 12);
    for (id, image, started) in &s.containers {
        let dir = root.join("containers").join(id);
        let config = json_of(&dir.join("config.json"));
        assert_eq!(config["ID"], id.as_str());
        assert_eq!(config["Image"], image.as_str());
        assert!(position(image).is_some() && root.join("graph").join(image).join("layer").is_dir());
        assert_eq!(dir.join("rw").is_dir(), *started, "{id}");
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o7777, 0o700);
        for f in [
            "hostconfig.json",
            "config.env",
            "hostname",
            "hosts",
            "resolv.conf",
            &format!("{id}-json.log"),
        ] {
            assert!(dir.join(f).is_file(), "{id}/{f}");
        }
        assert!(dir.join("rootfs").is_dir());
    }
    let never = s.containers.iter().filter(|c| !c.2).count();
    assert_eq!(never, 4, "a third never started");

    let repos = json_of(&root.join("repositories"));
    for tags in repos["Repositories"].as_object().unwrap().values() {
        for id in tags.as_object().unwrap().values() {
            assert!(position(id.as_str().unwrap()).is_some(), "tag of {id}");
        }
    }
}

#[test]
fn every_broken_kind_is_present_as_described() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let s = generate(&root, &everything()).unwrap();
    let outside = s.outside.clone().unwrap();
    assert_eq!(outside, root.canonicalize().unwrap().with_extension("outside"));
    assert!(outside.join("secret.txt").is_file());
    let kinds: BTreeSet<BrokenKind> = s.broken.iter().map(|b| b.1).collect();
    assert_eq!(kinds.len(), 13, "one of each kind: {kinds:?}");
    let find = |kind| s.broken.iter().filter(move |b| b.1 == kind).map(|b| b.0.clone());
    let one = |kind| find(kind).next().unwrap();
    let image = |id: &str| root.join("graph").join(id);
    let container = |id: &str| root.join("containers").join(id);
    let has_data = |dir: &Path| walk_count(dir) >= 2;

    let invalid = one(BrokenKind::InvalidJson);
    assert!(serde_json::from_slice::<serde_json::Value>(&fs::read(image(&invalid).join("json")).unwrap()).is_err());
    assert!(has_data(&image(&invalid).join("layer")));

    let mismatch = one(BrokenKind::IdMismatch);
    let json = json_of(&image(&mismatch).join("json"));
    assert_ne!(key(&json, "id").unwrap(), mismatch);
    assert!(!image(key(&json, "id").unwrap()).exists());

    let own = one(BrokenKind::OwnParent);
    assert_eq!(key(&json_of(&image(&own).join("json")), "parent"), Some(own.as_str()));

    let cycle: Vec<String> = find(BrokenKind::Cycle).collect();
    assert_eq!(cycle.len(), 2);
    assert_eq!(
        key(&json_of(&image(&cycle[0]).join("json")), "parent"),
        Some(cycle[1].as_str())
    );
    assert_eq!(
        key(&json_of(&image(&cycle[1]).join("json")), "parent"),
        Some(cycle[0].as_str())
    );

    let orphan = one(BrokenKind::MissingParent);
    let parent = key(&json_of(&image(&orphan).join("json")), "parent")
        .unwrap()
        .to_string();
    assert!(!image(&parent).exists());

    let not_dir = one(BrokenKind::LayerNotDir);
    assert!(fs::symlink_metadata(image(&not_dir).join("layer")).unwrap().is_file());

    let escaping = one(BrokenKind::LayerSymlinkOutside);
    let target = fs::read_link(image(&escaping).join("layer")).unwrap();
    assert!(target.is_absolute() && target.starts_with(&outside) && target.is_dir());

    let child = one(BrokenKind::ChildOfBroken);
    assert_eq!(
        key(&json_of(&image(&child).join("json")), "parent"),
        Some(invalid.as_str())
    );
    assert_eq!(s.blocked_containers.len(), 1);
    let (on_broken, its_image) = &s.blocked_containers[0];
    assert_eq!(its_image, &child);
    assert_eq!(
        json_of(&container(on_broken).join("config.json"))["Image"],
        child.as_str()
    );
    assert!(has_data(&container(on_broken).join("rw")));

    let unsafe_id = one(BrokenKind::UnsafeId);
    assert!(unsafe_id.ends_with("-init"));
    assert_eq!(
        key(&json_of(&image(&unsafe_id).join("json")), "id"),
        Some(unsafe_id.as_str())
    );
    assert!(has_data(&image(&unsafe_id).join("layer")));

    let unknown = one(BrokenKind::ContainerUnknownImage);
    let named = json_of(&container(&unknown).join("config.json"))["Image"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!image(&named).exists());
    assert!(has_data(&container(&unknown).join("rw")));

    let bad = one(BrokenKind::ContainerBadConfig);
    assert!(
        serde_json::from_slice::<serde_json::Value>(&fs::read(container(&bad).join("config.json")).unwrap()).is_err()
    );
    assert!(has_data(&container(&bad).join("rw")));

    let rw_out = one(BrokenKind::ContainerRwSymlinkOutside);
    let target = fs::read_link(container(&rw_out).join("rw")).unwrap();
    assert!(target.is_absolute() && target.starts_with(&outside) && target.is_dir());

    let id_mismatch = one(BrokenKind::ContainerIdMismatch);
    assert_ne!(
        json_of(&container(&id_mismatch).join("config.json"))["ID"],
        id_mismatch.as_str()
    );

    // Broken items are not among the good ones.
    for (id, _) in &s.broken {
        assert!(!s.images.contains(id) && !s.containers.iter().any(|c| &c.0 == id));
    }
}

fn walk_count(dir: &Path) -> usize {
    snapshot(dir).map_or(0, |s| s.values().filter(|n| n.kind != 'd').count())
}

#[test]
fn layers_hold_every_kind_of_entry_and_change() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let s = generate(&root, &Options::default()).unwrap();
    let m = &s.landmarks;
    assert_eq!(m.non_hex_ids, ["base-ubuntu", "ümage"]);
    let layer = |id: &Option<String>| snapshot(&root.join("graph").join(id.as_ref().unwrap()).join("layer")).unwrap();

    let show = layer(&m.showcase);
    let kinds: BTreeSet<char> = show.values().map(|n| n.kind).collect();
    assert_eq!(kinds, BTreeSet::from(['d', 'f', 'l', 'p', 'c', 'b']));
    let any = |f: &dyn Fn(&Node) -> bool| show.values().any(f);
    assert!(any(&|n| n.kind == 'f' && n.mode & 0o4000 != 0), "setuid");
    assert!(any(&|n| n.kind == 'f' && n.mode & 0o2000 != 0), "setgid");
    for mode in [0o700, 0o1777, 0o2755, 0o555] {
        assert!(any(&|n| n.kind == 'd' && n.mode == mode), "directory mode {mode:o}");
    }
    assert!(any(&|n| n.kind == 'f' && n.size == 0));
    assert!(any(
        &|n| n.kind == 'f' && (64 * 1024..=2 * 1024 * 1024).contains(&n.size)
    ));
    assert!(
        any(&|n| n.kind == 'f' && n.size > 1024 * 1024 && n.allocated < 64 * 1024),
        "sparse"
    );
    assert!(any(&|n| n.uid == 1000) && any(&|n| n.uid == 65534) && any(&|n| n.gid == 5));
    assert!(
        any(&|n| n.xattrs.keys().any(|k| k == TEST_XATTR)),
        "a user xattr (the file system of $TMPDIR must support user.* xattrs: tmpfs does from Linux 6.6)"
    );
    let linked = show
        .values()
        .filter_map(|n| n.link_of.clone())
        .fold(BTreeMap::new(), |mut m, first| {
            *m.entry(first).or_insert(0) += 1;
            m
        });
    assert!(linked.values().any(|&n| n == 3), "a file with three names: {linked:?}");
    let names: Vec<String> = show.keys().map(|p| p.to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|p| p.ends_with(" with spaces.txt")));
    assert!(names.iter().any(|p| p.contains('\\') && p.contains('%')));
    assert!(show.keys().any(|p| p.file_name().is_some_and(|n| n.len() > 200)));
    let targets: Vec<String> = show
        .values()
        .filter_map(|n| n.target.as_ref())
        .map(|t| t.to_string_lossy().into())
        .collect();
    assert!(targets.iter().any(|t| t.starts_with('/')) && targets.iter().any(|t| !t.starts_with('/')));
    assert!(targets.iter().any(|t| t == "/nonexistent/target"), "dangling");

    let changes = layer(&m.all_changes);
    let names: Vec<String> = changes.keys().map(|p| p.to_string_lossy().into_owned()).collect();
    for meta in [".wh..wh.aufs", ".wh..wh.plnk", ".wh..wh.orph"] {
        assert!(names.iter().any(|n| n == meta), "{meta}");
    }
    assert!(names.iter().any(|n| n.ends_with("/.wh..wh..opq")), "opaque directory");
    let whiteouts = names
        .iter()
        .filter(|n| n.rsplit('/').next().unwrap().starts_with(".wh.") && !n.contains(".wh..wh."))
        .count();
    assert!(whiteouts >= 2, "whiteouts of a file and of a directory");
    assert!(changes.contains_key(Path::new("etc/hosts")));
    // Every layer has etc/.
    for id in &s.images {
        assert!(root.join("graph").join(id).join("layer/etc").is_dir(), "{id}");
    }

    let mtab = layer(&m.mtab_symlink);
    assert_eq!(
        mtab[Path::new("etc/mtab")].target.as_deref(),
        Some(Path::new("/proc/mounts"))
    );
    let resolv = layer(&m.etc_resolv);
    assert_eq!(resolv[Path::new("etc/resolv.conf")].kind, 'f');
    let dev = &layer(&m.dev_dir)[Path::new("dev")];
    assert_eq!(
        (dev.kind, dev.mode, dev.mtime),
        ('d', DEV_MODE, (DEV_MTIME.0, i64::from(DEV_MTIME.1)))
    );
}

#[test]
fn image_metadata_has_docker_06_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let s = generate(&root, &Options::default()).unwrap();
    let mut upper_id = 0;
    for id in &s.images {
        let dir = root.join("graph").join(id);
        assert_eq!(fs::metadata(dir.join("json")).unwrap().mode() & 0o7777, 0o600);
        let json = json_of(&dir.join("json"));
        upper_id += usize::from(json.get("ID").is_some());
        let size = json["Size"].as_u64().unwrap();
        if let Ok(bytes) = fs::read(dir.join("layersize")) {
            assert_eq!(String::from_utf8(bytes).unwrap(), size.to_string());
            assert_eq!(fs::metadata(dir.join("layersize")).unwrap().mode() & 0o7777, 0o600);
        }
    }
    assert!(upper_id >= 1);
    let tmp_dir = root.join("graph/_tmp");
    assert!(tmp_dir.join("_dockerinit").is_file() && !s.images.contains(&"_tmp".to_string()));
    assert!(root
        .join("volumes")
        .join(&s.volumes[0])
        .join("layer/data.txt")
        .is_file());
    assert_eq!(fs::metadata(root.join("repositories")).unwrap().mode() & 0o7777, 0o600);
}

#[test]
fn docker18_leaves_absolute_symlinks_and_registered_chains() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let s = generate(&root, &everything()).unwrap();
    let root = root.canonicalize().unwrap();
    assert_eq!(s.docker18.len(), s.images.len() / 3);
    for id in &s.docker18 {
        let target = fs::read_link(root.join("aufs/diff").join(id)).unwrap();
        assert_eq!(target, root.join("graph").join(id).join("layer"));
        assert!(root.join("aufs/mnt").join(id).is_dir());
        let mut expect = String::new();
        let mut at = s.parents[id].clone();
        while let Some(p) = at {
            assert!(s.docker18.contains(&p), "parents are migrated first");
            expect += &format!("{p}\n");
            at = s.parents[&p].clone();
        }
        assert_eq!(fs::read_to_string(root.join("aufs/layers").join(id)).unwrap(), expect);
        // The legacy layer is still where it was.
        assert!(root.join("graph").join(id).join("layer").is_dir());
    }
}

#[test]
fn tiny_layers_for_big_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let opts = Options {
        images: 300,
        max_chain: 8,
        containers: 30,
        entries_per_layer: 0,
        ..Options::default()
    };
    let s = generate(&root, &opts).unwrap();
    assert_eq!((s.images.len(), s.containers.len()), (300, 30));
    let showcase = s.landmarks.showcase.clone().unwrap();
    for id in s.images.iter().filter(|&i| *i != showcase) {
        let n = walk_count(&root.join("graph").join(id).join("layer"));
        assert!((1..=20).contains(&n), "{id}: {n} entries");
    }
}

#[test]
fn a_debian_base_is_copied_faithfully() {
    let tmp = tempfile::tempdir().unwrap();
    // A stand-in for scripts/debian-base's tree, with what `cp -a` must keep.
    let src = tmp.path().join("debian");
    fs::create_dir_all(src.join("etc/apt")).unwrap();
    fs::create_dir_all(src.join("usr/bin")).unwrap();
    fs::write(src.join("etc/debian_version"), "12.0\n").unwrap();
    fs::write(src.join("usr/bin/dpkg"), "dpkg").unwrap();
    fs::hard_link(src.join("usr/bin/dpkg"), src.join("usr/bin/dpkg-link")).unwrap();
    std::os::unix::fs::symlink("usr/bin", src.join("bin")).unwrap();
    std::os::unix::fs::lchown(src.join("etc/apt"), Some(7), Some(8)).unwrap();
    fs::set_permissions(src.join("etc/apt"), fs::Permissions::from_mode(0o2750)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    let _ = rustix::fs::lsetxattr(
        src.join("etc/debian_version"),
        "user.k",
        b"v",
        rustix::fs::XattrFlags::empty(),
    );
    // Snapshot before copying: `cp` reads the files, which moves their access times.
    let before = snapshot(&src).unwrap();

    let root = tmp.path().join("root");
    let s = generate(
        &root,
        &Options {
            debian_base: Some(src.clone()),
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(s.landmarks.debian.as_deref(), Some("base-debian"));
    assert_eq!(s.images[0], "base-debian");
    assert_same(&before, &snapshot(&root.join("graph/base-debian/layer")).unwrap());
    // Its children change it like any other layer.
    assert!(s.landmarks.showcase.is_some() && s.landmarks.all_changes.is_some());
}

/// What is wrong with a tree about to be written: an entry whose parent is
/// not a directory of the tree (the write would fail with ENOTDIR), or a name
/// next to its own whiteout (a layer that deletes what it adds).
fn tree_problems(tree: &tree::Tree) -> Vec<String> {
    let mut problems = Vec::new();
    for e in tree.entries().iter().filter(|e| !e.path.is_empty()) {
        let (dir, name) = merged::split(&e.path);
        if !dir.is_empty() && !tree.get(dir).is_some_and(tree::Entry::is_dir) {
            problems.push(format!("{}: its parent is not a directory", e.path));
        }
        if !name.starts_with(merged::WH_PREFIX) && tree.contains(&merged::whiteout_of(&e.path)) {
            problems.push(format!("{}: beside its own whiteout", e.path));
        }
    }
    problems
}

/// Builds, in memory, the image layers and container trees `opts` gives
/// (what `generate` would write, nothing written) and returns what is wrong
/// with them: the containers numbered in `containers`, and with `all_images`
/// every image, otherwise only the images those containers run and their
/// parents.
fn generated_problems(opts: &Options, all_images: bool, containers: Range<usize>) -> Vec<String> {
    let plan = plan_images(opts);
    let tags = tags(&plan, opts.seed);
    let mut models: BTreeMap<usize, Merged> = BTreeMap::new();
    let mut problems = Vec::new();
    // Builds image `i` and the images on the way up to it not built yet,
    // parents first.
    let build = |i: usize, models: &mut BTreeMap<usize, Merged>, problems: &mut Vec<String>| {
        let mut chain = Vec::new();
        let mut at = Some(i).filter(|i| !models.contains_key(i));
        while let Some(j) = at {
            chain.push(j);
            at = plan[j].parent.filter(|p| !models.contains_key(p));
        }
        for &j in chain.iter().rev() {
            let (data, m, size) = image_layer(opts, &plan, j, plan[j].parent.map(|p| &models[&p])).unwrap();
            let tree = image_tree(opts.seed, &plan, j, data, size);
            problems.extend(
                tree_problems(&tree)
                    .into_iter()
                    .map(|p| format!("graph/{}/{p}", plan[j].id)),
            );
            models.insert(j, m);
        }
    };
    if all_images {
        for i in 0..plan.len() {
            build(i, &mut models, &mut problems);
        }
    }
    let mut names = HashSet::new();
    for c in containers.filter(|&c| c < opts.containers && !plan.is_empty()) {
        let planned = PlannedContainer::new(opts.seed, c, plan.len());
        let (id, image) = (planned.id.clone(), planned.image);
        build(image, &mut models, &mut problems);
        let tree = planned.tree(&plan, &models[&image], &tags, "volume", &mut names);
        problems.extend(tree_problems(&tree).into_iter().map(|p| format!("containers/{id}/{p}")));
    }
    problems
}

/// Runs `generated_problems`, turning a panic of the generator (an entry
/// added below a non-directory) into a problem.
fn problems_of(opts: &Options, all_images: bool, containers: Range<usize>) -> Vec<String> {
    std::panic::catch_unwind(|| generated_problems(opts, all_images, containers))
        .unwrap_or_else(|e| vec![format!("panicked: {}", panic_text(&e))])
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn the_sizes_seed_9_failed_with_build_consistent_trees() {
    // `g2a-genroot --seed 9` stopped with "containers/<id>/rw/var/log/
    // app-c167-2.log: Not a directory" at these sizes: the containers around
    // that one, and the images they run.
    for (images, containers) in [(6000, 400), (3000, 400), (6000, 200), (6000, 170)] {
        let opts = Options {
            seed: 9,
            images,
            containers,
            ..Options::default()
        };
        let problems = problems_of(&opts, false, 150..170);
        assert!(
            problems.is_empty(),
            "seed 9, {images} images, {containers} containers: {problems:#?}"
        );
    }
}

#[test]
fn every_seed_and_size_builds_consistent_trees() {
    let sizes = [
        // (images, max_chain, containers, entries_per_layer)
        (1, 1, 3, 0),
        (2, 4, 4, 40),
        (12, 4, 12, 40),
        (40, 6, 40, 12),
        (90, 3, 60, 0),
    ];
    let mut failed = Vec::new();
    for seed in 0..16 {
        for &(images, max_chain, containers, entries_per_layer) in &sizes {
            let opts = Options {
                seed,
                images,
                max_chain,
                containers,
                entries_per_layer,
                ..Options::default()
            };
            let problems = problems_of(&opts, true, 0..containers);
            if !problems.is_empty() {
                failed.push(format!("{opts:?}: {problems:?}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} option sets fail:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// What a chain of generated layers shows, with about one directory in four
/// turned into a file or a symlink, or deleted: the shapes a parent chain can
/// leave for a child layer or a container (a file over a directory, a
/// whiteout of one), everywhere at once.
fn mangled_chain(seed: u64) -> Merged {
    let mut rng = names::stream(seed, names::Stream::Root, 99);
    let spec = |i: u64, entries| Spec {
        seed: seed_for(seed, names::Stream::Layer, i),
        tag: "m",
        entries,
        newest: Stamp::new(EPOCH + 100 * DAY, 0),
        role: Role::default(),
    };
    let base = Merged::default().with_layer(&layer::base(&spec(0, 40)));
    let mut merged = base.clone().with_layer(&layer::child(&spec(1, 40), &base));
    let dirs: Vec<String> = merged
        .paths()
        .filter(|&(_, n)| n == merged::Node::Dir)
        .map(|(p, _)| p.to_string())
        .collect();
    for d in &dirs {
        if merged.get(d) != Some(merged::Node::Dir) {
            continue;
        }
        match rng.random_range(0..12) {
            0 => merged.remove(d),
            1 => {
                merged.remove(d);
                merged.insert(d, merged::Seen::new(merged::Node::File));
            }
            2 => {
                merged.remove(d);
                merged.insert(d, merged::Seen::new(merged::Node::Other));
            }
            _ => {}
        }
    }
    merged
}

#[test]
fn layers_and_containers_fit_any_parent_chain() {
    let mut failed = Vec::new();
    for seed in 0..200 {
        let lower = mangled_chain(seed);
        let spec = |tag, entries| Spec {
            seed: seed_for(seed, names::Stream::Container, 0),
            tag,
            entries,
            newest: Stamp::new(EPOCH + 200 * DAY, 0),
            role: Role::default(),
        };
        let built = std::panic::catch_unwind(|| {
            [
                ("a child layer", layer::child(&spec("l", 40), &lower)),
                ("a tiny child layer", layer::child(&spec("t", 0), &lower)),
                ("a container's rw", layer::container_rw(&spec("c", 0), &lower)),
            ]
        });
        match built {
            Ok(trees) => {
                for (what, tree) in trees {
                    let problems = tree_problems(&tree);
                    if !problems.is_empty() {
                        failed.push(format!("seed {seed}, {what}: {problems:?}"));
                    }
                }
            }
            Err(e) => failed.push(format!("seed {seed}: panicked: {}", panic_text(&e))),
        }
    }
    assert!(failed.is_empty(), "{} failures:\n{}", failed.len(), failed.join("\n"));
}

/// Options that fail half-way: ROOT and ROOT.outside are written, then the
/// Debian base to copy as the first image is not there.
fn failing_half_way(tmp: &Path) -> Options {
    Options {
        debian_base: Some(tmp.join("no-such-debian-base")),
        ..everything()
    }
}

#[test]
fn a_failed_run_removes_the_directories_it_created() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("new/parents/root");
    let msg = generate(&root, &failing_half_way(tmp.path())).unwrap_err().to_string();
    let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left behind: {left:?} ({msg})");
    assert!(
        msg.contains("no-such-debian-base") && msg.contains("nothing is left"),
        "{msg}"
    );
}

#[test]
fn a_failed_run_leaves_an_empty_root_empty_and_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o751)).unwrap();
    std::os::unix::fs::lchown(&root, Some(7), Some(8)).unwrap();
    let outside = tmp.path().join("root.outside");
    fs::create_dir(&outside).unwrap();
    // Mode, owner and times of ROOT, and everything beside it.
    let before = normalized(tmp.path(), &root, None);
    generate(&root, &failing_half_way(tmp.path())).unwrap_err();
    assert_same(&before, &normalized(tmp.path(), &root, None));
    assert!(root.is_dir() && outside.is_dir());
}

#[test]
fn a_refused_outside_leaves_no_root_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(tmp.path().join("root.outside")).unwrap();
    fs::write(tmp.path().join("root.outside/precious"), "x").unwrap();
    let err = generate(&root, &everything()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
    assert!(!root.exists(), "the root it had created is left behind");
    assert_eq!(fs::read(tmp.path().join("root.outside/precious")).unwrap(), b"x");
}
