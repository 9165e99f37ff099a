//! One item of each broken kind, each its own image or container, so that it
//! blocks only itself and what depends on it; and the directory outside ROOT
//! that some of them point into.

use std::io;
use std::path::Path;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::clock::{Stamp, DAY};
use super::container::{container_dir, ContainerSpec, Rw};
use super::image::{image_dir, ImageJson, LayerData};
use super::layer::{self, Role, Spec};
use super::merged::Merged;
use super::names::{hex_id, stream, Stream};
use super::tree::{Clock, Tree};
use super::BrokenKind;

/// What the broken items produced.
pub(crate) struct Broken {
    pub items: Vec<(String, BrokenKind)>,
    /// Containers that are fine themselves but run a broken image: (id, image).
    pub blocked_containers: Vec<(String, String)>,
}

/// Writes the broken items under `root`, and the `outside` directory their
/// symlinks point into. `good_image` is any good image id (containers whose
/// only fault is elsewhere use it), `created` a time after every good image.
pub(crate) fn write(
    root: &Path,
    outside: &Path,
    seed: u64,
    good_image: Option<&str>,
    created: Stamp,
) -> io::Result<Broken> {
    let mut rng = stream(seed, Stream::Broken, 0);
    outside_tree(&mut rng, created).write(outside)?;
    let layer_outside = outside.join("layer").to_string_lossy().into_owned();
    let rw_outside = outside.join("rw").to_string_lossy().into_owned();

    let mut items = Vec::new();
    let w = Writer { root, seed, created };

    let invalid = hex_id(&mut rng);
    w.image(&invalid, Json::Truncated, layer_data(&w, 0))?;
    items.push((invalid.clone(), BrokenKind::InvalidJson));

    let (dir, claimed) = (hex_id(&mut rng), hex_id(&mut rng));
    w.image(
        &dir,
        Json::Valid {
            id: &claimed,
            parent: None,
        },
        layer_data(&w, 1),
    )?;
    items.push((dir, BrokenKind::IdMismatch));

    let own = hex_id(&mut rng);
    w.image(
        &own,
        Json::Valid {
            id: &own,
            parent: Some(&own),
        },
        layer_data(&w, 2),
    )?;
    items.push((own, BrokenKind::OwnParent));

    let (a, b) = (hex_id(&mut rng), hex_id(&mut rng));
    w.image(
        &a,
        Json::Valid {
            id: &a,
            parent: Some(&b),
        },
        layer_data(&w, 3),
    )?;
    w.image(
        &b,
        Json::Valid {
            id: &b,
            parent: Some(&a),
        },
        layer_data(&w, 4),
    )?;
    items.push((a, BrokenKind::Cycle));
    items.push((b, BrokenKind::Cycle));

    let (orphan, missing) = (hex_id(&mut rng), hex_id(&mut rng));
    w.image(
        &orphan,
        Json::Valid {
            id: &orphan,
            parent: Some(&missing),
        },
        layer_data(&w, 5),
    )?;
    items.push((orphan, BrokenKind::MissingParent));

    let not_dir = hex_id(&mut rng);
    let bytes = b"a layer that is a regular file: keep it\n".to_vec();
    w.image(
        &not_dir,
        Json::Valid {
            id: &not_dir,
            parent: None,
        },
        LayerData::NotDir(bytes),
    )?;
    items.push((not_dir, BrokenKind::LayerNotDir));

    let escaping = hex_id(&mut rng);
    w.image(
        &escaping,
        Json::Valid {
            id: &escaping,
            parent: None,
        },
        LayerData::Symlink(layer_outside),
    )?;
    items.push((escaping, BrokenKind::LayerSymlinkOutside));

    let child = hex_id(&mut rng);
    w.image(
        &child,
        Json::Valid {
            id: &child,
            parent: Some(&invalid),
        },
        layer_data(&w, 6),
    )?;
    items.push((child.clone(), BrokenKind::ChildOfBroken));

    let unsafe_id = format!("{}-init", hex_id(&mut rng));
    w.image(
        &unsafe_id,
        Json::Valid {
            id: &unsafe_id,
            parent: None,
        },
        layer_data(&w, 7),
    )?;
    items.push((unsafe_id, BrokenKind::UnsafeId));

    let some_image = good_image.map(str::to_string).unwrap_or_else(|| hex_id(&mut rng));

    let unknown = (hex_id(&mut rng), hex_id(&mut rng));
    w.container(&unknown.0, &unknown.0, &unknown.1, rw_data(&w, 0), false)?;
    items.push((unknown.0, BrokenKind::ContainerUnknownImage));

    let bad = hex_id(&mut rng);
    w.container(&bad, &bad, &some_image, rw_data(&w, 1), true)?;
    items.push((bad, BrokenKind::ContainerBadConfig));

    let escaping = hex_id(&mut rng);
    w.container(&escaping, &escaping, &some_image, Rw::Symlink(rw_outside), false)?;
    items.push((escaping, BrokenKind::ContainerRwSymlinkOutside));

    let (dir, claimed) = (hex_id(&mut rng), hex_id(&mut rng));
    w.container(&dir, &claimed, &some_image, rw_data(&w, 2), false)?;
    items.push((dir, BrokenKind::ContainerIdMismatch));

    let on_broken = hex_id(&mut rng);
    w.container(&on_broken, &on_broken, &child, rw_data(&w, 3), false)?;

    Ok(Broken {
        items,
        blocked_containers: vec![(on_broken, child)],
    })
}

