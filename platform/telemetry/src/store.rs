//! Traces in SQL: spans as JSON, one summary row per trace merged by conditional updates (so
//! batches from many processes, in any order, add up), and pruning to the bounds.

use std::collections::{BTreeMap, BTreeSet};

use chassis::db::{Db, WriteTransaction};
use contracts::traces::{Span, SpanStatus, Trace, TraceSummary};
use sqlx::Row;

const LIST_SLOWEST: &str =
    "SELECT trace_id, root_service, root_name, start_nanos, duration_nanos, span_count, error_count
     FROM traces
     WHERE ($1 = 0 OR error_count > 0)
       AND ($2 = '' OR trace_id IN (SELECT trace_id FROM trace_services WHERE service = $2))
     ORDER BY duration_nanos DESC, trace_id
     LIMIT $3";

const LIST_RECENT: &str =
    "SELECT trace_id, root_service, root_name, start_nanos, duration_nanos, span_count, error_count
     FROM traces
     WHERE ($1 = 0 OR error_count > 0)
       AND ($2 = '' OR trace_id IN (SELECT trace_id FROM trace_services WHERE service = $2))
     ORDER BY received_at DESC, start_nanos DESC, trace_id
     LIMIT $3";

/// Which traces a list shows first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Longest first.
    Slowest,
    /// Latest received first.
    Recent,
}

