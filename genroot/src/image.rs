//! `graph/<id>/`: an image's `json`, `layersize` and `layer/`.

use std::path::PathBuf;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::clock::{Stamp, DAY};
use super::json::{object, to_json, Config};
use super::names::hex_id;
use super::tree::{Clock, Content, Kind, Tree};

/// What `graph/<id>/layer` is.
pub(crate) enum LayerData {
    Tree(Box<Tree>),
    /// A copy of a prepared tree (`cp -a`).
    CopyOf(PathBuf),
    /// A regular file where the directory should be.
    NotDir(Vec<u8>),
    Symlink(String),
}

/// The `json` of an image.
pub(crate) struct ImageJson<'a> {
    pub id: &'a str,
    pub parent: Option<&'a str>,
    pub created: Stamp,
    pub size: u64,
    /// Selects the variations: `"ID"` instead of `"id"` (variant % 7 == 3),
    /// `comment` (% 5 == 1), `author` (% 4 == 2), the unknown key `checksum`
    /// (% 6 == 4), a `created` in a -07:00 zone (% 3 == 2).
    pub variant: usize,
}

impl ImageJson<'_> {
    pub fn render(&self, rng: &mut ChaCha8Rng) -> String {
        let v = self.variant;
        let id_key = if v % 7 == 3 { "ID" } else { "id" };
        let offset = if v % 3 == 2 { -7 * 60 } else { 0 };
        let cmd = [
            "apt-get install -y curl",
            "#(nop) ADD file in /",
            "echo hello > /etc/motd",
            "make install",
        ][rng.random_range(0..4u64) as usize];
        let container_config = Config {
            hostname: hex_id(rng)[..12].to_string(),
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), cmd.into()]),
            image: self.parent.unwrap_or("").to_string(),
            env: Some(vec![
                "HOME=/".into(),
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ]),
            ..Config::default()
        };
        let config = Config {
            cmd: None,
            ..container_config.clone()
        };
        let version = ["0.5.3", "0.6.1", "0.6.3", "0.6.5", "0.6.7"][rng.random_range(0..5u64) as usize];

        let mut fields = vec![(id_key, to_json(self.id))];
        if let Some(p) = self.parent {
            fields.push(("parent", to_json(p)));
        }
        if v % 5 == 1 {
            fields.push(("comment", to_json("Imported from -")));
        }
        fields.push(("created", to_json(&self.created.rfc3339_nano(offset))));
        fields.push(("container", to_json(&hex_id(rng))));
        fields.push(("container_config", to_json(&container_config)));
        fields.push(("docker_version", to_json(version)));
        if v % 4 == 2 {
            fields.push(("author", to_json("Jane Doe <jane@example.com>")));
        }
        fields.push(("config", to_json(&config)));
        fields.push(("architecture", to_json("x86_64")));
        if v % 6 == 4 {
            fields.push(("checksum", to_json(&format!("tarsum+sha256:{}", hex_id(rng)))));
        }
        fields.push(("Size", self.size.to_string()));
        object(&fields)
    }
}

/// The tree of `graph/<dir>/`. `layersize` is left out when `None`.
pub(crate) fn image_dir(
    clock_seed: u64,
    created: Stamp,
    json: Vec<u8>,
    layersize: Option<u64>,
    layer: LayerData,
) -> Tree {
    let mut t = Tree::new(Clock::new(clock_seed, created.after_secs(60), 60));
    t.dir("", 0o700);
    t.file("json", 0o600, Content::Bytes(json));
    if let Some(size) = layersize {
        t.text("layersize", 0o600, size.to_string());
    }
    match layer {
        LayerData::Tree(tree) => t.graft("layer", *tree),
        LayerData::CopyOf(src) => {
            t.add("layer", Kind::CopyOf(src), 0o755);
        }
        LayerData::NotDir(bytes) => {
            t.text("layer", 0o644, bytes);
        }
        LayerData::Symlink(target) => {
            t.symlink("layer", &target);
        }
    }
    t
}

/// A volume of Docker 0.6: itself an image in the `volumes/` graph.
pub(crate) fn volume_dir(rng: &mut ChaCha8Rng, id: &str, created: Stamp) -> Tree {
    let mut t = Tree::new(Clock::new(rng.random(), created.after_secs(DAY), DAY));
    t.dir("", 0o700);
    let data = "volume data: never touched by a migration\n";
    let json = ImageJson {
        id,
        parent: None,
        created,
        size: data.len() as u64,
        variant: 0,
    }
    .render(rng);
    t.text("json", 0o600, json);
    t.dir("layer", 0o755);
    t.text("layer/data.txt", 0o644, data);
    t
}

#[cfg(test)]
mod tests {
    use super::super::clock::EPOCH;
    use super::super::names::{stream, Stream};
    use super::*;

    fn render(variant: usize, parent: Option<&str>) -> serde_json::Value {
        let j = ImageJson {
            id: "abc",
            parent,
            created: Stamp::new(EPOCH, 5),
            size: 42,
            variant,
        };
        serde_json::from_str(&j.render(&mut stream(1, Stream::Image, 0))).unwrap()
    }

    #[test]
    fn base_image_json_has_docker_06_keys_and_no_parent() {
        let v = render(0, None);
        for key in [
            "id",
            "created",
            "container",
            "container_config",
            "docker_version",
            "config",
            "architecture",
            "Size",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert!(v.get("parent").is_none());
        assert_eq!(v["Size"], 42);
    }

    #[test]
    fn variants_use_upper_case_id_and_extra_keys() {
        assert_eq!(render(3, Some("p"))["ID"], "abc");
        assert_eq!(render(3, Some("p"))["parent"], "p");
        assert!(render(1, None).get("comment").is_some());
        assert!(render(2, None).get("author").is_some());
        assert!(render(4, None).get("checksum").is_some());
        assert!(render(2, None)["created"].as_str().unwrap().ends_with("-07:00"));
    }
}
