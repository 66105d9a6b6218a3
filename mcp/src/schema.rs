//! A JSON Schema (2020-12) subset validator, enough for tool arguments and outputs:
//! `type` (one or a list), `properties`, `required`, `additionalProperties` (boolean or
//! schema), `enum`, `const`, `minimum`/`maximum`, `exclusiveMinimum`/`exclusiveMaximum`,
//! `minLength`/`maxLength`, `items`, `minItems`/`maxItems`, `oneOf`/`anyOf`.
//! Annotation keywords (`title`, `description`, `default`, ...) are ignored.
//!
//! Errors name the offending location as a path (`arguments.messages[2].role`) and say what
//! was expected, so that a person or a model can correct the call.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::{Map, Value};

/// The first violation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// Where the violation is, e.g. `arguments.temperature`.
    pub path: String,
    /// What is wrong, e.g. `must be at most 2, got 3.5`.
    pub message: String,
}

impl core::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "`{}` {}", self.path, self.message)
    }
}

/// Validates `value` against `schema`; `root` names the value in messages.
pub fn validate(schema: &Value, value: &Value, root: &str) -> Result<(), SchemaError> {
    let mut path = String::from(root);
    check(schema, value, &mut path)
}

fn fail<T>(path: &str, message: String) -> Result<T, SchemaError> {
    Err(SchemaError {
        path: path.to_string(),
        message,
    })
}

/// JSON Schema type name of a value (`integer` for whole numbers).
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.is_finite() && f == libm_trunc(f))
}

// f64::trunc lives in std; for the integer test a cast round-trip suffices within ±2^63.
fn libm_trunc(f: f64) -> f64 {
    if f.abs() >= 9.2e18 {
        f
    } else {
        (f as i64) as f64
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "number" => value.is_number(),
        "integer" => matches!(value, Value::Number(n) if is_integer(n)),
        other => type_name(value) == other,
    }
}

