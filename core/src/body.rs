//! Request bodies: one event envelope rendered as JSON, XML or form fields.
//!
//! The envelope is the one Standard Webhooks recommends, `{"type", "timestamp", "data"}`;
//! XML and form bodies carry the same fields under the same names. Keys come out in
//! alphabetical order in every format, so a body is the same whatever built the envelope.

use crate::template::percent_encode_into;
use serde_json::Value;
use std::fmt::Write;

/// The body formats a target can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
    Form,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        [Format::Json, Format::Xml, Format::Form]
            .into_iter()
            .find(|f| f.name() == name)
    }

    /// Its name in SQL (`callback.body_format`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Xml => "xml",
            Format::Form => "form",
        }
    }

    /// The Content-Type header a body in this format is sent with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Xml => "application/xml; charset=utf-8",
            Format::Form => "application/x-www-form-urlencoded",
        }
    }
}

/// The envelope rendered in `format`.
pub fn render(format: Format, envelope: &Value) -> String {
    match format {
        Format::Json => envelope.to_string(),
        Format::Xml => format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>{}", xml_part(envelope)),
        Format::Form => form_part("", envelope),
    }
}

/// One event's element in a batch's XML body: the single event's body without its declaration.
pub fn xml_part(envelope: &Value) -> String {
    let mut out = String::new();
    xml_element(&mut out, "callback", envelope);
    out
}

/// One event's fields in a batch's form body, named under `prefix` (`results[0][type]`).
pub fn form_part(prefix: &str, envelope: &Value) -> String {
    let mut fields = Vec::new();
    form_fields(&mut fields, prefix.to_string(), envelope);
    fields.join("&")
}

/// `name` made into a valid XML element name: other characters become `_`.
fn xml_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

fn xml_escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters even escaped: write them as U+FFFD.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Objects become child elements, arrays repeated `<item>` elements, null an empty
/// element marked `nil="true"`, scalars their text.
fn xml_element(out: &mut String, name: &str, value: &Value) {
    let name = xml_name(name);
    match value {
        Value::Null => {
            let _ = write!(out, "<{name} nil=\"true\"/>");
        }
        Value::Object(map) => {
            let _ = write!(out, "<{name}>");
            for (key, child) in map {
                xml_element(out, key, child);
            }
            let _ = write!(out, "</{name}>");
        }
        Value::Array(items) => {
            let _ = write!(out, "<{name}>");
            for item in items {
                xml_element(out, "item", item);
            }
            let _ = write!(out, "</{name}>");
        }
        Value::String(s) => {
            let _ = write!(out, "<{name}>");
            xml_escape_into(out, s);
            let _ = write!(out, "</{name}>");
        }
        Value::Number(_) | Value::Bool(_) => {
            let _ = write!(out, "<{name}>{value}</{name}>");
        }
    }
}

/// Nested fields are named the way PHP, Rails and most form parsers read them:
/// `data[message_id]`, `data[attempt_ids][0]`. Null is an empty value.
fn form_fields(fields: &mut Vec<String>, prefix: String, value: &Value) {
    let child = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}[{key}]")
        }
    };
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                form_fields(fields, child(key), v);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                form_fields(fields, child(&i.to_string()), v);
            }
        }
        scalar => {
            let text = match scalar {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut field = String::new();
            percent_encode_into(&prefix, &mut field);
            field.push('=');
            percent_encode_into(&text, &mut field);
            fields.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope() -> Value {
        json!({
            "type": "message.status",
            "timestamp": "2026-11-22T10:00:00.000000Z",
            "data": {
                "message_id": 42,
                "status": "delivered",
                "error": null,
                "attempt_ids": [7, 8],
                "callback_data": "a&b <c> \"d\""
            }
        })
    }

    #[test]
    fn json_is_the_envelope_itself() {
        let body = render(Format::Json, &envelope());
        let back: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(back, envelope());
    }

    #[test]
    fn xml_carries_the_same_fields_escaped() {
        assert_eq!(
            render(Format::Xml, &envelope()),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><callback><data><attempt_ids><item>7</item>\
             <item>8</item></attempt_ids><callback_data>a&amp;b &lt;c&gt; &quot;d&quot;</callback_data>\
             <error nil=\"true\"/><message_id>42</message_id><status>delivered</status></data>\
             <timestamp>2026-11-22T10:00:00.000000Z</timestamp><type>message.status</type></callback>"
        );
    }

    #[test]
    fn xml_names_and_text_are_made_safe() {
        let mut out = String::new();
        xml_element(&mut out, "1 bad<name>", &json!("x\u{1}y"));
        assert_eq!(out, "<_1_bad_name_>x\u{FFFD}y</_1_bad_name_>");
    }

    #[test]
    fn form_fields_use_bracket_names_and_percent_encoding() {
        assert_eq!(
            render(Format::Form, &envelope()),
            "data%5Battempt_ids%5D%5B0%5D=7&data%5Battempt_ids%5D%5B1%5D=8\
             &data%5Bcallback_data%5D=a%26b%20%3Cc%3E%20%22d%22&data%5Berror%5D=\
             &data%5Bmessage_id%5D=42&data%5Bstatus%5D=delivered\
             &timestamp=2026-11-22T10%3A00%3A00.000000Z&type=message.status"
        );
    }

    #[test]
    fn formats_parse_by_their_sql_names() {
        assert_eq!(Format::parse("xml"), Some(Format::Xml));
        assert_eq!(Format::parse("XML"), None);
    }
}
