//! Queries and notes another system exported with its clinical data, turned into Trellis
//! queries on the same items when a file is imported.
//!
//! Two shapes are read: ODM `Annotation`s on an `ItemData` (a comment, optionally with
//! flags; Trellis's own export writes its queries this way) and OpenClinica 3.x
//! discrepancy notes (`OpenClinica:DiscrepancyNote` threads). The source's authors, dates
//! and statuses are kept in the message texts; the Trellis audit trail records the import
//! itself, by the importing user, with the file named in every entry. A query's status is
//! reached by replaying the thread's status changes through the normal open → answered →
//! closed (→ re-opened) transitions, so an imported query behaves like any other.
//!
//! The first line of an imported query's opening message names its source note (system,
//! note id); with the subject and item it is how a later import of the same or a newer
//! file recognises the query.

use trellis_odm::{Annotation, ChildNote, DiscrepancyNote};
use trellis_store::{QueryAction, QueryStatus};

/// Trellis's export gives each query's annotation the ID `Q.` + the query's id.
pub const TRELLIS_QUERY_ID_PREFIX: &str = "Q.";

/// The longest message the store accepts, in characters.
const MAX_MESSAGE_CHARS: usize = 4000;
const TRUNCATED: &str = " [… truncated; the full text is in the source file]";

/// A query to open on an item, then the actions that bring it to the source's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceQuery {
    /// The opening message. Its first line names the source note.
    pub open: String,
    pub steps: Vec<(QueryAction, String)>,
    /// The source names the note (an OpenClinica note ID, an annotation's SeqNum and
    /// ID), so the first line of `open` identifies it; otherwise only the whole opening
    /// text does.
    pub identified: bool,
    /// The status was not given by the source (an annotation without a recognizable
    /// status flag); it is imported as a closed query and the import says so.
    pub status_assumed: bool,
    /// Status words Trellis does not know; the query ends where the known ones took it.
    pub unknown_statuses: Vec<String>,
    /// A message was longer than the store accepts and was cut.
    pub truncated: bool,
    /// The Trellis query this annotation was exported from: importing the file into the
    /// study that holds it opens nothing.
    pub exported_from: Option<uuid::Uuid>,
}

impl SourceQuery {
    pub fn status(&self) -> QueryStatus {
        self.steps
            .last()
            .map_or(QueryStatus::Open, |(action, _)| next(*action))
    }

    /// What identifies this query among an item's queries on a later import.
    pub fn identity(&self) -> &str {
        if self.identified {
            first_line(&self.open)
        } else {
            &self.open
        }
    }
}

/// The first line of a message: for an imported query, the name of its source note.
pub fn first_line(text: &str) -> &str {
    text.split('\n').next().unwrap_or(text)
}

/// The status the import that opened `q` brought it to: the import's messages share the
/// opening's commit time; later ones are what was done with the query in Trellis since.
pub fn status_reached_on_import(q: &trellis_store::QueryRow) -> QueryStatus {
    let Some(first) = q.messages.first() else {
        return q.status;
    };
    q.messages
        .iter()
        .skip(1)
        .take_while(|m| m.at == first.at)
        .fold(QueryStatus::Open, |state, m| {
            match [QueryAction::Answer, QueryAction::Close, QueryAction::Reopen]
                .into_iter()
                .find(|a| a.as_str() == m.action)
            {
                Some(action) => next(action),
                None => state,
            }
        })
}

/// What an annotation on an item becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromAnnotation {
    Query(SourceQuery),
    /// A source data verification Trellis exported: not a query; monitors verify again.
    Verification,
    /// Neither a comment nor a flag: nothing to carry over.
    Empty,
}

/// A status word as EDCs write it (OpenClinica, ODM flags, Trellis's own export).
pub fn source_status(word: &str) -> Option<QueryStatus> {
    let w = word.trim().to_ascii_lowercase();
    Some(match w.as_str() {
        "new" | "open" | "opened" | "updated" | "reopened" | "re-opened" | "pending" => {
            QueryStatus::Open
        }
        "resolution proposed" | "answered" | "responded" | "response" => QueryStatus::Answered,
        "closed" | "resolved" | "not applicable" | "cancelled" | "canceled" => QueryStatus::Closed,
        _ => return None,
    })
}

