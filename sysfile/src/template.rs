//! Templates: text with `{{placeholder}}` holes, parsed once and rendered against a `Context`.
//! A template is pure data; rendering does no IO.

use std::collections::BTreeMap;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// A placeholder's name, e.g. `node.address`.
    Hole(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub pieces: Vec<Piece>,
}

/// Why a template could not be parsed or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{{{` at byte {0} is never closed by `}}}}`")]
    Unclosed(usize),
    #[error("empty or malformed placeholder `{{{{{0}}}}}` (names are letters, digits, `_`, `-` and `.`)")]
    Malformed(String),
    #[error("unknown placeholder `{{{{{name}}}}}`; known here: {known}")]
    Unknown { name: String, known: String },
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(TemplateError::Unclosed(offset + open));
            };
            let name = after[..close].trim();
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Err(TemplateError::Malformed(after[..close].to_string()));
            }
            pieces.push(Piece::Hole(name.to_string()));
            offset += open + 2 + close + 2;
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template { pieces })
    }

    /// The placeholders the template uses.
    pub fn holes(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| if let Piece::Hole(name) = p { Some(name.as_str()) } else { None })
    }

    pub fn render(&self, context: &Context) -> Result<String, TemplateError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Hole(name) => match context.values.get(name) {
                    Some(value) => out.push_str(value),
                    None => return Err(TemplateError::Unknown { name: name.clone(), known: context.known_names() }),
                },
            }
        }
        Ok(out)
    }
}

/// The values placeholders stand for, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub values: BTreeMap<String, String>,
}

impl Context {
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), value.into());
    }

    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Context {
        self.set(name, value);
        self
    }

    fn known_names(&self) -> String {
        self.values.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
    }
}

/// Renders one template text at once (parse + render).
pub fn render(text: &str, context: &Context) -> Result<String, TemplateError> {
    Template::parse(text)?.render(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_text_is_kept() {
        let context = Context::default().with("node.name", "n2").with("node.address", "10.77.1.2");
        let out = render("--name={{node.name}} --listen=http://{{ node.address }}:2379 {literal}", &context).unwrap();
        assert_eq!(out, "--name=n2 --listen=http://10.77.1.2:2379 {literal}");
    }

    #[test]
    fn an_unknown_placeholder_is_named_with_what_is_known() {
        let context = Context::default().with("node.name", "n1");
        let error = render("{{node.nmae}}", &context).unwrap_err();
        assert_eq!(error, TemplateError::Unknown { name: "node.nmae".into(), known: "node.name".into() });
    }

    #[test]
    fn unclosed_and_malformed_placeholders_do_not_parse() {
        assert_eq!(Template::parse("a {{node.name").unwrap_err(), TemplateError::Unclosed(2));
        assert!(matches!(Template::parse("{{}}").unwrap_err(), TemplateError::Malformed(_)));
        assert!(matches!(Template::parse("{{a b}}").unwrap_err(), TemplateError::Malformed(_)));
    }
}
