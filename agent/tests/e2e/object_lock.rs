//! S3 Object Lock against moto (a real S3 implementation of versioning and
//! retention): every object a kept snapshot references is held until the
//! snapshot's end plus `days`, extended when a new snapshot references it again;
//! retention and garbage collection leave what is held; an attacker with the
//! backup host's own credentials can neither delete nor overwrite a locked
//! version, and once the bucket's owner removes what the attacker added, every
//! snapshot restores; stored-bytes verify reports a retention cut short.

use crate::common::moto::{ACCESS_KEY, Moto, SECRET_KEY};
use crate::common::s3::{files_under, same_files};
use crate::common::*;
use serde_json::Value;
use std::path::Path;

const BUCKET: &str = "locked";

/// Every version of every object under `app/`: key, version id, lock mode and
/// retain-until (Unix seconds), as the server reports them.
const VERSIONS: &str = "
out = []
for v in s3.list_object_versions(Bucket='locked', Prefix='app/').get('Versions', []):
    h = s3.head_object(Bucket='locked', Key=v['Key'], VersionId=v['VersionId'])
    until = h.get('ObjectLockRetainUntilDate')
    out.append({'key': v['Key'], 'version': v['VersionId'], 'mode': h.get('ObjectLockMode'),
                'until': until.timestamp() if until else None})
print(json.dumps(out))
";

/// The attacker: tries to delete every version by its id (one at a time, then in
/// one batch), and overwrites every key.
const ATTACK: &str = "
import botocore
vs = s3.list_object_versions(Bucket='locked', Prefix='app/')['Versions']
refused, deleted = 0, []
for v in vs:
    try:
        s3.delete_object(Bucket='locked', Key=v['Key'], VersionId=v['VersionId'])
        deleted.append(v['Key'])
    except botocore.exceptions.ClientError as e:
        if e.response['Error']['Code'] == 'AccessDenied':
            refused += 1
batch = s3.delete_objects(Bucket='locked', Delete={'Objects': [
    {'Key': v['Key'], 'VersionId': v['VersionId']} for v in vs]})
for v in vs:
    s3.put_object(Bucket='locked', Key=v['Key'], Body=b'ransom note')
print(json.dumps({'refused': refused, 'deleted': deleted,
                  'batch_deleted': len(batch.get('Deleted', [])),
                  'batch_errors': len(batch.get('Errors', []))}))
";

fn versions(moto: &Moto) -> Vec<Value> {
    let out = moto.python_ok(VERSIONS);
    serde_json::from_str::<Value>(&out)
        .expect("versions json")
        .as_array()
        .expect("array")
        .clone()
}

/// `[targets.s3]` on moto's locked bucket, governance mode for a day, with the
/// backup host's keys (the secret written into the world).
fn locked_target(moto: &Moto, world: &World) -> String {
    let secret = world.path("s3-secret");
    std::fs::write(&secret, SECRET_KEY).expect("write secret");
    format!(
        "[targets.s3]\ntype = \"s3\"\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\nallow_http = true\n\
         access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key_file = \"{}\"\n\
         object_lock = {{ mode = \"governance\", days = 1 }}\n",
        moto.endpoint(),
        secret.display()
    )
}

/// Asserts every version under `app/` is held in governance mode until at least
/// a day after `since` (Unix seconds); returns them.
fn all_held_a_day_from(moto: &Moto, since: f64) -> Vec<Value> {
    let held = versions(moto);
    for v in &held {
        assert_eq!(v["mode"], "GOVERNANCE", "{v}");
        let until = v["until"].as_f64().expect("a retain-until date");
        assert!(until >= since + 86_400.0 - 5.0, "{v}");
    }
    held
}

/// The packs whose retention was set, from moto's request log.
fn packs_held(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("\"PUT /locked/app/packs/") && l.contains("?retention"))
        .filter_map(|l| l.split("/packs/").nth(1)?.split('?').next())
        .map(str::to_string)
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for f in files_under(from) {
        let dest = to.join(&f);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from.join(&f), dest).expect("copy");
    }
}

