//! System files: a system under test described in TOML instead of Rust (docs/systems.md).
//!
//! `load` reads `system.toml` (or a folder holding one) into `SystemFile`, the one serde type of
//! the format (every table denies unknown keys), then checks it before anything runs: every
//! template parses and names only placeholders that exist where it is used, options have valid
//! defaults, the client's kind has the keys it needs. Every error names the file, the line and
//! the key (`SysfileError`). `Facts` and `SystemFile::node_context` build the values placeholders
//! stand for, so the runtime renders with the same names the check knew.
//!
//! **Invariant:** this crate starts no process, opens no socket and reads no clock; the only IO is
//! reading the system file in `load`.

pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use template::{Context, Template, TemplateError};

/// The name of the file inside a system folder.
pub const FILE_NAME: &str = "system.toml";

/// A system described in a file: the top level of `system.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemFile {
    /// Short name, shown in test.json and `faultline systems`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Workloads the system's client supports (names of `faultline workloads`).
    pub workloads: Vec<Spanned<String>>,
    #[serde(default)]
    pub install: Install,
    /// Options chosen on the command line (`--system-option NAME=VALUE`), used as
    /// `{{options.NAME}}`.
    #[serde(default)]
    pub options: BTreeMap<String, OptionSpec>,
    /// Lists over every node in the forms systems want, used as `{{lists.NAME}}`.
    #[serde(default)]
    pub lists: BTreeMap<String, ListSpec>,
    /// The processes of one node, started in this order.
    #[serde(rename = "process")]
    pub processes: Vec<ProcessSpec>,
    /// Files rendered into place before a node's processes start.
    #[serde(default, rename = "file")]
    pub files: Vec<FileSpec>,
    pub ready: ReadySpec,
    pub client: ClientSpec,
    /// Prints the leading node (a node name such as `n3`, or its address) on its first line; run
    /// with each node's `{{node.*}}` in turn until one names a node.
    pub leader: Option<CommandSpec>,
    /// Prints a node's applied index and state digest (`INDEX DIGEST`), for the convergence check.
    pub digest: Option<CommandSpec>,
    /// Membership changes, for the membership nemesis.
    pub membership: Option<MembershipSpec>,
    /// Further log files of a node, besides its processes' output.
    #[serde(default)]
    pub logs: Vec<Spanned<String>>,
}

/// What the system needs installed: each binary (a name found through PATH, or an absolute path
/// of any file, e.g. a jar) and the Debian package that provides it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    #[serde(default)]
    pub binaries: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionSpec {
    pub default: String,
    /// The values allowed; any value when absent.
    pub values: Option<Vec<String>>,
    #[serde(default)]
    pub help: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    /// Rendered once per node with `{{peer.name}}`, `{{peer.index}}`, `{{peer.address}}`.
    pub each: Spanned<String>,
    #[serde(default = "comma")]
    pub join: String,
}

