//! Kernel command line: whitespace-separated `key=value` pairs and bare flags.
//!
//! Values may be double-quoted to contain spaces (`msg="a b"`). Later
//! occurrences of a key win, like Linux. Nothing here allocates or panics.

#[derive(Clone, Copy, Debug)]
pub struct Cmdline<'a> {
    raw: &'a str,
}

/// One command line item: `key` alone (a flag) or `key=value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arg<'a> {
    pub key: &'a str,
    pub value: Option<&'a str>,
}

impl<'a> Cmdline<'a> {
    pub const fn new(raw: &'a str) -> Self {
        Self { raw }
    }

    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    pub fn iter(&self) -> Args<'a> {
        Args { rest: self.raw }
    }

    /// Value of the last `key=value` for `key` (a bare `key` gives `Some("")`).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter()
            .filter(|a| a.key == key)
            .last()
            .map(|a| a.value.unwrap_or(""))
    }

    /// True if `key` appears, bare or with a value.
    pub fn has(&self, key: &str) -> bool {
        self.iter().any(|a| a.key == key)
    }

    /// `key=<unsigned integer>` (decimal, or hex with `0x`). `Err` carries the bad text.
    pub fn get_u64(&self, key: &str) -> Option<Result<u64, &'a str>> {
        self.get(key).map(|v| parse_u64(v).ok_or(v))
    }

    /// `key=<number>` parsed as `T` (decimal, as `str::parse` reads it), or `default` when
    /// the key is absent. A value that does not parse is an error that names it.
    pub fn number<T: core::str::FromStr>(
        &self,
        key: &'a str,
        default: T,
    ) -> Result<T, BadValue<'a>> {
        match self.get(key) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|_| BadValue { key, value }),
        }
    }
}

/// A command-line value that is not what its key needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadValue<'a> {
    pub key: &'a str,
    pub value: &'a str,
}

impl core::fmt::Display for BadValue<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "bad {}={:?}: expected a number", self.key, self.value)
    }
}

pub fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() => u64::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None => s.parse().ok(),
    }
}

pub struct Args<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Args<'a> {
    type Item = Arg<'a>;

    fn next(&mut self) -> Option<Arg<'a>> {
        let s = self.rest.trim_start();
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        // Token ends at whitespace outside quotes.
        let mut in_quotes = false;
        let mut end = s.len();
        for (i, c) in s.char_indices() {
            if c == '"' {
                in_quotes = !in_quotes;
            } else if c.is_whitespace() && !in_quotes {
                end = i;
                break;
            }
        }
        let token = &s[..end];
        self.rest = &s[end..];
        Some(match token.split_once('=') {
            Some((k, v)) => {
                let v = v
                    .strip_prefix('"')
                    .map(|v| v.strip_suffix('"').unwrap_or(v))
                    .unwrap_or(v);
                Arg {
                    key: k,
                    value: Some(v),
                }
            }
            None => Arg {
                key: token,
                value: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_and_flags() {
        let c = Cmdline::new("  selftest=null-read quiet model=/models/x.st  port=5000 ");
        assert_eq!(c.get("selftest"), Some("null-read"));
        assert_eq!(c.get("model"), Some("/models/x.st"));
        assert_eq!(c.get_u64("port"), Some(Ok(5000)));
        assert!(c.has("quiet"));
        assert_eq!(c.get("quiet"), Some(""));
        assert_eq!(c.get("missing"), None);
        assert_eq!(c.iter().count(), 4);
    }

    #[test]
    fn last_wins_and_quotes() {
        let c = Cmdline::new("a=1 msg=\"hello world\" a=2 b=\"unterminated x");
        assert_eq!(c.get("a"), Some("2"));
        assert_eq!(c.get("msg"), Some("hello world"));
        assert_eq!(c.get("b"), Some("unterminated x"));
    }

    #[test]
    fn numbers() {
        let c = Cmdline::new("p=0x10 q=abc r=0x s=18446744073709551616");
        assert_eq!(c.get_u64("p"), Some(Ok(16)));
        assert_eq!(c.get_u64("q"), Some(Err("abc")));
        assert_eq!(c.get_u64("r"), Some(Err("0x")));
        assert_eq!(c.get_u64("s"), Some(Err("18446744073709551616")));
        assert_eq!(c.get_u64("t"), None);
    }

    #[test]
    fn typed_numbers_with_defaults() {
        let c = Cmdline::new("port=5001 context=abc idle_max_us=-1 big=4294967296");
        assert_eq!(c.number("port", 5000u32), Ok(5001));
        assert_eq!(c.number("absent", 7u64), Ok(7));
        let bad = c.number("context", 1024usize).unwrap_err();
        assert_eq!(bad.to_string(), "bad context=\"abc\": expected a number");
        assert!(c.number("idle_max_us", 5000u64).is_err());
        assert!(c.number("big", 0u32).is_err());
        assert_eq!(c.number("big", 0u64), Ok(1 << 32));
    }

    #[test]
    fn empty_and_odd_input() {
        assert_eq!(Cmdline::new("").iter().count(), 0);
        assert_eq!(Cmdline::new("   \t ").iter().count(), 0);
        let c = Cmdline::new("=x ==");
        let v: Vec<_> = c.iter().collect();
        assert_eq!(
            v[0],
            Arg {
                key: "",
                value: Some("x")
            }
        );
        assert_eq!(
            v[1],
            Arg {
                key: "",
                value: Some("=")
            }
        );
    }
}
