//! `prune = "elsewhere"` on a target: the backup host never deletes there. Its
//! runs leave retention to the prune host and keep a failed run's leftovers,
//! `coffer prune` on it refuses and deletes nothing, and the prune host (the same
//! target with `prune = "here"`) applies the retention.

use crate::common::*;
use crate::format2::backup_json;
use std::path::Path;

fn markers(root: &Path) -> usize {
    folders(root)
        .iter()
        .filter(|d| d.join("snapshot.json").exists())
        .count()
}

fn folders(root: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(root.join("app"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "packs"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_target_pruned_elsewhere_is_never_deleted_on_by_the_backup_host() {
    let world = World::new("");
    let data = world.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), noise(100_000, 1)).expect("write");
    let vault = world.path("vault");
    std::fs::create_dir_all(&vault).expect("mkdir vault");
    let vault_toml = |prune: &str| {
        format!(
            "[targets.vault]\ntype = \"local\"\npath = \"{}\"\nprune = \"{prune}\"\n",
            vault.display()
        )
    };
    let job = format!(
        "retention = {{ keep_last = 1 }}\n{}",
        dir_source("files", &data, "")
    );
    world.write_config_with(&vault_toml("elsewhere"), &["vault"], &job);
    for i in 0..3 {
        std::fs::write(data.join("f"), noise(100_000, 10 + i)).expect("change");
        let run = backup_json(&world, 0);
        assert!(
            run["notes"]
                .to_string()
                .contains("left to the host that prunes it"),
            "{run}"
        );
    }
    assert_eq!(
        markers(&vault),
        3,
        "retention deleted on a target pruned elsewhere"
    );

    // A failed run: its folder stays for the prune host to collect. (Format 1: a
    // format-2 run keeps a dump in packs and writes no folder before it commits.)
    let failing = format!(
        "format = 1\n{job}[[jobs.app.sources]]\nname = \"dump\"\ntype = \"command\"\ncommand = [\"sh\", \"-c\", \"head -c 300000 /dev/urandom; exit 1\"]\n"
    );
    world.write_config_with(&vault_toml("elsewhere"), &["vault"], &failing);
    world.expect(&["backup", "app"], 1);
    assert_eq!(markers(&vault), 3);
    assert_eq!(
        folders(&vault).len(),
        4,
        "the failed run's folder was deleted"
    );

    // `coffer prune` here refuses, deleting nothing.
    world.write_config_with(&vault_toml("elsewhere"), &["vault"], &job);
    let out = world.run(&["prune", "--job", "app"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("prune = \"elsewhere\""), "{err}");
    assert_eq!(markers(&vault), 3);

    // The prune host: the same target with prune = "here".
    world.write_config_with(&vault_toml("here"), &["vault"], &job);
    world.ok(&["prune", "--job", "app"]);
    assert_eq!(markers(&vault), 1);
}
