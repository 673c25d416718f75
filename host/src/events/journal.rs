//! `Journal`: what a job has said so far, so a follower that connects late
//! (or reconnects) gets it from any point. Output is line-buffered (a chunk
//! ends at a newline; a long partial line is sent when it reaches
//! `MAX_PARTIAL`, the rest when the job ends) and every event carries the
//! `Position` after it, which is its SSE id.

use super::JobEvent;
use std::collections::VecDeque;
use std::sync::Arc;
use wasmnode_runtime::mask::Mask;
use wasmnode_runtime::{TaskEvent, log_line};

/// Longest partial line held back waiting for its newline.
const MAX_PARTIAL: usize = 8 << 10;
/// Most bytes of each stream kept for late followers; older output is
/// dropped from the journal (the stored record keeps the capped whole).
pub const MAX_BACKLOG: usize = 4 << 20;

/// How far a follower has got: bytes of stdout and of stderr, and the rank
/// of the last state (1 queued, 2 running, 3 ended). Written `OUT.ERR.STATE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// Bytes of stdout.
    pub out: u64,
    /// Bytes of stderr.
    pub err: u64,
    /// Rank of the last state.
    pub state: u8,
}

impl Position {
    /// Parses `OUT.ERR.STATE` (a `Last-Event-ID`).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let position = Self {
            out: parts.next()?.parse().ok()?,
            err: parts.next()?.parse().ok()?,
            state: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(position)
    }

    /// The SSE id.
    pub fn id(&self) -> String {
        format!("{}.{}.{}", self.out, self.err, self.state)
    }
}

/// The rank of an ended job's state (`Position::state`).
pub const ENDED: u8 = 3;

/// The rank of state `name` in a job's life (`Position::state`).
pub fn rank(state: &str) -> u8 {
    match state {
        "queued" => 1,
        "running" => 2,
        _ => ENDED,
    }
}

/// An event and the position after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequenced {
    /// The event.
    pub event: JobEvent,
    /// Where a follower is once it has it.
    pub at: Position,
}

/// One output stream: the bytes sent so far (the tail of them, at most
/// `MAX_BACKLOG`: a ring, so dropping the oldest costs only what is dropped),
/// and the partial line held back.
#[derive(Debug, Default)]
struct Stream {
    sent: VecDeque<u8>,
    /// Offset of `sent[0]` in the stream.
    base: u64,
    pending: Vec<u8>,
}

impl Stream {
    fn end(&self) -> u64 {
        self.base + self.sent.len() as u64
    }

    /// Takes `bytes`; returns what is ready to send (whole lines, or a long
    /// partial line; everything when `flush`), masked.
    fn take(&mut self, bytes: &[u8], flush: bool, mask: Option<&Mask>) -> Option<Vec<u8>> {
        self.pending.extend_from_slice(bytes);
        let cut = if flush || self.pending.len() >= MAX_PARTIAL {
            self.pending.len()
        } else {
            self.pending
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
        };
        if cut == 0 {
            return None;
        }
        let ready: Vec<u8> = self.pending.drain(..cut).collect();
        let ready = match mask {
            Some(mask) => mask.bytes(&ready),
            None => ready,
        };
        self.sent.extend(&ready);
        if self.sent.len() > MAX_BACKLOG {
            let drop = self.sent.len() - MAX_BACKLOG;
            self.sent.drain(..drop);
            self.base += drop as u64;
        }
        Some(ready)
    }

    /// What was sent from offset `from` on (from the oldest kept byte when
    /// `from` is older), and whether some of it is no longer kept.
    fn since(&self, from: u64) -> (String, bool) {
        let start = (from.clamp(self.base, self.end()) - self.base) as usize;
        let bytes: Vec<u8> = self.sent.range(start..).copied().collect();
        (
            String::from_utf8_lossy(&bytes).into_owned(),
            from < self.base,
        )
    }
}

/// What a job has said so far.
#[derive(Debug, Default)]
pub struct Journal {
    out: Stream,
    err: Stream,
    /// The last state and its error code.
    state: Option<(String, Option<String>)>,
    /// The job's secrets, masked in everything it says.
    pub mask: Option<Arc<Mask>>,
}

