//! Every bad input docs/systems.md promises an error for, and that the shipped system files load.

use super::*;

const GOOD: &str = r#"
name = "demo"
workloads = ["register"]

[options.reads]
default = "plain"
values = ["plain", "sync"]

[lists.servers]
each = "{{peer.address}}:7000"

[[process]]
name = "server"
command = ["demo-server", "--listen", "{{node.address}}:7000", "--peers", "{{lists.servers}}"]

[[file]]
path = "{{node.dir}}/demo.conf"
template = "id = {{node.index}}\n"

[ready]
tcp = ["{{node.address}}:7000"]

[client]
kind = "stdio"
command = ["python3", "{{system.dir}}/client.py", "--reads", "{{options.reads}}"]
"#;

fn parse_text(text: &str) -> Result<SystemFile, SysfileError> {
    parse(Path::new("demo/system.toml"), text)
}

/// Replaces `from` in GOOD (exactly once) and parses the result.
fn parse_changed(from: &str, to: &str) -> SysfileError {
    assert_eq!(GOOD.matches(from).count(), 1, "{from}");
    parse_text(&GOOD.replacen(from, to, 1)).expect_err("must be refused")
}

fn line_of_text(text: &str, needle: &str) -> usize {
    text.lines().position(|line| line.contains(needle)).expect("needle") + 1
}

#[test]
fn a_good_file_parses_and_renders_per_node() {
    let file = parse_text(GOOD).unwrap();
    let facts = Facts {
        run_id: "r1".into(),
        run_dir: "/runs/r1".into(),
        system_dir: "/systems/demo".into(),
        addresses: vec!["10.77.5.1".into(), "10.77.5.2".into()],
        options: file.resolve_options(&[("reads".into(), "sync".into())]).unwrap(),
    };
    let context = file.node_context(&facts, 2, true).unwrap();
    let command = SystemFile::render_command(&file.processes[0].command, &context).unwrap();
    assert_eq!(command, ["demo-server", "--listen", "10.77.5.2:7000", "--peers", "10.77.5.1:7000,10.77.5.2:7000"]);
    assert_eq!(SystemFile::render(&file.files[0].template, &context).unwrap(), "id = 2\n");
    let client = SystemFile::render_command(file.client.command.as_ref().unwrap(), &context).unwrap();
    assert_eq!(client[3], "sync");
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let text = GOOD.replacen("[ready]\n", "[ready]\ntcp_port = 7000\n", 1);
    let error = parse_text(&text).unwrap_err();
    assert_eq!(error.key, "tcp_port");
    assert_eq!(error.line, line_of_text(&text, "tcp_port"));
    assert_eq!(error.file, Path::new("demo/system.toml"));
    assert!(error.to_string().starts_with("demo/system.toml:"), "{error}");
}

#[test]
fn a_missing_required_key_is_named() {
    let error = parse_changed("kind = \"stdio\"\n", "");
    assert_eq!(error.key, "kind");
    assert!(error.message.contains("missing field"), "{error}");
    assert!(error.line >= line_of_text(GOOD, "[client]"), "{error}");
    let error = parse_changed("workloads = [\"register\"]\n", "");
    assert_eq!(error.key, "workloads");
}

#[test]
fn a_placeholder_that_does_not_exist_is_named_with_its_line_and_key() {
    let error = parse_changed("\"{{node.address}}:7000\", \"--peers\"", "\"{{node.addr}}:7000\", \"--peers\"");
    assert_eq!(error.key, "process[0].command[2]");
    assert_eq!(error.line, line_of_text(GOOD, "command = [\"demo-server\""));
    assert!(error.message.contains("node.addr"), "{error}");
    // node.* does not exist in a membership change (it has target.*).
    let text = format!(
        "{GOOD}\n[membership]\nadd = [\"add\", \"{{{{target.name}}}}\"]\nremove = [\"who-leads\", \"{{{{node.name}}}}\"]\n"
    );
    let error = parse_text(&text).unwrap_err();
    assert_eq!(error.key, "membership.remove[1]");
    assert_eq!(error.line, line_of_text(&text, "who-leads"));
    // An option that is not declared.
    let error = parse_changed("{{options.reads}}", "{{options.read}}");
    assert_eq!(error.key, "client.command[3]");
}

#[test]
fn a_template_that_does_not_render_is_named() {
    let error = parse_changed("template = \"id = {{node.index}}\\n\"", "template = \"id = {{node.index\"");
    assert_eq!(error.key, "file[0].template");
    assert_eq!(error.line, line_of_text(GOOD, "template = "));
    assert!(error.message.contains("never closed"), "{error}");
    let error = parse_changed("each = \"{{peer.address}}:7000\"", "each = \"{{node.address}}:7000\"");
    assert_eq!(error.key, "lists.servers.each");
}

#[test]
fn wrong_values_are_refused() {
    let error = parse_changed("workloads = [\"register\"]", "workloads = [\"regster\"]");
    assert_eq!(error.key, "workloads[0]");
    let error = parse_changed("default = \"plain\"", "default = \"fast\"");
    assert_eq!(error.key, "options.reads.default");
    let error = parse_changed("kind = \"stdio\"", "kind = \"grpc\"");
    assert_eq!(error.key, "grpc");
    let error = parse_changed("tcp = [\"{{node.address}}:7000\"]", "tcp = [\"{{node.address}}\"]");
    assert_eq!(error.key, "ready.tcp[0]");
    let error = parse_changed("tcp = [\"{{node.address}}:7000\"]", "");
    assert_eq!(error.key, "ready");
    // A stdio client has no port; a redis client needs one.
    let error = parse_changed("kind = \"stdio\"", "kind = \"stdio\"\nport = 7000");
    assert_eq!(error.key, "client.port");
    let error = parse_changed("kind = \"stdio\"", "kind = \"redis\"");
    assert_eq!(error.key, "client.port");
}

#[test]
fn options_resolve_with_defaults_and_refuse_unknown_names_and_values() {
    let file = parse_text(GOOD).unwrap();
    assert_eq!(file.resolve_options(&[]).unwrap()["reads"], "plain");
    assert!(file.resolve_options(&[("read".into(), "sync".into())]).unwrap_err().contains("no option `read`"));
    assert!(file.resolve_options(&[("reads".into(), "fast".into())]).is_err());
    assert_eq!(parse_option_pairs("a=1, b=x").unwrap(), [("a".into(), "1".into()), ("b".into(), "x".into())]);
    assert!(parse_option_pairs("a").is_err());
}

#[test]
fn the_shipped_system_files_load() {
    let systems = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systems");
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(&systems).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join(FILE_NAME).is_file() {
            let system = load(&dir).unwrap_or_else(|e| panic!("{e}"));
            loaded.push(system.file.name);
        }
    }
    loaded.sort();
    for expected in ["etcd", "toy"] {
        assert!(loaded.iter().any(|name| name == expected), "{loaded:?}");
    }
}
