//! Log lines leave the process in batches: a line is appended to a buffer, and a task writes
//! whatever the buffer holds to standard output [`GATHER`] after the first line of a batch.
//!
//! `bazaar up` reads every child's output, so each line written on its own cost a system call
//! here and a wake-up, a read and two writes there: under load, about a quarter of the log's
//! cost (docs/decisions.md). A line waits at most [`GATHER`] (and never if the buffer holds
//! [`LIMIT`] bytes: that write is made at once, by the thread that logged). The buffer is
//! written out when the process stops ([`super::flush`]), when its task
//! is dropped with the runtime, and before a panic's message.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tracing_subscriber::fmt::MakeWriter;

/// How long the first line of a batch waits for others.
pub(crate) const GATHER: Duration = Duration::from_millis(2);

/// A buffer this full is written at once.
pub(crate) const LIMIT: usize = 64 * 1024;

/// The lines not yet written, and the wake-up of the task that writes them.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    lines: Mutex<Vec<u8>>,
    first_line: Notify,
}

/// The process's batch, once logging is set up with one.
static BATCH: OnceLock<Arc<Batch>> = OnceLock::new();

impl Batch {
    /// Appends `bytes` (whole lines), writing the buffer out at once when it is full.
    fn append(&self, bytes: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        let Ok(mut lines) = self.lines.lock() else {
            // A thread panicked while writing: write this line on its own.
            return out.write_all(bytes);
        };
        let first = lines.is_empty();
        lines.extend_from_slice(bytes);
        if lines.len() >= LIMIT {
            let written = out.write_all(&lines).and_then(|()| out.flush());
            lines.clear();
            return written;
        }
        if first {
            self.first_line.notify_one();
        }
        Ok(())
    }

    /// Writes out whatever the buffer holds.
    fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut lines = match self.lines.lock() {
            Ok(lines) => lines,
            Err(poisoned) => poisoned.into_inner(),
        };
        if lines.is_empty() {
            return Ok(());
        }
        // Written under the lock, so a full buffer written by a logging thread cannot overtake
        // the lines before it.
        let written = out.write_all(&lines).and_then(|()| out.flush());
        lines.clear();
        written
    }
}

/// Standard output, batched; a [`MakeWriter`] for the log layer. Without a batch (see
/// [`BatchedStdout::start`]) each line is written on its own.
#[derive(Debug, Clone)]
pub(crate) struct BatchedStdout(Option<Arc<Batch>>);

impl BatchedStdout {
    /// Starts the task that writes batches, on the current Tokio runtime. Outside a runtime,
    /// or when a batch already exists (a second [`super::init`] in tests), lines are written
    /// one at a time.
    pub(crate) fn start() -> Self {
        Self(Self::batch())
    }

    fn batch() -> Option<Arc<Batch>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let batch = Arc::new(Batch::default());
        BATCH.set(Arc::clone(&batch)).ok()?;
        runtime.spawn(write_batches(Arc::clone(&batch), std::io::stdout));
        // A panic's message goes to standard error at once: the lines before it go first.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |panic| {
            flush();
            previous(panic);
        }));
        Some(batch)
    }
}

/// Writes each batch [`GATHER`] after its first line; on being dropped (the runtime stopping),
/// writes what is left.
async fn write_batches<W: Write>(batch: Arc<Batch>, out: impl FnMut() -> W) {
    struct WriteOnDrop<F: FnMut() -> W, W: Write>(Arc<Batch>, F);
    impl<F: FnMut() -> W, W: Write> Drop for WriteOnDrop<F, W> {
        fn drop(&mut self) {
            let _ = self.0.write_to(&mut (self.1)());
        }
    }
    let mut batch = WriteOnDrop(batch, out);
    loop {
        batch.0.first_line.notified().await;
        tokio::time::sleep(GATHER).await;
        let _ = batch.0.write_to(&mut (batch.1)());
    }
}

/// Writes out the lines not yet written. Call before the process exits.
pub(crate) fn flush() {
    if let Some(batch) = BATCH.get() {
        let _ = batch.write_to(&mut std::io::stdout());
    }
}

/// One formatted line on its way into the batch, or to standard output without one.
#[derive(Debug)]
pub(crate) struct Line<'a>(Option<&'a Batch>);

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // Standard output is locked only inside the batch's lock, never around it.
        let mut out = std::io::stdout();
        match self.0 {
            Some(batch) => batch.append(bytes, &mut out)?,
            None => out.write_all(bytes)?,
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStdout {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line(self.0.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_in_the_buffer_until_written_out() {
        let batch = Batch::default();
        let mut out = Vec::new();
        batch.append(b"one\n", &mut out).expect("appended");
        batch.append(b"two\n", &mut out).expect("appended");
        assert!(out.is_empty(), "nothing is written line by line");
        batch.write_to(&mut out).expect("written");
        assert_eq!(out, b"one\ntwo\n");
        batch.write_to(&mut out).expect("written");
        assert_eq!(out, b"one\ntwo\n", "a batch is written once");
    }

    #[test]
    fn a_full_buffer_is_written_at_once_in_order() {
        let batch = Batch::default();
        let mut out = Vec::new();
        let line = vec![b'x'; LIMIT / 2];
        batch.append(&line, &mut out).expect("appended");
        assert!(out.is_empty());
        batch.append(&line, &mut out).expect("appended");
        assert_eq!(
            out.len(),
            LIMIT,
            "both halves, written by the thread that logged"
        );
        batch.append(b"next\n", &mut out).expect("appended");
        assert_eq!(out.len(), LIMIT);
        batch.write_to(&mut out).expect("written");
        assert!(out.ends_with(b"next\n"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_writes_a_batch_after_its_first_line_waits() {
        let batch = Arc::new(Batch::default());
        let out = crate::telemetry::capture::Captured::default();
        let task = tokio::spawn(write_batches(Arc::clone(&batch), {
            let out = out.clone();
            move || out.clone()
        }));
        let written = || out.text();
        batch.append(b"line\n", &mut Vec::new()).expect("appended");
        tokio::time::sleep(GATHER / 2).await;
        assert!(written().is_empty(), "still gathering");
        tokio::time::sleep(GATHER).await;
        assert_eq!(written(), "line\n", "written out after GATHER");
        batch.append(b"last\n", &mut Vec::new()).expect("appended");
        task.abort();
        let _ = task.await;
        assert_eq!(
            written(),
            "line\nlast\n",
            "what is left, when the task is dropped"
        );
    }
}
