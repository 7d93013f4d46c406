//! A task file (`shroud run FILE.yml`, SPEC §7): parsed, then checked as a
//! whole before anything runs.
//!
//! YAML is read with `yaml-rust2`: maintained (serde_yaml is archived, and
//! its forks either carry its unsound `unsafe` or are one person's
//! rewrite), and its event parser gives a line and column for every node,
//! which an error must name. The events become a small tree ([`Node`]) that
//! keeps those positions and refuses what a task file has no use for:
//! duplicate keys (the later one would silently win), anchors and aliases,
//! more than one document. [`parse`] then reads the tasks and collects
//! every problem (unknown fields, a bad key, a `use` naming no task, a
//! cycle, an expression that does not parse, a bad timeout); the checks that
//! need the store or the home (a secret or var that does not exist, an
//! unknown template) are the scheduler's, and add to the same list.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::expr::{self, Piece, Ref};

/// A line and column (both from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn of(mark: Marker) -> Pos {
        Pos {
            line: mark.line(),
            col: mark.col() + 1,
        }
    }
}

/// A YAML node with its position.
#[derive(Debug, Clone)]
pub enum Node {
    Map(Vec<(String, Pos, Node)>, Pos),
    Seq(Vec<Node>, Pos),
    Scalar(String, Pos),
}

impl Node {
    pub fn pos(&self) -> Pos {
        match self {
            Node::Map(_, pos) | Node::Seq(_, pos) | Node::Scalar(_, pos) => *pos,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Node::Map(..) => "a mapping",
            Node::Seq(..) => "a list",
            Node::Scalar(..) => "a scalar",
        }
    }
}

/// One problem of a file: where, which task and field, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pos: Pos,
    pub task: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    /// `FILE:LINE:COL: task `KEY`, field `FIELD`: MESSAGE`.
    pub fn render(&self, file: &str) -> String {
        let mut text = format!("{file}:{}:{}: ", self.pos.line, self.pos.col);
        if let Some(task) = &self.task {
            text.push_str(&format!("task `{task}`"));
            if let Some(field) = &self.field {
                text.push_str(&format!(", field `{field}`"));
            }
            text.push_str(": ");
        }
        text.push_str(&self.message);
        text
    }
}

/// A task as the file gives it, checked.
#[derive(Debug, Clone)]
pub struct Task {
    pub key: String,
    pub pos: Pos,
    /// The script, as pieces (expressions resolved at run time).
    pub run: Vec<Piece>,
    pub run_pos: Pos,
    pub uses: Vec<String>,
    /// Where `use` is (problems of `use` point there).
    pub use_pos: Pos,
    /// Each variable: its name, its pieces, where it is.
    pub env: Vec<(String, Vec<Piece>, Pos)>,
    pub timeout: Option<Duration>,
    pub template: Option<(String, Pos)>,
    pub cwd: Option<(String, Pos)>,
}

impl Task {
    /// Every reference of the task, with the field and position it is in.
    pub fn refs(&self) -> Vec<(Ref, String, Pos)> {
        let mut refs = Vec::new();
        for piece in &self.run {
            if let Piece::Expr(r) = piece {
                refs.push((r.clone(), "run".to_owned(), self.run_pos));
            }
        }
        for (name, pieces, pos) in &self.env {
            for piece in pieces {
                if let Piece::Expr(r) = piece {
                    refs.push((r.clone(), format!("env.{name}"), *pos));
                }
            }
        }
        refs
    }
}

/// Builds a [`Node`] tree from the parser's events.
#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Partial>,
    root: Option<Node>,
    documents: usize,
    problems: Vec<Problem>,
}

enum Partial {
    Map {
        pos: Pos,
        entries: Vec<(String, Pos, Node)>,
        key: Option<(String, Pos)>,
        seen: HashMap<String, Pos>,
    },
    Seq {
        pos: Pos,
        items: Vec<Node>,
    },
}

impl TreeBuilder {
    fn problem(&mut self, pos: Pos, message: String) {
        self.problems.push(Problem {
            pos,
            task: None,
            field: None,
            message,
        });
    }

