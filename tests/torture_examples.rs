//! The sharding examples of docs/torture.md checked offline, since no GitHub runner or Kubernetes
//! cluster is reachable from here: the GitHub Actions workflow and the Kubernetes manifests are
//! parsed as YAML, their shard counts, paths and names must agree with each other, and the very
//! `faultline torture` command lines they contain are run with `--plan` (which runs nothing) for
//! every shard, whose plans must split the example matrix into disjoint shares covering it. Needs no
//! root; a second or two.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

const WORKFLOW: &str = ".github/workflows/torture-sharded.yml";
const K8S_SHARDS: &str = "examples/kubernetes/torture-shards.yaml";
const K8S_MERGE: &str = "examples/kubernetes/torture-merge.yaml";
const MATRIX: &str = "examples/torture/nightly-matrix.toml";

fn load(path: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn text<'a>(yaml: &'a Yaml, what: &str) -> &'a str {
    yaml.as_str().unwrap_or_else(|| panic!("{what} is not a string: {yaml:?}"))
}

/// GitHub's `${{ expr }}` without its inner spaces, so that it stays one shell word.
fn tight(text: &str) -> String {
    text.replace("${{ ", "${{").replace(" }}", "}}")
}

/// The shell command starting with `start` in `script`, its continuation lines joined, as words
/// (double quotes removed: the examples quote only to keep words whole).
fn command_words(script: &str, start: &str) -> Vec<String> {
    let script = &tight(script);
    let from = script.find(start).unwrap_or_else(|| panic!("no `{start}` in {script}"));
    let mut command = String::new();
    for line in script[from..].lines() {
        let line = line.trim();
        match line.strip_suffix('\\') {
            Some(rest) => command += rest,
            None => {
                command += line;
                break;
            }
        }
        command.push(' ');
    }
    command.split_whitespace().map(|word| word.replace('"', "")).collect()
}

/// `faultline torture --plan` with these arguments: the matrix's identity and the planned cells.
fn plan(torture_args: &[String]) -> (String, Vec<(usize, String)>) {
    let output =
        Command::new(env!("CARGO_BIN_EXE_faultline")).args(["torture", "--plan"]).args(torture_args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "--plan {torture_args:?}: {}", String::from_utf8_lossy(&output.stderr));
    let mut lines = stdout.lines();
    let header = lines.next().expect("a header line");
    let identity = header.split("matrix ").nth(1).expect("the matrix identity").to_string();
    let cells = lines
        .map(|line| {
            let (index, name) = line.split_once('\t').expect("index<TAB>name");
            (index.parse().unwrap(), name.to_string())
        })
        .collect();
    (identity, cells)
}

/// The example command's plan for every shard K/N split the whole matrix's plan exactly.
fn assert_shards_cover_the_matrix(words_for_shard: impl Fn(u32) -> Vec<String>, count: u32, whole: &[String]) {
    let (whole_identity, whole_cells) = plan(whole);
    assert!(whole_identity.ends_with(&format!("({} cells): {} cells", whole_cells.len(), whole_cells.len())));
    let mut seen = BTreeSet::new();
    for k in 1..=count {
        let (identity, cells) = plan(&words_for_shard(k));
        assert_eq!(
            identity.split(':').take(2).collect::<Vec<_>>(),
            whole_identity.split(':').take(2).collect::<Vec<_>>()
        );
        assert!(!cells.is_empty(), "shard {k}/{count} has no cell");
        for cell in cells {
            assert!(whole_cells.contains(&cell), "shard {k}/{count} plans {cell:?}, not in the matrix");
            assert!(seen.insert(cell.0), "cell {} in two shards", cell.0);
        }
    }
    assert_eq!(seen.len(), whole_cells.len(), "the shards do not cover the matrix");
}

