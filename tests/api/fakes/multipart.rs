//! Reads a `multipart/form-data` body the way the providers' servers do, and turns it
//! into the JSON object its schema describes (files as strings, repeated fields as
//! arrays where the schema says array, numbers and booleans parsed).

use serde_json::{Map, Value};

/// One part of a form.
pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub data: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The parts of `body`, or why it is not a well-formed form.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    if !content_type.starts_with("multipart/form-data") {
        return Err(format!(
            "content type {content_type} is not multipart/form-data"
        ));
    }
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .ok_or("no boundary")?
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut pos = find(body, delimiter.as_bytes(), 0).ok_or("no opening boundary")?;
    loop {
        pos += delimiter.len();
        if body.get(pos..pos + 2) == Some(b"--") {
            return Ok(parts);
        }
        pos += 2; // CRLF after the boundary
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("a part without headers")?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).to_string();
        let next = find(body, format!("\r\n{delimiter}").as_bytes(), head_end)
            .ok_or("a part without a closing boundary")?;
        let data = body[head_end + 4..next].to_vec();
        let mut name = None;
        let mut file_name = None;
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                for field in line.split(';').map(str::trim) {
                    if let Some(v) = field.strip_prefix("name=") {
                        name = Some(v.trim_matches('"').to_string());
                    } else if let Some(v) = field.strip_prefix("filename=") {
                        file_name = Some(v.trim_matches('"').to_string());
                    }
                }
            }
        }
        parts.push(Part {
            name: name.ok_or("a part without a name")?,
            file_name,
            data,
        });
        pos = next + 2;
    }
}

/// The form as the JSON object `schema` describes.
pub fn as_json(parts: &[Part], schema: &Value) -> Value {
    let mut object = Map::new();
    for part in parts {
        let prop = &schema["properties"][&part.name];
        let text = String::from_utf8_lossy(&part.data).to_string();
        let is_array = prop["type"] == "array";
        let item_type = if is_array {
            &prop["items"]["type"]
        } else {
            &prop["type"]
        };
        let value = match item_type.as_str() {
            _ if part.file_name.is_some() => Value::String(format!("<{} bytes>", part.data.len())),
            Some("number") | Some("integer") => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or(Value::String(text)),
            Some("boolean") => match text.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(text),
            },
            _ => Value::String(text),
        };
        if is_array {
            object
                .entry(part.name.clone())
                .or_insert_with(|| Value::Array(vec![]))
                .as_array_mut()
                .expect("an array")
                .push(value);
        } else {
            object.insert(part.name.clone(), value);
        }
    }
    Value::Object(object)
}