    fn add(&mut self, node: Node) {
        let pos = node.pos();
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Partial::Seq { items, .. }) => items.push(node),
            Some(Partial::Map {
                entries, key, seen, ..
            }) => match key.take() {
                None => match node {
                    Node::Scalar(text, pos) => {
                        if let Some(first) = seen.get(&text) {
                            let message = format!(
                                "duplicate key `{text}` (first at line {}, column {})",
                                first.line, first.col
                            );
                            self.problems.push(Problem {
                                pos,
                                task: None,
                                field: None,
                                message,
                            });
                        } else {
                            seen.insert(text.clone(), pos);
                        }
                        *key = Some((text, pos));
                    }
                    other => {
                        *key = Some((String::new(), pos));
                        let kind = other.kind();
                        self.problem(pos, format!("a key must be a plain text, not {kind}"));
                    }
                },
                Some((name, key_pos)) => {
                    let duplicate = entries.iter().any(|(k, _, _)| *k == name);
                    if !duplicate && !name.is_empty() {
                        entries.push((name, key_pos, node));
                    }
                    let _ = pos;
                }
            },
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let pos = Pos::of(mark);
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 {
                    self.problem(
                        pos,
                        "more than one YAML document; a task file is one".to_owned(),
                    );
                }
            }
            Event::Alias(_) => {
                self.problem(
                    pos,
                    "aliases (`*name`) are not allowed in a task file".to_owned(),
                );
                self.add(Node::Scalar(String::new(), pos));
            }
            Event::Scalar(text, _, anchor, _) => {
                if anchor > 0 {
                    self.problem(
                        pos,
                        "anchors (`&name`) are not allowed in a task file".to_owned(),
                    );
                }
                self.add(Node::Scalar(text, pos));
            }
            Event::SequenceStart(anchor, _) => {
                if anchor > 0 {
                    self.problem(
                        pos,
                        "anchors (`&name`) are not allowed in a task file".to_owned(),
                    );
                }
                self.stack.push(Partial::Seq {
                    pos,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                if anchor > 0 {
                    self.problem(
                        pos,
                        "anchors (`&name`) are not allowed in a task file".to_owned(),
                    );
                }
                self.stack.push(Partial::Map {
                    pos,
                    entries: Vec::new(),
                    key: None,
                    seen: HashMap::new(),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Partial::Seq { pos, items }) => Node::Seq(items, pos),
                    Some(Partial::Map { pos, entries, .. }) => Node::Map(entries, pos),
                    None => return,
                };
                self.add(node);
            }
            _ => {}
        }
    }
}

/// Parses the YAML of a task file into a tree, or the problems that stop it.
pub fn parse_yaml(text: &str) -> Result<Node, Vec<Problem>> {
    // A byte-order mark some editors write is not part of the YAML.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        let mark = *e.marker();
        return Err(vec![Problem {
            pos: Pos::of(mark),
            task: None,
            field: None,
            message: format!("not valid YAML: {}", e.info()),
        }]);
    }
    if !builder.problems.is_empty() {
        return Err(builder.problems);
    }
    builder.root.ok_or_else(|| {
        vec![Problem {
            pos: Pos { line: 1, col: 1 },
            task: None,
            field: None,
            message: "the file is empty; it needs `tasks:`".to_owned(),
        }]
    })
}

/// Parses a duration: `90s`, `10m`, `1h`, `1.5s`, `250ms`, or plain seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().ok()?;
    let secs = value * scale;
    (0.001..=1e8)
        .contains(&secs)
        .then(|| Duration::from_secs_f64(secs))
}

/// True for a task key: `^[a-z0-9][a-z0-9_-]*$`.
pub fn is_task_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    !bytes.is_empty()
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

const TASK_FIELDS: [&str; 7] = ["key", "run", "use", "env", "timeout", "template", "cwd"];

