//! `bazaar logs`: the log files `up` keeps per instance (`<data>/logs/<instance>.log`), merged
//! in time order, filtered by service, trace, request and level, and followed as they grow.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::args::{EXIT_USAGE, LogLevel, LogsArgs};
use crate::console::{Console, LogLine};

/// How often `--follow` looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

pub(crate) async fn run(args: LogsArgs) -> ExitCode {
    let filter = match Filter::new(&args) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let dir = args.data_dir.join("logs");
    if !dir.is_dir() {
        eprintln!(
            "error: no logs in {}: `bazaar up` writes them there; is this its --data-dir?",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let console = Console::detect();
    let mut sources = Sources::default();
    loop {
        // Instances started since the last look (a release, a restart under a new id) have
        // new files.
        if let Err(error) = sources.scan(&dir) {
            eprintln!("error: cannot read {}: {error}", dir.display());
            return ExitCode::FAILURE;
        }
        let width = sources.width();
        for entry in sources.read_new(&filter) {
            print(&entry, console, width, args.json);
        }
        if !args.follow {
            return ExitCode::SUCCESS;
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
        }
    }
}

fn print(entry: &Entry, console: Console, width: usize, json: bool) {
    if json {
        println!("{}", entry.raw);
    } else {
        println!(
            "{}",
            console.render_log(
                &entry.instance,
                &entry.service,
                width,
                &LogLine::parse(&entry.raw)
            )
        );
    }
}

/// What lines to show.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    services: Vec<String>,
    trace_id: Option<String>,
    request_id: Option<String>,
    level: Option<LogLevel>,
}

impl Filter {
    fn new(args: &LogsArgs) -> Result<Self, String> {
        if let Some(id) = &args.trace
            && !contracts::traces::is_trace_id(id)
        {
            return Err(format!(
                "--trace {id:?}: expected 32 lowercase hex digits, as in a problem's trace_id"
            ));
        }
        Ok(Self {
            services: args.services.iter().map(|s| s.name().to_owned()).collect(),
            trace_id: args.trace.clone(),
            request_id: args.request.clone(),
            level: args.level,
        })
    }

    fn accepts(&self, entry: &Entry) -> bool {
        if !self.services.is_empty() && !self.services.contains(&entry.service) {
            return false;
        }
        let line = LogLine::parse(&entry.raw);
        if let Some(trace) = &self.trace_id
            && line.text("trace_id").as_deref() != Some(trace.as_str())
        {
            return false;
        }
        if let Some(request) = &self.request_id
            && line.text("request_id").as_deref() != Some(request.as_str())
        {
            return false;
        }
        if let Some(minimum) = self.level {
            // A line that is not JSON is the process's own stderr (a panic): shown as an error.
            let level = line
                .text("level")
                .as_deref()
                .map_or(Some(LogLevel::Error), LogLevel::parse);
            if level.is_none_or(|level| level < minimum) {
                return false;
            }
        }
        true
    }
}

/// One line of one instance's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    time: DateTime<Utc>,
    instance: String,
    service: String,
    raw: String,
}

/// An instance's log file, read as it grows.
#[derive(Debug)]
struct Source {
    instance: String,
    service: String,
    reader: BufReader<File>,
    /// The start of a line still being written.
    partial: String,
    /// The time of the last line: a line without one (stderr) sorts right after it.
    last_time: DateTime<Utc>,
}

impl Source {
    fn open(path: &Path) -> std::io::Result<Option<Self>> {
        let Some(instance) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|_| path.extension().is_some_and(|e| e == "log"))
        else {
            return Ok(None);
        };
        // `catalog-1`, `catalog-9.1.0-1`: the service is the name before the first dash.
        let service = instance.split('-').next().unwrap_or(instance).to_owned();
        Ok(Some(Self {
            instance: instance.to_owned(),
            service,
            reader: BufReader::new(File::open(path)?),
            partial: String::new(),
            last_time: DateTime::<Utc>::MIN_UTC,
        }))
    }

    /// The next complete line that `filter` accepts; `None` at the end of what is written.
    fn next(&mut self, filter: &Filter) -> Option<Entry> {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            if !line.ends_with('\n') {
                // Half a line: the rest comes with the next read.
                self.partial.push_str(&line);
                return None;
            }
            let raw = std::mem::take(&mut self.partial) + line.trim_end_matches(['\n', '\r']);
            if raw.is_empty() {
                continue;
            }
            let time = LogLine::parse(&raw)
                .text("timestamp")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map_or(self.last_time, |t| t.with_timezone(&Utc));
            self.last_time = time;
            let entry = Entry {
                time,
                instance: self.instance.clone(),
                service: self.service.clone(),
                raw,
            };
            if filter.accepts(&entry) {
                return Some(entry);
            }
        }
    }
}

/// Every instance's log.
#[derive(Debug, Default)]
struct Sources {
    by_path: BTreeMap<PathBuf, Source>,
}

