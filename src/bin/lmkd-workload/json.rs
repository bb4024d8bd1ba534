//! A minimal JSON writer: the result file is small and flat, and serde_json
//! is not among our dependencies.

use std::fmt::Write;

pub fn string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// An object under construction; values are already-encoded JSON.
#[derive(Default)]
pub struct Obj {
    pub fields: Vec<(String, String)>,
}

impl Obj {
    pub fn new() -> Obj {
        Obj::default()
    }

    pub fn raw(mut self, k: &str, v: impl ToString) -> Obj {
        self.fields.push((k.to_string(), v.to_string()));
        self
    }

    pub fn str(self, k: &str, v: &str) -> Obj {
        self.raw(k, string(v))
    }

    pub fn opt<T: ToString>(self, k: &str, v: Option<T>) -> Obj {
        match v {
            Some(v) => self.raw(k, v),
            None => self.raw(k, "null"),
        }
    }

    pub fn build(&self) -> String {
        let body: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{}: {}", string(k), v))
            .collect();
        format!("{{{}}}", body.join(", "))
    }
}

pub fn array(items: impl IntoIterator<Item = String>, sep: &str) -> String {
    let v: Vec<String> = items.into_iter().collect();
    if v.is_empty() {
        return "[]".into();
    }
    format!(
        "[{sep}{}{}]",
        v.join(&format!(",{sep}")),
        if sep.is_empty() { "" } else { "\n" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_nests() {
        assert_eq!(string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
        let o = Obj::new()
            .str("k", "v")
            .raw("n", 3)
            .opt::<i32>("x", None)
            .build();
        assert_eq!(o, r#"{"k": "v", "n": 3, "x": null}"#);
        assert_eq!(array(vec!["1".into(), "2".into()], ""), "[1,2]");
    }
}