/// Reads and checks the tasks of a file: every problem the file alone can
/// show, all at once.
pub fn parse(text: &str) -> (Vec<Task>, Vec<Problem>) {
    let root = match parse_yaml(text) {
        Ok(root) => root,
        Err(problems) => return (Vec::new(), problems),
    };
    let mut problems = Vec::new();
    let mut tasks = Vec::new();
    let top = match &root {
        Node::Map(entries, _) => entries,
        other => {
            problems.push(at(
                other.pos(),
                None,
                None,
                "the file must be a mapping with `tasks:`",
            ));
            return (tasks, problems);
        }
    };
    let mut list = None;
    for (name, pos, node) in top {
        if name == "tasks" {
            list = Some(node);
        } else {
            problems.push(at(
                *pos,
                None,
                None,
                &format!("unknown field `{name}` (a task file has `tasks:`)"),
            ));
        }
    }
    let Some(list) = list else {
        problems.push(at(root.pos(), None, None, "no `tasks:` list"));
        return (tasks, problems);
    };
    let Node::Seq(items, _) = list else {
        problems.push(at(
            list.pos(),
            None,
            None,
            "`tasks` must be a list of tasks",
        ));
        return (tasks, problems);
    };
    let mut keys: BTreeMap<String, Pos> = BTreeMap::new();
    for item in items {
        if let Some(task) = read_task(item, &mut problems) {
            if let Some(first) = keys.get(&task.key) {
                let message = format!(
                    "duplicate task key (first at line {}, column {})",
                    first.line, first.col
                );
                problems.push(at(task.pos, Some(&task.key), Some("key"), &message));
                continue;
            }
            keys.insert(task.key.clone(), task.pos);
            tasks.push(task);
        }
    }
    for task in &tasks {
        for used in &task.uses {
            if !keys.contains_key(used) {
                problems.push(at(
                    task.use_pos,
                    Some(&task.key),
                    Some("use"),
                    &format!("`{used}` names no task of this file"),
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(&tasks) {
        let first = tasks
            .iter()
            .find(|t| t.key == cycle[0])
            .expect("a task of the cycle");
        problems.push(at(
            first.use_pos,
            Some(&first.key),
            Some("use"),
            &format!("a cycle: {}", cycle.join(" -> ")),
        ));
    }
    (tasks, problems)
}

fn at(pos: Pos, task: Option<&str>, field: Option<&str>, message: &str) -> Problem {
    Problem {
        pos,
        task: task.map(str::to_owned),
        field: field.map(str::to_owned),
        message: message.to_owned(),
    }
}

fn scalar<'a>(
    node: &'a Node,
    task: &str,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<&'a str> {
    match node {
        Node::Scalar(text, _) => Some(text),
        other => {
            problems.push(at(
                other.pos(),
                Some(task),
                Some(field),
                &format!("expected a text, found {}", other.kind()),
            ));
            None
        }
    }
}

fn pieces(
    text: &str,
    pos: Pos,
    task: &str,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Vec<Piece> {
    match expr::parse(text) {
        Ok(pieces) => pieces,
        Err(message) => {
            problems.push(at(pos, Some(task), Some(field), &message));
            Vec::new()
        }
    }
}

fn read_task(node: &Node, problems: &mut Vec<Problem>) -> Option<Task> {
    let Node::Map(entries, pos) = node else {
        problems.push(at(
            node.pos(),
            None,
            None,
            "a task must be a mapping with `key` and `run`",
        ));
        return None;
    };
    let key_node = entries.iter().find(|(name, _, _)| name == "key");
    let task_pos = key_node.map_or(*pos, |(_, name_pos, _)| *name_pos);
    let key = match key_node {
        Some((_, _, Node::Scalar(key, key_pos))) => {
            if !is_task_key(key) {
                problems.push(at(
                    *key_pos,
                    Some(key),
                    Some("key"),
                    "a key is a-z, 0-9, `_` and `-`, starting with a letter or digit",
                ));
            }
            key.clone()
        }
        Some((_, key_pos, other)) => {
            let kind = other.kind();
            problems.push(at(
                *key_pos,
                None,
                Some("key"),
                &format!("expected a text, found {kind}"),
            ));
            return None;
        }
        None => {
            problems.push(at(*pos, None, None, "a task without `key`"));
            return None;
        }
    };
    let mut task = Task {
        key: key.clone(),
        pos: task_pos,
        use_pos: task_pos,
        run: Vec::new(),
        run_pos: task_pos,
        uses: Vec::new(),
        env: Vec::new(),
        timeout: None,
        template: None,
        cwd: None,
    };
    let mut has_run = false;
    for (name, field_pos, value) in entries {
        match name.as_str() {
            "key" => {}
            "run" => {
                if let Some(text) = scalar(value, &key, "run", problems) {
                    if text.trim().is_empty() {
                        problems.push(at(value.pos(), Some(&key), Some("run"), "an empty script"));
                    }
                    has_run = true;
                    task.run_pos = value.pos();
                    task.run = pieces(text, value.pos(), &key, "run", problems);
                }
            }
            "use" => {
                task.use_pos = *field_pos;
                read_uses(value, &key, &mut task.uses, problems);
            }
            "env" => match value {
                Node::Map(vars, _) => {
                    for (var, var_pos, var_value) in vars {
                        let field = format!("env.{var}");
                        if crate::store::names::check_env_name(var).is_err() {
                            problems.push(at(*var_pos, Some(&key), Some(&field), "not a variable name (letters, digits and `_`, not starting with a digit)"));
                            continue;
                        }
                        if let Some(text) = scalar(var_value, &key, &field, problems) {
                            let parsed = pieces(text, var_value.pos(), &key, &field, problems);
                            task.env.push((var.clone(), parsed, var_value.pos()));
                        }
                    }
                }
                other => {
                    problems.push(at(
                        other.pos(),
                        Some(&key),
                        Some("env"),
                        "expected a mapping of NAME: value",
                    ));
                }
            },
            "timeout" => {
                if let Some(text) = scalar(value, &key, "timeout", problems) {
                    match parse_duration(text) {
                        Some(timeout) => task.timeout = Some(timeout),
                        None => problems.push(at(
                            value.pos(),
                            Some(&key),
                            Some("timeout"),
                            &format!("invalid timeout {text:?}: a positive duration such as `90s`, `10m` or `1h`"),
                        )),
                    }
                }
            }
            "template" => {
                if let Some(text) = scalar(value, &key, "template", problems) {
                    task.template = Some((text.to_owned(), value.pos()));
                }
            }
            "cwd" => {
                if let Some(text) = scalar(value, &key, "cwd", problems) {
                    task.cwd = Some((text.to_owned(), value.pos()));
                }
            }
            other => {
                let message = format!(
                    "unknown field `{other}` (a task has {})",
                    TASK_FIELDS.join(", ")
                );
                problems.push(at(*field_pos, Some(&key), Some(other), &message));
            }
        }
    }
    if !has_run {
        problems.push(at(*pos, Some(&key), Some("run"), "a task needs `run`"));
    }
    Some(task)
}

/// Reads `use`: a list of task keys (or one key).
fn read_uses(value: &Node, key: &str, uses: &mut Vec<String>, problems: &mut Vec<Problem>) {
    match value {
        Node::Seq(items, _) => {
            for item in items {
                if let Some(text) = scalar(item, key, "use", problems) {
                    uses.push(text.to_owned());
                }
            }
        }
        Node::Scalar(text, _) => uses.push(text.clone()),
        other => {
            problems.push(at(
                other.pos(),
                Some(key),
                Some("use"),
                "expected a list of task keys",
            ));
        }
    }
}

/// A cycle of `use`, as the keys around it (the first repeated at the end).
fn find_cycle(tasks: &[Task]) -> Option<Vec<String>> {
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.key.as_str(), i))
        .collect();
    // 0: not seen, 1: on the path, 2: done.
    let mut state = vec![0u8; tasks.len()];
    let mut path: Vec<usize> = Vec::new();
    fn visit(
        at: usize,
        tasks: &[Task],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        state[at] = 1;
        path.push(at);
        for used in &tasks[at].uses {
            let Some(&next) = index.get(used.as_str()) else {
                continue;
            };
            if state[next] == 1 {
                let from = path.iter().position(|&p| p == next).expect("on the path");
                let mut cycle: Vec<String> =
                    path[from..].iter().map(|&p| tasks[p].key.clone()).collect();
                cycle.push(tasks[next].key.clone());
                return Some(cycle);
            }
            if state[next] == 0 {
                if let Some(cycle) = visit(next, tasks, index, state, path) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        state[at] = 2;
        None
    }
    for start in 0..tasks.len() {
        if state[start] == 0 {
            if let Some(cycle) = visit(start, tasks, &index, &mut state, &mut path) {
                return Some(cycle);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_file_parses() {
        let (tasks, problems) = parse(
            "tasks:\n  - key: build\n    run: make\n    timeout: 10m\n  - key: test\n    use: [build]\n    run: make test\n    env:\n      TOKEN: ${{ secrets.T }}\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].timeout, Some(Duration::from_secs(600)));
        assert_eq!(tasks[1].uses, ["build"]);
        assert_eq!(tasks[1].refs().len(), 1);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_place() {
        let text = "tasks:\n  - key: a\n    run: x\n    use: [b]\n    colour: red\n  - key: b\n    run: y\n    use: [a]\n    timeout: soon\n  - key: c\n    run: ${{ nope }}\n    use: [ghost]\n  - key: a\n    run: z\n";
        let (_, problems) = parse(text);
        let rendered: Vec<String> = problems.iter().map(|p| p.render("f.yml")).collect();
        let all = rendered.join("\n");
        assert!(
            all.contains("f.yml:5:5: task `a`, field `colour`: unknown field"),
            "{all}"
        );
        assert!(
            all.contains("task `b`, field `timeout`: invalid timeout"),
            "{all}"
        );
        assert!(all.contains("task `c`, field `run`"), "{all}");
        assert!(all.contains("`ghost` names no task"), "{all}");
        assert!(all.contains("duplicate task key"), "{all}");
        assert!(all.contains("a cycle: a -> b -> a"), "{all}");
    }

    #[test]
    fn yaml_errors_and_duplicate_keys_have_a_line_and_column() {
        let (_, problems) = parse("tasks:\n  - key: a\n    run: [unclosed\n");
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].message.starts_with("not valid YAML"),
            "{problems:?}"
        );
        assert!(problems[0].pos.line >= 3, "{problems:?}");
        let (_, problems) = parse("tasks:\n  - key: a\n    run: x\n    run: y\n");
        assert!(
            problems[0].message.contains("duplicate key `run`"),
            "{problems:?}"
        );
        assert_eq!(problems[0].pos, Pos { line: 4, col: 5 });
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        for bad in ["", "0s", "-1s", "soon", "1d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