impl Sources {
    /// Opens the log files not open yet.
    fn scan(&mut self, dir: &Path) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if self.by_path.contains_key(&path) {
                continue;
            }
            if let Some(source) = Source::open(&path)? {
                self.by_path.insert(path, source);
            }
        }
        Ok(())
    }

    fn width(&self) -> usize {
        self.by_path
            .values()
            .map(|s| s.instance.len())
            .max()
            .unwrap_or(10)
    }

    /// The lines written since the last read (everything, the first time), in time order:
    /// each file is in order already, so a merge of their heads is, holding one line per file.
    fn read_new(&mut self, filter: &Filter) -> Vec<Entry> {
        let sources: Vec<&mut Source> = self.by_path.values_mut().collect();
        merge(sources, filter)
    }
}

fn merge(mut sources: Vec<&mut Source>, filter: &Filter) -> Vec<Entry> {
    let mut heads: Vec<Option<Entry>> = sources.iter_mut().map(|s| s.next(filter)).collect();
    let mut heap: BinaryHeap<Reverse<(DateTime<Utc>, usize)>> = heads
        .iter()
        .enumerate()
        .filter_map(|(i, head)| head.as_ref().map(|e| Reverse((e.time, i))))
        .collect();
    let mut out = Vec::new();
    while let Some(Reverse((_, i))) = heap.pop() {
        let Some(entry) = heads[i].take() else {
            continue;
        };
        out.push(entry);
        heads[i] = sources[i].next(filter);
        if let Some(next) = &heads[i] {
            heap.push(Reverse((next.time, i)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::io::Write;

    use super::*;

    fn line(time: &str, level: &str, message: &str, trace: Option<&str>) -> String {
        let mut fields = serde_json::json!({
            "timestamp": time, "level": level, "message": message, "service": "x", "instance": "x-1",
        });
        if let Some(trace) = trace {
            fields["trace_id"] = trace.into();
        }
        format!("{fields}\n")
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn logs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        write(
            "orders-1.log",
            &(line("2026-11-26T10:00:01.000Z", "INFO", "o1", Some(TRACE))
                + &line("2026-11-26T10:00:03.000Z", "WARN", "o3", None)
                + "thread 'main' panicked at src/x.rs\n"),
        );
        write(
            "gateway-1.log",
            &(line("2026-11-26T10:00:00.500Z", "INFO", "g0", Some(TRACE))
                + &line("2026-11-26T10:00:02.000Z", "DEBUG", "g2", None)),
        );
        write(
            "catalog-9.1.0-1.log",
            &line("2026-11-26T10:00:01.500Z", "ERROR", "c1", None),
        );
        write("notes.txt", "not a log\n");
        dir
    }

    fn messages(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                LogLine::parse(&e.raw)
                    .message()
                    .map_or_else(|| e.raw.clone(), Cow::into_owned)
            })
            .collect()
    }

    fn read(dir: &Path, filter: &Filter) -> Vec<Entry> {
        let mut sources = Sources::default();
        sources.scan(dir).expect("scan");
        sources.read_new(filter)
    }

    #[test]
    fn files_merge_in_time_order_with_stderr_after_its_predecessor() {
        let dir = logs();
        let all = read(dir.path(), &Filter::default());
        assert_eq!(
            messages(&all),
            [
                "g0",
                "o1",
                "c1",
                "g2",
                "o3",
                "thread 'main' panicked at src/x.rs"
            ]
        );
        assert_eq!(all[2].service, "catalog");
        assert_eq!(all[2].instance, "catalog-9.1.0-1");
    }

    #[test]
    fn filters_by_service_trace_and_level() {
        let dir = logs();
        let of = |filter: Filter| messages(&read(dir.path(), &filter));
        assert_eq!(
            of(Filter {
                services: vec!["orders".into()],
                ..Filter::default()
            }),
            ["o1", "o3", "thread 'main' panicked at src/x.rs"]
        );
        assert_eq!(
            of(Filter {
                trace_id: Some(TRACE.into()),
                ..Filter::default()
            }),
            ["g0", "o1"]
        );
        assert_eq!(
            of(Filter {
                level: Some(LogLevel::Warn),
                ..Filter::default()
            }),
            ["c1", "o3", "thread 'main' panicked at src/x.rs"]
        );
    }

    #[test]
    fn following_picks_up_new_lines_and_waits_for_whole_ones() {
        let dir = logs();
        let mut sources = Sources::default();
        sources.scan(dir.path()).expect("scan");
        assert_eq!(sources.read_new(&Filter::default()).len(), 6);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("gateway-1.log"))
            .expect("open");
        let next = line("2026-11-26T10:00:04.000Z", "INFO", "g4", None);
        let (head, tail) = next.split_at(20);
        file.write_all(head.as_bytes()).expect("write");
        assert!(
            sources.read_new(&Filter::default()).is_empty(),
            "half a line"
        );
        file.write_all(tail.as_bytes()).expect("write");
        std::fs::write(
            dir.path().join("users-1.log"),
            line("2026-11-26T10:00:05.000Z", "INFO", "u5", None),
        )
        .expect("write");
        sources.scan(dir.path()).expect("scan");
        assert_eq!(
            messages(&sources.read_new(&Filter::default())),
            ["g4", "u5"]
        );
    }
}