/// What a follower missed: output since its position, and the job's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backlog {
    /// Stdout since the position.
    pub stdout: String,
    /// Stderr since the position.
    pub stderr: String,
    /// Whether output older than the journal keeps was missed.
    pub truncated: bool,
    /// The last state announced, if any, with its error code.
    pub state: Option<(String, Option<String>)>,
    /// Where the journal stands.
    pub at: Position,
}

impl Journal {
    /// Where the journal stands.
    pub fn position(&self) -> Position {
        Position {
            out: self.out.end(),
            err: self.err.end(),
            state: self.state.as_ref().map_or(0, |(s, _)| rank(s)),
        }
    }

    /// Whether the job has ended (its final state was announced).
    pub fn ended(&self) -> bool {
        self.state.as_ref().is_some_and(|(s, _)| rank(s) == ENDED)
    }

    /// Takes an event of the task; returns the events to send.
    pub fn task_event(&mut self, event: TaskEvent) -> Vec<Sequenced> {
        match event {
            TaskEvent::Stdout(bytes) => self.output(true, &bytes, false),
            TaskEvent::Stderr(bytes) => self.output(false, &bytes, false),
            TaskEvent::Log {
                tool,
                level,
                message,
            } => {
                // What stderr held back goes first; the record (masked at
                // its source, the tool host) is an event of its own, and a
                // line of the stderr backlog.
                let mut sent = self.output(false, &[], true);
                self.err
                    .take(log_line(&tool, level, &message).as_bytes(), true, None);
                sent.extend(self.send(JobEvent::Log {
                    tool,
                    level,
                    message,
                }));
                sent
            }
            TaskEvent::Token(data) => {
                let data = self.masked(&data);
                self.send(JobEvent::Token { data })
            }
            TaskEvent::Progress { what, done, total } => {
                self.send(JobEvent::Progress { what, done, total })
            }
        }
    }

    /// Takes a new state; held-back output goes first when it is final.
    pub fn state(&mut self, state: String, error: Option<String>) -> Vec<Sequenced> {
        let mut sent = Vec::new();
        if rank(&state) == ENDED {
            sent.extend(self.output(true, &[], true));
            sent.extend(self.output(false, &[], true));
        }
        self.state = Some((state.clone(), error.clone()));
        sent.extend(self.send(JobEvent::State { state, error }));
        sent
    }

    /// Takes `bytes` of stdout (or stderr); the event of what is ready
    /// (masked whole lines, so a secret is not split between two chunks).
    fn output(&mut self, is_out: bool, bytes: &[u8], flush: bool) -> Vec<Sequenced> {
        let mask = self.mask.clone();
        let stream = if is_out { &mut self.out } else { &mut self.err };
        match stream.take(bytes, flush, mask.as_deref()) {
            Some(ready) => self.send(chunk(is_out, &ready)),
            None => Vec::new(),
        }
    }

    fn masked(&self, text: &str) -> String {
        match &self.mask {
            Some(mask) => mask.text(text),
            None => text.to_string(),
        }
    }

    /// What a follower at `from` missed.
    pub fn backlog(&self, from: Position) -> Backlog {
        let (stdout, out_cut) = self.out.since(from.out);
        let (stderr, err_cut) = self.err.since(from.err);
        Backlog {
            stdout,
            stderr,
            truncated: out_cut || err_cut,
            state: self.state.clone(),
            at: self.position(),
        }
    }

    fn send(&self, event: JobEvent) -> Vec<Sequenced> {
        vec![Sequenced {
            event,
            at: self.position(),
        }]
    }
}

