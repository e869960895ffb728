//! PostgreSQL cannot store the NUL character, and no person types one: text
//! carrying it is refused before anything runs, as BAD_USER_INPUT naming the
//! variable (or `query` for a literal), instead of failing later in the
//! database as an internal error.

use async_graphql::{ErrorExtensions, Pos, ServerError, Value, Variables};

use crate::error::ApiError;

/// Refuses variables holding a NUL, naming the input field that does.
pub fn check_variables(variables: &Variables) -> Result<(), ServerError> {
    match variables.iter().find_map(|(name, value)| nul_path(value).map(|path| field_name(name.as_str(), path))) {
        Some(field) => {
            let error = ApiError::bad_input(field, "must not contain the NUL character");
            Err(error.extend().into_server_error(Pos::default()))
        }
        None => Ok(()),
    }
}

/// A raw NUL, or a `\u0000` / `\u{0}` escape in a string literal.
pub fn has_nul_literal(query: &str) -> bool {
    query.contains('\0')
        || query.match_indices("\\u").any(|(at, _)| {
            let rest = &query[at + 2..];
            let digits = match rest.strip_prefix('{') {
                Some(braced) => braced.split('}').next().unwrap_or_default(),
                None => rest.get(..4).unwrap_or_default(),
            };
            !digits.is_empty() && digits.bytes().all(|b| b == b'0')
        })
}

/// Where in a variable's value a string holds a NUL, as path segments.
fn nul_path(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(text) => text.contains('\0').then(Vec::new),
        Value::List(items) => items.iter().enumerate().find_map(|(index, item)| {
            nul_path(item).map(|mut path| {
                path.insert(0, index.to_string());
                path
            })
        }),
        Value::Object(fields) => fields.iter().find_map(|(name, item)| {
            nul_path(item).map(|mut path| {
                path.insert(0, name.to_string());
                path
            })
        }),
        _ => None,
    }
}

/// Fields are named as the other input errors name them: relative to an
/// input object variable (`parcels.0.carrier`), or the variable itself.
fn field_name(variable: &str, path: Vec<String>) -> String {
    if path.is_empty() { variable.to_owned() } else { path.join(".") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nul_in_literals_and_escapes() {
        assert!(has_nul_literal("{ a(b: \"x\\u0000\") }"));
        assert!(has_nul_literal("{ a(b: \"\\u{0}\") }"));
        assert!(has_nul_literal("{ a(b: \"\0\") }"));
        assert!(!has_nul_literal("{ a(b: \"\\u00e9 \\u{1F600}\") }"));
    }

    #[test]
    fn names_the_input_field_holding_the_nul() {
        let value = Value::from_json(serde_json::json!({ "parcels": [{ "carrier": "ok" }, { "carrier": "a\u{0}" }] }))
            .expect("value");
        assert_eq!(field_name("input", nul_path(&value).expect("found")), "parcels.1.carrier");
        assert_eq!(field_name("phone", nul_path(&Value::from("\u{0}")).expect("found")), "phone");
        assert!(nul_path(&Value::from("fine")).is_none());
    }
}
