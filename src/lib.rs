//! bootstick: turn installer images into USB sticks that boot.
//!
//! The library is a pipeline (see `docs/architecture.md`): an image is
//! inspected, compiled into a [`plan::Plan`], streamed onto a target by the
//! write engine and read back to prove the target holds exactly the plan.
//! Every stage reports progress as [`events::Event`]s and fails with a typed
//! error; only the binary turns those into text and exit codes.

pub mod boot_test;
pub mod cancel;
pub mod devices;
pub mod events;
pub mod extract;
pub mod hash;
pub mod health;
pub mod image;
pub mod inspect;
pub mod job;
pub mod layout;
pub mod mount;
pub mod plan;
pub mod station;
pub mod trust;
pub mod write;

/// An error and its causes as one line, `what failed: why: root cause`.
///
/// Library errors name their cause through `source()` and never repeat it in
/// their own message (`docs/architecture.md`), so a message read on its own
/// (`to_string()`) lacks the cause; whoever turns an error into text for
/// people (a warning, an inspection problem, the command line) uses this.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    join_causes(std::iter::successors(Some(error), |e| e.source()).map(|e| e.to_string()))
}

/// Joins messages, outermost first, with `": "`. A message that the one
/// before already ends with (an error that both wraps and repeats its
/// cause) or that is empty is left out, so no cause is printed twice.
pub fn join_causes(messages: impl IntoIterator<Item = String>) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for m in messages {
        if m.is_empty() || previous.ends_with(&m) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&m);
        previous = m;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open image x.iso")]
    struct Outer {
        source: std::io::Error,
    }

    #[test]
    fn the_chain_names_each_cause_once() {
        let e = Outer {
            source: std::io::Error::from_raw_os_error(libc::EISDIR),
        };
        let text = error_chain(&e);
        assert_eq!(text.matches("Is a directory").count(), 1, "{text}");
        assert!(text.starts_with("cannot open image x.iso: Is a directory"));
    }

    #[test]
    fn a_cause_repeated_by_its_wrapper_is_left_out() {
        let m = |s: &str| s.to_owned();
        assert_eq!(
            join_causes([m("read x: Is a directory"), m("Is a directory"), m("")]),
            "read x: Is a directory"
        );
        assert_eq!(join_causes([m("a"), m("b"), m("c")]), "a: b: c");
        assert_eq!(join_causes([m("a"), m("a")]), "a");
    }
}

#[cfg(test)]
mod test_support;
