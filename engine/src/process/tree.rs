//! The processes a start led to: its process group and its descendants, found through
//! `/proc` by parent links and by the marker each start gets, and stopped in stages.

// Without /proc (macOS), only process groups are stopped: the /proc helpers go unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::time::Duration;

use rustix::process::{Pid, Signal};

use super::{Grace, MARKER, Started};

/// Makes medley a child subreaper (Linux): the orphans of what it starts become its children
/// instead of init's, so none leaves medley's sight.
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if rustix::process::set_child_subreaper(Some(rustix::process::getpid())).is_ok() {
        SUBREAPER.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Whether medley is a child subreaper: then a descendant whose parent is gone is medley's
/// child, and only medley's children need their markers read.
static SUBREAPER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Proc {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    zombie: bool,
    start: u64,
}

/// A small file of `/proc` whole. Its size reads as 0, so `read_to_string` would look at its
/// metadata and then read it 32 bytes at a time; one read into a page-sized buffer does.
fn read_proc(path: impl AsRef<std::path::Path>) -> Option<String> {
    use std::io::Read as _;
    let mut buf = Vec::with_capacity(4096);
    fs_err::File::open(path.as_ref())
        .ok()?
        .read_to_end(&mut buf)
        .ok()?;
    String::from_utf8(buf).ok()
}

fn proc_stat(pid: i32) -> Option<Proc> {
    let stat = read_proc(format!("/proc/{pid}/stat"))?;
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
    // stime cutime cstime priority nice threads itrealvalue starttime ...; comm may hold
    // spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(Proc {
        pid,
        zombie: *fields.first()? == "Z",
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The start time of a process, when it can be read.
pub(super) fn start_of(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|p| p.start)
}

fn all_procs() -> Vec<Proc> {
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// The descendants of `leaders` (processes medley started) and medley's orphans, each read
/// once: a step's tree without reading every process of the machine. `None` where the kernel
/// keeps no `children` files.
///
/// A child is listed in the `children` file of the thread that started it; the only children
/// medley did not start itself are orphans it adopted as a child subreaper, and Linux (since
/// 3.19, `find_alive_thread`) hands those to the first live thread of the process, its main
/// thread. So the main thread's file and the leaders are enough: the files of every other
/// thread (a tokio runtime has many) need not be read.
fn medleys_descendants(leaders: &[(i32, Option<u64>)]) -> Option<Vec<Proc>> {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let mut seen = std::collections::HashSet::new();
    let mut found = Vec::new();
    // A process that ends before its children are read hands them to medley: then medley's
    // own are read again, until a pass reads every process it meets.
    loop {
        let mut stack: Vec<i32> = thread_children(me, me)?
            .into_iter()
            .chain(leaders.iter().map(|(pid, _)| *pid))
            .filter(|pid| !seen.contains(pid))
            .collect();
        let mut lost = false;
        while let Some(pid) = stack.pop() {
            if !seen.insert(pid) {
                continue;
            }
            match (proc_stat(pid), children_of(pid)) {
                (Some(p), Some(children)) => {
                    found.push(p);
                    stack.extend(children);
                }
                (p, _) => {
                    found.extend(p);
                    lost = true;
                }
            }
        }
        if !lost {
            return Some(found);
        }
    }
}

/// The children that thread `tid` of process `pid` started (or adopted).
fn thread_children(pid: i32, tid: i32) -> Option<Vec<i32>> {
    let text = read_proc(format!("/proc/{pid}/task/{tid}/children"))?;
    Some(
        text.split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
            .collect(),
    )
}

/// The children of every thread of process `pid`.
fn children_of(pid: i32) -> Option<Vec<i32>> {
    let tasks = fs_err::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut children = Vec::new();
    for task in tasks.flatten() {
        let text = read_proc(task.path().join("children"))?;
        children.extend(
            text.split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok()),
        );
    }
    Some(children)
}

/// The marker in a process's environment, when it has one.
fn marker_of(pid: i32) -> Option<String> {
    let environ = fs_err::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{MARKER}=");
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// Everything some started processes led to: their process groups, their descendants (found
/// by parent links, and by their marker once a parent is gone), each known by pid and start
/// time.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    leaders: Vec<(i32, Option<u64>)>,
    markers: std::collections::HashSet<String>,
    /// Every member seen so far, by pid, with its start time.
    known: std::collections::HashMap<i32, u64>,
    /// Read the marker of every process, not only of medley's own children (for what a dead
    /// medley left: its orphans went to another parent).
    pub(super) scan_all: bool,
}

impl Tree {
    pub(crate) fn new(started: &[Started]) -> Tree {
        Tree {
            leaders: started
                .iter()
                .filter_map(|s| Some((s.pid?, s.start)))
                .collect(),
            markers: started.iter().map(|s| s.marker.clone()).collect(),
            known: std::collections::HashMap::new(),
            scan_all: !SUBREAPER.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// The live members now (zombies do not count). With `environ`, every process's marker is
    /// read too (slower: done once a stage).
    pub(super) fn members(&mut self, environ: bool) -> Vec<Proc> {
        #[cfg(not(target_os = "linux"))]
        {
            // Without /proc: the groups that still have a process.
            let _ = environ;
            self.leaders
                .iter()
                .filter(|(pid, _)| {
                    Pid::from_raw(*pid)
                        .is_some_and(|p| rustix::process::test_kill_process_group(p).is_ok())
                })
                .map(|(pid, _)| Proc {
                    pid: *pid,
                    ppid: 0,
                    pgrp: *pid,
                    zombie: false,
                    start: 0,
                })
                .collect()
        }
        #[cfg(target_os = "linux")]
        {
            // As a subreaper, medley is an ancestor of everything its steps started: its own
            // descendants are all there is to look at.
            let procs = match self.scan_all {
                true => all_procs(),
                false => medleys_descendants(&self.leaders).unwrap_or_else(all_procs),
            };
            // A group is ours while its leader is the process started (same start time), or
            // gone: Linux never reuses a pid that is still some group's id.
            let groups: Vec<i32> = self
                .leaders
                .iter()
                .filter(|(pid, start)| {
                    procs
                        .iter()
                        .find(|p| p.pid == *pid)
                        .is_none_or(|p| *start == Some(p.start))
                })
                .map(|(pid, _)| *pid)
                .collect();
            let me = rustix::process::getpid().as_raw_nonzero().get();
            let mut ours: std::collections::HashSet<i32> = std::collections::HashSet::new();
            for p in &procs {
                let known = self.known.get(&p.pid) == Some(&p.start);
                let leader = self
                    .leaders
                    .iter()
                    .any(|(pid, start)| *pid == p.pid && *start == Some(p.start));
                if known
                    || leader
                    || groups.contains(&p.pgrp)
                    || (environ
                        && !self.markers.is_empty()
                        && (self.scan_all || p.ppid == me)
                        && marker_of(p.pid).is_some_and(|m| self.markers.contains(&m)))
                {
                    ours.insert(p.pid);
                }
            }
            // Descendants of members are members.
            let mut grew = true;
            while grew {
                grew = false;
                for p in &procs {
                    if !ours.contains(&p.pid) && ours.contains(&p.ppid) {
                        ours.insert(p.pid);
                        grew = true;
                    }
                }
            }
            let members: Vec<Proc> = procs
                .into_iter()
                .filter(|p| ours.contains(&p.pid))
                .collect();
            for p in &members {
                self.known.insert(p.pid, p.start);
            }
            members.into_iter().filter(|p| !p.zombie).collect()
        }
    }

    /// Sends `signal` to every live member (each checked against its start time first) and to
    /// the groups that are still ours.
    pub(super) fn signal(&mut self, members: &[Proc], signal: Signal) {
        let mut groups: Vec<i32> = Vec::new();
        #[cfg(not(target_os = "linux"))]
        groups.extend(members.iter().map(|p| p.pgrp));
        #[cfg(target_os = "linux")]
        for p in members {
            if start_of(p.pid) != Some(p.start) {
                continue;
            }
            if let Some(pid) = Pid::from_raw(p.pid) {
                let _ = rustix::process::kill_process(pid, signal);
            }
            if !groups.contains(&p.pgrp) && self.leaders.iter().any(|(l, _)| *l == p.pgrp) {
                groups.push(p.pgrp);
            }
        }
        for group in groups {
            if let Some(pgid) = Pid::from_raw(group) {
                let _ = rustix::process::kill_process_group(pgid, signal);
            }
        }
    }

    /// Learns the current members (by group and parent links), so that they are known by pid
    /// and start time once their parents are gone.
    pub(super) fn track(&mut self) {
        #[cfg(target_os = "linux")]
        let _ = self.members(false);
    }

    /// Whether nothing of the tree is left: no member by parent or group, and (checked only
    /// then) none by marker either.
    pub(super) fn gone(&mut self) -> bool {
        self.members(false).is_empty() && self.members(true).is_empty()
    }

    /// Reaps the members that became medley's children (it is a subreaper) and ended, so
    /// they do not stay zombies; `except` is the direct child, which its owner reaps.
    pub(super) fn reap(&self, except: Option<i32>) {
        #[cfg(target_os = "linux")]
        {
            let me = rustix::process::getpid().as_raw_nonzero().get();
            for (&pid, &start) in &self.known {
                if Some(pid) == except {
                    continue;
                }
                let Some(p) = proc_stat(pid) else { continue };
                if p.zombie
                    && p.ppid == me
                    && p.start == start
                    && let Some(pid) = Pid::from_raw(pid)
                {
                    let _ =
                        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = except;
    }
}

/// How often a running process's descendants are looked up, so that one whose parent ended
/// (and which cleared its environment) is still known when the step stops.
pub(super) fn tracker() -> tokio::time::Interval {
    let every = Duration::from_millis(100);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

const STAGES: usize = 3;

pub(super) fn stages(grace: Grace) -> [(Signal, Duration); STAGES] {
    [
        (Signal::INT, grace.interrupt),
        (Signal::TERM, grace.terminate),
        (Signal::KILL, Duration::from_secs(5)),
    ]
}

/// Stops every process of the tree: SIGINT, then SIGTERM, then SIGKILL, each time waiting (up
/// to the grace period) for all of it to be gone, and reaping the direct child.
pub(crate) async fn stop_tree(tree: &mut Tree, child: &mut tokio::process::Child, grace: Grace) {
    let direct = child.id().and_then(|id| i32::try_from(id).ok());
    'stages: for (signal, wait) in stages(grace) {
        let _ = child.try_wait();
        let members = tree.members(true);
        if members.is_empty() {
            break;
        }
        tree.signal(&members, signal);
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            let _ = child.try_wait();
            tree.reap(direct);
            if tree.gone() {
                break 'stages;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let _ = child.try_wait();
    tree.reap(direct);
}
/// Whether any process of the group still runs. Zombies (ended, not yet reaped by whoever
/// adopted them) do not count.
pub fn group_alive(pgid: Pid) -> bool {
    if rustix::process::test_kill_process_group(pgid).is_err() {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        let group = pgid.as_raw_nonzero().get();
        all_procs().iter().any(|p| p.pgrp == group && !p.zombie)
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}