enum Json<'a> {
    Valid {
        id: &'a str,
        parent: Option<&'a str>,
    },
    /// Cut short, as a crash while writing leaves it.
    Truncated,
}

struct Writer<'a> {
    root: &'a Path,
    seed: u64,
    created: Stamp,
}

impl Writer<'_> {
    fn rng(&self, item: u64) -> ChaCha8Rng {
        stream(self.seed, Stream::Broken, 1 + item)
    }

    /// A stream of its own for each item, keyed by its (random) directory name.
    fn rng_for(&self, dir: &str) -> ChaCha8Rng {
        let key = u64::from_str_radix(&dir[..16], 16).unwrap_or(0);
        stream(self.seed, Stream::Broken, (key >> 24) | 1 << 40)
    }

    fn image(&self, dir: &str, json: Json, layer: LayerData) -> io::Result<()> {
        let mut rng = self.rng_for(dir);
        let created = self.created.after(&mut rng, DAY);
        let size = match &layer {
            LayerData::Tree(t) => t.size()?,
            LayerData::NotDir(bytes) => bytes.len() as u64,
            LayerData::Symlink(_) | LayerData::CopyOf(_) => 0,
        };
        let json = match json {
            Json::Valid { id, parent } => ImageJson {
                id,
                parent,
                created,
                size,
                variant: 0,
            }
            .render(&mut rng),
            Json::Truncated => {
                let full = ImageJson {
                    id: dir,
                    parent: None,
                    created,
                    size,
                    variant: 0,
                }
                .render(&mut rng);
                full[..full.len() / 3].to_string()
            }
        };
        image_dir(rng.random(), created, json.into_bytes(), Some(size), layer).write(&self.root.join("graph").join(dir))
    }

    fn container(&self, dir: &str, id: &str, image: &str, rw: Rw, truncated_config: bool) -> io::Result<()> {
        let mut rng = self.rng_for(dir);
        let name = format!("broken_{}", &dir[..8]);
        let spec = ContainerSpec {
            dir,
            id,
            image,
            image_name: image,
            name: &name,
            created: self.created.after(&mut rng, DAY),
            rw,
            truncated_config,
            volume: None,
        };
        container_dir(&mut rng, spec).write(&self.root.join("containers").join(dir))
    }
}

/// A small real layer: the data a migration must keep even when it cannot
/// migrate the item.
fn layer_data(w: &Writer, item: u64) -> LayerData {
    let tag = format!("b{item}");
    let spec = Spec {
        seed: w.rng(item).random(),
        tag: &tag,
        entries: 0,
        newest: w.created,
        role: Role::default(),
    };
    LayerData::Tree(Box::new(layer::base(&spec)))
}

fn rw_data(w: &Writer, item: u64) -> Rw {
    let tag = format!("bc{item}");
    let spec = Spec {
        seed: w.rng(50 + item).random(),
        tag: &tag,
        entries: 0,
        newest: w.created,
        role: Role::default(),
    };
    Rw::Tree(Box::new(layer::container_rw(&spec, &Merged::default())))
}

/// The directory next to ROOT that escaping symlinks point into.
fn outside_tree(rng: &mut ChaCha8Rng, created: Stamp) -> Tree {
    let mut t = Tree::new(Clock::new(rng.random(), created, DAY));
    t.dir("", 0o755);
    t.text(
        "secret.txt",
        0o600,
        "outside ROOT: a migration must never change this\n",
    );
    t.text("layer/README", 0o644, "target of graph/<id>/layer of a broken image\n");
    t.text("layer/bin/tool", 0o755, "#!/bin/sh\necho outside\n");
    t.text(
        "rw/notes.txt",
        0o644,
        "target of containers/<id>/rw of a broken container\n",
    );
    t
}
