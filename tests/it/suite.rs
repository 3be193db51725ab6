//! Rules about the test suite itself, checked over its source.
//!
//! Strict mode (`BOOTSTICK_REQUIRE_ALL=1`, set by `scripts/test.sh` and so by
//! CI) promises that a green run ran every test. That holds only while every
//! skip goes through the one helper that fails in strict mode
//! (`tests/it/common::skip`, or `src/test_support.rs` for unit tests). This test
//! finds the shapes that bypassed it before: a hand-written `SKIP` line, a
//! `have_tool` check with its own early return, a private reading of the
//! strict variable.

use std::path::{Path, PathBuf};

/// Files allowed to print a skip or read the strict-mode variable.
const SKIP_HELPERS: &[&str] = &["tests/it/common/mod.rs", "src/test_support.rs"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// True when `code` holds a string literal that starts a SKIP line: `"SKIP`
/// followed by anything but a capital letter, so a field name such as
/// `"SKIPSECTORS = "` (checkisomd5's implanted field) is not one.
fn prints_skip(code: &str) -> bool {
    code.match_indices("\"SKIP").any(|(i, m)| {
        !code[i + m.len()..]
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_uppercase())
    })
}

/// Every place in `text` (the file `rel`) that skips without the helper.
fn bypasses(rel: &str, text: &str) -> Vec<String> {
    let helper = SKIP_HELPERS.contains(&rel);
    let in_common = rel.starts_with("tests/it/common/");
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let at = format!("{rel}:{}", i + 1);
        if !helper && prints_skip(code) {
            found.push(format!("{at}: prints its own SKIP line"));
        }
        if !helper && code.contains("BOOTSTICK_REQUIRE_ALL") {
            found.push(format!("{at}: reads BOOTSTICK_REQUIRE_ALL itself"));
        }
        if !in_common && code.contains("have_tool(") {
            found.push(format!(
                "{at}: checks a tool with have_tool (use require_tools)"
            ));
        }
    }
    found
}

#[test]
fn every_skip_goes_through_the_strict_mode_helper() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("tests"), &mut files);
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("fuzz/fuzz_targets"), &mut files);
    rust_files(&root.join("testkit"), &mut files);
    assert!(files.len() > 20, "found only {files:?}");
    let mut found = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel == "tests/it/suite.rs" {
            continue;
        }
        found.extend(bypasses(&rel, &std::fs::read_to_string(f).unwrap()));
    }
    assert!(
        found.is_empty(),
        "skips that strict mode cannot see:\n{}",
        found.join("\n")
    );
}

/// The rule can fail: the shapes that slipped through before are found.
#[test]
fn the_rule_finds_the_old_bypasses() {
    let old_wim = "if !common::have_tool(\"wimlib-imagex\") {\n    return Ok(());\n}";
    let old_engine = "eprintln!(\n    \"SKIP refused_direct_writes: {} does not refuse\",";
    let own_strict = "if std::env::var_os(\"BOOTSTICK_REQUIRE_ALL\").is_some() {";
    assert_eq!(bypasses("tests/it/wim.rs", old_wim).len(), 1);
    assert_eq!(bypasses("src/write/engine.rs", old_engine).len(), 1);
    assert_eq!(bypasses("tests/it/common/qemu.rs", own_strict).len(), 1);
    assert!(bypasses("tests/it/common/mod.rs", old_engine).is_empty());
    // A colon right after the word is a SKIP line too; a longer word is not.
    assert_eq!(bypasses("tests/x.rs", "eprintln!(\"SKIP: x\");").len(), 1);
    assert!(bypasses("src/trust/isomd5.rs", "strip_prefix(\"SKIPSECTORS = \")").is_empty());
}

/// Every integration test is a module of the one test binary (`tests/it`): a
/// new top-level `tests/*.rs` file would be its own binary, compiling and
/// linking `common` and every dependency again.
#[test]
fn integration_tests_are_modules_of_tests_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loose: Vec<_> = std::fs::read_dir(root.join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    assert!(
        loose.is_empty(),
        "move these into tests/it/ and add `mod NAME;` to tests/it/main.rs: {loose:?}"
    );
    let main = std::fs::read_to_string(root.join("tests/it/main.rs")).unwrap();
    for entry in std::fs::read_dir(root.join("tests/it")).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && stem != "main" {
            assert!(
                main.contains(&format!("\nmod {stem};")),
                "tests/it/{stem}.rs is not a module of tests/it/main.rs, so it never runs"
            );
        }
    }
}

/// The command modules of `src/cli`: those `cli::run` dispatches a
/// subcommand to (`Command::X(a) => module::run(a)` in src/cli/mod.rs).
fn command_modules(mod_rs: &str) -> Vec<String> {
    mod_rs
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (_, call) = l.strip_prefix("Command::")?.split_once("=>")?;
            let (module, _) = call.trim().split_once("::run(")?;
            Some(module.to_owned())
        })
        .collect()
}

/// Where `text` (the module `own`) names another command module: a
/// `super::M::` path or `M` inside a `use super::{…}` list.
fn imports_of_commands(own: &str, text: &str, commands: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        for m in commands.iter().filter(|m| m.as_str() != own) {
            let path = code.contains(&format!("super::{m}::"))
                || code.contains(&format!("use super::{m};"));
            let listed = code
                .split_once("use super::{")
                .is_some_and(|(_, l)| l.split([',', '}', ' ']).any(|n| n == m));
            if path || listed {
                found.push(format!(
                    "{own}.rs:{}: imports the command module {m}",
                    i + 1
                ));
            }
        }
    }
    found
}

/// Command modules do not import each other (issue 11): what two commands
/// share lives in a helper module (render, exit, target, probe_report, …)
/// or in the library, so a command's flow cannot quietly depend on
/// another's.
#[test]
fn cli_command_modules_do_not_import_each_other() {
    let cli = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let commands = command_modules(&std::fs::read_to_string(cli.join("mod.rs")).unwrap());
    assert!(
        commands.len() >= 10 && commands.contains(&"write".to_owned()),
        "the dispatch in src/cli/mod.rs was not understood: {commands:?}"
    );
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&cli).unwrap() {
        let path = entry.unwrap().path();
        let own = path.file_stem().unwrap().to_string_lossy().into_owned();
        if own == "mod" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        found.extend(imports_of_commands(&own, &text, &commands));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
    // The rule sees the import it was written for.
    let old = "        super::probe::before_write(&chosen, render)?";
    assert_eq!(imports_of_commands("write", old, &commands).len(), 1);
    let listed = "use super::{inspect, render};";
    assert_eq!(imports_of_commands("write", listed, &commands).len(), 1);
}