#[test]
fn the_github_workflow_runs_every_shard_of_one_matrix_and_merges_what_they_keep() {
    let workflow = &load(WORKFLOW)[0];
    let count = workflow["env"]["SHARDS"].as_i64().expect("env.SHARDS") as u32;
    let shard_job = &workflow["jobs"]["shard"];
    let listed: Vec<i64> =
        shard_job["strategy"]["matrix"]["shard"].as_vec().unwrap().iter().filter_map(Yaml::as_i64).collect();
    assert_eq!(listed, (1..=i64::from(count)).collect::<Vec<_>>(), "matrix.shard must be 1..=SHARDS");
    assert_eq!(shard_job["strategy"]["fail-fast"].as_bool(), Some(false), "one shard's bug must not cancel the rest");
    assert_eq!(text(&shard_job["needs"], "shard.needs"), "build");

    let steps = shard_job["steps"].as_vec().unwrap();
    let script = steps.iter().find_map(|s| s["run"].as_str().filter(|r| r.contains("faultline torture"))).unwrap();
    let words = command_words(script, "sudo bin/faultline torture");
    let store_flag = words.iter().position(|w| w == "--store").unwrap();
    let store = words[store_flag + 1].clone();
    let upload =
        steps.iter().find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("actions/upload-artifact"))).unwrap();
    assert_eq!(
        tight(text(&upload["with"]["path"], "upload path")),
        store,
        "the shard uploads another directory than its store"
    );
    assert_eq!(text(&upload["if"], "upload if"), "always()", "a shard that found a bug must still keep its store");
    let artifact = text(&upload["with"]["name"], "artifact name");
    assert_eq!(artifact, "torture-shard-${{ matrix.shard }}");

    let merge = &workflow["jobs"]["merge"];
    let needs: Vec<&str> = merge["needs"].as_vec().unwrap().iter().filter_map(Yaml::as_str).collect();
    assert!(needs.contains(&"shard"), "{needs:?}");
    assert!(text(&merge["if"], "merge.if").contains("!cancelled()"), "the merge must run when shards failed");
    let merge_steps = merge["steps"].as_vec().unwrap();
    let download = merge_steps.iter().find(|s| s["with"]["pattern"].as_str().is_some()).unwrap();
    assert_eq!(text(&download["with"]["pattern"], "pattern"), "torture-shard-*");
    let shards_dir = text(&download["with"]["path"], "download path");
    let merge_script =
        merge_steps.iter().find_map(|s| s["run"].as_str().filter(|r| r.contains("torture merge"))).unwrap();
    let merge_words = command_words(merge_script, "bin/faultline torture merge");
    assert_eq!(merge_words[3], format!("{shards_dir}/*"));
    let out = &merge_words[merge_words.iter().position(|w| w == "--out").unwrap() + 1];
    let kept = merge_steps.iter().find(|s| s["with"]["name"].as_str() == Some("faultline-torture-report")).unwrap();
    assert!(
        out.starts_with(&format!("{}/", text(&kept["with"]["path"], "report path"))),
        "links need the shards beside"
    );
    assert!(shards_dir.starts_with(&format!("{}/", text(&kept["with"]["path"], "report path"))));
    let junit = merge_steps.iter().find_map(|s| s["with"]["report_paths"].as_str()).unwrap();
    assert_eq!(junit, format!("{out}/junit.xml"));

    // The shard's own command line, run with --plan for each K (paths relative to the checkout, as
    // on the runner).
    let torture_args: Vec<String> = words[3..].to_vec();
    assert!(torture_args.contains(&MATRIX.to_string()));
    let substitute = |k: u32| -> Vec<String> {
        torture_args
            .iter()
            .map(|w| w.replace("${{matrix.shard}}", &k.to_string()).replace("$SHARDS", &count.to_string()))
            .collect()
    };
    let whole: Vec<String> = {
        let mut args = substitute(1);
        let at = args.iter().position(|w| w == "--shard").unwrap();
        args.drain(at..at + 2);
        args
    };
    assert_shards_cover_the_matrix(substitute, count, &whole);
}

