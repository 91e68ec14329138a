//! uid/gid to user/group name lookups, cached: a tree of 100,000 files has a handful
//! of owners, and getpwuid is not free.

use nix::unistd::{Gid, Group, Uid, User};
use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct NameCache {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl NameCache {
    pub fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                User::from_uid(Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }
    pub fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                Group::from_gid(Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }
}

/// Name to id lookups for restore, cached the same way.
#[derive(Debug, Default)]
pub struct IdCache {
    users: HashMap<String, Option<u32>>,
    groups: HashMap<String, Option<u32>>,
}

impl IdCache {
    pub fn uid(&mut self, name: &str) -> Option<u32> {
        if let Ok(n) = name.parse::<u32>() {
            return Some(n);
        }
        *self
            .users
            .entry(name.to_string())
            .or_insert_with(|| User::from_name(name).ok().flatten().map(|u| u.uid.as_raw()))
    }
    pub fn gid(&mut self, name: &str) -> Option<u32> {
        if let Ok(n) = name.parse::<u32>() {
            return Some(n);
        }
        *self.groups.entry(name.to_string()).or_insert_with(|| {
            Group::from_name(name)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
        })
    }
}
