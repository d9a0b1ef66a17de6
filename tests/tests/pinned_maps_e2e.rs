//! Pinned maps are checked before they are reused: one pinned with another layout under a
//! map's name stops the daemon with an error that names the map and what differs, and is
//! left as it was; a CT map of another size is replaced (`--ct-entries`); the CT maps of
//! the previous layout are carried over. A restart on a matching pin set is
//! `restart_e2e`'s.
use std::{
    fs,
    mem::size_of,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::Path,
};

use aya::maps::{HashMap, Map, MapData};
use bpfnet_tests::{require_root, topo::Topology};
use common::{
    Backend, Be16, Be32, CT_DNAT, CT_REPLY, CT_SNAT, CtKey, CtValue, CtValueV2, PublishedKey, names,
};
use rustix::{
    mount::{MountPropagationFlags, UnmountFlags, mount_change, unmount},
    thread::{UnshareFlags, unshare_unsafe},
};

/// Pin a plain hash map of `K → V` under `name` in the test's pin directory.
fn pin_hash<K: aya::Pod, V: aya::Pod>(t: &Topology, name: &str, max_entries: u32) {
    fs::create_dir_all(&t.files.pin_dir).expect("create the pin directory on bpffs");
    HashMap::<MapData, K, V>::create(max_entries, 0)
        .expect("create a hash map")
        .pin(t.files.pin_dir.join(name))
        .expect("pin the hash map");
}

/// Key size, value size and max entries of the map pinned under `name`.
fn pinned_sizes(t: &Topology, name: &str) -> (u32, u32, u32) {
    let info = MapData::from_pin(t.files.pin_dir.join(name))
        .and_then(|m| m.info())
        .unwrap_or_else(|e| panic!("map `{name}` should still be pinned: {e}"));
    (info.key_size(), info.value_size(), info.max_entries())
}

#[test]
fn a_pin_with_another_value_size_is_refused_and_left_alone() {
    if !require_root() {
        return;
    }
    let t = Topology::new("pinval");
    let key = size_of::<PublishedKey>() as u32;
    pin_hash::<PublishedKey, u32>(&t, names::PUBLISHED, 65_536);

    let (status, stderr) = t.daemon_exit(&[], &[]);
    assert!(
        !status.success(),
        "bpfnet daemon should fail on a pinned map of another layout: {status}\n{stderr}"
    );
    let path = t.files.pin_dir.join(names::PUBLISHED);
    for part in [
        format!("map `{}` pinned at `{}`", names::PUBLISHED, path.display()),
        format!("value size 4 (expected {})", size_of::<Backend>()),
        format!("remove `{}`", path.display()),
    ] {
        assert!(
            stderr.contains(&part),
            "the error should say `{part}`; stderr:\n{stderr}"
        );
    }
    assert_eq!(
        pinned_sizes(&t, names::PUBLISHED),
        (key, 4, 65_536),
        "the refused pin is left as it was"
    );
}

/// `--ct-entries` replaces a CT map of another size, but a CT pin of another type is no
/// resize: it is refused like any other.
#[test]
fn a_ct_pin_of_another_type_is_refused_not_resized() {
    if !require_root() {
        return;
    }
    let t = Topology::new("pinct");
    let (key, value) = (size_of::<CtKey>() as u32, size_of::<CtValue>() as u32);
    pin_hash::<CtKey, CtValue>(&t, names::CT, 1024);

    let (status, stderr) = t.daemon_exit(&[], &[]);
    assert!(
        !status.success(),
        "bpfnet daemon should fail on a CT pin of another type: {status}\n{stderr}"
    );
    for part in [
        format!("map `{}`", names::CT),
        "type Hash (expected LruHash)".to_owned(),
    ] {
        assert!(
            stderr.contains(&part),
            "the error should say `{part}`; stderr:\n{stderr}"
        );
    }
    assert_eq!(
        pinned_sizes(&t, names::CT),
        (key, value, 1024),
        "the refused CT pin is left as it was"
    );
}

