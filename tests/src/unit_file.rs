//! A systemd unit file read as systemd reads it (systemd.syntax(7)): `[Section]`
//! headers, `Key=Value` with blanks around `=` ignored, `#`/`;` comments, a trailing
//! backslash joining the next line, and an empty assignment resetting a key's list.
use std::collections::BTreeMap;

/// Every key's assignments, by (section, key), in file order after the last reset.
#[derive(Debug, Default)]
pub struct UnitFile(BTreeMap<(String, String), Vec<String>>);

impl UnitFile {
    /// Parse `text`; a line that is neither a section, an assignment, a comment nor blank
    /// is an error naming it, as is an assignment before any section.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut unit = Self::default();
        let mut section: Option<String> = None;
        let mut lines = text.lines();
        while let Some(first) = lines.next() {
            let mut line = first.trim().to_string();
            if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                continue;
            }
            while let Some(head) = line.strip_suffix('\\') {
                let head = head.to_string();
                let next = lines.next().unwrap_or_default().trim();
                line = format!("{head} {next}");
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(name.to_string());
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("not an assignment: {line:?}"))?;
            let section = section
                .clone()
                .ok_or_else(|| format!("assignment before any section: {line:?}"))?;
            let values = unit.0.entry((section, key.trim().to_string())).or_default();
            match value.trim() {
                "" => values.clear(),
                v => values.push(v.to_string()),
            }
        }
        Ok(unit)
    }

    /// The last value of `key` in `section` (what a single-valued setting takes).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.0
            .get(&(section.to_string(), key.to_string()))
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// The words of every value of a list setting (`Before=a b` and `Before=c`: a, b, c).
    pub fn list(&self, section: &str, key: &str) -> Vec<&str> {
        self.0
            .get(&(section.to_string(), key.to_string()))
            .into_iter()
            .flatten()
            .flat_map(|v| v.split_whitespace())
            .collect()
    }

    /// The keys set in `section`.
    pub fn keys(&self, section: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|((s, _), v)| s == section && !v.is_empty())
            .map(|((_, k), _)| k.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_continuations_comments_and_resets_read_as_systemd_reads_them() {
        let u = UnitFile::parse(
            "# c\n[Unit]\nBefore=a.service \\\n  b.service\nBefore = c.service\n; c\n\
             After=x\nAfter=\nAfter=y\n[Service]\nType=simple\nType=notify\n",
        )
        .expect("parses");
        assert_eq!(
            u.list("Unit", "Before"),
            ["a.service", "b.service", "c.service"]
        );
        assert_eq!(u.list("Unit", "After"), ["y"]);
        assert_eq!(u.get("Service", "Type"), Some("notify"));
        assert_eq!(u.get("Install", "WantedBy"), None);
        assert!(UnitFile::parse("Type=notify\n").is_err());
        assert!(UnitFile::parse("[Unit]\nnonsense\n").is_err());
    }
}