#[test]
fn a_locked_snapshot_survives_the_backup_hosts_own_credentials_and_still_restores() {
    let moto = Moto::start(BUCKET);
    let world = World::new("");
    let data = world.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    // One file kept in both snapshots (its pack is referenced twice), one changed,
    // and one big enough to be chunked.
    std::fs::write(data.join("kept.txt"), b"the same in both\n").expect("write");
    std::fs::write(data.join("changed.txt"), b"first\n").expect("write");
    std::fs::write(data.join("big.bin"), noise(3 << 20, 5)).expect("write");
    let target = locked_target(&moto, &world);
    let job = format!(
        "retention = {{ keep_last = 1 }}\n{}",
        dir_source("files", &data, "")
    );
    world.write_config_with(&target, &["s3"], &job);
    let started = time::OffsetDateTime::now_utc().unix_timestamp() as f64;

    world.ok(&["backup", "app"]);
    let after_first = moto.log().len();
    let first = world.path("first");
    copy_tree(&data, &first);
    std::fs::write(data.join("changed.txt"), b"second\n").expect("write");
    world.ok(&["backup", "app"]);

    // The first run held its packs a few days longer than needed and wrote that
    // down: the second sets retention only on its new pack(s) and its marker.
    let log = moto.log();
    let (before, after) = log.split_at(after_first);
    let first_packs = packs_held(before);
    let second_packs = packs_held(after);
    assert!(!first_packs.is_empty() && !second_packs.is_empty(), "{log}");
    assert!(
        second_packs.iter().all(|p| !first_packs.contains(p)),
        "the second run extended packs already held long enough: {second_packs:?}"
    );

    // keep_last = 1, but the first snapshot is held for a day: the run's own
    // retention and a prune by hand both keep it, and say until when.
    let ids = world.snapshots();
    assert_eq!(ids.len(), 2, "a locked snapshot was forgotten: {ids:?}");
    let out = world.ok(&["prune", "--job", "app"]);
    assert!(
        out.contains(&format!("locked snapshot {}", ids[0]))
            && out.contains("Object Lock holds it until"),
        "{out}"
    );
    assert_eq!(world.snapshots().len(), 2);

    // Every version is held in governance mode for about a day from its snapshot;
    // verify checks each against every snapshot that references it (the kept
    // file's pack was extended to the second snapshot's date).
    let held = all_held_a_day_from(&moto, started);
    assert!(held.len() >= 5, "{held:?}");
    let out = world.ok(&[
        "verify",
        "--job",
        "app",
        "--stored-only",
        "--snapshot",
        "all",
    ]);
    assert_eq!(out.matches(": ok").count(), 2, "{out}");

    // The attacker, with the backup host's credentials: no version can be deleted,
    // one at a time or in a batch; overwriting only adds versions.
    let attack: Value = serde_json::from_str(&moto.python_ok(ATTACK)).expect("attack json");
    assert_eq!(attack["deleted"], serde_json::json!([]), "{attack}");
    assert_eq!(
        attack["refused"].as_u64(),
        Some(held.len() as u64),
        "{attack}"
    );
    assert_eq!(attack["batch_deleted"].as_u64(), Some(0), "{attack}");
    let still = versions(&moto);
    for v in &held {
        assert!(
            still.iter().any(|s| s["version"] == v["version"]),
            "version gone: {v}"
        );
    }

    // The bucket's owner removes what the attacker added (versions not held),
    // and both snapshots restore as they were.
    let originals: Vec<String> = held
        .iter()
        .map(|v| v["version"].as_str().expect("version").to_string())
        .collect();
    moto.python_ok(&format!(
        "keep = set({})\nr = s3.list_object_versions(Bucket='locked', Prefix='app/')\n\
         for v in r.get('Versions', []) + r.get('DeleteMarkers', []):\n    \
         if v['VersionId'] not in keep:\n        \
         s3.delete_object(Bucket='locked', Key=v['Key'], VersionId=v['VersionId'])\n",
        serde_json::to_string(&originals).expect("json")
    ));
    for (id, expected) in [(&ids[0], &first), (&ids[1], &data)] {
        let to = world.restore_snapshot(id);
        same_files(expected, &to.join("files"));
    }

    // A retention cut short (the bucket's owner may, in governance mode) is
    // reported by stored-bytes verify for every snapshot that needs it longer.
    let pack = held
        .iter()
        .find(|v| v["key"].as_str().is_some_and(|k| k.contains("/packs/")))
        .expect("a pack");
    moto.python_ok(&format!(
        "s3.put_object_retention(Bucket='locked', Key='{}', VersionId='{}', \
         BypassGovernanceRetention=True, Retention={{'Mode': 'GOVERNANCE', \
         'RetainUntilDate': datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)}})",
        pack["key"].as_str().expect("key"),
        pack["version"].as_str().expect("version")
    ));
    let out = world.run(&[
        "verify",
        "--job",
        "app",
        "--stored-only",
        "--snapshot",
        "all",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("before snapshot") && text.contains(pack["key"].as_str().expect("key")),
        "{text}"
    );
}

/// `coffer copy` to a locked bucket holds what it copies as a backup there would:
/// every pack and the marker, for the snapshot's days.
#[test]
fn a_snapshot_copied_to_a_locked_bucket_is_held_there() {
    let moto = Moto::start(BUCKET);
    let world = World::new("");
    let data = world.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("a.txt"), b"copied\n").expect("write");
    std::fs::write(data.join("big.bin"), noise(2 << 20, 9)).expect("write");
    let target = locked_target(&moto, &world);
    let sources = dir_source("files", &data, "");
    world.write_config_with(&target, &["local"], &sources);
    let started = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    world.ok(&["backup", "app"]);
    assert!(versions(&moto).is_empty());
    world.ok(&["copy", "--from", "local", "--to", "s3", "--job", "app"]);
    let held = all_held_a_day_from(&moto, started);
    assert!(
        held.iter().any(|v| v["key"]
            .as_str()
            .is_some_and(|k| k.ends_with("/snapshot.json")))
            && held
                .iter()
                .any(|v| v["key"].as_str().is_some_and(|k| k.contains("/packs/"))),
        "{held:?}"
    );
    world.write_config_with(&target, &["local", "s3"], &sources);
    let out = world.ok(&["verify", "--job", "app", "--target", "s3", "--stored-only"]);
    assert!(out.contains(": ok"), "{out}");
}
