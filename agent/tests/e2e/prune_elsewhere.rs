//! `prune = "elsewhere"` on a target: the backup host never deletes there. Its
//! runs leave retention to the prune host and keep a failed run's leftovers,
//! `coffer prune` on it refuses and deletes nothing, and the prune host (the same
//! target with `prune = "here"`) applies the retention. On S3 the server itself
//! denies the backup host's key any delete (moto enforcing IAM policies).

use crate::common::moto::{Keys, Moto};
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

/// The backup host's least-privilege policy from docs/security.md, on the bucket
/// `nodelete`. moto checks some requests under the name of their API operation
/// where AWS checks `s3:ListBucket` (listings) or `s3:PutObject` (multipart), so
/// those names are granted too; none of them deletes.
const BACKUP_HOST_POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Resource": ["arn:aws:s3:::nodelete"],
     "Action": ["s3:ListBucket", "s3:ListObjectsV2", "s3:ListObjects"]},
    {"Effect": "Allow", "Resource": ["arn:aws:s3:::nodelete/*"],
     "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts", "s3:CreateMultipartUpload",
                "s3:UploadPart", "s3:CompleteMultipartUpload", "s3:ListParts"]}]}"#;

/// The prune host's policy from docs/security.md, with moto's listing names; moto
/// checks a batch delete (`POST ?delete`) as `s3:DeleteObjects` on the bucket,
/// where AWS checks `s3:DeleteObject` on each key.
const PRUNE_HOST_POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Resource": ["arn:aws:s3:::nodelete"],
     "Action": ["s3:ListBucket", "s3:ListObjectsV2", "s3:ListObjects", "s3:DeleteObjects"]},
    {"Effect": "Allow", "Resource": ["arn:aws:s3:::nodelete/*"],
     "Action": ["s3:GetObject", "s3:DeleteObject"]}]}"#;

/// A key that may only read: a run with it fails at its first pack.
const READ_ONLY_POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Resource": ["arn:aws:s3:::nodelete"],
     "Action": ["s3:ListBucket", "s3:ListObjectsV2", "s3:ListObjects"]},
    {"Effect": "Allow", "Resource": ["arn:aws:s3:::nodelete/*"],
     "Action": ["s3:GetObject"]}]}"#;

/// Keys under `app/` ending in `snapshot.json` (the signed markers), listed
/// with `keys`.
fn s3_markers(moto: &Moto, keys: &Keys) -> usize {
    let out = moto.python_ok_as(
        keys,
        "p = s3.get_paginator('list_objects_v2')\n\
         n = sum(1 for page in p.paginate(Bucket='nodelete', Prefix='app/') \
                 for o in page.get('Contents', []) if o['Key'].endswith('/snapshot.json'))\n\
         print(n)",
    );
    out.trim().parse().expect("a count")
}

#[test]
fn a_backup_host_whose_s3_key_may_not_delete_backs_up_and_the_prune_host_keeps_the_retention() {
    let (moto, keys) = Moto::start_with_users(
        "nodelete",
        &[
            ("backup-host", BACKUP_HOST_POLICY),
            ("prune-host", PRUNE_HOST_POLICY),
            ("reader", READ_ONLY_POLICY),
        ],
    );
    let (backup_keys, prune_keys, reader_keys) = (&keys[0], &keys[1], &keys[2]);

    // The server itself refuses: the backup host's key may write but not delete,
    // and a wrong secret is not let through.
    let probe = moto.python_as(
        backup_keys,
        "s3.put_object(Bucket='nodelete', Key='probe', Body=b'x')\n\
         s3.delete_object(Bucket='nodelete', Key='probe')",
    );
    let err = String::from_utf8_lossy(&probe.stderr);
    assert!(
        !probe.status.success() && err.contains("AccessDenied") && err.contains("DeleteObject"),
        "the backup host's key could delete: {err}"
    );
    let forged = moto.python_as(
        &Keys {
            id: backup_keys.id.clone(),
            secret: "not-the-secret".into(),
        },
        "s3.list_objects_v2(Bucket='nodelete')",
    );
    assert!(
        String::from_utf8_lossy(&forged.stderr).contains("SignatureDoesNotMatch"),
        "moto does not check signatures"
    );

    let world = World::new("");
    let data = world.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let target = |keys: &Keys, prune: &str| {
        let secret = world.path(&format!("secret-{prune}"));
        std::fs::write(&secret, &keys.secret).expect("write secret");
        format!(
            "[targets.s3]\ntype = \"s3\"\nbucket = \"nodelete\"\nendpoint = \"{}\"\n\
             allow_http = true\naccess_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\n\
             prune = \"{prune}\"\n",
            moto.endpoint(),
            keys.id,
            secret.display()
        )
    };
    let job = format!(
        "retention = {{ keep_last = 1 }}\n{}",
        dir_source("files", &data, "")
    );

    // A key that may not write: the run fails, and its report says why the
    // target is out (the pack upload was refused), not just that it is.
    world.write_config_with(&target(reader_keys, "elsewhere"), &["s3"], &job);
    std::fs::write(data.join("f"), noise(300_000, 19)).expect("write");
    let run = backup_json(&world, 1);
    let refused = run["targets"][0]["error"].as_str().unwrap_or_default();
    assert!(
        refused.contains("upload of app/packs/") && refused.contains("access denied"),
        "{run}"
    );
    assert_eq!(s3_markers(&moto, prune_keys), 0);

    // Every night on the backup host: each run succeeds cleanly (it asks for no
    // delete) and keeps every snapshot.
    world.write_config_with(&target(backup_keys, "elsewhere"), &["s3"], &job);
    for i in 0..3 {
        std::fs::write(data.join("f"), noise(300_000, 20 + i)).expect("change");
        let run = backup_json(&world, 0);
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(run["warnings"], serde_json::json!([]), "{run}");
        assert!(
            run["notes"]
                .to_string()
                .contains("left to the host that prunes it"),
            "{run}"
        );
    }
    assert_eq!(s3_markers(&moto, prune_keys), 3);
    world.ok(&["verify", "--job", "app"]);

    // Without the setting, the run's retention asks and the server refuses: the
    // snapshot still counts, the warning says what to set, nothing is deleted.
    world.write_config_with(&target(backup_keys, "here"), &["s3"], &job);
    std::fs::write(data.join("f"), noise(300_000, 23)).expect("change");
    let run = backup_json(&world, 0);
    assert_eq!(run["status"], "success", "{run}");
    let warnings = run["warnings"].to_string();
    assert!(
        warnings.contains("refused to delete (access denied)")
            && warnings.contains("prune = \\\"elsewhere\\\""),
        "{run}"
    );
    assert!(!warnings.contains(&backup_keys.secret), "{run}");
    assert_eq!(s3_markers(&moto, prune_keys), 4);

    // The prune host: same target, its own key, prune = "here".
    world.write_config_with(&target(prune_keys, "here"), &["s3"], &job);
    world.ok(&["prune", "--job", "app"]);
    assert_eq!(s3_markers(&moto, prune_keys), 1);
    let out = world.path("restored");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--to",
        out.to_str().expect("utf-8"),
    ]);
    let restored = std::fs::read(out.join("files").join("f")).expect("restored file");
    assert_eq!(restored, noise(300_000, 23));
}
