//! Field paths: the grammar is in the [module docs](super#field-paths).
//!
//! Paths are compiled once into steps and matched with a small set of
//! states (rule, position) carried down the tree: linear in the document
//! times the number of steps.

use std::fmt;

use super::MAX_PATH_LEN;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    AnyKey,
    AnyIndex,
    Index(usize),
    AnyDepth,
}

/// A compiled path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    steps: Vec<Step>,
}

/// Where a child sits in its parent.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Child<'a> {
    Key(&'a str),
    Index(usize),
}

/// Matching state: rule `.0` has matched the first `.1` steps of its path.
pub(crate) type State = (usize, usize);

#[derive(Debug)]
pub(crate) struct PathError(String);

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Path {
    pub(crate) fn parse(text: &str) -> Result<Path, PathError> {
        let err = |at: usize, what: &str| PathError(format!("{what} at character {}", at + 1));
        if text.is_empty() {
            return Err(PathError("empty path".into()));
        }
        if text.len() > MAX_PATH_LEN {
            return Err(PathError(format!("path longer than {MAX_PATH_LEN} bytes")));
        }
        let mut steps = Vec::new();
        let mut chars = text.char_indices().peekable();
        // Whether a name step may start here (start of path or after `.`).
        let mut expect_name = true;
        let mut after_dot = false;
        while let Some(&(i, c)) = chars.peek() {
            if c == '[' {
                if after_dot {
                    return Err(err(i, "`[` right after `.`"));
                }
                chars.next();
                let mut inner = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    inner.push(c);
                }
                if !closed {
                    return Err(err(i, "unclosed `[`"));
                }
                if inner == "*" {
                    steps.push(Step::AnyIndex);
                } else if !inner.is_empty()
                    && inner.len() <= 9
                    && inner.bytes().all(|b| b.is_ascii_digit())
                {
                    let n = inner
                        .parse::<usize>()
                        .map_err(|_| err(i, "bad array index"))?;
                    steps.push(Step::Index(n));
                } else {
                    return Err(err(i, "`[...]` holds `*` or an index"));
                }
                expect_name = false;
                continue;
            }
            if c == '.' {
                if expect_name {
                    return Err(err(i, "empty step"));
                }
                chars.next();
                expect_name = true;
                after_dot = true;
                continue;
            }
            if c == ']' {
                return Err(err(i, "unmatched `]`"));
            }
            if !expect_name {
                return Err(err(i, "expected `.` or `[`"));
            }
            // A name (or `*` / `**`).
            let mut name = String::new();
            let mut escaped = false;
            while let Some(&(j, c)) = chars.peek() {
                match c {
                    '.' | '[' | ']' => break,
                    '\\' => {
                        chars.next();
                        match chars.next() {
                            Some((_, e @ ('.' | '[' | ']' | '*' | '\\'))) => {
                                name.push(e);
                                escaped = true;
                            }
                            _ => return Err(err(j, "`\\` escapes one of . [ ] * \\")),
                        }
                    }
                    _ => {
                        name.push(c);
                        chars.next();
                    }
                }
            }
            steps.push(match name.as_str() {
                "*" if !escaped => Step::AnyKey,
                "**" if !escaped => Step::AnyDepth,
                _ => Step::Key(name),
            });
            expect_name = false;
            after_dot = false;
        }
        if expect_name {
            return Err(PathError("path ends with `.`".into()));
        }
        Ok(Path { steps })
    }

    fn step(&self, i: usize) -> Option<&Step> {
        self.steps.get(i)
    }

    fn len(&self) -> usize {
        self.steps.len()
    }
}

/// Adds the states reachable through `**` matching nothing, sorts, dedups.
fn close(paths: &[(Path, usize)], states: &mut Vec<State>) {
    let mut i = 0;
    while let Some(&(r, p)) = states.get(i) {
        let any_depth = paths
            .get(r)
            .and_then(|(path, _)| path.step(p))
            .is_some_and(|s| *s == Step::AnyDepth);
        if any_depth && !states.contains(&(r, p + 1)) {
            states.push((r, p + 1));
        }
        i += 1;
    }
    states.sort_unstable();
    states.dedup();
}

/// The states at the root of a document.
pub(crate) fn root(paths: &[(Path, usize)]) -> Vec<State> {
    let mut states: Vec<State> = (0..paths.len()).map(|r| (r, 0)).collect();
    close(paths, &mut states);
    states
}

/// The strategy of the first rule whose path ends here, if any.
pub(crate) fn matched(paths: &[(Path, usize)], states: &[State]) -> Option<usize> {
    states.iter().find_map(|&(r, p)| {
        paths
            .get(r)
            .filter(|(path, _)| path.len() == p)
            .map(|(_, s)| *s)
    })
}

/// The states of a child of a node in `states` (none of which is final).
pub(crate) fn step(paths: &[(Path, usize)], states: &[State], child: Child<'_>) -> Vec<State> {
    let mut next = Vec::new();
    for &(r, p) in states {
        let Some(s) = paths.get(r).and_then(|(path, _)| path.step(p)) else {
            continue;
        };
        match (s, child) {
            (Step::Key(name), Child::Key(k)) if name == k => next.push((r, p + 1)),
            (Step::AnyKey, Child::Key(_)) => next.push((r, p + 1)),
            // Arrays are transparent to key steps.
            (Step::Key(_) | Step::AnyKey, Child::Index(_)) => next.push((r, p)),
            (Step::AnyIndex, Child::Index(_)) => next.push((r, p + 1)),
            (Step::Index(n), Child::Index(i)) if *n == i => next.push((r, p + 1)),
            (Step::AnyDepth, _) => next.push((r, p)),
            _ => {}
        }
    }
    if !next.is_empty() {
        close(paths, &mut next);
    }
    next
}
