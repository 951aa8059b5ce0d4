//! A small reader for EDN, the data notation Jepsen writes its histories in.
//!
//! It reads what Jepsen and porcupine write: maps, vectors, lists, sets, keywords, symbols, strings,
//! integers, floats, characters, `nil`, booleans, comments, `#_` discards and tagged literals such
//! as `#jepsen.history.Op{...}` (the tag is kept but readers usually ignore it).

use serde_json::{Map, Number, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Char(char),
    Keyword(String),
    Symbol(String),
    Vector(Vec<Edn>),
    List(Vec<Edn>),
    Set(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
    Tagged(String, Box<Edn>),
}

impl Edn {
    /// Looks a keyword up in a map (`:name`, given without the colon).
    pub fn get(&self, keyword: &str) -> Option<&Edn> {
        match self {
            Edn::Map(entries) => {
                entries.iter().find(|(k, _)| matches!(k, Edn::Keyword(name) if name == keyword)).map(|(_, v)| v)
            }
            Edn::Tagged(_, inner) => inner.get(keyword),
            _ => None,
        }
    }

    /// Strips a tagged literal down to its value.
    pub fn untagged(&self) -> &Edn {
        match self {
            Edn::Tagged(_, inner) => inner.untagged(),
            other => other,
        }
    }

    /// Converts to JSON: keywords and symbols become strings without their colon, collections
    /// become arrays, maps become objects with stringified keys, tags are dropped.
    pub fn to_json(&self) -> Value {
        match self {
            Edn::Nil => Value::Null,
            Edn::Bool(b) => Value::Bool(*b),
            Edn::Int(i) => Value::from(*i),
            Edn::Float(f) => Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
            Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => Value::String(s.clone()),
            Edn::Char(c) => Value::String(c.to_string()),
            Edn::Vector(items) | Edn::List(items) | Edn::Set(items) => {
                Value::Array(items.iter().map(Edn::to_json).collect())
            }
            Edn::Map(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    let key = match k.to_json() {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    map.insert(key, v.to_json());
                }
                Value::Object(map)
            }
            Edn::Tagged(_, inner) => inner.to_json(),
        }
    }
}

/// A top-level value and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub line: usize,
    pub value: Edn,
}

pub struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
}

/// Nesting deeper than this is refused, so a hostile file cannot overflow the stack.
const MAX_DEPTH: usize = 256;

impl<'a> Parser<'a> {
    pub fn new(text: &'a str) -> Self {
        Parser { text: text.as_bytes(), pos: 0, line: 1 }
    }

    pub fn line(&self) -> usize {
        self.line
    }

