//! The few keys graph2aufs reads from Docker's JSON files. Everything else
//! in them is preserved untouched, since the files themselves never move.

use serde_json::{Map, Value};

/// Largest JSON file read; hostile roots hold files of any size.
pub const JSON_CAP: u64 = 16 << 20;

/// `graph/<id>/json`: only `id` and `parent` matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageJson {
    pub id: Option<String>,
    pub parent: Option<String>,
}

/// `containers/<id>/config.json`: only `ID` and `Image` matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    pub id: Option<String>,
    pub image: Option<String>,
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("is JSON but not an object".into()),
        Err(e) => Err(format!("is not valid JSON ({e})")),
    }
}

/// Go decodes keys case-insensitively, preferring an exact match.
fn string_key(m: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    let v = m
        .get(key)
        .or_else(|| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v));
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("has a {key:?} that is not a string")),
    }
}

pub fn parse_image(bytes: &[u8]) -> Result<ImageJson, String> {
    let m = object(bytes)?;
    Ok(ImageJson {
        id: string_key(&m, "id")?,
        parent: string_key(&m, "parent")?,
    })
}

pub fn parse_container(bytes: &[u8]) -> Result<ContainerConfig, String> {
    let m = object(bytes)?;
    Ok(ContainerConfig {
        id: string_key(&m, "ID")?,
        image: string_key(&m, "Image")?,
    })
}

/// The ids `repositories` tags, as (name:tag, id).
pub fn parse_repositories(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    let m = object(bytes)?;
    let Some(repos) = m.get("Repositories") else {
        return Ok(Vec::new());
    };
    let Value::Object(repos) = repos else {
        return Err("has a \"Repositories\" that is not an object".into());
    };
    let mut tags = Vec::new();
    for (name, tagmap) in repos {
        let Value::Object(tagmap) = tagmap else {
            return Err(format!("repository {name:?} is not an object"));
        };
        for (tag, id) in tagmap {
            match id {
                Value::String(id) => tags.push((format!("{name}:{tag}"), id.clone())),
                _ => return Err(format!("tag {name}:{tag} is not a string")),
            }
        }
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_keys_are_case_insensitive_with_exact_match_first() {
        let j = parse_image(br#"{"ID":"a","Parent":"b","Size":3}"#).unwrap();
        assert_eq!(
            j,
            ImageJson {
                id: Some("a".into()),
                parent: Some("b".into())
            }
        );
        let j = parse_image(br#"{"ID":"x","id":"a"}"#).unwrap();
        assert_eq!(j.id.as_deref(), Some("a"));
        assert_eq!(parse_image(br#"{"id":"a","parent":""}"#).unwrap().parent, None);
    }

    #[test]
    fn bad_json_is_reported_not_guessed() {
        assert!(parse_image(b"{\"id\":").is_err());
        assert!(parse_image(b"[1]").is_err());
        assert!(parse_image(br#"{"id":5}"#).is_err());
        assert!(parse_container(br#"{"ID":"a","Image":["x"]}"#).is_err());
    }

    #[test]
    fn repositories_list_every_tag() {
        let t = parse_repositories(br#"{"Repositories":{"ubuntu":{"12.04":"abc","latest":"abc"}}}"#).unwrap();
        assert_eq!(t.len(), 2);
    }
}