fn comma() -> String {
    ",".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    pub name: String,
    /// The program and its arguments, each a template.
    pub command: Vec<Spanned<String>>,
    /// The command line for a start after the first (a restart), when it must differ.
    pub restart_command: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    /// Where the process's stdout and stderr go (default: `<run>/<node>.log` for the first
    /// process, `<run>/<node>.<process>.log` for the others).
    pub log: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum When {
    /// Only before the node's first start (a restart keeps what the system made of it).
    #[default]
    FirstBoot,
    EveryStart,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nodes {
    #[default]
    All,
    /// Only n1.
    First,
    /// Every node but n1.
    Rest,
}

impl Nodes {
    pub fn includes(self, index: usize) -> bool {
        match self {
            Nodes::All => true,
            Nodes::First => index == 1,
            Nodes::Rest => index != 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: Spanned<String>,
    pub template: Spanned<String>,
    #[serde(default)]
    pub when: When,
    #[serde(default)]
    pub nodes: Nodes,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadySpec {
    /// `address:port` templates that must accept a TCP connection.
    #[serde(default)]
    pub tcp: Vec<Spanned<String>>,
    /// A command that must exit 0.
    pub command: Option<Vec<Spanned<String>>>,
    /// How long a node may take to become ready before the run stops as a harness failure.
    #[serde(default = "ready_timeout_s")]
    pub timeout_s: f64,
}

fn ready_timeout_s() -> f64 {
    30.0
}

fn command_timeout_s() -> f64 {
    5.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientKind {
    /// faultline's etcd v3 client (JSON gateway over HTTP/1.1).
    Etcd,
    /// Redis over RESP, finding the primary through Sentinel when `sentinel_port` is set.
    Redis,
    /// Any program speaking JSON Lines on stdin/stdout, one per worker.
    Stdio,
}

impl ClientKind {
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Etcd => "etcd",
            ClientKind::Redis => "redis",
            ClientKind::Stdio => "stdio",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    pub kind: ClientKind,
    /// The nodes' client port (etcd, redis).
    pub port: Option<u16>,
    /// etcd: `linearizable` or `serializable` (a template, e.g. `{{options.reads}}`).
    pub reads: Option<Spanned<String>>,
    /// redis: the sentinels' port; clients ask them for the primary.
    pub sentinel_port: Option<u16>,
    /// redis: the name the sentinels monitor the primary by.
    pub master_name: Option<String>,
    /// stdio: the client program and its arguments (templates; `{{node.*}}` is the worker's
    /// home node).
    pub command: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    pub command: Vec<Spanned<String>>,
    #[serde(default = "command_timeout_s")]
    pub timeout_s: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipSpec {
    /// Adds `{{target.*}}` to the cluster.
    pub add: Vec<Spanned<String>>,
    /// Removes `{{target.*}}` from the cluster.
    pub remove: Vec<Spanned<String>>,
    #[serde(default = "command_timeout_s")]
    pub timeout_s: f64,
}

/// A system file that is wrong, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {key}: {message}", file.display())]
pub struct SysfileError {
    pub file: PathBuf,
    /// 1-based; 0 when the file could not be read.
    pub line: usize,
    /// The key, as a path (`process[0].command[2]`).
    pub key: String,
    pub message: String,
}

/// A loaded and checked system file.
#[derive(Debug, Clone)]
pub struct System {
    /// The folder holding the file (`{{system.dir}}`).
    pub dir: PathBuf,
    pub path: PathBuf,
    pub file: SystemFile,
}

/// The run-wide facts placeholders are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub system_dir: PathBuf,
    /// Node i's address is `addresses[i - 1]`.
    pub addresses: Vec<String>,
    /// Every option's value (defaults filled in).
    pub options: BTreeMap<String, String>,
}

/// Where a template sits, for the context it is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Run-wide and one node's `node.*`.
    Node,
    /// A list's element: run-wide (without lists) and `peer.*`.
    ListElement,
    /// Run-wide and the `target.*` of a membership change.
    Target,
}

/// Reads and checks a system file; `path` is the file or a folder holding `system.toml`.
pub fn load(path: &Path) -> Result<System, SysfileError> {
    let file_path = if path.is_dir() { path.join(FILE_NAME) } else { path.to_path_buf() };
    let text = std::fs::read_to_string(&file_path).map_err(|e| SysfileError {
        file: file_path.clone(),
        line: 0,
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    let file = parse(&file_path, &text)?;
    let dir = file_path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = dir.canonicalize().unwrap_or(dir);
    Ok(System { dir, path: file_path, file })
}

/// Parses and checks a system file's text; `file` only names it in errors.
pub fn parse(file: &Path, text: &str) -> Result<SystemFile, SysfileError> {
    let parsed: SystemFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        SysfileError {
            file: file.to_path_buf(),
            line: line_of(text, span.start),
            key: key_of_toml_error(e.message(), &text[span.clone()]),
            message: e.message().trim().to_string(),
        }
    })?;
    Checker { file, text }.check(&parsed)?;
    Ok(parsed)
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn key_of_toml_error(message: &str, spanned: &str) -> String {
    for prefix in ["missing field `", "unknown field `", "unknown variant `"] {
        if let Some(start) = message.find(prefix) {
            let rest = &message[start + prefix.len()..];
            if let Some(end) = rest.find('`') {
                return rest[..end].to_string();
            }
        }
    }
    spanned.lines().next().unwrap_or("").trim().chars().take(60).collect()
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn error(&self, offset: usize, key: &str, message: impl Into<String>) -> SysfileError {
        SysfileError {
            file: self.file.to_path_buf(),
            line: line_of(self.text, offset),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// The line of a key that has no span of its own: the first line that names it.
    fn key_offset(&self, needle: &str) -> usize {
        self.text.find(needle).unwrap_or(0)
    }

    fn check(&self, file: &SystemFile) -> Result<(), SysfileError> {
        let sample = sample_context(file);
        let template = |spanned: &Spanned<String>, key: &str, scope: Scope| -> Result<(), SysfileError> {
            let context = &sample[&scope];
            render_spanned(spanned, context)
                .map(|_| ())
                .map_err(|e| self.error(spanned.span().start, key, e.to_string()))
        };
        let command = |parts: &[Spanned<String>], key: &str, scope: Scope| -> Result<(), SysfileError> {
            if parts.is_empty() {
                return Err(self.error(self.key_offset(key.rsplit('.').next().unwrap_or(key)), key, "empty command"));
            }
            for (i, part) in parts.iter().enumerate() {
                template(part, &format!("{key}[{i}]"), scope)?;
            }
            Ok(())
        };

        for (i, workload) in file.workloads.iter().enumerate() {
            if !KNOWN_WORKLOADS.contains(&workload.get_ref().as_str()) {
                return Err(self.error(
                    workload.span().start,
                    &format!("workloads[{i}]"),
                    format!("unknown workload `{}`; known: {}", workload.get_ref(), KNOWN_WORKLOADS.join(", ")),
                ));
            }
        }
        for (name, option) in &file.options {
            if let Some(values) = &option.values {
                if !values.contains(&option.default) {
                    return Err(self.error(
                        self.key_offset(&format!("[options.{name}]")),
                        &format!("options.{name}.default"),
                        format!("default `{}` is not one of {values:?}", option.default),
                    ));
                }
            }
        }
        for (name, list) in &file.lists {
            template(&list.each, &format!("lists.{name}.each"), Scope::ListElement)?;
        }
        if file.processes.is_empty() {
            return Err(self.error(0, "process", "a node needs at least one [[process]]"));
        }
        for (i, process) in file.processes.iter().enumerate() {
            command(&process.command, &format!("process[{i}].command"), Scope::Node)?;
            if let Some(restart) = &process.restart_command {
                command(restart, &format!("process[{i}].restart_command"), Scope::Node)?;
            }
            for (name, value) in &process.env {
                template(value, &format!("process[{i}].env.{name}"), Scope::Node)?;
            }
            if let Some(log) = &process.log {
                template(log, &format!("process[{i}].log"), Scope::Node)?;
            }
        }
        for (i, spec) in file.files.iter().enumerate() {
            template(&spec.path, &format!("file[{i}].path"), Scope::Node)?;
            template(&spec.template, &format!("file[{i}].template"), Scope::Node)?;
        }
        if file.ready.tcp.is_empty() && file.ready.command.is_none() {
            return Err(self.error(
                self.key_offset("[ready]"),
                "ready",
                "say when a node is ready: `tcp` or `command`",
            ));
        }
        if !(file.ready.timeout_s > 0.0 && file.ready.timeout_s <= 600.0) {
            return Err(self.error(self.key_offset("timeout_s"), "ready.timeout_s", "must be in (0, 600] seconds"));
        }
        for (i, tcp) in file.ready.tcp.iter().enumerate() {
            let key = format!("ready.tcp[{i}]");
            let rendered = render_spanned(tcp, &sample[&Scope::Node])
                .map_err(|e| self.error(tcp.span().start, &key, e.to_string()))?;
            if rendered.parse::<std::net::SocketAddr>().is_err() {
                return Err(self.error(tcp.span().start, &key, format!("`{rendered}` is not ADDRESS:PORT")));
            }
        }
        if let Some(ready) = &file.ready.command {
            command(ready, "ready.command", Scope::Node)?;
        }
        if let Some(leader) = &file.leader {
            command(&leader.command, "leader.command", Scope::Node)?;
        }
        if let Some(digest) = &file.digest {
            command(&digest.command, "digest.command", Scope::Node)?;
        }
        if let Some(membership) = &file.membership {
            command(&membership.add, "membership.add", Scope::Target)?;
            command(&membership.remove, "membership.remove", Scope::Target)?;
        }
        for (i, log) in file.logs.iter().enumerate() {
            template(log, &format!("logs[{i}]"), Scope::Node)?;
        }
        self.check_client(&file.client, &sample[&Scope::Node])
    }

    fn check_client(&self, client: &ClientSpec, context: &Context) -> Result<(), SysfileError> {
        let at = self.key_offset("[client]");
        let forbid = |present: bool, key: &str| -> Result<(), SysfileError> {
            if present {
                return Err(self.error(
                    at,
                    &format!("client.{key}"),
                    format!("not a key of a `{}` client", client.kind.name()),
                ));
            }
            Ok(())
        };
        let require = |present: bool, key: &str| -> Result<(), SysfileError> {
            if !present {
                return Err(self.error(
                    at,
                    &format!("client.{key}"),
                    format!("a `{}` client needs it", client.kind.name()),
                ));
            }
            Ok(())
        };
        match client.kind {
            ClientKind::Etcd => {
                require(client.port.is_some(), "port")?;
                forbid(client.command.is_some() || !client.env.is_empty(), "command")?;
                forbid(client.sentinel_port.is_some() || client.master_name.is_some(), "sentinel_port")?;
                if let Some(reads) = &client.reads {
                    let rendered = render_spanned(reads, context)
                        .map_err(|e| self.error(reads.span().start, "client.reads", e.to_string()))?;
                    // Options may make it something else at run time; the runtime refuses that.
                    let _ = rendered;
                }
            }
            ClientKind::Redis => {
                require(client.port.is_some(), "port")?;
                forbid(client.command.is_some() || !client.env.is_empty(), "command")?;
                forbid(client.reads.is_some(), "reads")?;
                if client.sentinel_port.is_some() != client.master_name.is_some() {
                    return Err(self.error(
                        at,
                        "client.master_name",
                        "sentinel_port and master_name go together (the sentinels know the primary by name)",
                    ));
                }
            }
            ClientKind::Stdio => {
                require(client.command.is_some(), "command")?;
                forbid(client.port.is_some(), "port")?;
                forbid(client.reads.is_some(), "reads")?;
                forbid(client.sentinel_port.is_some() || client.master_name.is_some(), "sentinel_port")?;
                let parts = client.command.as_ref().expect("required above");
                if parts.is_empty() {
                    return Err(self.error(at, "client.command", "empty command"));
                }
                for (i, part) in parts.iter().enumerate() {
                    render_spanned(part, context)
                        .map_err(|e| self.error(part.span().start, &format!("client.command[{i}]"), e.to_string()))?;
                }
                for (name, value) in &client.env {
                    render_spanned(value, context)
                        .map_err(|e| self.error(value.span().start, &format!("client.env.{name}"), e.to_string()))?;
                }
            }
        }
        Ok(())
    }
}

/// The workloads a system file may name (`faultline workloads`).
pub const KNOWN_WORKLOADS: &[&str] = &["register", "cas-register", "append", "set"];

fn render_spanned(spanned: &Spanned<String>, context: &Context) -> Result<String, TemplateError> {
    template::render(spanned.get_ref(), context)
}

/// A context for each scope with every name that exists there, for checking templates.
fn sample_context(file: &SystemFile) -> BTreeMap<Scope, Context> {
    let facts = Facts {
        run_id: "sample".into(),
        run_dir: "/run-dir".into(),
        system_dir: "/system-dir".into(),
        addresses: vec!["10.77.0.1".into(), "10.77.0.2".into(), "10.77.0.3".into()],
        options: file.options.iter().map(|(name, o)| (name.clone(), o.default.clone())).collect(),
    };
    let mut map = BTreeMap::new();
    map.insert(Scope::ListElement, file.peer_context(&facts, 1));
    // Lists that fail to render here are reported by their own check; the others still need a value.
    let run = file.run_context(&facts).unwrap_or_else(|_| base_context(&facts));
    map.insert(Scope::Node, file.node_context_from(&run, &facts, 1, true));
    map.insert(Scope::Target, target_context(run, &facts, 2));
    map
}

impl PartialOrd for Scope {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scope {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

fn base_context(facts: &Facts) -> Context {
    let mut context = Context::default();
    context.set("run.id", facts.run_id.clone());
    context.set("run.dir", facts.run_dir.display().to_string());
    context.set("system.dir", facts.system_dir.display().to_string());
    context.set("nodes.count", facts.addresses.len().to_string());
    context.set("nodes.addresses", facts.addresses.join(","));
    context.set("nodes.majority", (facts.addresses.len() / 2 + 1).to_string());
    context.set("nodes.first.name", "n1");
    context.set("nodes.first.address", facts.addresses.first().cloned().unwrap_or_default());
    for (name, value) in &facts.options {
        context.set(format!("options.{name}"), value.clone());
    }
    context
}

fn target_context(mut context: Context, facts: &Facts, index: usize) -> Context {
    context.set("target.name", format!("n{index}"));
    context.set("target.index", index.to_string());
    context.set("target.address", facts.addresses.get(index - 1).cloned().unwrap_or_default());
    context
}

impl SystemFile {
    fn peer_context(&self, facts: &Facts, index: usize) -> Context {
        let mut context = base_context(facts);
        context.set("peer.name", format!("n{index}"));
        context.set("peer.index", index.to_string());
        context.set("peer.address", facts.addresses.get(index - 1).cloned().unwrap_or_default());
        context
    }

    /// The run-wide placeholders, lists included.
    pub fn run_context(&self, facts: &Facts) -> Result<Context, TemplateError> {
        let mut context = base_context(facts);
        for (name, list) in &self.lists {
            let template = Template::parse(list.each.get_ref())?;
            let mut parts = Vec::new();
            for index in 1..=facts.addresses.len() {
                parts.push(template.render(&self.peer_context(facts, index))?);
            }
            context.set(format!("lists.{name}"), parts.join(&list.join));
        }
        Ok(context)
    }

    /// The placeholders of one node: run-wide ones and `node.*`.
    pub fn node_context(&self, facts: &Facts, index: usize, first_boot: bool) -> Result<Context, TemplateError> {
        Ok(self.node_context_from(&self.run_context(facts)?, facts, index, first_boot))
    }

    fn node_context_from(&self, run: &Context, facts: &Facts, index: usize, first_boot: bool) -> Context {
        let mut context = run.clone();
        let node_dir = facts.run_dir.join(format!("n{index}"));
        context.set("node.name", format!("n{index}"));
        context.set("node.index", index.to_string());
        context.set("node.address", facts.addresses.get(index - 1).cloned().unwrap_or_default());
        context.set("node.dir", node_dir.display().to_string());
        context.set("node.data_dir", node_dir.join("data").display().to_string());
        context.set("node.first_boot", first_boot.to_string());
        context
    }

    /// The placeholders of a membership change aimed at node `index`.
    pub fn target_context(&self, facts: &Facts, index: usize) -> Result<Context, TemplateError> {
        Ok(target_context(self.run_context(facts)?, facts, index))
    }

    /// Every option's value: the defaults, overridden by `given` (NAME=VALUE pairs). Unknown
    /// names and values outside an option's `values` are refused.
    pub fn resolve_options(&self, given: &[(String, String)]) -> Result<BTreeMap<String, String>, String> {
        let mut values: BTreeMap<String, String> =
            self.options.iter().map(|(name, o)| (name.clone(), o.default.clone())).collect();
        for (name, value) in given {
            let Some(spec) = self.options.get(name) else {
                let known: Vec<&str> = self.options.keys().map(String::as_str).collect();
                return Err(format!("system `{}` has no option `{name}`; known: {}", self.name, known.join(", ")));
            };
            if let Some(allowed) = &spec.values {
                if !allowed.contains(value) {
                    return Err(format!(
                        "option `{name}` of system `{}` is one of {allowed:?}, not `{value}`",
                        self.name
                    ));
                }
            }
            values.insert(name.clone(), value.clone());
        }
        Ok(values)
    }

    /// Renders a command line (a list of templates).
    pub fn render_command(parts: &[Spanned<String>], context: &Context) -> Result<Vec<String>, TemplateError> {
        parts.iter().map(|part| render_spanned(part, context)).collect()
    }

    /// Renders one template value.
    pub fn render(value: &Spanned<String>, context: &Context) -> Result<String, TemplateError> {
        render_spanned(value, context)
    }

    pub fn supports(&self, workload: &str) -> bool {
        self.workloads.iter().any(|w| w.get_ref() == workload)
    }
}

/// Parses `NAME=VALUE,NAME=VALUE` (the `--system-options` flag).
pub fn parse_option_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.split_once('=')
                .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
                .ok_or_else(|| format!("`{part}` is not NAME=VALUE"))
        })
        .collect()
}

#[cfg(test)]
mod tests;