fn check(schema: &Value, value: &Value, path: &mut String) -> Result<(), SchemaError> {
    let schema = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return fail(path, "is not allowed here".into()),
        Value::Object(s) => s,
        // A malformed schema is a programming error in a tool definition, not bad input;
        // treat it as permissive rather than reject every call.
        _ => return Ok(()),
    };

    if let Some(t) = schema.get("type") {
        let allowed: Vec<&str> = match t {
            Value::String(s) => alloc::vec![s.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.is_empty() && !allowed.iter().any(|t| type_matches(t, value)) {
            return fail(
                path,
                format!(
                    "must be of type {}, got {}",
                    allowed.join(" or "),
                    type_name(value)
                ),
            );
        }
    }

    if let Some(Value::Array(options)) = schema.get("enum") {
        if !options.contains(value) {
            let list: Vec<String> = options.iter().map(|o| o.to_string()).collect();
            return fail(
                path,
                format!("must be one of {}, got {}", list.join(", "), short(value)),
            );
        }
    }
    if let Some(c) = schema.get("const") {
        if c != value {
            return fail(path, format!("must be {c}, got {}", short(value)));
        }
    }

    match value {
        Value::Number(n) => check_number(schema, n, path)?,
        Value::String(s) => check_string(schema, s, path)?,
        Value::Array(items) => check_array(schema, items, path)?,
        Value::Object(obj) => check_object(schema, obj, path)?,
        _ => {}
    }

    if let Some(Value::Array(alternatives)) = schema.get("oneOf") {
        let matched = alternatives
            .iter()
            .filter(|alt| check(alt, value, &mut path.clone()).is_ok())
            .count();
        if matched != 1 {
            return fail(path, one_of_message(alternatives, matched));
        }
    }
    if let Some(Value::Array(alternatives)) = schema.get("anyOf") {
        let mut first_err = None;
        let any = alternatives
            .iter()
            .any(|alt| match check(alt, value, &mut path.clone()) {
                Ok(()) => true,
                Err(e) => {
                    first_err.get_or_insert(e);
                    false
                }
            });
        if !any {
            if let Some(e) = first_err {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// `oneOf` over `{"required": [name]}` alternatives reads as "exactly one of these fields".
fn one_of_message(alternatives: &[Value], matched: usize) -> String {
    let names: Vec<&str> = alternatives
        .iter()
        .filter_map(|alt| match alt.get("required") {
            Some(Value::Array(r)) if r.len() == 1 => r[0].as_str(),
            _ => None,
        })
        .collect();
    if names.len() == alternatives.len() {
        let list = names.join("`, `");
        if matched == 0 {
            format!("needs exactly one of the fields `{list}`, got none")
        } else {
            format!("needs exactly one of the fields `{list}`, got {matched}")
        }
    } else {
        format!("must match exactly one alternative schema, matched {matched}")
    }
}

fn short(value: &Value) -> String {
    let s = value.to_string();
    if s.len() > 40 {
        let mut cut = 40;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

fn num(schema: &Map<String, Value>, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn check_number(
    schema: &Map<String, Value>,
    n: &serde_json::Number,
    path: &str,
) -> Result<(), SchemaError> {
    let Some(x) = n.as_f64() else { return Ok(()) };
    if let Some(min) = num(schema, "minimum") {
        if x < min {
            return fail(path, format!("must be at least {min}, got {n}"));
        }
    }
    if let Some(max) = num(schema, "maximum") {
        if x > max {
            return fail(path, format!("must be at most {max}, got {n}"));
        }
    }
    if let Some(min) = num(schema, "exclusiveMinimum") {
        if x <= min {
            return fail(path, format!("must be greater than {min}, got {n}"));
        }
    }
    if let Some(max) = num(schema, "exclusiveMaximum") {
        if x >= max {
            return fail(path, format!("must be less than {max}, got {n}"));
        }
    }
    Ok(())
}

fn check_string(schema: &Map<String, Value>, s: &str, path: &str) -> Result<(), SchemaError> {
    let chars = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        if chars < min {
            return fail(
                path,
                format!("must be at least {min} characters long, got {chars}"),
            );
        }
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        if chars > max {
            return fail(
                path,
                format!("must be at most {max} characters long, got {chars}"),
            );
        }
    }
    Ok(())
}

fn check_array(
    schema: &Map<String, Value>,
    items: &[Value],
    path: &mut String,
) -> Result<(), SchemaError> {
    let len = items.len() as u64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
        if len < min {
            return fail(path, format!("must have at least {min} items, got {len}"));
        }
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
        if len > max {
            return fail(path, format!("must have at most {max} items, got {len}"));
        }
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            let base = path.len();
            path.push_str(&format!("[{i}]"));
            check(item_schema, item, path)?;
            path.truncate(base);
        }
    }
    Ok(())
}

fn check_object(
    schema: &Map<String, Value>,
    obj: &Map<String, Value>,
    path: &mut String,
) -> Result<(), SchemaError> {
    let props = schema.get("properties").and_then(Value::as_object);
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(name) {
                return fail(path, format!("is missing the required field `{name}`"));
            }
        }
    }
    for (key, val) in obj {
        let base = path.len();
        path.push('.');
        path.push_str(key);
        match props.and_then(|p| p.get(key)) {
            Some(prop_schema) => check(prop_schema, val, path)?,
            None => match schema.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    path.truncate(base);
                    let known: Vec<&str> = props
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let hint = if known.is_empty() {
                        String::from("no fields are accepted")
                    } else {
                        format!("known fields: {}", known.join(", "))
                    };
                    return fail(path, format!("has an unknown field `{key}` ({hint})"));
                }
                Some(extra @ Value::Object(_)) => check(extra, val, path)?,
                _ => {}
            },
        }
        path.truncate(base);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "prompt": {"type": "string", "minLength": 1, "maxLength": 5},
                "n": {"type": "integer", "minimum": 1, "maximum": 10},
                "t": {"type": "number", "exclusiveMinimum": 0, "maximum": 2},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "opt": {"type": ["string", "null"]},
                "list": {"type": "array", "maxItems": 2, "items": {
                    "type": "object",
                    "properties": {"role": {"type": "string", "enum": ["user"]}},
                    "required": ["role"],
                    "additionalProperties": false
                }}
            },
            "required": ["prompt"],
            "additionalProperties": false
        })
    }

    fn err(v: Value) -> String {
        validate(&schema(), &v, "arguments")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn accepts_valid_values() {
        let ok = json!({"prompt": "hi", "n": 3, "t": 0.5, "mode": "b", "opt": null,
                        "list": [{"role": "user"}]});
        validate(&schema(), &ok, "arguments").unwrap();
        // 2.0 is an integer in JSON Schema.
        validate(&schema(), &json!({"prompt": "x", "n": 2.0}), "arguments").unwrap();
    }

    #[test]
    fn reports_clear_messages() {
        assert_eq!(
            err(json!({})),
            "`arguments` is missing the required field `prompt`"
        );
        assert_eq!(
            err(json!({"prompt": 5})),
            "`arguments.prompt` must be of type string, got integer"
        );
        assert_eq!(
            err(json!({"prompt": "x", "n": 11})),
            "`arguments.n` must be at most 10, got 11"
        );
        assert_eq!(
            err(json!({"prompt": "x", "n": 1.5})),
            "`arguments.n` must be of type integer, got number"
        );
        assert_eq!(
            err(json!({"prompt": "x", "t": 0})),
            "`arguments.t` must be greater than 0, got 0"
        );
        assert_eq!(
            err(json!({"prompt": "toolong"})),
            "`arguments.prompt` must be at most 5 characters long, got 7"
        );
        assert_eq!(
            err(json!({"prompt": "x", "mode": "c"})),
            "`arguments.mode` must be one of \"a\", \"b\", got \"c\""
        );
        assert_eq!(
            err(json!({"prompt": "x", "opt": 1})),
            "`arguments.opt` must be of type string or null, got integer"
        );
        assert_eq!(
            err(json!({"prompt": "x", "list": [{"role": "user"}, {"role": "bot"}]})),
            "`arguments.list[1].role` must be one of \"user\", got \"bot\""
        );
        assert_eq!(
            err(json!({"prompt": "x", "list": [{"role": "user", "x": 1}]})),
            "`arguments.list[0]` has an unknown field `x` (known fields: role)"
        );
        assert!(err(json!({"prompt": "x", "bogus": 1}))
            .starts_with("`arguments` has an unknown field `bogus` (known fields: "));
        assert_eq!(
            err(json!({"prompt": "x", "list": [{"role":"user"},{"role":"user"},{"role":"user"}]})),
            "`arguments.list` must have at most 2 items, got 3"
        );
    }

    #[test]
    fn one_of_required_reads_as_exactly_one_field() {
        let s = json!({"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]});
        assert!(validate(&s, &json!({"a": 1}), "args").is_ok());
        assert_eq!(
            validate(&s, &json!({}), "args").unwrap_err().to_string(),
            "`args` needs exactly one of the fields `a`, `b`, got none"
        );
        assert_eq!(
            validate(&s, &json!({"a": 1, "b": 2}), "args")
                .unwrap_err()
                .to_string(),
            "`args` needs exactly one of the fields `a`, `b`, got 2"
        );
    }

    #[test]
    fn unicode_lengths_count_characters() {
        let s = json!({"type": "string", "maxLength": 2});
        assert!(validate(&s, &json!("éé"), "x").is_ok());
        assert!(validate(&s, &json!("ééé"), "x").is_err());
    }
}