/// What to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Order.
    pub order: Order,
    /// Only traces with a failed span.
    pub errors_only: bool,
    /// Only traces a service recorded spans in.
    pub service: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// The trace database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// A store over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Keeps `spans`, received at `now` (ms). A span already kept is not counted twice.
    ///
    /// A batch is a handful of statements whatever its size: spans, trace summaries and
    /// services each go in multi-row statements (the driver's cost per statement, not
    /// SQLite's, is what bounds ingestion).
    ///
    /// Rows are written in one order (spans, then traces, then services, as the pruning
    /// does), so concurrent batches wait for each other rather than deadlock; a batch
    /// PostgreSQL aborts anyway to break a deadlock with another writer is run again, up to
    /// three times.
    pub async fn insert(&self, spans: Vec<Span>, now: i64) -> Result<(), sqlx::Error> {
        let mut traces: BTreeMap<String, Vec<Span>> = BTreeMap::new();
        for span in spans {
            traces.entry(span.trace_id.clone()).or_default().push(span);
        }
        for spans in traces.values_mut() {
            spans.sort_by(|a, b| a.span_id.cmp(&b.span_id));
        }
        let mut attempt = 1;
        loop {
            match self.insert_once(&traces, now).await {
                Err(error) if attempt < ATTEMPTS && chassis::db::is_transient_conflict(&error) => {
                    tracing::debug!(%error, attempt, "the batch met a concurrent writer; running it again");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn insert_once(
        &self,
        traces: &BTreeMap<String, Vec<Span>>,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let all: Vec<&Span> = traces.values().flatten().collect();
        let mut added: BTreeSet<(String, String)> = BTreeSet::new();
        for chunk in all.chunks(ROWS_PER_STATEMENT) {
            added.extend(insert_spans(&mut tx, chunk).await?);
        }
        let mut summaries: Vec<Summary<'_>> = Vec::new();
        let mut services: Vec<(&str, &str)> = Vec::new();
        for (trace_id, spans) in traces {
            let new: Vec<&Span> = spans
                .iter()
                .filter(|s| added.contains(&(s.trace_id.clone(), s.span_id.clone())))
                .collect();
            if new.is_empty() {
                continue;
            }
            summaries.extend(Summary::of(trace_id, spans, &new));
            for span in new {
                if !services.contains(&(trace_id.as_str(), span.service.as_str())) {
                    services.push((trace_id.as_str(), span.service.as_str()));
                }
            }
        }
        for chunk in summaries.chunks(ROWS_PER_STATEMENT) {
            merge_summaries(&mut tx, chunk, now).await?;
        }
        for chunk in services.chunks(ROWS_PER_STATEMENT) {
            insert_services(&mut tx, chunk).await?;
        }
        tx.commit().await
    }

    /// One trace, its spans by start time; `None` if none of its spans is kept.
    pub async fn trace(&self, trace_id: &str) -> Result<Option<Trace>, sqlx::Error> {
        let rows =
            sqlx::query("SELECT body FROM spans WHERE trace_id = $1 ORDER BY start_nanos, span_id")
                .bind(trace_id)
                .fetch_all(self.db.pool())
                .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let spans = rows
            .iter()
            .map(|row| {
                let body: String = row.try_get("body")?;
                serde_json::from_str(&body).map_err(|e| sqlx::Error::Decode(Box::new(e)))
            })
            .collect::<Result<Vec<Span>, sqlx::Error>>()?;
        Ok(Some(Trace {
            trace_id: trace_id.to_owned(),
            spans,
        }))
    }

    /// Summaries of the traces `filter` picks.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<TraceSummary>, sqlx::Error> {
        let sql = match filter.order {
            Order::Slowest => LIST_SLOWEST,
            Order::Recent => LIST_RECENT,
        };
        let rows = sqlx::query(sql)
            .bind(i64::from(filter.errors_only))
            .bind(filter.service.as_deref().unwrap_or(""))
            .bind(i64::from(filter.limit))
            .fetch_all(self.db.pool())
            .await?;
        let mut summaries = Vec::with_capacity(rows.len());
        for row in rows {
            let trace_id: String = row.try_get("trace_id")?;
            let services = sqlx::query(
                "SELECT service FROM trace_services WHERE trace_id = $1 ORDER BY service",
            )
            .bind(&trace_id)
            .fetch_all(self.db.pool())
            .await?
            .iter()
            .map(|r| r.try_get("service"))
            .collect::<Result<Vec<String>, _>>()?;
            let count = |column: &str| -> Result<u32, sqlx::Error> {
                let n: i64 = row.try_get(column)?;
                Ok(u32::try_from(n).unwrap_or(u32::MAX))
            };
            summaries.push(TraceSummary {
                root_service: row.try_get("root_service")?,
                root_name: row.try_get("root_name")?,
                start_unix_nanos: row.try_get("start_nanos")?,
                duration_nanos: row.try_get("duration_nanos")?,
                spans: count("span_count")?,
                errors: count("error_count")?,
                services,
                trace_id,
            });
        }
        Ok(summaries)
    }

    /// Forgets traces first received before `oldest` (ms), then the oldest beyond `max_traces`;
    /// returns how many went.
    pub async fn prune(&self, oldest: i64, max_traces: u32) -> Result<u64, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let mut cutoff = oldest;
        // The newest trace past the bound: it and everything received before it go.
        let beyond: Option<i64> = sqlx::query(
            "SELECT received_at FROM traces ORDER BY received_at DESC, trace_id DESC LIMIT 1 OFFSET $1",
        )
        .bind(i64::from(max_traces))
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get("received_at"))
        .transpose()?;
        if let Some(received) = beyond {
            cutoff = cutoff.max(received + 1);
        }
        for statement in [
            "DELETE FROM spans WHERE trace_id IN (SELECT trace_id FROM traces WHERE received_at < $1)",
            "DELETE FROM trace_services WHERE trace_id IN (SELECT trace_id FROM traces WHERE received_at < $1)",
        ] {
            sqlx::query(statement)
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
        }
        let pruned = sqlx::query("DELETE FROM traces WHERE received_at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }

    /// How many traces are kept.
    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) AS n FROM traces")
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")
    }
}

/// Runs of a batch that met a deadlock before its error is returned.
const ATTEMPTS: u32 = 3;

/// Rows per multi-row insert: well under SQLite's and PostgreSQL's limits on bound values.
const ROWS_PER_STATEMENT: usize = 200;

/// What one batch adds to a trace's summary row.
#[derive(Debug, Clone)]
struct Summary<'a> {
    trace_id: &'a str,
    /// The batch's root span, or else its earliest span: what names the trace until the real
    /// root arrives.
    named_by: &'a Span,
    has_root: bool,
    start: i64,
    end: i64,
    /// Spans of the batch not kept before.
    added: usize,
    /// Of those, the failed ones.
    failed: usize,
}

impl<'a> Summary<'a> {
    /// The summary of `spans` (a batch's spans of trace `trace_id`), of which `new` were not
    /// kept before; `None` for no spans.
    fn of(trace_id: &'a str, spans: &'a [Span], new: &[&Span]) -> Option<Self> {
        let root = spans.iter().find(|s| s.parent_span_id.is_none());
        let earliest = spans.iter().min_by_key(|s| s.start_unix_nanos);
        let (start, end) = bounds(spans);
        Some(Self {
            trace_id,
            named_by: root.or(earliest)?,
            has_root: root.is_some(),
            start,
            end,
            added: new.len(),
            failed: new.iter().filter(|s| s.status == SpanStatus::Error).count(),
        })
    }
}

