//! URL templates: `${name}` placeholders replaced with percent-encoded values (seed 001).
//!
//! No pgrx here, so the rules are plain unit tests.

use serde_json::{Map, Value};
use std::fmt;

/// The longest URL or template accepted, before or after filling in.
pub const MAX_URL_BYTES: usize = 2048;

/// Why a template could not be parsed or rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// `${` with no closing `}`.
    Unclosed { at: usize },
    /// `${}` or a name with characters other than letters, digits, `_`, `-`, `.`.
    BadName { name: String },
    /// A placeholder whose name has no value for this event.
    Unknown { name: String },
    /// Filled in, the URL is longer than MAX_URL_BYTES.
    TooLong { bytes: usize },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Unclosed { at } => {
                write!(f, "\"${{\" at byte {at} has no closing \"}}\"")
            }
            TemplateError::BadName { name } => write!(f, "\"${{{name}}}\" is not a valid variable name"),
            TemplateError::Unknown { name } => write!(f, "template variable \"{name}\" has no value"),
            TemplateError::TooLong { bytes } => {
                write!(
                    f,
                    "filled in, the URL is {bytes} bytes long, over the limit of {MAX_URL_BYTES}"
                )
            }
        }
    }
}

/// One piece of a parsed template.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn parse(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(TemplateError::Unclosed { at: offset + start })?;
        let name = &after[..end];
        if !valid_name(name) {
            return Err(TemplateError::BadName { name: name.to_string() });
        }
        pieces.push(Piece::Var(name));
        let consumed = start + 2 + end + 1;
        offset += consumed;
        rest = &rest[consumed..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// The variable names a template uses, in order of first use; checks its syntax.
pub fn variables(template: &str) -> Result<Vec<String>, TemplateError> {
    let mut names: Vec<String> = Vec::new();
    for piece in parse(template)? {
        if let Piece::Var(name) = piece {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

/// The template with every `${name}` replaced by the percent-encoded value of `vars[name]`.
///
/// Strings are used as they are, numbers and booleans in their JSON form; a missing
/// name or a null, array or object value is an error, so a URL is never sent half-filled; so
/// is a URL over MAX_URL_BYTES once filled.
pub fn render(template: &str, vars: &Map<String, Value>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 32);
    for piece in parse(template)? {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Var(name) => {
                let value = match vars.get(name) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::Bool(b)) => b.to_string(),
                    _ => return Err(TemplateError::Unknown { name: name.to_string() }),
                };
                percent_encode_into(&value, &mut out);
            }
        }
    }
    if out.len() > MAX_URL_BYTES {
        return Err(TemplateError::TooLong { bytes: out.len() });
    }
    Ok(out)
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a value can
/// never add a path segment, a query, a fragment or credentials to the URL.
pub fn percent_encode_into(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in value.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(HEX[(byte >> 4) as usize] as char);
            out.push(HEX[(byte & 15) as usize] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn replaces_every_placeholder() {
        let v = vars(json!({"studentId": "s-17", "id": 42, "ok": true}));
        assert_eq!(
            render("https://h/x/${studentId}/m/${id}?ok=${ok}&again=${id}", &v).unwrap(),
            "https://h/x/s-17/m/42?ok=true&again=42"
        );
    }

    #[test]
    fn text_without_placeholders_is_unchanged() {
        let v = Map::new();
        assert_eq!(render("https://h/a?b=c$d}", &v).unwrap(), "https://h/a?b=c$d}");
    }

    #[test]
    fn values_are_percent_encoded_so_they_cannot_reshape_the_url() {
        let v = vars(json!({"name": "a/b?c=d#e@f g&h", "greek": "Ελλάδα"}));
        assert_eq!(
            render("https://h/${name}", &v).unwrap(),
            "https://h/a%2Fb%3Fc%3Dd%23e%40f%20g%26h"
        );
        assert_eq!(render("${greek}", &v).unwrap(), "%CE%95%CE%BB%CE%BB%CE%AC%CE%B4%CE%B1");
        assert_eq!(render("${u}", &vars(json!({"u": "A-z_0.9~"}))).unwrap(), "A-z_0.9~");
    }

    #[test]
    fn missing_null_or_structured_values_are_errors() {
        let v = vars(json!({"n": null, "a": [1], "o": {}}));
        for name in ["missing", "n", "a", "o"] {
            assert_eq!(
                render(&format!("https://h/${{{name}}}"), &v),
                Err(TemplateError::Unknown { name: name.into() })
            );
        }
    }

    #[test]
    fn a_url_too_long_once_filled_is_an_error() {
        let long = vars(json!({"id": "x".repeat(2000)}));
        let filled = render("https://crm.example.com/${id}", &long);
        assert_eq!(filled, Ok(format!("https://crm.example.com/{}", "x".repeat(2000))));
        // Each ü is two bytes, each percent-encoded in three characters.
        let longer = vars(json!({"id": "ü".repeat(400)}));
        let filled = render("https://crm.example.com/${id}", &longer);
        assert_eq!(filled, Err(TemplateError::TooLong { bytes: 2424 }));
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert_eq!(variables("https://h/${id"), Err(TemplateError::Unclosed { at: 10 }));
        assert_eq!(
            variables("https://h/${}"),
            Err(TemplateError::BadName { name: "".into() })
        );
        assert_eq!(
            variables("https://h/${a b}"),
            Err(TemplateError::BadName { name: "a b".into() })
        );
    }

    #[test]
    fn variables_are_listed_once_in_order() {
        assert_eq!(
            variables("${b}/${a}/${b}/${member.id}").unwrap(),
            vec!["b".to_string(), "a".into(), "member.id".into()]
        );
    }

    #[test]
    fn error_messages_name_the_variable() {
        assert_eq!(
            TemplateError::Unknown { name: "x".into() }.to_string(),
            "template variable \"x\" has no value"
        );
        assert_eq!(
            TemplateError::Unclosed { at: 3 }.to_string(),
            "\"${\" at byte 3 has no closing \"}\""
        );
    }
}
