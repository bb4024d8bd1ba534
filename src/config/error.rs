//! Why a configuration cannot be used, and where in the file.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in a file a problem was found (both parts optional).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub path: Option<PathBuf>,
    /// 1-based.
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{l}: ", p.display()),
            (Some(p), None) => write!(f, "{}: ", p.display()),
            (None, Some(l)) => write!(f, "line {l}: "),
            (None, None) => Ok(()),
        }
    }
}

/// A line of the file and a 1-based column on it (in characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excerpt {
    pub text: String,
    pub column: usize,
}

impl Excerpt {
    /// The line holding byte `offset` of `text`.
    pub(super) fn at(text: &str, offset: usize) -> Excerpt {
        let offset = offset.min(text.len());
        let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        let line = text[start..end].trim_end_matches('\r');
        let before = &text[start..offset];
        Excerpt {
            text: line.to_string(),
            column: before.chars().count() + 1,
        }
    }
}

impl fmt::Display for Excerpt {
    /// The line, then a caret under the column (tabs kept so it lines up).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pad: String = self
            .text
            .chars()
            .take(self.column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "    {}\n    {pad}^", self.text)
    }
}

/// A configuration that cannot be used. Every variant about a key names it.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML at all.
    Syntax {
        at: Location,
        message: String,
        /// The offending line and where on it, when the parser said.
        excerpt: Option<Excerpt>,
    },
    /// A key we do not know (typo, or a table).
    UnknownKey { at: Location, key: String },
    /// A known key with a value of the wrong TOML type.
    WrongType {
        at: Location,
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    /// Right type, not allowed (out of range, relative path, ...).
    BadValue {
        at: Location,
        key: String,
        value: String,
        allowed: String,
    },
}

impl ConfigError {
    /// The key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::BadValue { key, .. } => Some(key),
            ConfigError::Io { .. } | ConfigError::Syntax { .. } => None,
        }
    }

    fn location_mut(&mut self) -> Option<&mut Location> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Syntax { at, .. }
            | ConfigError::UnknownKey { at, .. }
            | ConfigError::WrongType { at, .. }
            | ConfigError::BadValue { at, .. } => Some(at),
        }
    }

    pub(super) fn in_file(mut self, path: &Path) -> Self {
        if let Some(at) = self.location_mut() {
            at.path.get_or_insert_with(|| path.to_path_buf());
        }
        self
    }

    pub(super) fn bad_value(key: &str, value: impl fmt::Display, allowed: String) -> Self {
        ConfigError::BadValue {
            at: Location::default(),
            key: key.to_string(),
            value: value.to_string(),
            allowed,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Syntax {
                at,
                message,
                excerpt: None,
            } => write!(f, "{at}invalid TOML: {message}"),
            ConfigError::Syntax {
                at,
                message,
                excerpt: Some(x),
            } => {
                // `path:line:column:` as compilers write it, then the line.
                let at = at.to_string();
                let at = at.strip_suffix(": ").unwrap_or(&at);
                write!(f, "{at}:{}: invalid TOML: {message}\n{x}", x.column)
            }
            ConfigError::UnknownKey { at, key } => write!(f, "{at}unknown key \"{key}\""),
            ConfigError::WrongType {
                at,
                key,
                expected,
                found,
            } => {
                write!(f, "{at}key \"{key}\": expected {expected}, found {found}")
            }
            ConfigError::BadValue {
                at,
                key,
                value,
                allowed,
            } => {
                write!(f, "{at}{key} = {value}: {allowed}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
