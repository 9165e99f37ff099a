//! The JSON Docker 0.6 wrote: image `json`, container `config.json` and
//! `hostconfig.json`, with the key order of its Go structs.

use std::collections::BTreeMap;

use serde::Serialize;

/// A JSON object whose keys keep the given order; values are already JSON.
pub(crate) fn object(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}:{v}", to_json(k))).collect();
    format!("{{{}}}", body.join(","))
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data always serializes")
}

/// Docker 0.6's `Config` (runconfig before it had a name).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Config {
    pub hostname: String,
    pub user: String,
    pub memory: i64,
    pub memory_swap: i64,
    pub cpu_shares: i64,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub port_specs: Option<Vec<String>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub dns: Option<Vec<String>>,
    pub image: String,
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    pub volumes_from: String,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    pub network_disabled: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct State {
    pub running: bool,
    pub pid: u32,
    pub exit_code: i32,
    pub started_at: String,
    pub finished_at: String,
    pub ghost: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct NetworkSettings {
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u32,
    #[serde(rename = "Gateway")]
    pub gateway: String,
    #[serde(rename = "Bridge")]
    pub bridge: String,
    #[serde(rename = "PortMapping")]
    pub port_mapping: Option<BTreeMap<String, BTreeMap<String, String>>>,
    #[serde(rename = "Ports")]
    pub ports: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HostConfig {
    pub binds: Option<Vec<String>>,
    #[serde(rename = "ContainerIDFile")]
    pub container_id_file: String,
    pub lxc_conf: Vec<serde_json::Value>,
    pub privileged: bool,
    pub port_bindings: BTreeMap<String, serde_json::Value>,
    pub links: Option<Vec<String>>,
    pub publish_all_ports: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keeps_key_order() {
        assert_eq!(object(&[("b", "1".into()), ("a", to_json("x"))]), r#"{"b":1,"a":"x"}"#);
    }

    #[test]
    fn config_keys_are_docker_s() {
        let v: serde_json::Value = serde_json::from_str(&to_json(&Config::default())).unwrap();
        for key in [
            "Hostname",
            "MemorySwap",
            "CpuShares",
            "PortSpecs",
            "VolumesFrom",
            "WorkingDir",
            "NetworkDisabled",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
    }
}
