//! MCP helpers: the pending list requests the response filters are given,
//! the visibility check of a filtered response, and an independent reading
//! of a request body (what a lenient server would act on).

use serde_json::{Map, Value};

use pinhole_filter::mcp::ListKind;
use pinhole_filter::policy::eval::{self, Decision, Item, Request};
use pinhole_filter::policy::Policy;

/// The MCP target of examples/mcp-tools.
pub const TARGET: &str = "tools";

/// Pending list requests: ids `1`, `"a"`, `2`, `3`.
pub fn lists() -> Vec<(Value, ListKind)> {
    vec![
        (Value::from(1), ListKind::Tools),
        (Value::from("a"), ListKind::Resources),
        (Value::from(2), ListKind::Prompts),
        (Value::from(3), ListKind::ResourceTemplates),
    ]
}

/// Every list entry left in a filtered response (one message or an array
/// of them) is an object naming an item `visible` accepts.
pub fn check_visible(v: &Value, visible: &dyn Fn(Item) -> bool) {
    let msgs: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for m in msgs {
        let Some(Value::Object(result)) = m.get("result") else {
            continue;
        };
        for kind in ListKind::ALL {
            let Some(Value::Array(entries)) = result.get(kind.result_key()) else {
                continue;
            };
            for e in entries {
                let name = e.get(kind.entry_key()).and_then(Value::as_str);
                let Some(name) = name else {
                    panic!("a {kind:?} entry without a name survived filtering: {e}");
                };
                let item = match kind {
                    ListKind::Tools => Item::Tool(name),
                    ListKind::Resources => Item::Resource(name),
                    ListKind::ResourceTemplates => Item::ResourceTemplate(name),
                    ListKind::Prompts => Item::Prompt(name),
                };
                assert!(
                    visible(item),
                    "{kind:?} entry {name:?} is not visible but was kept"
                );
            }
        }
    }
}

/// What a server would be asked to do by one message, read leniently and
/// independently of the filter: `Ok(None)` for messages that are not
/// authorized (lifecycle, lists, responses), `Err` when the parameters do
/// not name anything (the filter must not forward those).
pub fn decide_leniently(
    m: &Map<String, Value>,
    decide: &mut dyn FnMut(&Request) -> Decision,
) -> Result<Option<Decision>, String> {
    let Some(Value::String(method)) = m.get("method") else {
        return Ok(None);
    };
    let method = method.as_str();
    if matches!(
        method,
        "initialize" | "server/discover" | "ping" | "logging/setLevel"
    ) || method.starts_with("notifications/")
        || ListKind::from_method(method).is_some()
    {
        return Ok(None);
    }
    let params = match m.get("params") {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => Some(p),
        Some(_) => None,
    };
    let str_at = |p: Option<&Map<String, Value>>, k: &str| -> Result<String, String> {
        p.and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("`{method}` without a string `{k}`"))
    };
    let empty = Value::Object(Map::new());
    let d = match method {
        "tools/call" => {
            let name = str_at(params, "name")?;
            let args = match params.and_then(|p| p.get("arguments")) {
                None | Some(Value::Null) => &empty,
                Some(v @ Value::Object(_)) => v,
                Some(_) => return Err("`tools/call` arguments not an object".into()),
            };
            decide(&Request::ToolCall {
                name: &name,
                arguments: args,
            })
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let uri = str_at(params, "uri")?;
            decide(&Request::Resource { uri: &uri })
        }
        "prompts/get" => {
            let name = str_at(params, "name")?;
            decide(&Request::Prompt { name: &name })
        }
        "completion/complete" => {
            let r = match params.and_then(|p| p.get("ref")) {
                Some(Value::Object(r)) => r,
                _ => return Err("`completion/complete` without `ref`".into()),
            };
            match r.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => {
                    let name = str_at(Some(r), "name")?;
                    decide(&Request::Prompt { name: &name })
                }
                Some("ref/resource") => {
                    let uri = str_at(Some(r), "uri")?;
                    decide(&Request::Resource { uri: &uri })
                }
                _ => return Err("`completion/complete` with an unknown ref type".into()),
            }
        }
        other => decide(&Request::McpMethod { method: other }),
    };
    Ok(Some(d))
}

/// `visible` of a policy for some roles on [`TARGET`].
pub fn visible_for<'a>(policy: &'a Policy, roles: &'a [String]) -> impl Fn(Item) -> bool + 'a {
    move |item| eval::visible(policy, roles, TARGET, item)
}
