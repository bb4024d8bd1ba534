//! System properties: bionic's property store on Android, a map elsewhere.
//!
//! The config loader only sees [`PropertySource`], so the same lookup code
//! runs on a device (real `setprop`), on a host or VM (a `name=value` file
//! named by `LMKD_PROPS_FILE`, edited to simulate `setprop`) and in tests.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;

/// Read and write access to `name = value` properties.
pub trait PropertySource: Send + Sync {
    /// The value, or `None` when the property is not set.
    fn get(&self, name: &str) -> Option<String>;
    /// Set a property (on Android, subject to SELinux and init's rules).
    fn set(&self, name: &str, value: &str) -> io::Result<()>;
}

/// A store shared with others (the daemon's threads, or a test that reads
/// back what the daemon published).
impl<T: PropertySource + ?Sized> PropertySource for std::sync::Arc<T> {
    fn get(&self, name: &str) -> Option<String> {
        (**self).get(name)
    }
    fn set(&self, name: &str, value: &str) -> io::Result<()> {
        (**self).set(name, value)
    }
}

/// Environment variable naming a property file for hosts and VMs.
pub const PROPS_FILE_ENV: &str = "LMKD_PROPS_FILE";

/// No properties at all; writes are accepted and dropped, so a host daemon
/// can publish `sys.lmk.*` the same way it does on Android without noise.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProperties;

impl PropertySource for NoProperties {
    fn get(&self, _name: &str) -> Option<String> {
        None
    }
    fn set(&self, _name: &str, _value: &str) -> io::Result<()> {
        Ok(())
    }
}

/// In-memory properties (tests, hosts, VMs).
#[derive(Debug, Default)]
pub struct MapProperties {
    map: Mutex<BTreeMap<String, String>>,
}

impl MapProperties {
    pub fn new() -> Self {
        Self::default()
    }

    /// Build from pairs, e.g. `MapProperties::from_pairs([("ro.lmk.debug", "true")])`.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        MapProperties {
            map: Mutex::new(map),
        }
    }

    /// Parse `name=value` lines; blank lines and `#` comments are skipped,
    /// whitespace around name and value is trimmed, a later line wins.
    /// `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> io::Result<Self> {
        let mut map = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{origin}:{}: {why}", n + 1),
                )
            };
            let (name, value) = line
                .split_once('=')
                .ok_or_else(|| bad(&format!("expected name=value, found {line:?}")))?;
            let name = name.trim();
            if name.is_empty() || name.chars().any(char::is_whitespace) {
                return Err(bad(&format!("invalid property name {name:?}")));
            }
            map.insert(name.to_string(), value.trim().to_string());
        }
        Ok(MapProperties {
            map: Mutex::new(map),
        })
    }

    /// Read a `name=value` file (see [`MapProperties::parse`]); errors name the path.
    pub fn from_file(path: &Path) -> io::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read properties file {}: {e}", path.display()),
            )
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Remove a property (tests).
    pub fn remove(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PropertySource for MapProperties {
    fn get(&self, name: &str) -> Option<String> {
        self.lock().get(name).cloned()
    }
    fn set(&self, name: &str, value: &str) -> io::Result<()> {
        self.lock().insert(name.to_string(), value.to_string());
        Ok(())
    }
}

#[cfg(target_os = "android")]
pub use android::SystemProperties;

#[cfg(target_os = "android")]
mod android {
    use super::PropertySource;
    use std::ffi::{CStr, CString};
    use std::io;

    /// Bionic's system properties.
    #[derive(Debug, Default, Clone, Copy)]
    pub struct SystemProperties;

    fn cstring(what: &str, s: &str) -> io::Result<CString> {
        CString::new(s).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} {s:?} contains a NUL byte"),
            )
        })
    }

    impl PropertySource for SystemProperties {
        fn get(&self, name: &str) -> Option<String> {
            let name = CString::new(name).ok()?;
            // PROP_VALUE_MAX includes the NUL; longer ro.* values are
            // truncated by bionic, none of ours come close.
            let mut buf = [0 as libc::c_char; libc::PROP_VALUE_MAX as usize];
            // SAFETY: `name` is NUL-terminated and `buf` has the
            // PROP_VALUE_MAX bytes bionic may write (value plus NUL).
            let len = unsafe { libc::__system_property_get(name.as_ptr(), buf.as_mut_ptr()) };
            if len <= 0 {
                return None;
            }
            // SAFETY: bionic NUL-terminated `buf` within its length.
            let value = unsafe { CStr::from_ptr(buf.as_ptr()) };
            Some(value.to_string_lossy().into_owned())
        }

        fn set(&self, name: &str, value: &str) -> io::Result<()> {
            let cname = cstring("property name", name)?;
            let cvalue = cstring("property value", value)?;
            // SAFETY: both pointers are NUL-terminated strings that outlive the call.
            let rc = unsafe { libc::__system_property_set(cname.as_ptr(), cvalue.as_ptr()) };
            if rc != 0 {
                return Err(io::Error::other(format!(
                    "__system_property_set({name}, {value:?}) failed ({rc})"
                )));
            }
            Ok(())
        }
    }
}