#[test]
fn a_ct_map_of_another_size_is_replaced() {
    if !require_root() {
        return;
    }
    let t = Topology::new("pinsize");
    t.start_daemon_with(&["--ct-entries", "4096"]).kill9();
    assert_eq!(pinned_sizes(&t, names::CT).2, 4096);
    let _daemon = t.start_daemon_with(&["--ct-entries", "8192"]);
    assert_eq!(
        pinned_sizes(&t, names::CT).2,
        8192,
        "a restart with another --ct-entries replaces the CT map"
    );
}

/// A daemon taking over the CT maps of the layout before next hops were remembered
/// (`ct_v2`, `ct_new_v1`, as an older bpfnet left them) carries their flows over into
/// `ct_v3` and `ct_new_v2`, unchanged but for the empty next hop, and unpins the old
/// maps: an upgrade drops no connection.
#[test]
fn flows_of_the_older_ct_layout_are_carried_over() {
    if !require_root() {
        return;
    }
    let t = Topology::new("pmg");
    pin_hash::<CtKey, CtValueV2>(&t, names::CT_V2, 1024);
    pin_hash::<CtKey, CtValueV2>(&t, names::CT_NEW_V1, 256);
    let key = |src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16| {
        CtKey::new(
            Be32::from_bytes(src),
            Be32::from_bytes(dst),
            Be16::new(sport),
            Be16::new(dport),
            6,
        )
    };
    let value = |to: &CtKey, flags: u8| CtValueV2 {
        src_ip: to.src_ip,
        dst_ip: to.dst_ip,
        src_port: to.src_port,
        dst_port: to.dst_port,
        flags,
        tcp_seen: 0x12,
        wscale: 7,
        _pad: 0,
        seq_end: 1000,
        max_win: 65535,
        last_seen_ns: bpfnet::conntrack::monotonic_ns(),
        packets: 3,
        bytes: 180,
    };
    // A published flow (both halves, answered) and an egress flow not answered yet.
    let fwd = key([192, 0, 2, 2], 40000, [192, 0, 2, 1], 8038);
    let to = key([192, 0, 2, 2], 40000, [172, 17, 0, 4], 8038);
    let rev = to.reversed();
    let new = key([172, 17, 0, 4], 50000, [198, 51, 100, 2], 80);
    let new_to = key([192, 0, 2, 1], 50000, [198, 51, 100, 2], 80);
    let old = [
        (names::CT_V2, fwd, value(&to, CT_DNAT)),
        (
            names::CT_V2,
            rev,
            value(&fwd.reversed(), CT_DNAT | CT_REPLY),
        ),
        (names::CT_NEW_V1, new, value(&new_to, CT_SNAT)),
    ];
    for (map, k, v) in &old {
        let mut m: HashMap<MapData, CtKey, CtValueV2> = HashMap::try_from(Map::HashMap(
            MapData::from_pin(t.files.pin_dir.join(map)).expect("pinned"),
        ))
        .expect("a hash map");
        m.insert(k, v, 0).expect("insert an old entry");
    }

    let _d = t.start_daemon();
    for (map, new_map, k, v) in old.iter().map(|(m, k, v)| {
        let new_map = if *m == names::CT_V2 {
            names::CT
        } else {
            names::CT_NEW
        };
        (m, new_map, k, v)
    }) {
        let current: HashMap<MapData, CtKey, CtValue> = HashMap::try_from(Map::LruHashMap(
            MapData::from_pin(t.files.pin_dir.join(new_map)).expect("the new CT map is pinned"),
        ))
        .expect("an LRU hash map");
        assert_eq!(
            current
                .get(k, 0)
                .unwrap_or_else(|e| panic!("{k:?} from {map} in {new_map}: {e}")),
            CtValue::from(*v),
            "carried over from {map}"
        );
        assert!(
            !t.files.pin_dir.join(map).exists(),
            "{map} is unpinned once carried over"
        );
    }
}

