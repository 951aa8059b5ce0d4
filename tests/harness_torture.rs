//! `faultline torture` end to end with the toy db: a run saved as a scenario, then a matrix of one
//! cell plus that scenario; torture.json, junit.xml and index.html describe both runs, each run has
//! its report, and nothing is left behind. Then `--fail-fast`: a matrix whose first cell is the
//! toy db's planted bug stops there, reports the rest as not run and leaves nothing behind. Needs
//! root, iptables and python3; ~30 s (three 6 s runs) and ~10 s (one 4 s run). Then shards: one
//! matrix of three 3 s cells run whole and as two shards, merged (~45 s).

mod harness_common;

use std::time::Duration;

use harness_common::*;
use serde_json::Value;

const TOY: [&str; 10] = ["--db", "toy", "--nodes", "5", "--rate", "50", "--nemesis-interval", "1.5", "--recovery", "1"];

#[test]
fn a_short_matrix_with_a_saved_scenario_is_summarised_for_people_and_ci() {
    if !environment_ok() {
        return;
    }
    let firewall_before = root_firewall();
    let store = temp_store("torture");
    let scenarios = store.join("scenarios");

    let mut args = toy_args(&store, 6);
    args.extend(["--seed", "77", "--name", "to-save", "--nemesis", "kill"].map(String::from));
    let status = wait_child(&mut faultline().args(&args).spawn().unwrap(), Duration::from_secs(60));
    assert_ne!(status.code(), Some(4), "the run to save was a harness failure");
    let saved_run = latest_run(&store);
    assert_nothing_left(&run_id_of(&saved_run));
    let status = faultline()
        .args(["torture", "--save-scenario", "saved", "--from", saved_run.to_str().unwrap(), "--scenarios"])
        .arg(&scenarios)
        .status()
        .unwrap();
    assert!(status.success());
    let scenario = std::fs::read_to_string(scenarios.join("saved.toml")).unwrap();
    assert!(scenario.contains("seed = \"77\""), "{scenario}");

    let mut torture = faultline();
    torture
        .args(["torture", "--workloads", "register", "--nemeses", "partition", "--seeds", "5"])
        .args(["--time-limit", "6", "--budget", "300", "--store", store.to_str().unwrap(), "--scenarios"])
        .arg(&scenarios)
        .arg("--")
        .args(TOY);
    let status = wait_child(&mut torture.spawn().unwrap(), Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "a correct toy db should give a valid (or vacuous) matrix");

    let torture_dirs: Vec<_> = std::fs::read_dir(store.join("torture")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(torture_dirs.len(), 1);
    let dir = &torture_dirs[0];
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("torture.json")).unwrap()).unwrap();
    let runs = summary["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["torture-register-partition-s5", "scenario-saved"]);
    let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
    for run in runs {
        assert!(["valid", "vacuous"].contains(&run["outcome"].as_str().unwrap()), "{run}");
        let run_dir = store.join(run["run"].as_str().unwrap());
        assert!(run_dir.join("index.html").is_file(), "no report in {}", run_dir.display());
        assert!(index.contains(&format!("../../{}/index.html", run["run"].as_str().unwrap())));
        assert_nothing_left(&run_id_of(&run_dir));
    }
    let replayed: Value = serde_json::from_str(
        &std::fs::read_to_string(store.join(runs[1]["run"].as_str().unwrap()).join("test.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(replayed["seed"], 77);
    assert_eq!(replayed["options"]["nemesis"], "kill");
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 2);
    assert_eq!(junit.matches("<failure ").count() + junit.matches("<error ").count(), 0);
    assert_eq!(root_firewall(), firewall_before, "the root namespace's firewall changed");
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn fail_fast_stops_the_matrix_at_the_first_invalid_run() {
    if !environment_ok() {
        return;
    }
    let firewall_before = root_firewall();
    let store = temp_store("torture-fail-fast");
    // Seeds are the outermost loop: kill-s5, pause-s5, kill-s6, pause-s6. The first kills the toy's
    // only serving node, n1 (its "leader"), every ~0.5 s, and `lose-writes` makes it come back empty.
    // Only a read of a lost key completing before a write to it can show that, so the workload is
    // cas-register (five keys at a time: every restart is five chances); with one key (register)
    // a write came first after every restart in some runs on a loaded machine.
    let mut torture = faultline();
    torture
        .args(["torture", "--fail-fast", "--workloads", "cas-register", "--nemeses", "kill;pause", "--seeds", "5,6"])
        // A budget far above what four runs need, so only --fail-fast can leave cells unrun.
        .args(["--time-limit", "4", "--budget", "600", "--store", store.to_str().unwrap(), "--scenarios"])
        .arg(store.join("no-scenarios"))
        .arg("--")
        .args(["--db", "toy", "--nodes", "5", "--rate", "50", "--nemesis-interval", "0.5", "--recovery", "1"])
        .args(["--nemesis-targets", "leader", "--bug", "lose-writes"]);
    let status = wait_child(&mut torture.spawn().unwrap(), Duration::from_secs(90));
    assert_eq!(status.code(), Some(1), "an invalid run makes the matrix exit 1");

    let torture_dirs: Vec<_> = std::fs::read_dir(store.join("torture")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(torture_dirs.len(), 1);
    let dir = &torture_dirs[0];
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("torture.json")).unwrap()).unwrap();
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "the matrix went on after the invalid run: {runs:?}");
    assert_eq!(runs[0]["name"], "torture-cas-register-kill-s5");
    assert_eq!(runs[0]["outcome"], "invalid", "{}", runs[0]);
    assert_eq!(runs[0]["exit_code"], 1);
    assert!(summary["first_invalid_s"].as_f64().is_some(), "{summary}");
    let not_run = ["torture-cas-register-pause-s5", "torture-cas-register-kill-s6", "torture-cas-register-pause-s6"];
    assert_eq!(summary["not_run"], serde_json::json!(not_run));
    for name in not_run {
        assert!(!store.join(name).exists(), "{name} was run");
    }

    let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(index.contains("<tr class=\"invalid\"><td>torture-cas-register-kill-s5</td>"), "{index}");
    assert!(index.contains(&format!("Not run (budget or --fail-fast): {}", not_run.join(", "))), "{index}");
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 1, "{junit}");
    assert_eq!(junit.matches("<failure ").count(), 1, "{junit}");
    assert!(junit.contains("name=\"torture-cas-register-kill-s5\""), "{junit}");
    assert!(junit.contains("tests=\"1\" failures=\"1\" errors=\"0\""), "{junit}");

    let run_dir = std::fs::canonicalize(store.join(runs[0]["run"].as_str().unwrap())).unwrap();
    assert!(run_dir.join("index.html").is_file(), "no report in {}", run_dir.display());
    assert_nothing_left(&run_id_of(&run_dir));
    let nodes = processes_with_argument_under(&run_dir);
    assert!(nodes.is_empty(), "node processes left: {nodes:?}");
    assert_eq!(root_firewall(), firewall_before, "the root namespace's firewall changed");
    let _ = std::fs::remove_dir_all(&store);
}

