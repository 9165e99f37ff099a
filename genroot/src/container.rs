//! `containers/<id>/`: a container's configuration, logs and `rw/`.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::clock::{Stamp, DAY};
use super::json::{object, to_json, Config, HostConfig, NetworkSettings, State};
use super::tree::{Clock, Tree};

/// What `containers/<id>/rw` is.
pub(crate) enum Rw {
    /// Never started: no `rw/`.
    Absent,
    Tree(Box<Tree>),
    Symlink(String),
}

pub(crate) struct ContainerSpec<'a> {
    /// The directory name.
    pub dir: &'a str,
    /// The `ID` written in `config.json` (the directory name, unless broken).
    pub id: &'a str,
    pub image: &'a str,
    /// What the user typed: `Config.Image`.
    pub image_name: &'a str,
    pub name: &'a str,
    pub created: Stamp,
    pub rw: Rw,
    /// `config.json` cut short, as a crash while writing it leaves it.
    pub truncated_config: bool,
    /// A volume id mounted at /data.
    pub volume: Option<&'a str>,
}

impl ContainerSpec<'_> {
    fn started(&self) -> bool {
        !matches!(self.rw, Rw::Absent)
    }
}

/// The tree of `containers/<dir>/`.
pub(crate) fn container_dir(rng: &mut ChaCha8Rng, spec: ContainerSpec) -> Tree {
    let started = spec.started();
    let hostname = spec.id.get(..12).unwrap_or(spec.id).to_string();
    let ip = format!("172.17.0.{}", rng.random_range(2..250));
    let started_at = spec.created.after(rng, DAY);
    let finished_at = started_at.after(rng, 30 * DAY);
    let env = vec![
        "HOME=/".to_string(),
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        format!("HOSTNAME={hostname}"),
    ];
    let cmd = ["/bin/bash", "-c", "while true; do date; sleep 60; done"];

    let mut volumes = BTreeMap::new();
    let mut volumes_rw = BTreeMap::new();
    if let Some(v) = spec.volume {
        // The path the daemon saw: the root was /var/lib/docker.
        volumes.insert("/data".to_string(), format!("/var/lib/docker/volumes/{v}/layer"));
        volumes_rw.insert("/data".to_string(), true);
    }
    let config = Config {
        hostname: hostname.clone(),
        attach_stdout: true,
        attach_stderr: true,
        env: Some(env.clone()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        image: spec.image_name.to_string(),
        volumes: spec
            .volume
            .map(|_| BTreeMap::from([("/data".to_string(), serde_json::json!({}))])),
        ..Config::default()
    };
    let state = State {
        running: false,
        pid: 0,
        exit_code: if started { rng.random_range(0..3) } else { 0 },
        started_at: if started {
            started_at.rfc3339_nano(0)
        } else {
            Stamp::zero_rfc3339().into()
        },
        finished_at: if started {
            finished_at.rfc3339_nano(0)
        } else {
            Stamp::zero_rfc3339().into()
        },
        ghost: false,
    };
    let network = if started {
        NetworkSettings {
            ip_address: ip.clone(),
            ip_prefix_len: 16,
            gateway: "172.17.42.1".into(),
            bridge: "docker0".into(),
            port_mapping: None,
            ports: BTreeMap::from([("80/tcp".to_string(), serde_json::Value::Null)]),
        }
    } else {
        NetworkSettings::default()
    };
    let root = format!("/var/lib/docker/containers/{}", spec.dir);
    let mut config_json = object(&[
        ("ID", to_json(spec.id)),
        ("Created", to_json(&spec.created.rfc3339_nano(0))),
        ("Path", to_json(cmd[0])),
        ("Args", to_json(&cmd[1..])),
        ("Config", to_json(&config)),
        ("State", to_json(&state)),
        ("Image", to_json(spec.image)),
        ("NetworkSettings", to_json(&network)),
        ("SysInitPath", to_json("/usr/bin/docker")),
        ("ResolvConfPath", to_json(&format!("{root}/resolv.conf"))),
        ("HostnamePath", to_json(&format!("{root}/hostname"))),
        ("HostsPath", to_json(&format!("{root}/hosts"))),
        ("Name", to_json(&format!("/{}", spec.name))),
        ("Volumes", to_json(&volumes)),
        ("VolumesRW", to_json(&volumes_rw)),
    ])
    .into_bytes();
    if spec.truncated_config {
        config_json.truncate(config_json.len() / 3);
    }

    let newest = if started { finished_at } else { spec.created };
    let mut t = Tree::new(Clock::new(rng.random(), newest, 60));
    t.dir("", 0o700);
    t.text("config.json", 0o644, config_json);
    t.text("hostconfig.json", 0o644, to_json(&HostConfig::default()));
    t.text("config.env", 0o600, to_json(&env));
    t.text("hostname", 0o644, format!("{hostname}\n"));
    t.text(
        "hosts",
        0o644,
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{hostname}\n"),
    );
    t.text("resolv.conf", 0o644, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    let mut log = String::new();
    if started {
        let mut at = started_at;
        for _ in 0..rng.random_range(2..8) {
            at = at.after(rng, 3600);
            let line = format!("{}\n", at.rfc3339_nano(0));
            log.push_str(&object(&[
                ("log", to_json(&line)),
                ("stream", to_json("stdout")),
                ("time", to_json(&at.rfc3339_nano(0))),
            ]));
            log.push('\n');
        }
        t.text(
            "config.lxc",
            0o644,
            format!("lxc.utsname = {hostname}\nlxc.network.type = veth\nlxc.rootfs = {root}/rootfs\nlxc.cgroup.devices.deny = a\n"),
        );
    }
    t.text(&format!("{}-json.log", spec.dir), 0o600, log);
    t.dir("rootfs", 0o755);
    match spec.rw {
        Rw::Absent => {}
        Rw::Tree(rw) => t.graft("rw", *rw),
        Rw::Symlink(target) => {
            t.symlink("rw", &target);
        }
    }
    t
}
