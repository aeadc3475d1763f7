//! Which input fields are lists, read once from the schema's SDL.
//!
//! GraphQL coerces a single value into a one-element list (`"characters": "토끼"` would
//! become `["토끼"]`); a REST client sending a string where the contract says array has
//! made a mistake, so the facade checks list-typed fields before GraphQL sees them.

use std::collections::HashMap;

use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use serde_json::Value;

use super::names::to_snake;
use crate::http::RestError;

struct Field {
    list: bool,
    /// The named type inside any list/non-null wrappers.
    named: String,
}

#[derive(Default)]
pub(crate) struct InputShapes {
    types: HashMap<String, HashMap<String, Field>>,
    /// Enum type → its values as REST spells them.
    enums: HashMap<String, Vec<String>>,
}

fn unwrap(ty: &Type) -> (bool, String) {
    match &ty.base {
        BaseType::Named(name) => (false, name.to_string()),
        BaseType::List(inner) => (true, unwrap(inner).1),
    }
}

impl InputShapes {
    pub(crate) fn from_sdl(sdl: &str) -> InputShapes {
        let doc = async_graphql::parser::parse_schema(sdl).expect("the schema's own SDL parses");
        let mut types = HashMap::new();
        let mut enums = HashMap::new();
        for def in doc.definitions {
            let TypeSystemDefinition::Type(ty) = def else {
                continue;
            };
            let ty = ty.node;
            if let TypeKind::Enum(e) = &ty.kind {
                let values = e
                    .values
                    .iter()
                    .map(|v| v.node.value.node.to_string())
                    .collect();
                enums.insert(ty.name.node.to_string(), values);
            }
            if let TypeKind::InputObject(input) = ty.kind {
                let fields = input
                    .fields
                    .into_iter()
                    .map(|f| {
                        let (list, named) = unwrap(&f.node.ty.node);
                        (f.node.name.node.to_string(), Field { list, named })
                    })
                    .collect();
                types.insert(ty.name.node.to_string(), fields);
            }
        }
        InputShapes { types, enums }
    }

    /// What a value of GraphQL type `name` must be, in words a REST client understands
    /// (never the GraphQL type's name).
    pub(crate) fn describe(&self, name: &str) -> String {
        if let Some(values) = self.enums.get(name) {
            return format!("{} 중 하나", values.join(", "));
        }
        match name {
            "Int" => "정수".into(),
            "Float" => "숫자".into(),
            "String" | "ID" => "문자열".into(),
            "Boolean" => "true 또는 false".into(),
            _ if self.types.contains_key(name) => "객체".into(),
            _ => "올바른 형식".into(),
        }
    }

    /// Checks that every list-typed field of input type `type_name` holds an array (or
    /// `null`), recursing into nested input objects. `value` has camelCase keys.
    pub(crate) fn check(
        &self,
        type_name: &str,
        value: &Value,
        path: &str,
    ) -> Result<(), RestError> {
        let (Some(fields), Value::Object(map)) = (self.types.get(type_name), value) else {
            return Ok(());
        };
        for (key, v) in map {
            let Some(field) = fields.get(key) else {
                continue;
            };
            let here = if path.is_empty() {
                to_snake(key)
            } else {
                format!("{path}.{}", to_snake(key))
            };
            match (field.list, v) {
                (_, Value::Null) => {}
                (true, Value::Array(items)) => {
                    for item in items {
                        self.check(&field.named, item, &here)?;
                    }
                }
                (true, _) => {
                    return Err(RestError::validation(format!(
                        "`{here}` 필드는 배열이어야 합니다."
                    )));
                }
                (false, v) => self.check(&field.named, v, &here)?,
            }
        }
        Ok(())
    }
}
