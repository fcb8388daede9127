//! The project's YAML files as JSON values, read with yaml-rust2 (the parser the exporter's own
//! config goes through), so that a test derives a Prometheus or Alertmanager config from a
//! shipped file instead of restating it. Prometheus and Alertmanager read JSON as YAML, so the
//! value can be written back with serde_json.

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// The one document of `text` (a file of the repository named `what` in errors).
pub fn to_json(what: &str, text: &str) -> Value {
    let docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    let [doc] = docs.as_slice() else {
        panic!("{what}: {} YAML documents, want one", docs.len());
    };
    convert(what, doc)
}

/// The shipped file `relative` (to the repository root) as JSON.
pub fn file(relative: &str) -> Value {
    let path = super::manifest_dir().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    to_json(relative, &text)
}

fn convert(what: &str, y: &Yaml) -> Value {
    match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or_else(|| Value::String(r.clone()), Value::Number),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(|i| convert(what, i)).collect()),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            for (k, v) in hash {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => panic!("{what}: a mapping key {other:?}"),
                };
                map.insert(key, convert(what, v));
            }
            Value::Object(map)
        }
        Yaml::Alias(_) | Yaml::BadValue => panic!("{what}: {y:?} is not supported here"),
    }
}
