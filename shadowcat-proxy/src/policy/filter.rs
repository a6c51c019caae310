//! Filtering of `tools/list`, `prompts/list` and `resources/list` results, so callers
//! only see what they may call.

use std::net::IpAddr;

use serde_json::Value;
use shadowcat_core::Principal;

use super::engine::Policy;

/// Layout of one list result: the array key, the target key and the deciding call.
struct ListShape {
    /// Key of the array inside `result`.
    array: &'static str,
    /// Key of the entry's target inside each element.
    target: &'static str,
    /// Method whose permission decides visibility.
    call: &'static str,
    /// The target is a URI template whose literal prefix stands for it.
    template: bool,
}

fn shape(list_method: &str) -> Option<ListShape> {
    let shape = match list_method {
        "tools/list" => ListShape {
            array: "tools",
            target: "name",
            call: "tools/call",
            template: false,
        },
        "prompts/list" => ListShape {
            array: "prompts",
            target: "name",
            call: "prompts/get",
            template: false,
        },
        "resources/list" => ListShape {
            array: "resources",
            target: "uri",
            call: "resources/read",
            template: false,
        },
        "resources/templates/list" => ListShape {
            array: "resourceTemplates",
            target: "uriTemplate",
            call: "resources/read",
            template: true,
        },
        _ => return None,
    };
    Some(shape)
}

impl Policy {
    /// Removes from a list response the entries `principal` may not call.
    ///
    /// `list_method` is the request's method: `tools/list` entries are kept when
    /// `tools/call` of that name is allowed, `prompts/list` by `prompts/get`,
    /// `resources/list` by `resources/read` of the URI. For
    /// `resources/templates/list` the template's literal text before its first `{`
    /// stands for the URI, so a template stays only if every expansion shares an
    /// allowed prefix. Entries without a string target are removed. Error responses
    /// and other methods are left alone.
    ///
    /// Returns the number of entries removed.
    pub fn filter_list_response(
        &self,
        principal: &Principal,
        client_ip: IpAddr,
        list_method: &str,
        response: &mut Value,
    ) -> usize {
        let Some(shape) = shape(list_method) else {
            return 0;
        };
        let Some(entries) = response
            .get_mut("result")
            .and_then(|result| result.get_mut(shape.array))
            .and_then(Value::as_array_mut)
        else {
            return 0;
        };

        let before = entries.len();
        entries.retain(|entry| {
            let Some(target) = entry.get(shape.target).and_then(Value::as_str) else {
                return false;
            };
            let target = if shape.template {
                target.split('{').next().unwrap_or_default()
            } else {
                target
            };
            self.evaluate_call(principal, client_ip, shape.call, Some(target))
                .allowed
        });
        before - entries.len()
    }
}
