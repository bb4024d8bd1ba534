//! Property values, read as lmkd reads them (libcutils' `property_get_*`).

use super::key::{apply_floor, check, KeySpec, Kind, Prop, Val};
use super::{Config, PERSIST_PREFIX, RO_PREFIX};

/// A boolean property as libcutils' `property_get_bool` reads it: exactly
/// these spellings, case and spaces significant; anything else is no value.
pub fn parse_bool_prop(s: &str) -> Option<bool> {
    match s {
        "1" | "y" | "yes" | "on" | "true" => Some(true),
        "0" | "n" | "no" | "off" | "false" => Some(false),
        _ => None,
    }
}

/// An integer property as libcutils' `property_get_int*` reads it
/// (`strtoimax` in base 0): leading white space, a sign, then `0x` hex, `0`
/// octal or decimal, up to the first character that is not a digit of that
/// base. Returns the value and the rest it ignored; `None` when no digit was
/// read or the value overflows (lmkd then uses the default).
pub fn parse_int_prop(s: &str) -> Option<(i64, &str)> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let hex = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .filter(|h| h.starts_with(|c: char| c.is_ascii_hexdigit()));
    let (radix, digits) = match hex {
        Some(h) => (16, h),
        None if t.starts_with('0') => (8, t),
        None => (10, t),
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    let magnitude = i128::from(u64::from_str_radix(&digits[..end], radix).ok()?);
    let v = i64::try_from(if neg { -magnitude } else { magnitude }).ok()?;
    Some((v, &digits[end..]))
}

impl KeySpec {
    /// The property read for this key at `layer` (0: build time, 1:
    /// device_config, which wins), if any.
    pub(super) fn property(&self, layer: usize) -> Option<String> {
        match (self.prop, layer) {
            (Prop::Lmk | Prop::RoLmk, 0) => Some(format!("{RO_PREFIX}{}", self.name)),
            (Prop::Lmk, 1) => Some(format!("{PERSIST_PREFIX}{}", self.name)),
            (Prop::Named(name), 0) => Some(name.to_string()),
            _ => None,
        }
    }
}

pub(super) const PROP_LAYERS: usize = 2;

impl Config {
    /// Apply one property value for `spec`; on any problem `self` is
    /// unchanged and the reason is returned. `Ok(Some(note))`: applied, but
    /// not exactly as written (clamped, trailing text ignored), as lmkd would.
    pub(super) fn apply_prop(
        &mut self,
        spec: &KeySpec,
        raw: &str,
    ) -> Result<Option<String>, String> {
        let mut note = None;
        let val = match spec.kind {
            Kind::Bool => Val::Bool(
                parse_bool_prop(raw)
                    .ok_or("expected a boolean (1/0, y/n, yes/no, on/off, true/false)")?,
            ),
            Kind::Int { min, max, clamp } => {
                let (n, rest) = parse_int_prop(raw).ok_or("expected an integer")?;
                if !rest.is_empty() {
                    note = Some(format!("read as {n}; {rest:?} after the number is ignored"));
                }
                if clamp && !(min..=max).contains(&n) {
                    let c = n.clamp(min, max);
                    note = Some(format!("{n} is outside {min}..={max}, using {c}"));
                    Val::Int(c)
                } else {
                    Val::Int(n)
                }
            }
            Kind::Path | Kind::Uids => return Err("not settable by property".into()),
        };
        check(spec, &val)?;
        let before = self.clone();
        self.put(spec.name, apply_floor(spec.name, val));
        if let Err(e) = self.validate() {
            *self = before;
            return Err(e.to_string());
        }
        Ok(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_props_read_as_strtoimax_base_0() {
        assert_eq!(parse_int_prop("42"), Some((42, "")));
        assert_eq!(parse_int_prop(" -7 "), Some((-7, " ")));
        assert_eq!(parse_int_prop("0x10"), Some((16, "")));
        assert_eq!(parse_int_prop("0X1f"), Some((31, "")));
        assert_eq!(parse_int_prop("010"), Some((8, "")));
        assert_eq!(parse_int_prop("09"), Some((0, "9")));
        assert_eq!(parse_int_prop("0x"), Some((0, "x")));
        assert_eq!(parse_int_prop("+5ms"), Some((5, "ms")));
        assert_eq!(parse_int_prop("1e3"), Some((1, "e3")));
        assert_eq!(parse_int_prop(""), None);
        assert_eq!(parse_int_prop("-"), None);
        assert_eq!(parse_int_prop("x1"), None);
        assert_eq!(parse_int_prop("99999999999999999999"), None);
        assert_eq!(parse_int_prop("-9223372036854775808"), Some((i64::MIN, "")));
    }

    #[test]
    fn bool_props() {
        for t in ["1", "true", "yes", "on", "y"] {
            assert_eq!(parse_bool_prop(t), Some(true));
        }
        for f in ["0", "false", "no", "off", "n"] {
            assert_eq!(parse_bool_prop(f), Some(false));
        }
        for none in ["maybe", "TRUE", " 1", "2"] {
            assert_eq!(parse_bool_prop(none), None, "{none:?}");
        }
    }
}