/// An output event of `bytes` (whole lines, so only a split character at a
/// long partial line's cut is lost).
fn chunk(is_out: bool, bytes: &[u8]) -> JobEvent {
    let data = String::from_utf8_lossy(bytes).into_owned();
    if is_out {
        JobEvent::Stdout { data }
    } else {
        JobEvent::Stderr { data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmnode_runtime::LogLevel;

    fn texts(events: &[Sequenced]) -> Vec<(String, String)> {
        events
            .iter()
            .map(|s| {
                let json = serde_json::to_value(&s.event).unwrap();
                let text = json["data"]
                    .as_str()
                    .or(json["state"].as_str())
                    .unwrap_or_default();
                (s.event.name().to_string(), format!("{text}@{}", s.at.id()))
            })
            .collect()
    }

    #[test]
    fn output_is_sent_a_whole_line_at_a_time_and_the_rest_at_the_end() {
        let mut journal = Journal::default();
        assert!(
            journal
                .task_event(TaskEvent::Stderr(b"err tick ".to_vec()))
                .is_empty()
        );
        assert!(
            journal
                .task_event(TaskEvent::Stderr(b"0".to_vec()))
                .is_empty()
        );
        let sent = journal.task_event(TaskEvent::Stderr(b"\nerr tick 1\nerr".to_vec()));
        assert_eq!(
            texts(&sent),
            [("stderr".into(), "err tick 0\nerr tick 1\n@0.22.0".into())]
        );
        let sent = journal.state("finished".into(), None);
        assert_eq!(
            texts(&sent),
            [
                ("stderr".into(), "err@0.25.0".into()),
                ("state".into(), "finished@0.25.3".into())
            ]
        );
        assert!(journal.ended());
    }

    #[test]
    fn a_split_character_arrives_whole() {
        let mut journal = Journal::default();
        let e = "é".as_bytes();
        assert!(
            journal
                .task_event(TaskEvent::Stdout(e[..1].to_vec()))
                .is_empty()
        );
        let sent = journal.task_event(TaskEvent::Stdout([&e[1..], b"\n"].concat()));
        assert_eq!(texts(&sent)[0].1, "é\n@3.0.0");
    }

    #[test]
    fn a_log_record_is_an_event_and_a_line_of_the_stderr_backlog() {
        let mut journal = Journal::default();
        journal.task_event(TaskEvent::Stderr(b"partial".to_vec()));
        let sent = journal.task_event(TaskEvent::Log {
            tool: "t".into(),
            level: LogLevel::Warn,
            message: "slow".into(),
        });
        assert_eq!(
            sent[0].event,
            JobEvent::Stderr {
                data: "partial".into()
            }
        );
        assert_eq!(sent[1].event.name(), "log");
        assert_eq!(
            journal.backlog(Position::default()).stderr,
            "partial[WARN t] slow\n"
        );
    }

    #[test]
    fn a_backlog_starts_where_the_follower_left_off() {
        let mut journal = Journal::default();
        journal.state("running".into(), None);
        journal.task_event(TaskEvent::Stdout(b"one\ntwo\n".to_vec()));
        journal.task_event(TaskEvent::Stderr(b"warn\n".to_vec()));
        let from = Position {
            out: 4,
            err: 0,
            state: 2,
        };
        let backlog = journal.backlog(from);
        assert_eq!(
            (backlog.stdout.as_str(), backlog.stderr.as_str()),
            ("two\n", "warn\n")
        );
        assert_eq!(
            backlog.at,
            Position {
                out: 8,
                err: 5,
                state: 2
            }
        );
        assert!(!backlog.truncated);
        let beyond = journal.backlog(Position {
            out: 99,
            err: 99,
            state: 2,
        });
        assert_eq!((beyond.stdout.as_str(), beyond.stderr.as_str()), ("", ""));
    }

    #[test]
    fn the_backlog_is_bounded_and_says_when_it_lost_the_start() {
        let mut journal = Journal::default();
        let line = vec![b'x'; 1023]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<_>>();
        for _ in 0..(MAX_BACKLOG / 1024 + 8) {
            journal.task_event(TaskEvent::Stdout(line.clone()));
        }
        let backlog = journal.backlog(Position::default());
        assert!(backlog.truncated);
        assert_eq!(backlog.stdout.len(), MAX_BACKLOG);
        assert_eq!(backlog.at.out, (MAX_BACKLOG + 8 * 1024) as u64);
    }

    #[test]
    fn positions_read_back_from_their_ids() {
        let p = Position {
            out: 12,
            err: 3,
            state: 2,
        };
        assert_eq!(Position::parse(&p.id()), Some(p));
        for bad in ["", "1.2", "1.2.3.4", "a.b.c", "-1.0.0"] {
            assert_eq!(Position::parse(bad), None, "{bad}");
        }
    }
}
