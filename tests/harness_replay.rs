//! `faultline test --replay <run-dir>`: a replay runs with the stored run's options, seed and fault
//! schedule, says that real processes are not deterministic, and leaves nothing behind. Needs root,
//! iptables and python3 (the toy db); ~20 s (two 6 s runs).

mod harness_common;

use std::time::Duration;

use harness_common::*;
use serde_json::Value;

fn test_json(run_dir: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("test.json")).unwrap()).unwrap()
}

#[test]
fn a_replay_has_the_same_seed_options_and_fault_schedule() {
    if !environment_ok() {
        return;
    }
    let firewall_before = root_firewall();
    let store = temp_store("replay");
    let mut args = toy_args(&store, 6);
    args.extend(["--seed", "4242", "--name", "replayed"].map(String::from));
    let mut child = faultline().args(&args).spawn().unwrap();
    let status = wait_child(&mut child, Duration::from_secs(60));
    assert_ne!(status.code(), Some(4), "the original run was a harness failure");
    let original = latest_run(&store);
    assert_nothing_left(&run_id_of(&original));

    // Options given next to --replay are ignored: the stored ones win.
    let mut child = faultline()
        .args(["test", "--replay", original.to_str().unwrap(), "--seed", "1", "--time-limit", "99"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let status = wait_child(&mut child, Duration::from_secs(60));
    let stderr = reader.join().unwrap();
    assert_ne!(status.code(), Some(4), "the replay was a harness failure: {stderr}");
    assert!(stderr.contains("not deterministic"), "no warning about determinism: {stderr}");
    let replay = latest_run(&store);
    assert_ne!(replay, original);
    assert_nothing_left(&run_id_of(&replay));

    let (before, after) = (test_json(&original), test_json(&replay));
    assert_eq!(after["seed"], 4242);
    assert_eq!(after["seed"], before["seed"]);
    assert_eq!(after["options"], before["options"]);
    assert!(before["planned_schedule"].as_array().is_some_and(|s| !s.is_empty()), "no fault planned");
    assert_eq!(after["planned_schedule"], before["planned_schedule"]);
    assert_eq!(after["replay_of"].as_str(), Some(original.to_str().unwrap()));
    assert_eq!(root_firewall(), firewall_before, "the root namespace's firewall changed");
    let _ = std::fs::remove_dir_all(&store);
}
