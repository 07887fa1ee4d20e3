//! What a scenario prints: a title and what it teaches, numbered steps as they happen (with
//! details under them), and the verdict with where to look deeper.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::Verdict;
use crate::console::Console;

/// Prints the story of one run.
#[derive(Debug)]
pub(crate) struct Narrator {
    console: Console,
    step: AtomicUsize,
    started: Instant,
}

impl Narrator {
    pub(crate) fn new(console: Console) -> Self {
        Self {
            console,
            step: AtomicUsize::new(0),
            started: Instant::now(),
        }
    }

    /// The scenario's name and what it shows.
    pub(crate) fn title(&self, title: &str, teaches: &str) {
        println!("{}", self.console.bold(&format!("▶ {title}")));
        for line in wrap(teaches, 92) {
            println!("  {}", self.console.dim(&line));
        }
        println!();
    }

    /// A line that is not a step (the system starting).
    pub(crate) fn note(&self, text: &str) {
        println!("{}", self.console.dim(text));
    }

    /// The next step, numbered, with the time since the start.
    pub(crate) fn step(&self, text: &str) {
        let n = self.step.fetch_add(1, Ordering::Relaxed) + 1;
        let at = format!("{:>5.1}s", self.started.elapsed().as_secs_f64());
        println!("{} {n:>2}. {text}", self.console.dim(&at));
    }

    /// A detail under the last step.
    pub(crate) fn detail(&self, text: &str) {
        println!("           {text}");
    }

    /// The verdict and what backs it.
    pub(crate) fn verdict(&self, verdict: &Verdict) {
        println!();
        let headline = if verdict.holds {
            self.console.green("Verdict: it held.")
        } else {
            self.console.red("Verdict: it did NOT hold.")
        };
        println!("{headline}");
        for finding in &verdict.findings {
            println!("  {finding}");
        }
    }

    /// Where to look deeper: the traces and the console of a system that keeps running (not
    /// one started for the scenario), and the code.
    pub(crate) fn look_deeper(&self, verdict: &Verdict, gateway: Option<&str>, code: &[&str]) {
        println!();
        println!("Look deeper:");
        match gateway {
            Some(gateway) => {
                for trace in &verdict.traces {
                    println!("  bazaar trace {trace}   ·   {gateway}/console/traces/{trace}");
                }
                println!("  {gateway}/console   (as admin@bazaar.example)");
            }
            None => println!(
                "  (the system started for this scenario stops now: start one with `bazaar up`\n   and run the scenario again to look around it in the console and with bazaar trace)"
            ),
        }
        println!("  the code: {}", code.join(", "));
    }
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_spaces_within_the_width() {
        assert_eq!(
            wrap("the quick brown fox jumps over the lazy dog", 15),
            ["the quick brown", "fox jumps over", "the lazy dog"]
        );
        assert!(wrap("", 10).is_empty());
    }
}
