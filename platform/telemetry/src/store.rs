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
    /// A batch is a handful of statements whatever its size: spans and services go in
    /// multi-row inserts (the driver's cost per statement, not SQLite's, is what bounds
    /// ingestion), and each trace's summary is merged once.
    ///
    /// Rows are written in one order (trace, then span), so concurrent batches wait for each
    /// other rather than deadlock; a batch PostgreSQL aborts anyway to break a deadlock with
    /// another writer (the pruning) is run again, up to three times.
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
        for (trace_id, spans) in traces {
            open_trace(&mut tx, trace_id, spans, now).await?;
        }
        let all: Vec<&Span> = traces.values().flatten().collect();
        let mut added: BTreeSet<(String, String)> = BTreeSet::new();
        for chunk in all.chunks(ROWS_PER_STATEMENT) {
            added.extend(insert_spans(&mut tx, chunk).await?);
        }
        let mut services: Vec<(&str, &str)> = Vec::new();
        for (trace_id, spans) in traces {
            let new: Vec<&Span> = spans
                .iter()
                .filter(|s| added.contains(&(s.trace_id.clone(), s.span_id.clone())))
                .collect();
            if new.is_empty() {
                continue;
            }
            let failed = new.iter().filter(|s| s.status == SpanStatus::Error).count();
            merge_counts(&mut tx, trace_id, spans, new.len(), failed).await?;
            for span in new {
                if !services.contains(&(trace_id.as_str(), span.service.as_str())) {
                    services.push((trace_id.as_str(), span.service.as_str()));
                }
            }
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

/// `($1, $2, …), ($k+1, …)` for `rows` rows of `columns` values.
fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let values: Vec<String> = (1..=columns)
                .map(|c| format!("${}", row * columns + c))
                .collect();
            format!("({})", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Makes the trace's summary row if it has none, and lets its root name it.
async fn open_trace(
    tx: &mut WriteTransaction,
    trace_id: &str,
    spans: &[Span],
    now: i64,
) -> Result<(), sqlx::Error> {
    // What this batch knows of the trace's root: the span without a parent, or else its
    // earliest span, until the real root arrives.
    let root = spans.iter().find(|s| s.parent_span_id.is_none());
    let earliest = spans.iter().min_by_key(|s| s.start_unix_nanos);
    let Some(candidate) = root.or(earliest) else {
        return Ok(());
    };
    let (start, end) = bounds(spans);
    sqlx::query(
        "INSERT INTO traces (trace_id, root_service, root_name, has_root, start_nanos, end_nanos,
                             duration_nanos, span_count, error_count, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8)
         ON CONFLICT (trace_id) DO NOTHING",
    )
    .bind(trace_id)
    .bind(&candidate.service)
    .bind(&candidate.name)
    .bind(i64::from(root.is_some()))
    .bind(start)
    .bind(end)
    .bind((end - start).max(0))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    // The root, once it arrives, names the trace; until then the earliest span seen does.
    if let Some(root) = root {
        sqlx::query(
            "UPDATE traces SET root_service = $2, root_name = $3, has_root = 1
             WHERE trace_id = $1 AND has_root = 0",
        )
        .bind(trace_id)
        .bind(&root.service)
        .bind(&root.name)
        .execute(&mut **tx)
        .await?;
    } else {
        sqlx::query(
            "UPDATE traces SET root_service = $2, root_name = $3
             WHERE trace_id = $1 AND has_root = 0 AND start_nanos > $4",
        )
        .bind(trace_id)
        .bind(&candidate.service)
        .bind(&candidate.name)
        .bind(candidate.start_unix_nanos)
        .execute(&mut **tx)
        .await?;
    }
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
        placeholders(spans.len(), 4)
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
        placeholders(pairs.len(), 2)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (trace_id, service) in pairs {
        query = query.bind(trace_id.to_string()).bind(service.to_string());
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Adds `added` new spans (`failed` of them failed) to the trace's counts and widens its
/// bounds to take in `spans`.
async fn merge_counts(
    tx: &mut WriteTransaction,
    trace_id: &str,
    spans: &[Span],
    added: usize,
    failed: usize,
) -> Result<(), sqlx::Error> {
    let (start, end) = bounds(spans);
    sqlx::query(
        "UPDATE traces SET
             start_nanos = CASE WHEN $2 < start_nanos THEN $2 ELSE start_nanos END,
             end_nanos = CASE WHEN $3 > end_nanos THEN $3 ELSE end_nanos END,
             duration_nanos = (CASE WHEN $3 > end_nanos THEN $3 ELSE end_nanos END)
                            - (CASE WHEN $2 < start_nanos THEN $2 ELSE start_nanos END),
             span_count = span_count + $4,
             error_count = error_count + $5
         WHERE trace_id = $1",
    )
    .bind(trace_id)
    .bind(start)
    .bind(end)
    .bind(i64::try_from(added).unwrap_or(i64::MAX))
    .bind(i64::try_from(failed).unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
