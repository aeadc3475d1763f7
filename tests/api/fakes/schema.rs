//! A JSON Schema check of the OpenAPI dialect the providers' descriptions use: `type`
//! (one or a list), `nullable`, `enum`, `const`, `properties`, `required`,
//! `additionalProperties`, `items`, `minItems`/`maxItems`, `minLength`/`maxLength`,
//! `minimum`/`maximum`, `anyOf`/`oneOf`/`allOf` (a `discriminator` picks the `oneOf`
//! branch). Other keywords (descriptions, examples, `format`) do not constrain.

use serde_json::Value;

/// `Ok` when `value` satisfies `schema`; else the first problem, with its JSON path.
pub fn check(schema: &Value, value: &Value) -> Result<(), String> {
    at(schema, value, "$")
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "string" => value.is_string(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn at(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let Some(s) = schema.as_object() else {
        return Ok(());
    };
    if value.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            at(sub, value, path)?;
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        let problems: Vec<String> = any
            .iter()
            .filter_map(|sub| at(sub, value, path).err())
            .collect();
        if problems.len() == any.len() {
            return Err(format!(
                "{path}: matches none of anyOf ({})",
                problems.join(" | ")
            ));
        }
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        one_of(s, one, value, path)?;
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(name) => type_matches(name, value),
            Value::Array(names) => names
                .iter()
                .filter_map(Value::as_str)
                .any(|n| type_matches(n, value)),
            _ => true,
        };
        if !ok {
            return Err(format!("{path}: expected type {t}, got {value}"));
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!(
            "{path}: {value} is not one of {}",
            Value::Array(allowed.clone())
        ));
    }
    if let Some(c) = s.get("const")
        && c != value
    {
        return Err(format!("{path}: must be {c}"));
    }
    match value {
        Value::Object(map) => {
            if let Some(required) = s.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(name) {
                        return Err(format!("{path}: missing required `{name}`"));
                    }
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (key, v) in map {
                let sub = format!("{path}.{key}");
                match props.and_then(|p| p.get(key)) {
                    Some(prop) => at(prop, v, &sub)?,
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            return Err(format!("{path}: unknown property `{key}`"));
                        }
                        Some(extra @ Value::Object(_)) => at(extra, v, &sub)?,
                        _ => {}
                    },
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = s.get("minItems").and_then(Value::as_u64)
                && n < min
            {
                return Err(format!("{path}: at least {min} items"));
            }
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                && n > max
            {
                return Err(format!("{path}: at most {max} items"));
            }
            if let Some(item) = s.get("items") {
                for (i, v) in items.iter().enumerate() {
                    at(item, v, &format!("{path}[{i}]"))?;
                }
            }
        }
        Value::String(text) => {
            let n = text.chars().count() as u64;
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                && n > max
            {
                return Err(format!("{path}: longer than {max} characters ({n})"));
            }
            if let Some(min) = s.get("minLength").and_then(Value::as_u64)
                && n < min
            {
                return Err(format!("{path}: shorter than {min} characters"));
            }
        }
        Value::Number(num) => {
            let x = num.as_f64().unwrap_or_default();
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                return Err(format!("{path}: {x} is below the minimum {min}"));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                return Err(format!("{path}: {x} is above the maximum {max}"));
            }
        }
        _ => {}
    }
    Ok(())
}

/// `oneOf`: with a discriminator, the branch it names must match; without one, at least
/// one branch must (the providers' branches overlap in places, e.g. two array forms).
fn one_of(
    s: &serde_json::Map<String, Value>,
    branches: &[Value],
    value: &Value,
    path: &str,
) -> Result<(), String> {
    let discriminator = s
        .get("discriminator")
        .and_then(|d| d["propertyName"].as_str());
    if let (Some(prop), Some(tag)) = (discriminator, value.get(discriminator.unwrap_or_default())) {
        let named: Vec<&Value> = branches
            .iter()
            .filter(|b| {
                let p = &b["properties"][prop];
                p["enum"].as_array().is_some_and(|e| e.contains(tag)) || p.get("const") == Some(tag)
            })
            .collect();
        if named.is_empty() {
            return Err(format!("{path}.{prop}: {tag} names no known variant"));
        }
        let problems: Vec<String> = named
            .iter()
            .filter_map(|b| at(b, value, path).err())
            .collect();
        return if problems.len() == named.len() {
            Err(problems.join(" | "))
        } else {
            Ok(())
        };
    }
    let problems: Vec<String> = branches
        .iter()
        .filter_map(|b| at(b, value, path).err())
        .collect();
    if problems.len() == branches.len() {
        return Err(format!(
            "{path}: matches none of oneOf ({})",
            problems.join(" | ")
        ));
    }
    Ok(())
}

/// Every property name a request schema declares at its top level (through `allOf`).
pub fn declared_properties(schema: &Value) -> Vec<String> {
    let mut names: Vec<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(all) = schema["allOf"].as_array() {
        for sub in all {
            names.extend(declared_properties(sub));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_checker_refuses_what_the_schema_refuses() {
        let schema = json!({
            "type": "object", "required": ["a"],
            "properties": {
                "a": {"type": "integer", "minimum": 1, "maximum": 3},
                "b": {"anyOf": [{"type": "string", "maxLength": 2}, {"type": "null"}]},
                "c": {"type": "array", "items": {"type": "string", "enum": ["x"]}, "minItems": 1},
                "d": {"type": "string", "nullable": true}
            },
            "additionalProperties": false
        });
        assert!(check(&schema, &json!({"a": 2, "b": null, "c": ["x"], "d": null})).is_ok());
        for bad in [
            json!({}),
            json!({"a": 0}),
            json!({"a": 2.5}),
            json!({"a": 1, "b": "long"}),
            json!({"a": 1, "c": []}),
            json!({"a": 1, "c": ["y"]}),
            json!({"a": 1, "e": 1}),
        ] {
            assert!(check(&schema, &bad).is_err(), "{bad}");
        }
    }
}
