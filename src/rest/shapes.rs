//! The schema's input types, read once from its SDL, and the facade's check of a request
//! body against them.
//!
//! The facade checks a body itself, before GraphQL sees it, so a refusal speaks REST (its
//! `snake_case` fields, its values) and never depends on the wording of GraphQL's own
//! coercion errors. It is also stricter in one place: GraphQL coerces a single value into
//! a one-element list (`"characters": "토끼"` would become `["토끼"]`), while a REST
//! client sending a string where the contract says array has made a mistake.

use std::collections::HashMap;

use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use serde_json::Value;

use super::names::to_snake;
use crate::http::RestError;

struct Field {
    list: bool,
    /// The named type inside any list/non-null wrappers.
    named: String,
    /// May not be `null` (non-null type).
    non_null: bool,
    /// Must be given (non-null, without a default).
    required: bool,
    /// A list whose items may not be `null`.
    items_required: bool,
}

#[derive(Default)]
pub(crate) struct InputShapes {
    /// Input object type → its fields, in the order the schema declares them.
    types: HashMap<String, Vec<(String, Field)>>,
    /// Enum type → its values as REST spells them.
    enums: HashMap<String, Vec<String>>,
}

fn unwrap(ty: &Type) -> (bool, String, bool) {
    match &ty.base {
        BaseType::Named(name) => (false, name.to_string(), false),
        BaseType::List(inner) => (true, unwrap(inner).1, !inner.nullable),
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
                        let ty = &f.node.ty.node;
                        let (list, named, items_required) = unwrap(ty);
                        let non_null = !ty.nullable;
                        let required = non_null && f.node.default_value.is_none();
                        let field = Field {
                            list,
                            named,
                            non_null,
                            required,
                            items_required,
                        };
                        (f.node.name.node.to_string(), field)
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

    /// Checks a request body (`value`, with camelCase keys) against input type
    /// `type_name` as GraphQL would coerce it, and refuses it in REST's words: unknown
    /// fields, missing required ones, values of the wrong type, and single values where
    /// the contract says array (which GraphQL would quietly wrap in a list). A body that
    /// passes cannot fail GraphQL's input coercion. Scalars of the schema's own
    /// (`DateTime`) are left to GraphQL.
    pub(crate) fn check(&self, type_name: &str, value: &Value) -> Result<(), RestError> {
        match self.types.get(type_name) {
            Some(fields) => self.check_object(fields, value, ""),
            None => Ok(()),
        }
    }

    fn check_object(
        &self,
        fields: &[(String, Field)],
        value: &Value,
        path: &str,
    ) -> Result<(), RestError> {
        let Value::Object(map) = value else {
            return Err(if path.is_empty() {
                RestError::validation("요청 본문의 형식이 올바르지 않습니다.")
            } else {
                invalid(path, "객체")
            });
        };
        // A field the type does not have is named first: `{"status": …}` (or a
        // misspelt `pasword`) is answered with that name, not with what is then missing.
        if let Some(unknown) = map.keys().find(|k| !fields.iter().any(|(n, _)| n == *k)) {
            let name = to_snake(unknown);
            let here = if path.is_empty() {
                name
            } else {
                format!("{path}.{name}")
            };
            return Err(RestError::validation(format!(
                "알 수 없는 필드입니다: `{here}`"
            )));
        }
        for (name, field) in fields {
            let here = if path.is_empty() {
                to_snake(name)
            } else {
                format!("{path}.{}", to_snake(name))
            };
            match map.get(name) {
                None if field.required => {
                    return Err(RestError::validation(format!(
                        "필수 필드가 누락되었습니다: `{here}`"
                    )));
                }
                // A default stands in for a missing value, never for an explicit null.
                Some(Value::Null) if field.non_null => {
                    return Err(invalid(&here, &self.describe(&field.named)));
                }
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) if field.list => {
                    for item in items {
                        if item.is_null() {
                            if field.items_required {
                                return Err(invalid(&here, &self.describe(&field.named)));
                            }
                            continue;
                        }
                        self.check_named(&field.named, item, &here)?;
                    }
                }
                Some(_) if field.list => {
                    return Err(RestError::validation(format!(
                        "`{here}` 필드는 배열이어야 합니다."
                    )));
                }
                Some(v) => self.check_named(&field.named, v, &here)?,
            }
        }
        Ok(())
    }

    /// Checks one non-null value of the named type `named`.
    fn check_named(&self, named: &str, value: &Value, here: &str) -> Result<(), RestError> {
        if let Some(fields) = self.types.get(named) {
            return self.check_object(fields, value, here);
        }
        let fits = match named {
            "Int" => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "Float" => value.is_number(),
            "String" => value.is_string(),
            "ID" => value.is_string() || value.is_i64(),
            "Boolean" => value.is_boolean(),
            _ => match self.enums.get(named) {
                Some(values) => value
                    .as_str()
                    .is_some_and(|v| values.iter().any(|e| e == v)),
                None => true,
            },
        };
        if fits {
            Ok(())
        } else {
            Err(invalid(here, &self.describe(named)))
        }
    }
}

/// A value of the wrong type at `here`, with what it must be.
fn invalid(here: &str, expected: &str) -> RestError {
    RestError::validation(format!(
        "`{here}` 필드의 값이 올바르지 않습니다 ({expected})."
    ))
}
