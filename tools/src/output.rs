//! What `os-tool` writes: JSON documents in the chosen format, `list` lines, raw bytes,
//! and the one-line error form `os-tool: ENOENT: <message>` that scripts match on.

use std::io::Write;

use ostore_os::json::{bytes_to_json, object_to_json};
use ostore_os::{CollectionId, Error, ObjectId, Result};
use serde_json::{json, Map, Value};

/// `--format`: how single JSON documents are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line.
    Json,
    /// Indented, for people.
    JsonPretty,
    /// `key: value` lines, for people and `grep`.
    Plain,
}

/// A progress bar on stderr while a long command runs, only when stderr is a terminal
/// (scripts and tests see nothing). Results never go to stderr, so it cannot mix with
/// them.
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn tty() -> bool {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal()
    }

    /// A counter of `unit` (total unknown).
    pub fn new(what: &str, unit: &str) -> Progress {
        if !Progress::tty() {
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what}: {{pos}} {unit} ({{per_sec}}, {{elapsed}})"
        )) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Progress { bar: Some(bar) }
    }

    /// A spinner with a message.
    pub fn spinner(what: &str) -> Progress {
        if !Progress::tty() {
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Progress { bar: Some(bar) }
    }

    pub fn set(&mut self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Plain rendering: one `path: value` line per leaf, nested keys joined with dots and
/// array items with `[i]`; strings unquoted.
fn plain(prefix: &str, v: &Value, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                plain(&p, x, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                plain(&format!("{prefix}[{i}]"), x, out);
            }
        }
        Value::String(s) => {
            out.push_str(&format!("{prefix}: {s}\n"));
        }
        v => {
            out.push_str(&format!("{prefix}: {v}\n"));
        }
    }
}

const BROKEN_PIPE: &str = "stdout was closed";

/// Converts a write error on stdout; a closed pipe (`os-tool read ... | head -c 10`) is
/// not a failure of the command, so it is marked for [`is_broken_pipe`].
pub fn write_err(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Error::io(BROKEN_PIPE)
    } else {
        Error::from(e).context("writing to stdout")
    }
}

pub fn is_broken_pipe(e: &Error) -> bool {
    e.kind() == ostore_os::ErrorKind::Io && e.message() == BROKEN_PIPE
}

pub fn document(out: &mut dyn Write, format: Format, v: &Value) -> Result<()> {
    let s = match format {
        Format::Json => serde_json::to_string(v),
        Format::JsonPretty => serde_json::to_string_pretty(v),
        Format::Plain => {
            let mut s = String::new();
            if v.is_object() || v.is_array() {
                plain("", v, &mut s);
            } else {
                plain("value", v, &mut s);
            }
            return out.write_all(s.as_bytes()).map_err(write_err);
        }
    }
    .map_err(|e| Error::invalid(format!("cannot render JSON: {e}")))?;
    writeln!(out, "{s}").map_err(write_err)
}

/// The `list` line for an object: `["1.0_head",{...}]`, the form ceph-objectstore-tool
/// prints and `object_from_arg` accepts back.
pub fn list_line(cid: &CollectionId, oid: &ObjectId) -> String {
    json!([cid.to_string(), object_to_json(oid)]).to_string()
}

pub fn raw(out: &mut dyn Write, bytes: &[u8]) -> Result<()> {
    out.write_all(bytes).map_err(write_err)?;
    out.flush().map_err(write_err)
}

/// Omap keys in the same shape `omap_setkeys` takes: an object when every key is UTF-8
/// (the common case, and readable), else an array of `{"key", "value"}` pairs, so the
/// output can be pasted into a transaction.
pub fn omap_keys_json<'a>(
    entries: impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + Clone,
) -> Value {
    if entries.clone().all(|(k, _)| std::str::from_utf8(k).is_ok()) {
        let mut m = Map::new();
        for (k, v) in entries {
            m.insert(String::from_utf8_lossy(k).into_owned(), bytes_to_json(v));
        }
        Value::Object(m)
    } else {
        Value::Array(
            entries
                .map(|(k, v)| json!({"key": bytes_to_json(k), "value": bytes_to_json(v)}))
                .collect(),
        )
    }
}

/// The one-line form of an error. Messages can quote user input (object names with
/// newlines), and scripts read the first line, so control characters are escaped.
pub fn error_line(e: &Error) -> String {
    let mut s = format!("os-tool: {}: ", e.kind().errno_name());
    for c in e.message().chars() {
        match c {
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            c if c.is_control() => s.push_str(&c.escape_unicode().to_string()),
            c => s.push(c),
        }
    }
    s
}

/// Writes the error line and returns the exit code: the errno value.
pub fn report(err: &mut dyn Write, e: &Error) -> u8 {
    let _ = writeln!(err, "{}", error_line(e));
    u8::try_from(e.kind().errno())
        .ok()
        .filter(|c| *c != 0)
        .unwrap_or(1)
}

/// `created` as UTC ISO 8601, so `info` is readable without a date tool.
pub fn utc_timestamp(secs: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_known_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn error_lines_stay_on_one_line() {
        let e = Error::not_found("object \"a\nb\" does not exist\r\u{7}");
        let l = error_line(&e);
        assert_eq!(l.lines().count(), 1);
        assert!(l.starts_with("os-tool: ENOENT: object \"a\\nb\""), "{l}");
        let mut buf = Vec::new();
        assert_eq!(report(&mut buf, &e), 2);
        assert_eq!(String::from_utf8(buf).unwrap(), format!("{l}\n"));
    }

    #[test]
    fn omap_keys_fall_back_to_pairs_for_binary_keys() {
        let text = [(b"a".to_vec(), b"1".to_vec())];
        assert_eq!(
            omap_keys_json(text.iter().map(|(k, v)| (k, v))),
            json!({"a": "1"})
        );
        let bin = [(vec![0xff], vec![0x80])];
        assert_eq!(
            omap_keys_json(bin.iter().map(|(k, v)| (k, v))),
            json!([{"key": {"hex": "ff"}, "value": {"hex": "80"}}])
        );
    }
}
