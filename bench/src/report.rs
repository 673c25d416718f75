//! Rows of the benchmark table, percentiles, and the Markdown report.

use std::time::Duration;

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Section number and name, e.g. `1. instantiate + run`.
    pub section: &'static str,
    /// What was measured.
    pub metric: String,
    /// The figure, formatted.
    pub value: String,
    /// The target, if the issue names one.
    pub target: Option<String>,
    /// Whether the target is met (`None` without a target).
    pub met: Option<bool>,
}

impl Row {
    /// A row without a target.
    pub fn info(
        section: &'static str,
        metric: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        Self {
            section,
            metric: metric.into(),
            value: value.into(),
            target: None,
            met: None,
        }
    }

    /// A row checked against a target.
    pub fn target(
        section: &'static str,
        metric: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) -> Self {
        Self {
            section,
            metric: metric.into(),
            value: value.into(),
            target: Some(target.into()),
            met: Some(met),
        }
    }
}

/// Latency samples.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    /// The `p`th percentile (0..=100).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.0.clone();
        sorted.sort();
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    /// Median.
    pub fn p50(&self) -> Duration {
        self.percentile(50.0)
    }

    /// 99th percentile.
    pub fn p99(&self) -> Duration {
        self.percentile(99.0)
    }
}

/// A duration in the most readable unit.
pub fn human(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// The table as plain text for the terminal.
pub fn text_table(rows: &[Row]) -> String {
    let widths = [
        rows.iter()
            .map(|r| r.section.len())
            .max()
            .unwrap_or(0)
            .max(7),
        rows.iter()
            .map(|r| r.metric.chars().count())
            .max()
            .unwrap_or(0)
            .max(6),
        rows.iter()
            .map(|r| r.value.chars().count())
            .max()
            .unwrap_or(0)
            .max(8),
    ];
    let mut out = format!(
        "{:w0$}  {:w1$}  {:w2$}  target\n",
        "section",
        "metric",
        "measured",
        w0 = widths[0],
        w1 = widths[1],
        w2 = widths[2]
    );
    for r in rows {
        let target = match (&r.target, r.met) {
            (Some(t), Some(true)) => format!("{t}  ok"),
            (Some(t), Some(false)) => format!("{t}  MISSED"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:w0$}  {:w1$}  {:w2$}  {target}\n",
            r.section,
            r.metric,
            r.value,
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        ));
    }
    out
}

/// The heading of the hand-written part of docs/BENCHMARKS.md (profiles
/// and what changed because of them), which a new report keeps.
pub const NOTES_HEADING: &str = "## Where the time goes";

/// The hand-written notes of an earlier report (from [`NOTES_HEADING`] to
/// the end), if it has them.
pub fn notes(previous: &str) -> Option<&str> {
    previous
        .match_indices(NOTES_HEADING)
        .find(|(at, _)| *at == 0 || previous[..*at].ends_with('\n'))
        .map(|(at, _)| &previous[at..])
}

/// The report as Markdown.
pub fn markdown(rows: &[Row], machine: &[(String, String)], command: &str) -> String {
    let mut out = String::from("# wasmnode benchmarks\n\n");
    out.push_str(&format!(
        "Produced by `{command}` (`make bench`). Every row was measured in the same run, side by side with its \
         baseline, on this machine:\n\n"
    ));
    for (k, v) in machine {
        out.push_str(&format!("- **{k}**: {v}\n"));
    }
    out.push_str("\n| section | metric | measured | target | |\n| --- | --- | --- | --- | --- |\n");
    for r in rows {
        let verdict = match r.met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.section,
            r.metric,
            r.value,
            r.target.clone().unwrap_or_default(),
            verdict
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_sorted_samples() {
        let s = Samples((1..=100).map(Duration::from_millis).collect());
        assert_eq!(s.p50(), Duration::from_millis(51));
        assert_eq!(s.p99(), Duration::from_millis(99));
        assert_eq!(Samples::default().p50(), Duration::ZERO);
        assert_eq!(human(Duration::from_micros(42)), "42.0 µs");
        assert_eq!(human(Duration::from_millis(3)), "3.00 ms");
    }

    #[test]
    fn tables_mark_targets() {
        let rows = [
            Row::target("1", "p50", "40 µs", "≤ 60 µs", true),
            Row::target("1", "rate", "10", "≥ 20", false),
        ];
        let text = text_table(&rows);
        assert!(text.contains("ok") && text.contains("MISSED"), "{text}");
        assert!(markdown(&rows, &[], "x").contains("| 1 | rate | 10 | ≥ 20 | missed |"));
    }

    #[test]
    fn notes_are_the_part_from_their_heading_at_a_line_start() {
        let report =
            "# r\n\nsee ## Where the time goes\n| a |\n\n## Where the time goes\n\nprofile\n";
        assert_eq!(notes(report), Some("## Where the time goes\n\nprofile\n"));
        assert_eq!(notes("# r\n| a |\n"), None);
    }
}