/// Makes or merges the summary rows of a batch's traces, in one statement: counts add up,
/// bounds widen, and the name is the root's once it has arrived, else the earliest span's
/// seen. Every expression reads the row as it was, so batches add up in any order. A
/// statement per trace cost more than the rest of a batch: each is a round trip to the
/// database, and one checkout's trace arrives in a batch of each of eight processes.
async fn merge_summaries(
    tx: &mut WriteTransaction,
    summaries: &[Summary<'_>],
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO traces (trace_id, root_service, root_name, has_root, start_nanos, end_nanos,
                             duration_nanos, span_count, error_count, received_at)
         VALUES {}
         ON CONFLICT (trace_id) DO UPDATE SET
             root_service = CASE WHEN traces.has_root = 0
                                  AND (excluded.has_root = 1 OR excluded.start_nanos < traces.start_nanos)
                                 THEN excluded.root_service ELSE traces.root_service END,
             root_name = CASE WHEN traces.has_root = 0
                               AND (excluded.has_root = 1 OR excluded.start_nanos < traces.start_nanos)
                              THEN excluded.root_name ELSE traces.root_name END,
             has_root = CASE WHEN excluded.has_root = 1 THEN 1 ELSE traces.has_root END,
             start_nanos = CASE WHEN excluded.start_nanos < traces.start_nanos
                                THEN excluded.start_nanos ELSE traces.start_nanos END,
             end_nanos = CASE WHEN excluded.end_nanos > traces.end_nanos
                              THEN excluded.end_nanos ELSE traces.end_nanos END,
             duration_nanos = (CASE WHEN excluded.end_nanos > traces.end_nanos
                                    THEN excluded.end_nanos ELSE traces.end_nanos END)
                            - (CASE WHEN excluded.start_nanos < traces.start_nanos
                                    THEN excluded.start_nanos ELSE traces.start_nanos END),
             span_count = traces.span_count + excluded.span_count,
             error_count = traces.error_count + excluded.error_count",
        tx.backend().values_placeholders(summaries.len(), 10)
    );
    // Only placeholders are formatted into the statement; every value is bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for summary in summaries {
        query = query
            .bind(summary.trace_id.to_owned())
            .bind(summary.named_by.service.clone())
            .bind(summary.named_by.name.clone())
            .bind(i64::from(summary.has_root))
            .bind(summary.start)
            .bind(summary.end)
            .bind((summary.end - summary.start).max(0))
            .bind(i64::try_from(summary.added).unwrap_or(i64::MAX))
            .bind(i64::try_from(summary.failed).unwrap_or(i64::MAX))
            .bind(now);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// The earliest start and latest end of `spans`.
fn bounds(spans: &[Span]) -> (i64, i64) {
    let start = spans.iter().map(|s| s.start_unix_nanos).min().unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.end_unix_nanos)
        .max()
        .unwrap_or(start);
    (start, end)
}

/// Inserts the spans not kept yet; returns the `(trace_id, span_id)` of those it inserted.
async fn insert_spans(
    tx: &mut WriteTransaction,
    spans: &[&Span],
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO spans (trace_id, span_id, start_nanos, body) VALUES {}
         ON CONFLICT (trace_id, span_id) DO NOTHING
         RETURNING trace_id, span_id",
        tx.backend().values_placeholders(spans.len(), 4)
    );
    // Only placeholders are formatted into the statement; every value is bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for span in spans {
        let body = serde_json::to_string(span).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        query = query
            .bind(span.trace_id.clone())
            .bind(span.span_id.clone())
            .bind(span.start_unix_nanos)
            .bind(body);
    }
    query
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("trace_id")?, row.try_get("span_id")?)))
        .collect()
}

/// Records which services took part in which traces.
async fn insert_services(
    tx: &mut WriteTransaction,
    pairs: &[(&str, &str)],
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO trace_services (trace_id, service) VALUES {}
         ON CONFLICT (trace_id, service) DO NOTHING",
        tx.backend().values_placeholders(pairs.len(), 2)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (trace_id, service) in pairs {
        query = query.bind(trace_id.to_string()).bind(service.to_string());
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
