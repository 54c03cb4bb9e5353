//! Keeps docs/CLI.md honest: every `os-tool` line in a `sh` block must parse with the
//! real command line, examples under `### NAME` must run the command NAME, and every
//! command has such a section.

use std::collections::BTreeSet;
use std::ffi::OsString;

use ostore_tools::cli::{command_names, parse, ParseExit};

const DOC: &str = include_str!("../../docs/CLI.md");

/// Splits a shell line into words (single and double quotes, backslash escapes) up to
/// the first unquoted pipe or redirection.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    w.push(q);
                }
            }
            '"' => {
                let w = cur.get_or_insert_with(String::new);
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        q => w.push(q),
                    }
                }
            }
            '\\' => cur.get_or_insert_with(String::new).extend(chars.next()),
            '|' | '<' | '>' => break,
            c if c.is_whitespace() => words.extend(cur.take()),
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(cur);
    words
}

/// `ListCollections(..)` -> `list-collections`.
fn kebab_variant(debug: &str) -> String {
    let name: String = debug.chars().take_while(|c| c.is_alphanumeric()).collect();
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.extend(c.to_lowercase());
    }
    out
}

#[test]
fn every_example_parses_and_every_command_has_one() {
    let mut heading = String::new();
    let mut in_sh = false;
    let mut documented = BTreeSet::new();
    let mut examples = 0;
    for (i, l) in DOC.lines().enumerate() {
        if let Some(h) = l.strip_prefix("### ") {
            heading = h.trim().to_string();
        }
        if let Some(info) = l.strip_prefix("```") {
            in_sh = !in_sh && info.trim() == "sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let Some(pos) = l.find("os-tool ") else {
            continue;
        };
        let words = shell_words(&l[pos..]);
        let args: Vec<OsString> = words.iter().map(OsString::from).collect();
        let cli = match parse(args) {
            Ok(c) => c,
            Err(ParseExit::Usage(e)) => panic!("CLI.md:{}: {l}\n  does not parse: {e}", i + 1),
            Err(ParseExit::Info(_)) => panic!("CLI.md:{}: prints help", i + 1),
        };
        assert!(cli.data_path.is_some(), "CLI.md:{}: no --data-path", i + 1);
        let cmd = kebab_variant(&format!("{:?}", cli.command));
        assert_eq!(
            cmd,
            heading,
            "CLI.md:{}: example under the wrong heading",
            i + 1
        );
        documented.insert(cmd);
        examples += 1;
    }
    assert!(!in_sh, "unterminated sh block");
    let all: BTreeSet<String> = command_names().into_iter().collect();
    assert_eq!(documented, all, "commands without an example in CLI.md");
    assert!(examples >= all.len());
}

#[test]
fn shell_words_handles_quotes() {
    assert_eq!(
        shell_words(r#"os-tool a 'b c' "d \"e\"" f\ g | tail"#),
        ["os-tool", "a", "b c", "d \"e\"", "f g"]
    );
}