#[test]
fn the_kubernetes_indexed_job_gives_completion_index_k_minus_1_shard_k_and_the_merge_reads_their_stores() {
    let docs = load(K8S_SHARDS);
    let kind = |doc: &Yaml| doc["kind"].as_str().unwrap_or_default().to_string();
    let claim = docs.iter().find(|d| kind(d) == "PersistentVolumeClaim").expect("a PVC");
    let claim_name = text(&claim["metadata"]["name"], "PVC name");
    let access: Vec<&str> = claim["spec"]["accessModes"].as_vec().unwrap().iter().filter_map(Yaml::as_str).collect();
    assert_eq!(access, ["ReadWriteMany"], "every pod writes its store on the one volume");

    let job = docs.iter().find(|d| kind(d) == "Job").expect("a Job");
    let spec = &job["spec"];
    assert_eq!(text(&spec["completionMode"], "completionMode"), "Indexed");
    let completions = spec["completions"].as_i64().unwrap();
    assert_eq!(spec["parallelism"].as_i64(), Some(completions));
    let pod = &spec["template"]["spec"];
    assert_eq!(text(&pod["restartPolicy"], "restartPolicy"), "Never");
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["privileged"].as_bool(), Some(true), "runs need netns and iptables");
    let env = container["env"].as_vec().unwrap();
    let shards = env.iter().find(|e| e["name"].as_str() == Some("SHARDS")).unwrap();
    assert_eq!(text(&shards["value"], "SHARDS"), completions.to_string(), "SHARDS must equal completions");
    let script = text(&container["args"][0], "the pod's script");
    assert!(script.contains("shard=$((JOB_COMPLETION_INDEX + 1))"), "{script}");
    let words = command_words(script, "faultline torture");
    let at =
        |flag: &str| words[words.iter().position(|w| w == flag).unwrap_or_else(|| panic!("no {flag}")) + 1].clone();
    assert_eq!(at("--shard"), "$shard/$SHARDS");
    assert_eq!(at("--store"), "$store");
    assert!(script.contains("store=\"/store/torture-shard-$shard\""), "{script}");

    let mounts = container["volumeMounts"].as_vec().unwrap();
    let mount_of = |name: &str| {
        text(&mounts.iter().find(|m| m["name"].as_str() == Some(name)).unwrap()["mountPath"], "mountPath").to_string()
    };
    assert_eq!(mount_of("store"), "/store");
    let volumes = pod["volumes"].as_vec().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"].as_str() == Some(name)).unwrap().clone();
    assert_eq!(text(&volume("store")["persistentVolumeClaim"]["claimName"], "claimName"), claim_name);
    let config_map = text(&volume("matrix")["configMap"]["name"], "configMap").to_string();
    let matrix_in_pod = at("--matrix");
    assert_eq!(Path::new(&matrix_in_pod).parent().unwrap().to_str().unwrap(), mount_of("matrix"));
    // The ConfigMap is made from the repository's matrix file, as the header says.
    let header = std::fs::read_to_string(K8S_SHARDS).unwrap();
    let file_name = Path::new(&matrix_in_pod).file_name().unwrap().to_str().unwrap();
    assert!(
        header.contains(&format!("kubectl create configmap {config_map} --from-file={file_name}={MATRIX}")),
        "the manifest's header must say how to make {config_map} from {MATRIX}"
    );

    let merge_docs = load(K8S_MERGE);
    let merge = &merge_docs[0];
    assert_eq!(kind(merge), "Job");
    let merge_pod = &merge["spec"]["template"]["spec"];
    assert_eq!(text(&merge_pod["volumes"][0]["persistentVolumeClaim"]["claimName"], "claimName"), claim_name);
    assert_eq!(text(&merge_pod["containers"][0]["volumeMounts"][0]["mountPath"], "mountPath"), "/store");
    let merge_words =
        command_words(text(&merge_pod["containers"][0]["args"][0], "merge args"), "faultline torture merge");
    assert_eq!(merge_words[3], "/store/torture-shard-*");

    // The pod's command line, with the ConfigMap's file where the pod would see it, through --plan.
    let count = completions as u32;
    let substitute = |k: u32| -> Vec<String> {
        words[2..]
            .iter()
            .map(|w| match w.as_str() {
                "$shard/$SHARDS" => format!("{k}/{count}"),
                w if w == matrix_in_pod => MATRIX.to_string(),
                w => w.to_string(),
            })
            .collect()
    };
    let whole: Vec<String> = {
        let mut args = substitute(1);
        let at = args.iter().position(|w| w == "--shard").unwrap();
        args.drain(at..at + 2);
        args
    };
    assert_shards_cover_the_matrix(substitute, count, &whole);
}
