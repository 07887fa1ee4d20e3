//! What `bazaar up` shows on the terminal: one readable line per log line of every child, with
//! the instance in its service's color; and the colors themselves, off when the output is not a
//! terminal or `NO_COLOR` is set.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::IsTerminal;

use anstyle::{AnsiColor, Style};
use serde_json::value::RawValue;

/// Fields every line has, shown in fixed places rather than as `key=value`.
/// `name` is the name of the span a line was written in (`request`).
const FIXED: [&str; 8] = [
    "timestamp",
    "level",
    "message",
    "target",
    "service",
    "version",
    "instance",
    "name",
];

/// Terminal styling.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Console {
    color: bool,
}

impl Console {
    /// Colors if standard output is a terminal and `NO_COLOR` is unset.
    pub(crate) fn detect() -> Self {
        Self {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    #[cfg(test)]
    pub(crate) fn plain() -> Self {
        Self { color: false }
    }

    pub(crate) fn paint(self, style: Style, text: &str) -> String {
        if self.color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    }

    pub(crate) fn bold(self, text: &str) -> String {
        self.paint(Style::new().bold(), text)
    }

    pub(crate) fn dim(self, text: &str) -> String {
        self.paint(Style::new().dimmed(), text)
    }

    pub(crate) fn green(self, text: &str) -> String {
        self.paint(AnsiColor::Green.on_default(), text)
    }

    pub(crate) fn red(self, text: &str) -> String {
        self.paint(AnsiColor::Red.on_default().bold(), text)
    }

    pub(crate) fn yellow(self, text: &str) -> String {
        self.paint(AnsiColor::Yellow.on_default(), text)
    }

    /// The color of a service's instances.
    fn service_style(service: &str) -> Style {
        let palette = [
            AnsiColor::Cyan,
            AnsiColor::Magenta,
            AnsiColor::Blue,
            AnsiColor::Green,
            AnsiColor::Yellow,
        ];
        let index = service.bytes().map(usize::from).sum::<usize>() % palette.len();
        palette[index].on_default()
    }

    /// One child log line as a terminal line: `12:04:05 users-1  INFO message key=value`.
    /// Lines that are not JSON (a panic message, say) are shown as they are.
    pub(crate) fn render_log(
        self,
        instance: &str,
        service: &str,
        width: usize,
        line: &LogLine<'_>,
    ) -> String {
        let name = self.paint(Self::service_style(service), &format!("{instance:<width$}"));
        let Some(fields) = &line.fields else {
            return format!("{name} {}", line.raw);
        };
        let timestamp = line.text("timestamp");
        let time = timestamp
            .as_deref()
            .and_then(|t| t.get(11..19))
            .unwrap_or("--:--:--");
        let level = match line.text("level").as_deref().unwrap_or("INFO") {
            "ERROR" => self.red("ERROR"),
            "WARN" => self.yellow(" WARN"),
            "INFO" => self.green(" INFO"),
            other => self.dim(&format!("{other:>5}")),
        };
        let message = line.message().unwrap_or_default();
        let extras = extras(fields);
        let extras = if extras.is_empty() {
            String::new()
        } else {
            format!(" {}", self.dim(&extras))
        };
        format!("{} {name} {level} {message}{extras}", self.dim(time))
    }
}

/// A line a child wrote, parsed once. Its fields are borrowed from the line, not copied into a
/// `serde_json::Value`: `up` reads every line every child writes, thousands a second under
/// load.
#[derive(Debug)]
pub(crate) struct LogLine<'a> {
    /// The line as written.
    pub(crate) raw: &'a str,
    /// Its fields, as JSON text by name, when it is a JSON object (all chassis log lines are;
    /// a line with a name written with escapes, which no chassis line has, is shown as it is).
    fields: Option<BTreeMap<&'a str, &'a RawValue>>,
}

impl<'a> LogLine<'a> {
    pub(crate) fn parse(raw: &'a str) -> Self {
        Self {
            raw,
            fields: serde_json::from_str(raw).ok(),
        }
    }

    /// The field `name` when it is a string, unescaped (copied only if it has escapes).
    pub(crate) fn text(&self, name: &str) -> Option<Cow<'a, str>> {
        text(self.fields.as_ref()?.get(name)?)
    }

    /// The `message` field.
    pub(crate) fn message(&self) -> Option<Cow<'a, str>> {
        self.text("message")
    }
}

/// A JSON string's text, borrowed when it has no escapes; `None` for any other value.
fn text(value: &RawValue) -> Option<Cow<'_, str>> {
    let json = value.get();
    if !json.starts_with('"') {
        return None;
    }
    match serde_json::from_str::<&str>(json) {
        Ok(text) => Some(Cow::Borrowed(text)),
        Err(_) => serde_json::from_str::<String>(json).ok().map(Cow::Owned),
    }
}

/// Span fields meant for the trace, not the terminal: OpenTelemetry's (`otel.kind`,
/// `http.response.status_code`, ...) and the ids, which the log files keep for `bazaar logs`.
fn for_traces(key: &str) -> bool {
    key.starts_with("otel.")
        || key.starts_with("http.")
        || key.starts_with("messaging.")
        || key == "span_id"
        || key == "trace_id"
}

/// The fields beyond the fixed ones, as `key=value` in key order: a string as its text, any
/// other value as its JSON.
fn extras(fields: &BTreeMap<&str, &RawValue>) -> String {
    fields
        .iter()
        .filter(|(key, _)| !FIXED.contains(key) && !for_traces(key))
        .map(|(key, value)| match text(value) {
            Some(text) => format!("{key}={text}"),
            None => format!("{key}={}", value.get()),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_json_log_lines() {
        let line = r#"{"timestamp":"2026-11-25T15:43:08.123Z","level":"INFO","message":"request finished","target":"chassis","service":"users","version":"0.1.0","instance":"users-1","request_id":"r-1","status":200,"latency_ms":1.5,"otel.kind":"server","http.response.status_code":200,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}"#;
        let rendered = Console::plain().render_log("users-1", "users", 10, &LogLine::parse(line));
        insta::assert_snapshot!(rendered, @"15:43:08 users-1     INFO request finished latency_ms=1.5 request_id=r-1 status=200");
    }

    #[test]
    fn unescapes_strings_and_shows_other_values_as_their_json() {
        let line = r#"{"timestamp":"2026-11-25T15:43:08.123Z","level":"WARN","message":"no \"sku\" named caf\u00e9","target":"t","retry":true,"error":null,"path":"a\\b","limits":{"max":3}}"#;
        let parsed = LogLine::parse(line);
        assert_eq!(parsed.message().as_deref(), Some(r#"no "sku" named café"#));
        assert_eq!(parsed.text("retry"), None, "not a string");
        assert_eq!(parsed.text("missing"), None);
        let rendered = Console::plain().render_log("orders-1", "orders", 8, &parsed);
        assert_eq!(
            rendered,
            r#"15:43:08 orders-1  WARN no "sku" named café error=null limits={"max":3} path=a\b retry=true"#
        );
    }

    #[test]
    fn shows_other_lines_as_they_are() {
        let rendered = Console::plain().render_log(
            "users-1",
            "users",
            8,
            &LogLine::parse("thread 'main' panicked"),
        );
        assert_eq!(rendered, "users-1  thread 'main' panicked");
        let array = Console::plain().render_log("users-1", "users", 8, &LogLine::parse("[1,2]"));
        assert_eq!(array, "users-1  [1,2]", "JSON, but not an object");
    }
}