    /// The next top-level value, `None` at the end of the text.
    pub fn next_value(&mut self) -> Result<Option<Located>, (usize, String)> {
        self.skip_space_and_discards(0)?;
        if self.pos >= self.text.len() {
            return Ok(None);
        }
        let line = self.line;
        let value = self.value(0)?;
        Ok(Some(Located { line, value }))
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, (usize, String)> {
        Err((self.line, message.into()))
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        if byte == b'\n' {
            self.line += 1;
        }
        Some(byte)
    }

    fn skip_space(&mut self) {
        while let Some(byte) = self.peek() {
            if byte.is_ascii_whitespace() || byte == b',' {
                self.bump();
            } else if byte == b';' {
                while let Some(b) = self.peek() {
                    if b == b'\n' {
                        break;
                    }
                    self.bump();
                }
            } else {
                break;
            }
        }
    }

    fn skip_space_and_discards(&mut self, depth: usize) -> Result<(), (usize, String)> {
        loop {
            self.skip_space();
            if self.text[self.pos..].starts_with(b"#_") {
                self.pos += 2;
                self.skip_space();
                self.value(depth + 1)?;
            } else {
                return Ok(());
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Edn, (usize, String)> {
        if depth > MAX_DEPTH {
            return self.error("EDN nested too deeply");
        }
        self.skip_space_and_discards(depth)?;
        let Some(byte) = self.peek() else {
            return self.error("unexpected end of input");
        };
        match byte {
            b'{' => {
                self.bump();
                let items = self.sequence(b'}', depth)?;
                if items.len() % 2 != 0 {
                    return self.error("map with an odd number of forms");
                }
                let mut entries = Vec::with_capacity(items.len() / 2);
                let mut iter = items.into_iter();
                while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
                    entries.push((k, v));
                }
                Ok(Edn::Map(entries))
            }
            b'[' => {
                self.bump();
                Ok(Edn::Vector(self.sequence(b']', depth)?))
            }
            b'(' => {
                self.bump();
                Ok(Edn::List(self.sequence(b')', depth)?))
            }
            b'#' => {
                self.bump();
                match self.peek() {
                    Some(b'{') => {
                        self.bump();
                        Ok(Edn::Set(self.sequence(b'}', depth)?))
                    }
                    Some(b) if b.is_ascii_alphabetic() => {
                        let tag = self.token();
                        let inner = self.value(depth + 1)?;
                        Ok(Edn::Tagged(tag, Box::new(inner)))
                    }
                    _ => self.error("unsupported dispatch after '#'"),
                }
            }
            b'"' => self.string(),
            b'\\' => {
                self.bump();
                let token = self.token();
                let c = match token.as_str() {
                    "newline" => '\n',
                    "space" => ' ',
                    "tab" => '\t',
                    "return" => '\r',
                    t if t.chars().count() == 1 => t.chars().next().unwrap_or(' '),
                    "" => match self.bump() {
                        Some(b) => b as char,
                        None => return self.error("unexpected end of input in a character"),
                    },
                    _ => return self.error(format!("unknown character literal \\{token}")),
                };
                Ok(Edn::Char(c))
            }
            b':' => {
                self.bump();
                let name = self.token();
                if name.is_empty() {
                    return self.error("empty keyword");
                }
                Ok(Edn::Keyword(name))
            }
            b')' | b']' | b'}' => self.error(format!("unexpected '{}'", byte as char)),
            _ => {
                let token = self.token();
                if token.is_empty() {
                    return self.error(format!("unexpected character '{}'", byte as char));
                }
                Ok(atom(&token))
            }
        }
    }

    fn sequence(&mut self, close: u8, depth: usize) -> Result<Vec<Edn>, (usize, String)> {
        let mut items = Vec::new();
        loop {
            self.skip_space_and_discards(depth)?;
            match self.peek() {
                None => return self.error(format!("unclosed collection, expected '{}'", close as char)),
                Some(b) if b == close => {
                    self.bump();
                    return Ok(items);
                }
                Some(_) => items.push(self.value(depth + 1)?),
            }
        }
    }

    fn token(&mut self) -> String {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_whitespace() || matches!(b, b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'"' | b';') {
                break;
            }
            self.bump();
        }
        String::from_utf8_lossy(&self.text[start..self.pos]).into_owned()
    }

    fn string(&mut self) -> Result<Edn, (usize, String)> {
        self.bump();
        let mut bytes = Vec::new();
        loop {
            match self.bump() {
                None => return self.error("unterminated string"),
                Some(b'"') => break,
                Some(b'\\') => match self.bump() {
                    Some(b'n') => bytes.push(b'\n'),
                    Some(b't') => bytes.push(b'\t'),
                    Some(b'r') => bytes.push(b'\r'),
                    Some(b'"') => bytes.push(b'"'),
                    Some(b'\\') => bytes.push(b'\\'),
                    Some(b'u') => {
                        let end = (self.pos + 4).min(self.text.len());
                        let hex = String::from_utf8_lossy(&self.text[self.pos..end]).into_owned();
                        let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) else {
                            return self.error("bad \\u escape");
                        };
                        self.pos = end;
                        let mut buffer = [0u8; 4];
                        bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                    }
                    Some(other) => bytes.push(other),
                    None => return self.error("unterminated string"),
                },
                Some(b) => bytes.push(b),
            }
        }
        Ok(Edn::Str(String::from_utf8_lossy(&bytes).into_owned()))
    }
}

fn atom(token: &str) -> Edn {
    match token {
        "nil" => return Edn::Nil,
        "true" => return Edn::Bool(true),
        "false" => return Edn::Bool(false),
        _ => {}
    }
    let numeric = token.trim_end_matches(['N', 'M']);
    let first = numeric.as_bytes().first().copied().unwrap_or(b'x');
    let looks_numeric = first.is_ascii_digit()
        || ((first == b'-' || first == b'+') && numeric.as_bytes().get(1).is_some_and(u8::is_ascii_digit));
    if looks_numeric {
        if let Ok(i) = numeric.parse::<i64>() {
            return Edn::Int(i);
        }
        if let Ok(f) = numeric.parse::<f64>() {
            return Edn::Float(f);
        }
    }
    Edn::Symbol(token.to_string())
}

/// Parses a whole text into its top-level values.
pub fn parse_all(text: &str) -> Result<Vec<Located>, (usize, String)> {
    let mut parser = Parser::new(text);
    let mut values = Vec::new();
    while let Some(v) = parser.next_value()? {
        values.push(v);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_jepsen_op_map() {
        let text = "{:process 0, :type :invoke, :f :cas, :value [1 2], :time 12} ; trailing\n";
        let values = parse_all(text).unwrap();
        assert_eq!(values.len(), 1);
        let map = &values[0].value;
        assert_eq!(map.get("process"), Some(&Edn::Int(0)));
        assert_eq!(map.get("type"), Some(&Edn::Keyword("invoke".into())));
        assert_eq!(map.get("value"), Some(&Edn::Vector(vec![Edn::Int(1), Edn::Int(2)])));
    }

    #[test]
    fn reads_tagged_records_sets_strings_and_discards() {
        let text = "#jepsen.history.Op{:index 3 :value #{1 2} :s \"a\\\"b\" #_ :gone :x nil}";
        let values = parse_all(text).unwrap();
        let op = &values[0].value;
        assert_eq!(op.get("index"), Some(&Edn::Int(3)));
        assert_eq!(op.get("s"), Some(&Edn::Str("a\"b".into())));
        assert_eq!(op.get("x"), Some(&Edn::Nil));
        assert_eq!(op.to_json()["value"], serde_json::json!([1, 2]));
    }

    #[test]
    fn reports_the_line_of_an_error() {
        let err = parse_all("{:a 1}\n{:b [1 2}\n").unwrap_err();
        assert_eq!(err.0, 2);
    }

    #[test]
    fn refuses_absurd_nesting_without_overflowing() {
        let text = "[".repeat(100_000);
        assert!(parse_all(&text).is_err());
    }
}
