//! The command line says what it accepts: `--db`'s help names every system under test (an
//! unknown name stays a harness failure, exit 4: tests/harness_cleanup.rs).

use std::process::Command;

#[test]
fn db_help_names_every_system_it_accepts() {
    for (command, systems) in [("test", &["faultline-node", "etcd", "toy"][..]), ("bench", &["faultline-node", "etcd"])]
    {
        let output = Command::new(env!("CARGO_BIN_EXE_faultline")).args([command, "--help"]).output().unwrap();
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        let db = help.split("--db <DB>").nth(1).unwrap_or_else(|| panic!("no --db in {command} --help:\n{help}"));
        let db = db.split("\n      --").next().unwrap();
        for system in systems {
            assert!(db.contains(system), "{command} --db does not name {system}: {db}");
        }
    }
}