/// The platform's properties. On Android bionic's store; elsewhere the file
/// named by `LMKD_PROPS_FILE` (read now, so each call sees current edits),
/// or no properties when it is unset or unreadable (logged).
pub fn system() -> Box<dyn PropertySource> {
    #[cfg(target_os = "android")]
    {
        Box::new(SystemProperties)
    }
    #[cfg(not(target_os = "android"))]
    {
        match std::env::var_os(PROPS_FILE_ENV) {
            Some(path) => Box::new(FileProperties::new(Path::new(&path))),
            None => Box::new(NoProperties),
        }
    }
}

/// A `name=value` file re-read on every lookup, so editing it and sending
/// UPDATE_PROPS behaves like `setprop` + `lmkd --reinit` on a device.
/// Values the daemon sets live in memory on top of the file.
#[derive(Debug)]
pub struct FileProperties {
    path: std::path::PathBuf,
    written: MapProperties,
}

impl FileProperties {
    pub fn new(path: &Path) -> Self {
        FileProperties {
            path: path.to_path_buf(),
            written: MapProperties::new(),
        }
    }
}

impl PropertySource for FileProperties {
    fn get(&self, name: &str) -> Option<String> {
        if let Some(v) = self.written.get(name) {
            return Some(v);
        }
        match MapProperties::from_file(&self.path) {
            Ok(m) => m.get(name),
            Err(e) => {
                log::warn!("{PROPS_FILE_ENV}: {e}; treating {name} as unset");
                None
            }
        }
    }
    fn set(&self, name: &str, value: &str) -> io::Result<()> {
        self.written.set(name, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_value_lines() {
        let p = MapProperties::parse(
            "# comment\n\n ro.lmk.debug = true \nx=a=b\nx2=\nro.lmk.debug=false\n",
            "t",
        )
        .unwrap();
        assert_eq!(p.get("ro.lmk.debug").as_deref(), Some("false"));
        assert_eq!(p.get("x").as_deref(), Some("a=b"));
        assert_eq!(p.get("x2").as_deref(), Some(""));
        assert_eq!(p.get("missing"), None);
    }

    #[test]
    fn bad_lines_are_named() {
        let e = MapProperties::parse("a=1\nnonsense\n", "props.txt").unwrap_err();
        assert!(e.to_string().contains("props.txt:2"), "{e}");
        let e = MapProperties::parse("bad name=1\n", "p").unwrap_err();
        assert!(e.to_string().contains("bad name"), "{e}");
    }

    #[test]
    fn set_then_get() {
        let p = MapProperties::new();
        p.set("sys.lmk.minfree_levels", "1:2").unwrap();
        assert_eq!(p.get("sys.lmk.minfree_levels").as_deref(), Some("1:2"));
        assert!(NoProperties.set("a", "b").is_ok());
        assert_eq!(NoProperties.get("a"), None);
    }
}
