//! REST spells names in `snake_case`, GraphQL in `camelCase`: the two conversions.

/// `snake_case` → `camelCase`, for the GraphQL name of a REST key.
pub(crate) fn to_camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
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

/// `camelCase` → `snake_case`, for naming fields in messages the way REST clients see them.
pub(crate) fn to_snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_conversion_round_trips() {
        for key in ["user_id", "guardian_consent", "age", "start_cursor2"] {
            assert_eq!(to_snake(&to_camel(key)), key);
        }
        assert_eq!(to_camel("refresh_token"), "refreshToken");
    }
}
