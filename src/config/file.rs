//! The TOML file: strict, every problem an error that names the key, the
//! file and the line; `to_toml` writes the effective configuration back.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::key::{apply_floor, check, kind_name, spec, Kind, Val};
use super::KEYS;
use super::{Config, ConfigError, Excerpt, Location};

fn line_of(text: &str, span: Option<Range<usize>>) -> Option<usize> {
    let start = span?.start.min(text.len());
    Some(
        text.as_bytes()[..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1,
    )
}

fn toml_type_name(v: &toml::de::DeValue<'_>) -> &'static str {
    use toml::de::DeValue;
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Outcome of reading a TOML value as a key's kind.
enum Conv {
    Ok(Val),
    /// Right type, but the number does not fit (text as written, what is allowed).
    TooBig(String, String),
    /// (expected, found)
    Mismatch(&'static str, &'static str),
}

fn toml_val(kind: Kind, v: &toml::de::DeValue<'_>) -> Conv {
    use toml::de::DeValue;
    match (kind, v) {
        (Kind::Bool, DeValue::Boolean(b)) => Conv::Ok(Val::Bool(*b)),
        (Kind::Int { min, max, .. }, DeValue::Integer(i)) => {
            match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Conv::Ok(Val::Int(n)),
                Err(_) => Conv::TooBig(i.to_string(), format!("must be between {min} and {max}")),
            }
        }
        (Kind::Path, DeValue::String(s)) => Conv::Ok(Val::Path(PathBuf::from(s.as_ref()))),
        (Kind::Uids, DeValue::Array(items)) => {
            let mut uids = Vec::with_capacity(items.len());
            for item in items.iter() {
                let DeValue::Integer(i) = item.get_ref() else {
                    return Conv::Mismatch(kind_name(kind), element_name(item.get_ref()));
                };
                match u32::from_str_radix(i.as_str(), i.radix()) {
                    Ok(uid) => uids.push(uid),
                    Err(_) => {
                        return Conv::TooBig(
                            format!("[.., {i}, ..]"),
                            format!("uids must be between 0 and {}", u32::MAX),
                        )
                    }
                }
            }
            Conv::Ok(Val::Uids(uids))
        }
        _ => Conv::Mismatch(kind_name(kind), toml_type_name(v)),
    }
}

fn element_name(v: &toml::de::DeValue<'_>) -> &'static str {
    use toml::de::DeValue;
    match v {
        DeValue::String(_) => "an array containing a string",
        DeValue::Float(_) => "an array containing a float",
        DeValue::Boolean(_) => "an array containing a boolean",
        DeValue::Datetime(_) => "an array containing a datetime",
        DeValue::Array(_) => "an array containing an array",
        DeValue::Table(_) => "an array containing a table",
        DeValue::Integer(_) => "an array containing an integer",
    }
}

impl Config {
    /// Apply the keys present in `text` on top of `self` (strict: the first
    /// problem, in file order, is the error). Does not run `validate`.
    pub(super) fn apply_toml(
        &mut self,
        text: &str,
        path: Option<&Path>,
    ) -> Result<(), ConfigError> {
        let at = |line| Location {
            path: path.map(Path::to_path_buf),
            line,
        };
        let table = toml::de::DeTable::parse(text).map_err(|e| ConfigError::Syntax {
            at: at(line_of(text, e.span())),
            message: e.message().trim_end().to_string(),
            excerpt: e.span().map(|s| Excerpt::at(text, s.start)),
        })?;
        // The map is sorted by key; report problems in file order instead.
        let mut entries: Vec<_> = table.get_ref().iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        for (key, value) in entries {
            let name: &str = key.get_ref();
            let line = line_of(text, Some(key.span()));
            let Some(spec) = spec(name) else {
                return Err(ConfigError::UnknownKey {
                    at: at(line),
                    key: name.to_string(),
                });
            };
            let val = match toml_val(spec.kind, value.get_ref()) {
                Conv::Ok(v) => v,
                Conv::TooBig(value, allowed) => {
                    return Err(ConfigError::BadValue {
                        at: at(line),
                        key: name.to_string(),
                        value,
                        allowed,
                    })
                }
                Conv::Mismatch(expected, found) => {
                    return Err(ConfigError::WrongType {
                        at: at(line),
                        key: name.to_string(),
                        expected,
                        found,
                    })
                }
            };
            if let Err(allowed) = check(spec, &val) {
                return Err(ConfigError::BadValue {
                    at: at(line),
                    key: name.to_string(),
                    value: val.to_string(),
                    allowed,
                });
            }
            self.put(name, apply_floor(name, val));
        }
        Ok(())
    }

    /// Parse a TOML config: keys not in the text keep their default. Unknown
    /// keys, wrong types and out-of-range values are errors naming the key.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        cfg.apply_toml(s, None)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// [`Config::from_toml_str`] on a file; errors carry the path.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = read_config(path)?;
        let mut cfg = Config::default();
        cfg.apply_toml(&text, Some(path))
            .map_err(|e| e.in_file(path))?;
        cfg.validate().map_err(|e| e.in_file(path))?;
        Ok(cfg)
    }

    /// The effective configuration as TOML, one `key = value` per key, in
    /// table order; keys with derived defaults (`thrashing_limit_critical`,
    /// `use_new_strategy`) are shown resolved. Parsing it back gives the same
    /// configuration (with those keys made explicit).
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# lmkd-rs effective configuration\n");
        for spec in KEYS {
            if let Some(v) = self.effective(spec.name) {
                out.push_str(&format!("{} = {v}\n", spec.name));
            }
        }
        out
    }
}

pub(super) fn read_config(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("a\nb\nc", Some(4..5)), Some(3));
        assert_eq!(line_of("a", Some(100..101)), Some(1));
        assert_eq!(line_of("a", None), None);
    }

    #[test]
    fn excerpt_points_at_the_column() {
        let x = Excerpt::at("a = 1\nbb = = 2\n", 11);
        assert_eq!(x.text, "bb = = 2");
        assert_eq!(x.column, 6);
        assert_eq!(x.to_string(), "    bb = = 2\n         ^");
    }
}
