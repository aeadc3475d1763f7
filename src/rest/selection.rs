//! The GraphQL selection that reads a REST type, derived from the type's published schema:
//! every property, aliased to its REST (`snake_case`) name where GraphQL spells it in
//! `camelCase`, and the objects it holds selected in turn. So a REST object's fields are
//! declared once, in its type ([`super::types`]); the document, the OpenAPI schema and
//! the deserialisation all follow from it.

use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The selection set (without braces) that produces `T`'s fields.
pub(crate) fn selection<T: ToSchema>() -> String {
    let mut schemas = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut schemas);
    let components: Map<String, Value> = schemas
        .into_iter()
        .map(|(name, schema)| {
            let schema = serde_json::to_value(schema).expect("schemas serialise");
            (name, schema)
        })
        .collect();
    select(&components[T::name().as_ref()], &components)
}

fn select(schema: &Value, components: &Map<String, Value>) -> String {
    let Some(properties) = schema["properties"].as_object() else {
        panic!("a REST object's schema has properties: {schema}");
    };
    properties
        .iter()
        .map(|(name, property)| {
            let field = camel_case(name);
            let head = if field == *name {
                field
            } else {
                format!("{name}: {field}")
            };
            match object_inside(property, components) {
                Some(object) => format!("{head} {{ {} }}", select(object, components)),
                None => head,
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The object schema a property holds — itself, by reference, as the items of a list,
/// or as one of `oneOf`/`anyOf`/`allOf` (a nullable object) — or `None` for a scalar or
/// an enum.
fn object_inside<'a>(property: &'a Value, components: &'a Map<String, Value>) -> Option<&'a Value> {
    if let Some(reference) = property["$ref"].as_str() {
        let name = reference.rsplit('/').next()?;
        return object_inside(components.get(name)?, components);
    }
    if property["properties"].is_object() {
        return Some(property);
    }
    if property["items"].is_object() {
        return object_inside(&property["items"], components);
    }
    ["oneOf", "anyOf", "allOf"]
        .iter()
        .filter_map(|key| property[*key].as_array())
        .flatten()
        .find_map(|option| object_inside(option, components))
}

/// `created_at` → `createdAt`: GraphQL's name of a REST field.
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::types::{ConversationDetail, Story, TokenPair, User};

    fn fields(selection: &str) -> Vec<&str> {
        let mut words: Vec<&str> = selection.split_whitespace().collect();
        words.sort_unstable();
        words
    }

    #[test]
    fn selections_follow_the_types() {
        assert_eq!(
            fields(&selection::<User>()),
            fields("id object name age created_at: createdAt")
        );
        assert_eq!(
            fields(&selection::<TokenPair>()),
            fields(
                "token_type: tokenType access_token: accessToken expires_in: expiresIn \
                 refresh_token: refreshToken"
            )
        );
        // Nested objects, lists of them and nullable ones are selected in turn.
        let story = selection::<Story>();
        for part in [
            "owner_id: ownerId",
            "chapter_number: chapterNumber",
            "image { ",
            "audio { ",
            "expiry_time: expiryTime",
            "chapters { ",
        ] {
            assert!(story.contains(part), "{part} missing: {story}");
        }
        let detail = selection::<ConversationDetail>();
        assert!(detail.contains("messages { "), "{detail}");
        assert!(detail.contains("audio_url: audioUrl"), "{detail}");
        // The result parses as GraphQL.
        for s in [story, detail] {
            async_graphql::parser::parse_query(format!("{{ data {{ {s} }} }}")).unwrap();
        }
    }
}
