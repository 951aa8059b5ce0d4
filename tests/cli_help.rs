//! The command line says what it accepts: `--db` names every system under test, and a name it
//! does not know is refused before any cluster is built.

use std::process::Command;

fn faultline(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_faultline")).args(args).output().unwrap()
}

#[test]
fn db_help_names_every_system_it_accepts() {
    for (command, systems) in [("test", &["faultline-node", "etcd", "toy"][..]), ("bench", &["faultline-node", "etcd"])]
    {
        let output = faultline(&[command, "--help"]);
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        let db = help.split("--db <DB>").nth(1).unwrap_or_else(|| panic!("no --db in {command} --help:\n{help}"));
        let db = db.split("\n      --").next().unwrap();
        assert!(db.contains("possible values:"), "{command} --db: {db}");
        for system in systems {
            assert!(db.contains(system), "{command} --db does not name {system}: {db}");
        }
    }
}

#[test]
fn an_unknown_db_is_refused_by_the_parser() {
    let output = faultline(&["test", "--db", "cassandra", "--store", "/nonexistent-store"]);
    assert_eq!(output.status.code(), Some(2), "clap's usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value 'cassandra'") && stderr.contains("etcd"), "{stderr}");
    // bench keeps its alias: with a bad --clients after it, the parser complains of --clients only.
    let output = faultline(&["bench", "--db", "faultline", "--clients", "x"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("'--clients <CLIENTS>'") && !stderr.contains("'--db <DB>'"), "{stderr}");
    let output = faultline(&["bench", "--db", "nope", "--clients", "x"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid value 'nope' for '--db <DB>'"));
}
