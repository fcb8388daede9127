//! The Grafana dashboard `dashboards/nsexporter.json` as data: its panels and their queries,
//! variables replaced as Grafana replaces them, and its `label_values` variable queries.

use serde_json::Value;

use super::manifest_dir;

pub const DASHBOARD: &str = "dashboards/nsexporter.json";

pub fn dashboard() -> Value {
    let path = manifest_dir().join(DASHBOARD);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every panel, rows and the panels inside collapsed rows included, in file order.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// One query of one panel.
pub struct PanelQuery {
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
}

pub fn queries(dashboard: &Value) -> Vec<PanelQuery> {
    panels(dashboard)
        .into_iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| PanelQuery {
                    panel: p["title"].as_str().unwrap_or("(untitled)").to_string(),
                    ref_id: t["refId"].as_str().unwrap_or("?").to_string(),
                    expr: t["expr"].as_str().unwrap_or("").to_string(),
                })
        })
        .collect()
}

/// `text` with Grafana's variables replaced by `variables` (name, value; longer names first, so
/// that `$__interval` does not eat the front of a `$__interval_ms`), in both the `$name` and
/// the `${name}` spelling.
pub fn substitute(text: &str, variables: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (name, value) in variables {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// `label_values(selector, label)` split into its two arguments; `label_values(label)` has the
/// selector `{label!=""}`.
pub fn label_values(query: &str) -> Option<(String, String)> {
    let args = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    match args.rsplit_once(',') {
        Some((selector, label)) => Some((selector.trim().to_string(), label.trim().to_string())),
        None => Some((
            format!("{{{}!=\"\"}}", args.trim()),
            args.trim().to_string(),
        )),
    }
}
