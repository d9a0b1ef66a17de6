//! Whole-map reads in batches (`BPF_MAP_LOOKUP_BATCH`): one system call per few thousand
//! entries instead of two per entry (next key, then lookup), so the sweeper reads a CT
//! table of a million flows in a fraction of the time. aya has no batch API; this is
//! the one raw `bpf(2)` call of the loader.
use std::{
    io,
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr,
};

use aya::{
    Pod,
    maps::{HashMap, IterableMap as _, MapData},
};

/// `BPF_MAP_LOOKUP_BATCH` (uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked for per call. (A hash bucket holding more than this would fail with
/// ENOSPC; buckets hold a handful.)
const CHUNK: usize = 4096;

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of hash map `map`, read in batches. Entries added or removed while it
/// reads may or may not be seen, as with one-by-one iteration.
pub fn entries<K: Pod, V: Pod>(map: &HashMap<MapData, K, V>) -> io::Result<Vec<(K, V)>> {
    let fd = map.map().fd().as_fd().as_raw_fd();
    let (ks, vs) = (size_of::<K>(), size_of::<V>());
    let mut keys = vec![0u8; CHUNK * ks];
    let mut values = vec![0u8; CHUNK * vs];
    // The position to resume from, opaque (a bucket index for hash maps).
    let mut token = [0u8; 8];
    let mut next = [0u8; 8];
    let mut out = Vec::new();
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token.as_ptr() as u64 },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: bpf(2) with a batch attribute whose buffers hold `count` keys and
        // values of the map's sizes and whose tokens are 8 bytes; it writes only there.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                ptr::from_mut(&mut attr),
                size_of::<BatchAttr>() as u32,
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        for i in 0..(attr.count as usize).min(CHUNK) {
            // SAFETY: the kernel filled `count` keys and values of these sizes; Pod
            // types take any bytes, read unaligned from the byte buffers.
            unsafe {
                out.push((
                    ptr::read_unaligned(keys.as_ptr().add(i * ks).cast::<K>()),
                    ptr::read_unaligned(values.as_ptr().add(i * vs).cast::<V>()),
                ));
            }
        }
        match err {
            None => {
                token = next;
                first = false;
            }
            // The end of the map (the last chunk came with it).
            Some(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => {
                return Ok(out);
            }
            Some(e) => return Err(e),
        }
    }
}

/// `entries`, or entry by entry where the kernel refuses batches (entries that fail to
/// read are skipped, as a walk that meets a concurrent removal skips them).
pub fn entries_or_each<K: Pod, V: Pod>(map: &HashMap<MapData, K, V>) -> Vec<(K, V)> {
    entries(map).unwrap_or_else(|e| {
        tracing::debug!(error = %e, "batch lookup refused; reading entry by entry");
        map.iter().filter_map(Result::ok).collect()
    })
}