/// Where an action takes a query; `transitions` only yields actions valid from its state.
fn next(action: QueryAction) -> QueryStatus {
    match action {
        QueryAction::Answer => QueryStatus::Answered,
        QueryAction::Close => QueryStatus::Closed,
        QueryAction::Reopen => QueryStatus::Open,
    }
}

/// The actions that take a query from `from` to `to` through the store's transitions.
fn transitions(from: QueryStatus, to: QueryStatus) -> Vec<QueryAction> {
    use QueryStatus::*;
    match (from, to) {
        (Open, Answered) => vec![QueryAction::Answer],
        (Open | Answered, Closed) => vec![QueryAction::Close],
        (Answered | Closed, Open) => vec![QueryAction::Reopen],
        (Closed, Answered) => vec![QueryAction::Reopen, QueryAction::Answer],
        _ => Vec::new(),
    }
}

/// Cuts a message to what the store accepts.
fn fit(text: String, truncated: &mut bool) -> String {
    let text = text.trim().to_owned();
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text;
    }
    *truncated = true;
    let keep = MAX_MESSAGE_CHARS - TRUNCATED.chars().count();
    let mut cut: String = text.chars().take(keep).collect();
    cut.push_str(TRUNCATED);
    cut
}

/// The opening text, the later messages with the status each set, and the final status;
/// messages that change nothing join the next one that does, trailing ones the last.
struct Thread {
    open: String,
    later: Vec<(String, Option<QueryStatus>)>,
    last: Option<(QueryStatus, String)>,
}

/// Moves a query from `state` to `to`, the message going with the last action (a
/// closed query that was answered in the source is first re-opened).
fn step(
    steps: &mut Vec<(QueryAction, String)>,
    state: &mut QueryStatus,
    to: QueryStatus,
    text: String,
) -> bool {
    let actions = transitions(*state, to);
    let Some((&last, before)) = actions.split_last() else {
        return false;
    };
    for &action in before {
        steps.push((
            action,
            format!(
                "({} to record the status the source gives next)",
                action.as_str()
            ),
        ));
    }
    steps.push((last, text));
    *state = to;
    true
}

fn replay(thread: Thread) -> (String, Vec<(QueryAction, String)>, bool) {
    let mut truncated = false;
    let mut steps: Vec<(QueryAction, String)> = Vec::new();
    let mut state = QueryStatus::Open;
    let mut pending: Vec<String> = Vec::new();
    let mut open_text = thread.open;
    for (text, status) in thread.later {
        pending.push(text);
        if let Some(to) = status
            && step(&mut steps, &mut state, to, pending.join("\n"))
        {
            pending.clear();
        }
    }
    if let Some((to, why)) = thread.last {
        pending.push(why);
        if step(&mut steps, &mut state, to, pending.join("\n")) {
            pending.clear();
        } else {
            // Already there: the status line says nothing new.
            pending.pop();
        }
    }
    if !pending.is_empty() {
        let rest = pending.join("\n");
        let text = match steps.last_mut() {
            Some((_, text)) => text,
            None => &mut open_text,
        };
        text.push('\n');
        text.push_str(&rest);
    }
    let open = fit(open_text, &mut truncated);
    let steps = steps
        .into_iter()
        .map(|(a, t)| (a, fit(t, &mut truncated)))
        .collect();
    (open, steps, truncated)
}