/// The sweeper's batched read returns every entry of a map, exactly once, across many
/// batches and hash buckets.
#[test]
fn a_whole_map_is_read_in_batches() {
    if !require_root() {
        return;
    }
    let mut map = HashMap::<MapData, CtKey, u64>::create(20_000, 0).expect("create a hash map");
    let key = |i: u32| {
        CtKey::new(
            Be32::from_raw(i),
            Be32::from_raw(!i),
            Be16::new(i as u16),
            Be16::new(80),
            6,
        )
    };
    for i in 0..10_001 {
        map.insert(key(i), u64::from(i) * 3, 0).expect("insert");
    }
    let mut got = bpfnet::datapath::batch::entries(&map).expect("a batched read");
    got.sort_by_key(|(k, _)| k.src_ip);
    assert_eq!(got.len(), 10_001, "every entry, once");
    for (i, (k, v)) in got.iter().enumerate() {
        assert_eq!((*k, *v), (key(i as u32), i as u64 * 3));
    }
}

/// A pin directory another user owns, or others may write, is refused at start with an
/// error naming it (exit 2), before anything is pinned in it; the daemon's own
/// directory (the control) is served.
#[test]
fn a_pin_directory_the_daemon_does_not_own_is_refused() {
    if !require_root() {
        return;
    }
    let t = Topology::new("pinown");
    let dir = &t.files.pin_dir;
    fs::create_dir_all(dir).expect("create the pin directory on bpffs");
    std::os::unix::fs::chown(dir, Some(65534), Some(65534)).expect("chown to nobody");
    let (status, err) = t.daemon_exit(&[], &[]);
    assert_eq!(status.code(), Some(2), "exit 2: {err}");
    let named = format!("pin directory `{}`", dir.display());
    assert!(
        err.contains(&named) && err.contains("owned by uid 65534"),
        "says whose it is: {err}"
    );
    assert!(!dir.join("links").exists(), "nothing made inside it");

    std::os::unix::fs::chown(dir, Some(0), Some(0)).expect("chown back to root");
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).expect("chmod 0777");
    let (status, err) = t.daemon_exit(&[], &[]);
    assert_eq!(status.code(), Some(2), "exit 2: {err}");
    assert!(
        err.contains(&named) && err.contains("writable by others (mode 777)"),
        "says who may write it: {err}"
    );

    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    let _d = t.start_daemon_with(&[]);
    assert!(
        dir.join("links").is_dir(),
        "control: its own directory is served"
    );
}

/// Where nothing is mounted on /sys/fs/bpf, bpfnet mounts bpffs there for its owner
/// alone (0700, not the kernel's 0777). Tried in a private mount namespace of one
/// thread, where the host's bpffs is unmounted without the host seeing it.
#[test]
fn a_bpffs_bpfnet_mounts_is_its_owners_alone() {
    if !require_root() {
        return;
    }
    let pins = format!("/sys/fs/bpf/{}", bpfnet_tests::unique("bpffsmode"));
    let mode = std::thread::spawn(move || {
        let root = Path::new("/sys/fs/bpf");
        // SAFETY: NEWNS alone (not FILES): this thread enters a new mount namespace and
        // shares its file descriptors as before.
        unsafe { unshare_unsafe(UnshareFlags::NEWNS) }.expect("unshare the mount namespace");
        mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .expect("make the mounts private");
        for _ in 0..8 {
            if unmount("/sys/fs/bpf", UnmountFlags::DETACH).is_err() {
                break;
            }
        }
        let before = fs::metadata(root).map(|m| m.mode() & 0o7777);
        bpfnet::datapath::bpffs::prepare(Path::new(&pins))
            .expect("bpffs mounted and the pins made");
        let after = fs::metadata(root).expect("the mount point").mode() & 0o7777;
        (before, after)
    })
    .join()
    .expect("the private mount namespace's thread");
    assert_ne!(
        mode.0.ok(),
        Some(0o700),
        "control: the bare mount point is not 0700 already"
    );
    // The kernel adds the sticky bit to a bpffs root.
    assert_eq!(
        mode.1 & 0o777,
        0o700,
        "the bpffs bpfnet mounted: {:o}",
        mode.1
    );
}