/// A matrix of three toy cells run whole, then as shards 1/2 and 2/2 into stores of their own, as
/// CI runners would; `torture merge` must list exactly the whole run's cells, in its order, link
/// every run's report, and refuse a missing shard and a shard of another matrix by name.
#[test]
fn two_shards_merged_list_exactly_the_cells_of_the_unsharded_run() {
    if !environment_ok() {
        return;
    }
    let firewall_before = root_firewall();
    let root = temp_store("torture-shards");
    let matrix = |store: &std::path::Path, shard: Option<&str>, nemeses: &str, budget: &str| {
        let mut torture = faultline();
        torture.args(["torture", "--workloads", "register", "--nemeses", nemeses, "--seeds", "5"]);
        if let Some(shard) = shard {
            torture.args(["--shard", shard]);
        }
        torture
            .args(["--time-limit", "3", "--budget", budget, "--store", store.to_str().unwrap(), "--scenarios"])
            .arg(root.join("no-scenarios"))
            .arg("--")
            .args(TOY);
        wait_child(&mut torture.spawn().unwrap(), Duration::from_secs(120))
    };
    let summary_of = |store: &std::path::Path| -> (std::path::PathBuf, Value) {
        let dirs: Vec<_> = std::fs::read_dir(store.join("torture")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        let text = std::fs::read_to_string(dirs[0].join("torture.json")).unwrap();
        (dirs[0].clone(), serde_json::from_str(&text).unwrap())
    };
    let names = |summary: &Value, list: &str| -> Vec<String> {
        summary[list].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
    };
    let nemeses = "kill;pause;partition";

    let whole_store = root.join("whole");
    assert_eq!(matrix(&whole_store, None, nemeses, "300").code(), Some(0));
    let (_, whole) = summary_of(&whole_store);
    assert_eq!(whole["format_version"], 2);
    assert_eq!(whole["shard"], Value::Null);
    assert_eq!(
        names(&whole, "runs"),
        ["torture-register-kill-s5", "torture-register-pause-s5", "torture-register-partition-s5"]
    );

    let shard_stores = [root.join("shards/shard-1"), root.join("shards/shard-2")];
    for (k, store) in shard_stores.iter().enumerate() {
        assert_eq!(matrix(store, Some(&format!("{}/2", k + 1)), nemeses, "300").code(), Some(0), "shard {}", k + 1);
    }
    let (_, shard_1) = summary_of(&shard_stores[0]);
    let (_, shard_2) = summary_of(&shard_stores[1]);
    assert_eq!(names(&shard_1, "runs"), ["torture-register-kill-s5", "torture-register-partition-s5"]);
    assert_eq!(names(&shard_2, "runs"), ["torture-register-pause-s5"]);
    assert_eq!(shard_1["shard"], serde_json::json!({"index": 1, "count": 2}));

    let merged_dir = root.join("merged");
    let output =
        faultline().args(["torture", "merge"]).args(&shard_stores).arg("--out").arg(&merged_dir).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let merged: Value =
        serde_json::from_str(&std::fs::read_to_string(merged_dir.join("torture.json")).unwrap()).unwrap();
    assert_eq!(merged["matrix"], whole["matrix"], "the shards ran another matrix than the whole run");
    assert_eq!(names(&merged, "planned"), names(&whole, "planned"));
    assert_eq!(names(&merged, "runs"), names(&whole, "runs"));
    assert_eq!(merged["not_run"], serde_json::json!([]));
    // Same seeds, but real processes: a run is vacuous when too few faults fired in time, which
    // depends on timing, so a valid cell may be vacuous in the other run. Neither may be invalid.
    for (m, w) in merged["runs"].as_array().unwrap().iter().zip(whole["runs"].as_array().unwrap()) {
        for run in [m, w] {
            assert!(["valid", "vacuous"].contains(&run["outcome"].as_str().unwrap()), "{run}");
        }
        assert_eq!(m["args"], w["args"]);
    }
    let index = std::fs::read_to_string(merged_dir.join("index.html")).unwrap();
    let links: Vec<&str> = index.split("href=\"").skip(1).map(|rest| rest.split('"').next().unwrap()).collect();
    assert_eq!(links.len(), 3, "{index}");
    for link in links {
        assert!(merged_dir.join(link).is_file(), "merged index.html links to a missing report: {link}");
        assert!(link.starts_with("../shards/shard-"), "{link}");
    }
    let junit = std::fs::read_to_string(merged_dir.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 3, "{junit}");

    // A missing shard, and a shard 2/2 of another matrix (a budget too small to run anything still
    // writes its summary, every cell listed as not run): both refused, naming the shard.
    let output = faultline()
        .args(["torture", "merge"])
        .arg(&shard_stores[0])
        .arg("--out")
        .arg(root.join("m2"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("shard 2/2 missing (given: 1/2 from "), "{stderr}");
    let other = root.join("other-shard-2");
    assert_eq!(matrix(&other, Some("2/2"), "kill;pause", "1").code(), Some(4), "nothing ran");
    let output = faultline()
        .args(["torture", "merge"])
        .arg(&shard_stores[0])
        .arg(&other)
        .arg("--out")
        .arg(root.join("m3"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains(&format!("shard 2/2 ({}) ran a different matrix", other.display())), "{stderr}");

    for store in shard_stores.iter().chain([&whole_store]) {
        let (_, summary) = summary_of(store);
        for run in summary["runs"].as_array().unwrap() {
            assert_nothing_left(&run_id_of(&store.join(run["run"].as_str().unwrap())));
        }
    }
    assert_eq!(root_firewall(), firewall_before, "the root namespace's firewall changed");
    let _ = std::fs::remove_dir_all(&root);
}