fn child_line(n: &ChildNote) -> String {
    let mut head = String::from("Note");
    if let Some(id) = &n.id {
        head.push(' ');
        head.push_str(id);
    }
    if let Some(date) = &n.date_created {
        head.push_str(" of ");
        head.push_str(date);
    }
    match (&n.user_name, &n.name) {
        (Some(u), Some(name)) => head.push_str(&format!(" by {u} ({name})")),
        (Some(u), None) => head.push_str(&format!(" by {u}")),
        (None, Some(name)) => head.push_str(&format!(" by {name}")),
        (None, None) => {
            if let Some(oid) = &n.user_oid {
                head.push_str(&format!(" by user {oid}"));
            }
        }
    }
    if let Some(s) = &n.status {
        head.push_str(&format!(", status {s}"));
    }
    let body: Vec<&str> = [n.description.as_deref(), n.detailed_note.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    if body.is_empty() {
        head
    } else {
        format!("{head}: {}", body.join(" — "))
    }
}

/// An OpenClinica discrepancy note thread as a query. The thread's own status decides
/// where the query ends (the last note's, if the thread's is not a status Trellis knows);
/// each note's status moves it on the way.
pub fn from_discrepancy_note(note: &DiscrepancyNote) -> SourceQuery {
    let kind = note.note_type.as_deref().unwrap_or("note");
    let id = note.id.as_deref().unwrap_or("without ID");
    let mut unknown_statuses = Vec::new();
    let mut known = |word: Option<&str>| {
        let word = word?;
        let status = source_status(word);
        if status.is_none() && !unknown_statuses.iter().any(|w| w == word) {
            unknown_statuses.push(word.to_owned());
        }
        status.map(|s| (s, word.to_owned()))
    };
    let mut notes = note.child_notes.iter();
    let first = notes
        .next()
        .map(|n| {
            // Its status only names the thread's start, but an unknown word is still reported.
            let _ = known(n.status.as_deref());
            child_line(n)
        })
        .unwrap_or_default();
    let open = format!("Imported from OpenClinica: discrepancy note {id} ({kind}).\n{first}");
    let later: Vec<(String, Option<QueryStatus>)> = notes
        .map(|n| (child_line(n), known(n.status.as_deref()).map(|(s, _)| s)))
        .collect();
    let final_status = known(note.status.as_deref())
        .or_else(|| known(note.child_notes.last().and_then(|n| n.status.as_deref())));
    let last = final_status.map(|(s, word)| {
        let updated = note
            .date_updated
            .as_deref()
            .map(|d| format!(" (updated {d})"))
            .unwrap_or_default();
        (s, format!("Status in OpenClinica: {word}{updated}"))
    });
    let (open, steps, truncated) = replay(Thread { open, later, last });
    SourceQuery {
        open,
        steps,
        identified: note.id.is_some(),
        status_assumed: false,
        unknown_statuses,
        truncated,
        exported_from: None,
    }
}

/// The prefix of the comment Trellis's own export writes for a query, and its status.
fn trellis_query_status(comment: &str) -> Option<QueryStatus> {
    let rest = comment.strip_prefix("Query ")?;
    let (word, after) = rest.split_once(' ')?;
    after.starts_with('(').then_some(())?;
    QueryStatus::parse(word)
}

/// An ODM annotation on an item as a query: its comment is the text; the status comes
/// from Trellis's own query comment, or from a flag whose value or type is a status word;
/// without one the annotation is a closed query (a note on the data).
pub fn from_annotation(a: &Annotation) -> FromAnnotation {
    let comment = a.comment.as_ref().map(|c| c.text.trim()).unwrap_or("");
    if comment.starts_with("Source data verified ") {
        return FromAnnotation::Verification;
    }
    if comment.is_empty() && a.flags.is_empty() {
        return FromAnnotation::Empty;
    }
    let flags: Vec<String> = a
        .flags
        .iter()
        .map(|f| match &f.flag_type {
            Some((t, _)) => format!("{t}={}", f.value),
            None => f.value.clone(),
        })
        .collect();
    let status = trellis_query_status(comment).or_else(|| {
        a.flags.iter().find_map(|f| {
            source_status(&f.value)
                .or_else(|| f.flag_type.as_ref().and_then(|(t, _)| source_status(t)))
        })
    });
    // The first line names the annotation (SeqNum is unique among an item's annotations).
    let mut open = format!("Imported from ODM annotation {}", a.seq_num);
    if let Some(id) = &a.id {
        open.push_str(&format!(" ({id})"));
    }
    open.push('.');
    let who = a
        .comment
        .as_ref()
        .and_then(|c| c.sponsor_or_site.as_deref());
    let mut about = Vec::new();
    if let Some(who) = who {
        about.push(format!("{who} comment"));
    }
    if !flags.is_empty() {
        about.push(format!("flags {}", flags.join(", ")));
    }
    if !about.is_empty() {
        open.push('\n');
        open.push_str(&about.join("; "));
    }
    if !comment.is_empty() {
        open.push('\n');
        open.push_str(comment);
    }
    let (to, assumed) = match status {
        Some(s) => (s, false),
        None => (QueryStatus::Closed, true),
    };
    let why = if assumed {
        "Closed on import: the annotation gives no status.".to_owned()
    } else {
        format!("Status in the source file: {}", to.as_str())
    };
    let (open, steps, truncated) = replay(Thread {
        open,
        later: Vec::new(),
        last: Some((to, why)),
    });
    FromAnnotation::Query(SourceQuery {
        open,
        steps,
        identified: true,
        status_assumed: assumed,
        unknown_statuses: Vec::new(),
        truncated,
        exported_from: a
            .id
            .as_deref()
            .and_then(|id| id.strip_prefix(TRELLIS_QUERY_ID_PREFIX))
            .and_then(|id| uuid::Uuid::parse_str(id).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_odm::{Comment, Flag};

    fn child(id: &str, status: &str, text: &str) -> ChildNote {
        ChildNote {
            id: Some(id.into()),
            status: Some(status.into()),
            date_created: Some("2024-02-05".into()),
            user_name: Some("mon_ana".into()),
            description: Some(text.into()),
            ..ChildNote::default()
        }
    }

    fn note(status: &str, children: Vec<ChildNote>) -> DiscrepancyNote {
        DiscrepancyNote {
            id: Some("DN_1".into()),
            note_type: Some("Query".into()),
            status: Some(status.into()),
            child_notes: children,
            ..DiscrepancyNote::default()
        }
    }

    fn actions(q: &SourceQuery) -> Vec<QueryAction> {
        q.steps.iter().map(|(a, _)| *a).collect()
    }

    #[test]
    fn a_thread_replays_its_status_changes() {
        let q = from_discrepancy_note(&note(
            "Closed",
            vec![
                child("CDN_1", "New", "Dose too high?"),
                child("CDN_2", "Resolution Proposed", "As prescribed"),
                child("CDN_3", "Updated", "Please attach the log"),
                child("CDN_4", "Closed", "Seen"),
            ],
        ));
        assert!(q.open.starts_with("Imported from OpenClinica: discrepancy note DN_1 (Query).\nNote CDN_1 of 2024-02-05 by mon_ana, status New: Dose too high?"), "{}", q.open);
        assert_eq!(
            actions(&q),
            [QueryAction::Answer, QueryAction::Reopen, QueryAction::Close]
        );
        assert!(q.steps[1].1.contains("Please attach the log"));
        assert_eq!(q.status(), QueryStatus::Closed);
        assert!(!q.status_assumed && !q.truncated);
    }

    #[test]
    fn notes_that_change_nothing_join_the_next_message_and_the_thread_status_wins() {
        let q = from_discrepancy_note(&note(
            "Resolution Proposed",
            vec![
                child("CDN_1", "New", "Which date?"),
                child("CDN_2", "Updated", "Still waiting"),
                child("CDN_3", "Resolution Proposed", "1 Feb"),
                child("CDN_4", "Resolution Proposed", "Log attached too"),
            ],
        ));
        assert_eq!(actions(&q), [QueryAction::Answer]);
        let answer = &q.steps[0].1;
        assert!(
            answer.contains("Still waiting") && answer.contains("1 Feb"),
            "{answer}"
        );
        assert!(answer.ends_with("Log attached too"), "{answer}");
        assert_eq!(q.status(), QueryStatus::Answered);
    }

    #[test]
    fn a_single_note_thread_reaches_its_status() {
        let q = from_discrepancy_note(&note(
            "Not Applicable",
            vec![child("CDN_1", "Not Applicable", "Re-consented")],
        ));
        assert_eq!(actions(&q), [QueryAction::Close]);
        assert_eq!(q.steps[0].1, "Status in OpenClinica: Not Applicable");
        let open = from_discrepancy_note(&note("New", vec![child("CDN_1", "New", "?")]));
        assert!(open.steps.is_empty());
        assert_eq!(open.status(), QueryStatus::Open);
    }

    #[test]
    fn an_answer_after_closing_reopens_first_and_the_answer_keeps_its_text() {
        let q = from_discrepancy_note(&note(
            "Resolution Proposed",
            vec![
                child("CDN_1", "New", "Which date?"),
                child("CDN_2", "Closed", "Closed by mistake"),
                child("CDN_3", "Resolution Proposed", "It was 1 Feb"),
            ],
        ));
        assert_eq!(
            actions(&q),
            [QueryAction::Close, QueryAction::Reopen, QueryAction::Answer]
        );
        assert!(
            q.steps[1].1.starts_with("(reopen to record"),
            "{:?}",
            q.steps
        );
        assert!(q.steps[2].1.contains("It was 1 Feb"), "{:?}", q.steps);
        assert_eq!(q.status(), QueryStatus::Answered);
    }

    #[test]
    fn unknown_statuses_are_named_and_the_last_known_one_decides() {
        let q = from_discrepancy_note(&note(
            "Awaiting Sponsor",
            vec![
                child("CDN_1", "New", "Why?"),
                child("CDN_2", "Escalated", "Sent up"),
                child("CDN_3", "Closed", "Done"),
            ],
        ));
        assert_eq!(q.unknown_statuses, ["Escalated", "Awaiting Sponsor"]);
        assert_eq!(q.status(), QueryStatus::Closed);
        assert!(q.steps[0].1.contains("Sent up") && q.steps[0].1.contains("Done"));
    }

    #[test]
    fn a_note_is_recognised_by_its_first_line_when_the_source_names_it() {
        let older = from_discrepancy_note(&note("New", vec![child("CDN_1", "New", "Why?")]));
        let newer = from_discrepancy_note(&note(
            "Closed",
            vec![
                child("CDN_1", "New", "Why?"),
                child("CDN_2", "Closed", "Fixed"),
            ],
        ));
        assert_eq!(older.identity(), newer.identity());
        assert_eq!(
            older.identity(),
            "Imported from OpenClinica: discrepancy note DN_1 (Query)."
        );
        let unnamed = DiscrepancyNote {
            id: None,
            ..note("New", vec![child("CDN_1", "New", "Why?")])
        };
        let q = from_discrepancy_note(&unnamed);
        assert!(!q.identified);
        assert_eq!(q.identity(), q.open);
    }

    #[test]
    fn long_notes_are_cut_to_what_the_store_takes() {
        let long = "x".repeat(5000);
        let q = from_discrepancy_note(&note("New", vec![child("CDN_1", "New", &long)]));
        assert!(q.truncated);
        assert_eq!(q.open.chars().count(), MAX_MESSAGE_CHARS);
        assert!(q.open.ends_with(TRUNCATED));
    }

    fn annotation(text: &str, flags: Vec<Flag>) -> Annotation {
        Annotation {
            seq_num: 1,
            id: None,
            comment: Some(Comment {
                sponsor_or_site: Some("Sponsor".into()),
                text: text.into(),
            }),
            flags,
        }
    }

    #[test]
    fn annotations_take_their_status_from_trellis_comments_or_flags() {
        let FromAnnotation::Query(q) = from_annotation(&annotation(
            "Query answered (raised manually). 2024-01-01 open by A: why?",
            Vec::new(),
        )) else {
            panic!()
        };
        assert_eq!(q.status(), QueryStatus::Answered);
        assert!(q.open.contains("why?"));
        let flagged = annotation(
            "Value confirmed",
            vec![Flag {
                value: "Closed".into(),
                value_code_list: "CL.STATUS".into(),
                flag_type: Some(("Status".into(), "CL.TYPE".into())),
            }],
        );
        let FromAnnotation::Query(q) = from_annotation(&flagged) else {
            panic!()
        };
        assert_eq!(q.status(), QueryStatus::Closed);
        assert!(!q.status_assumed);
        assert!(q.open.contains("flags Status=Closed"), "{}", q.open);
        let FromAnnotation::Query(q) = from_annotation(&annotation("Patient refused", Vec::new()))
        else {
            panic!()
        };
        assert_eq!(q.status(), QueryStatus::Closed);
        assert!(q.status_assumed);
        assert_eq!(
            from_annotation(&annotation(
                "Source data verified 2024-01-01T00:00:00Z by X: value \"1\" (current).",
                Vec::new()
            )),
            FromAnnotation::Verification
        );
        assert_eq!(
            from_annotation(&Annotation::default()),
            FromAnnotation::Empty
        );
    }

    #[test]
    fn status_words() {
        for (w, s) in [
            ("New", QueryStatus::Open),
            ("Updated", QueryStatus::Open),
            ("Resolution Proposed", QueryStatus::Answered),
            ("closed", QueryStatus::Closed),
            ("Not Applicable", QueryStatus::Closed),
        ] {
            assert_eq!(source_status(w), Some(s), "{w}");
        }
        assert_eq!(source_status("Y"), None);
        assert_eq!(
            trellis_query_status("Query open (raised by edit check X). ..."),
            Some(QueryStatus::Open)
        );
        assert_eq!(trellis_query_status("Query about the dose"), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn status_word() -> impl Strategy<Value = Option<String>> {
            prop_oneof![
                Just(None),
                prop::sample::select(vec![
                    "New",
                    "Updated",
                    "Resolution Proposed",
                    "Closed",
                    "Not Applicable",
                    "Escalated",
                ])
                .prop_map(|w| Some(w.to_owned())),
            ]
        }

        fn child_note() -> impl Strategy<Value = ChildNote> {
            (status_word(), ".{0,30}", 0usize..5000).prop_map(|(status, text, pad)| ChildNote {
                status,
                description: Some(format!("{text}{}", "x".repeat(pad))),
                ..ChildNote::default()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// Whatever the thread, the replay is a valid path through the store's
            /// transitions, every message fits the store, and the query ends at the
            /// thread's status when Trellis knows it.
            #[test]
            fn a_thread_always_replays_into_valid_steps(
                status in status_word(),
                children in prop::collection::vec(child_note(), 1..6),
            ) {
                let note = DiscrepancyNote {
                    id: Some("DN_1".into()),
                    status: status.clone(),
                    child_notes: children,
                    ..DiscrepancyNote::default()
                };
                let q = from_discrepancy_note(&note);
                prop_assert!(!q.open.is_empty() && q.open.chars().count() <= MAX_MESSAGE_CHARS);
                let mut state = QueryStatus::Open;
                for (action, text) in &q.steps {
                    let valid = matches!(
                        (action, state),
                        (QueryAction::Answer, QueryStatus::Open)
                            | (QueryAction::Close, QueryStatus::Open | QueryStatus::Answered)
                            | (QueryAction::Reopen, QueryStatus::Answered | QueryStatus::Closed)
                    );
                    prop_assert!(valid, "{action:?} from {state:?}");
                    prop_assert!(!text.trim().is_empty() && text.chars().count() <= MAX_MESSAGE_CHARS);
                    state = next(*action);
                }
                prop_assert_eq!(state, q.status());
                if let Some(s) = status.as_deref().and_then(source_status) {
                    prop_assert_eq!(q.status(), s);
                }
            }
        }
    }
}
