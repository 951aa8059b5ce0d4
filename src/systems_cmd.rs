//! `faultline systems`: the system folders faultline knows (under `systems/`, see
//! `systems::file::system_search_dirs`), each with its workloads, client, options and whether the
//! Debian packages it needs are installed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::exit::Exit;
use crate::systems::file::{missing_binaries, system_search_dirs};

#[derive(clap::Args, Debug, Clone)]
pub struct SystemsArgs {
    /// Look in this folder instead of the usual places.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn run(args: SystemsArgs) -> Exit {
    let dirs = match args.dir {
        Some(dir) => vec![dir],
        None => system_search_dirs(),
    };
    // The first folder that holds a system of a name wins, as for `--system NAME`.
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in &dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if path.join(faultline_sysfile::FILE_NAME).is_file() {
                let name = entry.file_name().to_string_lossy().into_owned();
                found.entry(name).or_insert(path);
            }
        }
    }
    if found.is_empty() {
        eprintln!("faultline systems: no system folder found in {dirs:?}");
        return Exit::BadInput;
    }
    let mut broken = false;
    for (name, path) in &found {
        match faultline_sysfile::load(path) {
            Ok(system) => {
                let file = &system.file;
                let missing = missing_binaries(file);
                let installed = if missing.is_empty() {
                    "installed".to_string()
                } else {
                    let packages: Vec<&str> = missing.iter().map(|(_, p)| p.as_str()).collect();
                    format!("NOT installed: apt-get install -y {}", packages.join(" "))
                };
                let workloads: Vec<&str> = file.workloads.iter().map(|w| w.get_ref().as_str()).collect();
                println!("{name}  ({})", path.display());
                if !file.description.is_empty() {
                    println!("    {}", file.description);
                }
                println!(
                    "    workloads: {}; client: {}; packages: {installed}",
                    workloads.join(", "),
                    file.client.kind.name()
                );
                for (option, spec) in &file.options {
                    let values = spec.values.as_ref().map(|v| format!(" ({})", v.join("|"))).unwrap_or_default();
                    println!("    option {option}={}{values}  {}", spec.default, spec.help);
                }
            }
            Err(e) => {
                broken = true;
                println!("{name}  ({}): BROKEN: {e}", path.display());
            }
        }
    }
    if broken {
        Exit::BadInput
    } else {
        Exit::Valid
    }
}
