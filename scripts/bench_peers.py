"""Driver of scripts/bench (issue 6): the same work, in one run, on the native
directory, the graph2aufs views (read-only and read-write) and peer FUSE
filesystems (bindfs, mergerfs, fuse-overlayfs) mounted over the same tree.
See scripts/bench for what is measured and the environment it reads."""
import json
import os
import platform
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections import namedtuple
from multiprocessing import Pool

sys.dont_write_bytecode = True  # no __pycache__ left in scripts/
sys.path.insert(0, os.path.dirname(__file__))
from bench_common import drop_caches, is_mounted, mounts_under, sh, timed, umount  # noqa: E402
import bench_ops  # noqa: E402

BIN = os.environ["G2A_BIN"]
WORK = os.path.realpath(os.environ["BENCH_DIR"])
OUT = os.environ["BENCH_OUT"]
QUICK = os.environ.get("QUICK") == "1"
RUNS = int(os.environ.get("RUNS") or (1 if QUICK else 3))
ALL_PARTS = ["tree", "ops", "breakdown", "usable", "memory", "copy"]
PARTS = [p for p in os.environ.get("PARTS", ",".join(ALL_PARTS)).split(",") if p]
for _p in PARTS:
    if _p not in ALL_PARTS:
        raise SystemExit(f"bench: unknown part {_p!r} in PARTS (parts: {','.join(ALL_PARTS)})")
ONLY = set(filter(None, os.environ.get("CONTENDERS", "").split(",")))
DEBIAN = os.environ.get("DEBIAN_BASE", "/var/tmp/g2a-debian")
TREE = os.environ.get("TREE", "generated" if QUICK else "auto")  # auto | debian | generated
KEEP = os.environ.get("KEEP") == "1"

# Sizes; each can be overridden by the upper-case name (FILE_MIB=256 ...).
SIZES = dict(
    file_mib=64 if QUICK else 1024,  # the file read sequentially and at random
    write_mib=32 if QUICK else 512,  # sequential write, then fsync
    randwrite_file_mib=32 if QUICK else 256,  # file written at random ...
    randwrite_io_mib=4 if QUICK else 64,  # ... this much, 4 KiB at a time, then fsync
    randwrite_sync_mib=1 if QUICK else 8,  # ... this much, 4 KiB at a time, each followed by an fsync
    rand_seconds=1 if QUICK else 2,  # 4 KiB O_DIRECT random reads, time-based
    layers=500 if QUICK else 10000,  # root of the usable-view measure
    mem_dirs=20 if QUICK else 1000,  # memory walk: dirs of mem_files files
    mem_files=1000,
    gen_entries=700 if QUICK else 7000,  # generated tree (no Debian base)
    gen_mib=12 if QUICK else 120,
    ops_count=1000 if QUICK else 10000,  # entries per operation of the ops part
    breakdown_count=500 if QUICK else 2000,  # ... of the traced breakdown runs
    copy_mib=64 if QUICK else 1024,  # the big layer of the copy part
)
for _k in SIZES:
    SIZES[_k] = int(os.environ.get(_k.upper(), SIZES[_k]))

UNTAR_RUNS = int(os.environ.get("UNTAR_RUNS", "1" if QUICK else "3"))  # untraced untars per breakdown variant
BIGFILE = "bench-bigfile"  # names of everything the benchmark adds to the layer
SCRATCH = "bench-scratch-"  # prefix of what writes create (removed after each round)


class Unavailable(Exception):
    """A contender that cannot be mounted (the reason is the message)."""


class MeasureError(Exception):
    """A measure that failed on a contender (recorded in its cell)."""


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- system helpers

def rm_tree(path, depth=0):
    """Removes `path`, never crossing into a mount; with `depth`, two rm
    processes share the subtrees that deep (deleting a million entries is a
    minute of one core)."""
    if depth and os.path.isdir(path):
        sh("sh", "-c", 'find "$1" -mindepth "$2" -maxdepth "$2" -print0 | '
           'xargs -0 -r -P2 -n50 rm -rf --one-file-system', "rm_tree", path, str(depth))
    if os.path.lexists(path):
        sh("rm", "-rf", "--one-file-system", path)


def proc_status(pid):
    """VmRSS and VmHWM of `pid`, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            k, _, v = l.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def cached_pages(path):
    """Pages of `path` in the page cache (util-linux fincore), None if unknown."""
    r = subprocess.run(["fincore", "-nb", "-o", "PAGES", path], capture_output=True, text=True)
    return int(r.stdout.split()[0]) if r.returncode == 0 and r.stdout.strip() else None


def run_checked(args, **kw):
    """Runs a measured command; a failure becomes a MeasureError."""
    r = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)
    if r.returncode != 0:
        first = (r.stderr.strip().splitlines() or ["?"])[0]
        raise MeasureError(f"{args[0]} exit {r.returncode}: {first[:200]}")


def gen(root, *args):
    r = sh(f"{BIN}/g2a-genroot", root, *args, "--json", stdout=subprocess.PIPE, text=True)
    return json.loads(r.stdout)


# ---------------------------------------------------------------- trees and mounts

class Tree:
    """An image layer of a legacy root: `graph/<id>/layer` on disk, shown by
    the views at `aufs/diff/<id>`. A read-write view migrates the root, so
    the data may be found at `aufs/diff/<id>` afterwards."""

    def __init__(self, root, layer_id):
        self.root, self.id = root, layer_id

    def layer(self):
        legacy = os.path.join(self.root, "graph", self.id, "layer")
        return legacy if os.path.isdir(legacy) else os.path.join(self.root, "aufs", "diff", self.id)

    def is_legacy(self):
        return os.path.isdir(os.path.join(self.root, "graph", self.id, "layer"))


daemons = []  # (Popen, mount point, log path) of every FUSE server started


def start_fuse(argv, mp, probe, name):
    """Starts a FUSE server in its own session; returns (process, seconds
    until a stat of `probe` through the mount succeeds). Raises Unavailable
    with the server's last words if it exits first."""
    os.makedirs(mp, exist_ok=True)
    log_path = os.path.join(WORK, "logs", f"{name}-{len(os.listdir(os.path.join(WORK, 'logs')))}.log")
    t0 = time.perf_counter()
    with open(log_path, "w") as logf:
        p = subprocess.Popen(argv, stdout=logf, stderr=logf, start_new_session=True)
    daemons.append((p, mp, log_path))
    deadline = time.monotonic() + 60
    while True:
        try:
            if is_mounted(mp):
                os.stat(probe)
                dt = time.perf_counter() - t0
                connections[p.pid] = os.minor(os.stat(mp).st_dev)
                return p, dt
        except FileNotFoundError:
            pass
        if p.poll() is not None:
            daemons.remove((p, mp, log_path))
            umount(mp)
            with open(log_path, errors="replace") as f:
                lines = [l.strip() for l in f if l.strip()]
            raise Unavailable(f"exit {p.returncode}: {lines[-1] if lines else 'no message'}")
        if time.monotonic() > deadline:
            stop_fuse(p)
            raise Unavailable("not usable 60 s after start")
        time.sleep(0.0005)


connections = {}  # server pid -> its FUSE connection (fusectl) id


def stop_fuse(p):
    for entry in [d for d in daemons if d[0] is p]:
        _, mp, log_path = entry
        umount(mp)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            # A copy of the mount in another mount namespace (a process
            # that unshared while it was mounted) keeps the connection up:
            # aborted, the server's reads end and it exits.
            conn = connections.get(p.pid)
            abort = f"/sys/fs/fuse/connections/{conn}/abort"
            if conn is not None and os.path.exists(abort):
                log(f"server {p.pid} still running after unmount: aborting its connection {conn}")
                with open(abort, "w") as f:
                    f.write("1\n")
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"server {p.pid} still running: killing it")
                p.kill()
                p.wait()
        connections.pop(p.pid, None)
        daemons.remove(entry)
        collect_problems(entry)


problems = {}  # contender -> warning/error lines of its server's log


def collect_problems(entry):
    _, _, log_path = entry
    name = os.path.basename(log_path).rsplit("-", 1)[0]
    with open(log_path, errors="replace") as f:
        lines = [re.sub(r"^\[\S+ ", "[", l.strip()) for l in f
                 if re.search(r"\b(WARN|ERROR|error|panick)", l)]
    seen = problems.setdefault(name, [])
    for l in lines:
        if l not in seen and len(seen) < 20:
            seen.append(l)


class Contender:
    """Something the same work runs on. `mount` returns the directory that
    shows the tree's layer (the layer itself for native)."""
    name = ""
    writable = True
    package = None  # Debian package, for its version
    options = ""
    parts = ("tree", "ops", "memory")  # the parts it takes part in

    def __init__(self):
        self.proc = None
        self.unavailable = None
        self.wrap = []  # a command the server runs under (taskset)

    def argv(self, tree, mp):
        raise NotImplementedError

    def target(self, tree, mp):
        return mp

    def mount(self, tree, mp, probe=None):
        """Mounts; returns the target. `self.mount_seconds`: from the start
        of the server to the first successful stat of `probe` (default: the
        target) through it."""
        if self.unavailable:
            raise Unavailable(self.unavailable)
        target = self.target(tree, mp)
        try:
            self.proc, self.mount_seconds = start_fuse(self.wrap + self.argv(tree, mp), mp, probe or target,
                                                      self.name)
        except Unavailable as e:
            self.unavailable = str(e)
            log(f"{self.name} unavailable: {e}")
            raise
        return target

    def unmount(self, tree):
        if self.proc:
            stop_fuse(self.proc)
            self.proc = None

    def describe(self):
        d = {"options": self.options, "writable": self.writable}
        if self.package:
            r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", self.package], capture_output=True, text=True)
            d["version"] = r.stdout or "?"
        if self.unavailable:
            d["status"] = "unavailable"
            d["reason"] = self.unavailable
        else:
            d["status"] = "ok"
        return d


class Native(Contender):
    name = "native"
    parts = ("tree", "ops", "usable", "memory")
    options = "the layer directory itself (graph/<id>/layer)"

    def mount(self, tree, mp, probe=None):
        return tree.layer()


class G2aView(Contender):
    def __init__(self, read_only, transport="classic"):
        super().__init__()
        self.read_only = read_only
        self.transport = transport
        self.name = ("graph2aufs-ro" if read_only else "graph2aufs-rw") + ("-uring" if transport == "uring" else "")
        self.writable = not read_only
        self.parts = ("tree", "usable", "memory") if read_only else ("tree", "ops", "breakdown", "usable", "memory")
        if transport == "uring":
            self.parts = ("tree", "ops")
        self.extra_args = []
        self.options = ("graph2aufs mount ROOT MP " + ("--read-only " if read_only else "") +
                        f"--foreground --transport {transport}; the layer at MP/aufs/diff/<id>")

    def argv(self, tree, mp):
        return [f"{BIN}/graph2aufs", "mount", tree.root, mp, *(["--read-only"] if self.read_only else []),
                "--foreground", "--transport", self.transport, *self.extra_args]

    def target(self, tree, mp):
        return os.path.join(mp, "aufs", "diff", tree.id)

    def mount(self, tree, mp, probe=None):
        target = super().mount(tree, mp, probe)
        if not self.read_only and probe is None:
            # Measured in the steady state a daemon works in all day: once
            # the background migration has finished (it moves the layer
            # under the first walk otherwise, and the kernel looks it up anew).
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                r = subprocess.run([f"{BIN}/graph2aufs", "status", tree.root, "--json"], capture_output=True,
                                   text=True)
                try:
                    if json.loads(r.stdout).get("live", {}).get("finished"):
                        break
                except ValueError:
                    pass
                time.sleep(0.1)
        return target

    def unmount(self, tree):
        super().unmount(tree)
        if not self.read_only:
            err = restore_legacy(tree)
            if err:
                self.unavailable = f"after a run: {err}"
                problems.setdefault(self.name, []).append(err)

    def describe(self):
        d = super().describe()
        d["version"] = git_describe()
        return d


class Bindfs(Contender):
    name = "bindfs"
    package = "bindfs"
    options = "bindfs -f SRC MP (defaults: single-threaded, O_DIRECT cleared unless --forward-odirect)"

    def argv(self, tree, mp):
        return ["bindfs", "-f", tree.layer(), mp]


class Mergerfs(Contender):
    name = "mergerfs"
    package = "mergerfs"
    opts = "cache.files=partial,dropcacheonclose=true,category.create=mfs"
    options = f"mergerfs -f -o {opts} SRC MP (one branch; the man page's recommended page-caching set)"

    def argv(self, tree, mp):
        return ["mergerfs", "-f", "-o", self.opts, tree.layer(), mp]


class FuseOverlayfs(Contender):
    name = "fuse-overlayfs"
    package = "fuse-overlayfs"
    options = "fuse-overlayfs -f -o lowerdir=EMPTY,upperdir=SRC,workdir=WORK MP (the tree as upper, so writes land in it)"

    def argv(self, tree, mp):
        lower, work = os.path.join(WORK, "ovl-lower"), os.path.join(WORK, "ovl-work")
        rm_tree(work)
        os.makedirs(lower, exist_ok=True)
        os.makedirs(work)
        return ["fuse-overlayfs", "-f", "-o", f"lowerdir={lower},upperdir={tree.layer()},workdir={work}", mp]


class NullFs(Contender):
    """The bare FUSE round trip: `g2a-bench nullfs`, a fuser server that
    keeps its tree in memory and answers at once (same INIT capabilities and
    thread count as graph2aufs's read-write view)."""
    parts = ("ops", "breakdown")

    def __init__(self, transport="classic"):
        super().__init__()
        self.transport = transport
        self.name = "fuse-null" + ("-uring" if transport == "uring" else "")
        self.options = (f"g2a-bench nullfs MP --transport {transport} (fuser 0.18, in memory, no I/O: the bare "
                        "round trip)")
        if transport == "uring":
            self.parts = ("ops",)
        self.extra_args = []

    def argv(self, tree, mp):
        return [f"{BIN}/g2a-bench", "nullfs", mp, "--transport", self.transport, *self.extra_args]

    def describe(self):
        d = super().describe()
        d["version"] = git_describe()
        return d


def restore_legacy(tree):
    """A read-write view (or migrate) migrates ROOT: `graph2aufs rollback`
    puts it back, so that the next contender or run works on the same legacy
    root. Returns what went wrong, if anything."""
    if tree.is_legacy() and not os.path.exists(os.path.join(tree.root, ".graph2aufs")):
        return None
    r = subprocess.run([f"{BIN}/graph2aufs", "rollback", tree.root, "--json"], capture_output=True, text=True)
    results_meta["rollbacks"] = results_meta.get("rollbacks", 0) + 1
    if r.returncode != 0 or not tree.is_legacy():
        return f"rollback of {tree.root} exited {r.returncode}: {r.stderr.strip()[-300:]}"
    return None


_git = None


def git_describe():
    global _git
    if _git is None:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        rev = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--", "src", "Cargo.toml"],
                               capture_output=True, text=True)
        _git = (rev.stdout.strip() or "?") + (" (src modified)" if dirty.stdout.strip() else "")
    return _git


# Table columns, in order; rounds run the read-write view last (it migrates
# the root underneath and rolls it back).
CONTENDERS = [Native(), G2aView(True), G2aView(False), Bindfs(), Mergerfs(), FuseOverlayfs(), NullFs(),
              G2aView(False, "uring"), NullFs("uring")]


def thread_variants():
    """THREAD_VARIANTS=1,2,4: the read-write view and the bare server with
    each of these --threads, over /dev/fuse and io_uring (ops part only),
    named like graph2aufs-rw-uring-t2."""
    out = []
    for n in filter(None, os.environ.get("THREAD_VARIANTS", "").split(",")):
        for make in (lambda t: G2aView(False, t), NullFs):
            for transport in ("classic", "uring"):
                c = make(transport)
                c.name += f"-t{int(n)}"
                c.options += f" --threads {int(n)}"
                c.extra_args = ["--threads", str(int(n))]
                c.parts = ("ops",)
                out.append(c)
    return out


CONTENDERS += thread_variants()
CONTENDERS = [c for c in CONTENDERS if not ONLY or c.name in ONLY or c.name == "native"]
ROUND_ORDER = sorted(CONTENDERS, key=lambda c: c.name.startswith("graph2aufs-rw"))
URING_PARAM = "/sys/module/fuse/parameters/enable_uring"


def uring_on():
    """FUSE over io_uring offered by the kernel for the run, if a contender
    uses it: returns the value to restore (None: nothing to restore). A
    kernel without it marks those contenders unavailable."""
    if not any(getattr(c, "transport", "classic") == "uring" for c in CONTENDERS):
        return None
    if not os.path.exists(URING_PARAM):
        for c in CONTENDERS:
            if getattr(c, "transport", "classic") == "uring":
                c.unavailable = f"no {URING_PARAM} (a kernel without CONFIG_FUSE_IO_URING, Linux 6.14+)"
        return None
    with open(URING_PARAM) as f:
        found = f.read().strip()
    with open(URING_PARAM, "w") as f:
        f.write("Y\n")
    return found


def uring_restore(found):
    if found is not None:
        with open(URING_PARAM, "w") as f:
            f.write(found + "\n")


# ---------------------------------------------------------------- results

results = {}  # measure id -> {"label", "unit", "better", "note", "cells": {contender: cell}}


def measure(mid, label, unit, better, note=None):
    return results.setdefault(mid, {"label": label, "unit": unit, "better": better, "note": note, "cells": {}})


def record(mid, contender, value=None, error=None, na=None, extra=None):
    cell = results[mid]["cells"].setdefault(contender, {"runs": [], "errors": []})
    if value is not None:
        cell["runs"].append(value)
    if error:
        cell["errors"].append(error)
    if na:
        cell["na"] = na
    if extra:
        cell.setdefault("extra", []).append(extra)


# ---------------------------------------------------------------- the tree part
# Each measure: fn(target, tree) -> value, or (value, extra details).

def walk(path):
    """find + stat of every entry; (seconds, entries, first error)."""
    t = time.perf_counter()
    r = subprocess.run(["find", path, "-printf", "%s %m\n"], capture_output=True)
    dt = time.perf_counter() - t
    err = r.stderr.decode(errors="replace").strip().splitlines()
    return dt, r.stdout.count(b"\n"), (f"{len(err)} errors, first: {err[0]}" if err else None)


def m_find(target, tree):
    dt, n, err = walk(target)
    if err:
        raise MeasureError(err)
    return dt, {"entries": n}


def m_find_fresh_warm(target, tree):
    """The first walk through a fresh mount, the backing tree's metadata
    warm (walked natively just before, untimed): a LOOKUP per entry, no
    disk read. Natively: a warm walk."""
    walk(tree.layer())
    return m_find(target, tree)


def m_find_cold(target, tree):
    """A walk with every cache dropped: the mount's entries (the kernel
    forgets them: a LOOKUP per entry again, as on a fresh mount) and the
    backing tree's (disk reads, natively too)."""
    drop_caches()
    return m_find(target, tree)


def m_ls(target, tree):
    return timed(lambda: run_checked(["ls", "-lR", target]))


def m_du(target, tree):
    return timed(lambda: run_checked(["du", "-s", target]))


def fio(path, **opts):
    args = ["fio", "--name=b", f"--filename={path}", "--ioengine=psync", "--iodepth=1", "--output-format=json",
            # fio drops the file's cached pages before a job by default:
            # cold runs come from drop_caches instead, warm ones keep them.
            "--invalidate=0", *[f"--{k}" if v is True else f"--{k}={v}" for k, v in opts.items()]]
    r = subprocess.run(args, capture_output=True, text=True)
    out = r.stdout[r.stdout.find("{"):] if "{" in r.stdout else ""
    job = json.loads(out)["jobs"][0] if r.returncode == 0 and out else None
    if job is None or job.get("error"):
        msg = " ".join(l.strip() for l in (r.stderr + r.stdout).splitlines() if "fio:" in l or "err=" in l)
        raise MeasureError(f"fio exit {r.returncode}: {msg[:300] or 'no output'}")
    return job


def m_seq_read(target, tree):
    job = fio(os.path.join(target, BIGFILE), rw="read", bs="128k", size=f"{SIZES['file_mib']}m", readonly=True)
    return job["read"]["bw_bytes"] / 2**20


def m_seq_read_cold(target, tree):
    drop_caches()
    return m_seq_read(target, tree)


def m_rand_read_direct(target, tree):
    """4 KiB random reads with O_DIRECT, queue depth 1, caches dropped
    first. Afterwards the page cache tells whether O_DIRECT reached the
    backing file: pages of the backing file cached by the reads mean the
    server read it buffered (O_DIRECT dropped)."""
    drop_caches()
    view_file = os.path.join(target, BIGFILE)
    job = fio(view_file, rw="randread", bs="4k", size=f"{SIZES['file_mib']}m", direct=1, readonly=True,
              runtime=SIZES["rand_seconds"], time_based=1)
    ios = job["read"]["total_ios"]
    backing = cached_pages(os.path.join(tree.layer(), BIGFILE))
    view = cached_pages(view_file)
    threshold = max(64, ios // 20)
    if (backing or 0) > threshold or (view or 0) > threshold:
        verdict = "dropped (reads went through the page cache)"
    else:
        verdict = "honoured"
    return job["read"]["iops"], {"ios": ios, "backing_pages_cached": backing, "view_pages_cached": view,
                                 "o_direct": verdict}


def scratch(target, name):
    path = os.path.join(target, SCRATCH + name)
    if os.path.lexists(path):
        rm_tree(path)
    return path


def m_seq_write(target, tree):
    job = fio(scratch(target, "seqwrite"), rw="write", bs="128k", size=f"{SIZES['write_mib']}m", end_fsync=1)
    return job["write"]["bw_bytes"] / 2**20


def m_rand_write(target, tree):
    # fio lays the file out (and fsyncs it) before the timed job.
    job = fio(scratch(target, "randwrite"), rw="randwrite", bs="4k", size=f"{SIZES['randwrite_file_mib']}m",
              io_size=f"{SIZES['randwrite_io_mib']}m", end_fsync=1)
    return job["write"]["iops"]


def m_rand_write_fsync_each(target, tree):
    """4 KiB random writes with an fsync after each (fio fsync=1): issue
    16's figure (`rand_write` has one fsync at the end)."""
    job = fio(scratch(target, "randwrite-sync"), rw="randwrite", bs="4k", size=f"{SIZES['randwrite_file_mib']}m",
              io_size=f"{SIZES['randwrite_sync_mib']}m", fsync=1)
    return job["write"]["iops"]


def untar(target, name, tar, then_sync, again=False):
    """tar -xf of `tar` into a new directory (`again`: into the directory
    of an earlier one, emptied): (seconds of the tar, seconds of the sync
    after it). Without `then_sync` the sync is still made, but not counted:
    the next measure must not pay for this one's writeback."""
    if again:
        dest = os.path.join(target, SCRATCH + name)
        for e in os.listdir(dest):
            rm_tree(os.path.join(dest, e))
        os.sync()
    else:
        dest = scratch(target, name)
        os.mkdir(dest)
    with open(os.path.join(WORK, tar), "rb") as f:  # the tar itself in the page cache
        while f.read(1 << 20):
            pass
    t_tar = timed(lambda: run_checked(["tar", "-xf", os.path.join(WORK, tar), "-C", dest]))
    t_sync = timed(lambda: sh("sync"))
    return t_tar, t_sync


def m_untar_meta(target, tree):
    t_tar, t_sync = untar(target, "untar-meta", "tree-empty.tar", False)
    return t_tar, {"sync_after_s": t_sync}


def m_untar_meta_after_rm(target, tree):
    """The same into the same directory, emptied (rm -rf, sync, no
    drop_caches) before each of three untars in a row, the third timed:
    ext4 skips inodes deleted in the last 30 s one by one while their inode
    table blocks are cached (its `recently_deleted`), and allocates near
    the directory, where they are: creates cost more, natively too (what a
    benchmark repeating an untar in place, or `docker rm` then `docker
    pull`, meets)."""
    for _ in range(2):
        untar(target, "untar-meta", "tree-empty.tar", False, again=True)
    t_tar, t_sync = untar(target, "untar-meta", "tree-empty.tar", False, again=True)
    drop_caches()  # the next measures' creates not slowed down by these deletions
    return t_tar, {"sync_after_s": t_sync}


def m_untar_nosync(target, tree):
    t_tar, t_sync = untar(target, "untar-nosync", "tree.tar", False)
    return t_tar, {"sync_after_s": t_sync}


def m_untar(target, tree):
    t_tar, t_sync = untar(target, "untar", "tree.tar", True)
    return t_tar + t_sync, {"tar_s": t_tar, "sync_s": t_sync}


# A measure of the tree part, run in the order of tree_measures(); `writes`:
# only on writable contenders.
Spec = namedtuple("Spec", "id label unit better writes fn note")


def tree_measures():
    f, w = SIZES["file_mib"], SIZES["write_mib"]
    return [Spec(*s) for s in (
        ("find_fresh_warm", "find -printf (stat of every entry), fresh mount, backing warm", "s", "lower", False,
         m_find_fresh_warm, "the first walk through a fresh mount, the backing tree walked natively just before "
         "(a LOOKUP per entry, no disk read); native: a warm walk"),
        ("find_cold", "find -printf, all caches dropped", "s", "lower", False, m_find_cold,
         "drop_caches (the mount's entries forgotten as on a fresh mount, and the disk read again, natively too)"),
        ("find_warm", "find -printf, warm", "s", "lower", False, m_find, None),
        ("ls_lR", "ls -lR, warm", "s", "lower", False, m_ls,
         "ls -l also asks each entry for security.selinux and system.posix_acl_access xattrs "
         "(2-3 getxattr per entry: a round trip each on FUSE unless the server answers ENOSYS)"),
        ("du_s", "du -s, warm", "s", "lower", False, m_du, None),
        ("seq_read_cold", f"seq read {f} MiB, 128 KiB, cold", "MiB/s", "higher", False, m_seq_read_cold,
         "fio psync QD1 after drop_caches"),
        ("seq_read_warm", f"seq read {f} MiB, 128 KiB, warm", "MiB/s", "higher", False, m_seq_read,
         "the same right after, page cache kept (fio invalidate=0)"),
        ("rand_read_direct", "4 KiB random read, O_DIRECT, QD1", "IOPS", "higher", False, m_rand_read_direct,
         f"fio psync direct=1, {SIZES['rand_seconds']} s, caches dropped first"),
        ("seq_write", f"seq write {w} MiB, 128 KiB + fsync", "MiB/s", "higher", True, m_seq_write,
         "fio end_fsync=1 (the fsync is inside fio's runtime)"),
        ("rand_write", f"4 KiB random write, {SIZES['randwrite_io_mib']} MiB + fsync", "IOPS", "higher", True,
         m_rand_write, f"fio psync buffered, over a {SIZES['randwrite_file_mib']} MiB file, end_fsync=1"),
        ("rand_write_sync", f"4 KiB random write + fsync after each, {SIZES['randwrite_sync_mib']} MiB", "IOPS", "higher",
         True, m_rand_write_fsync_each, f"fio psync fsync=1, over a {SIZES['randwrite_file_mib']} MiB file"),
        ("untar_meta", "untar the tree, every file empty (metadata alone), no sync", "s", "lower", True,
         m_untar_meta, "tar -xf of the tree with every regular file emptied (as root: owners, modes, times, "
         "device nodes, hard links); an untimed sync after"),
        ("untar_meta_rm", "the same, third time in a row into the emptied dir", "s", "lower", True,
         m_untar_meta_after_rm, "the directory emptied (rm -rf, sync, untimed; no drop_caches) before each of three "
         "untars in a row, the third timed: ext4 skips the inodes deleted in the last 30 s one by one while their "
         "inode tables are cached (recently_deleted), natively too"),
        ("untar_nosync", "untar the tree, no sync", "s", "lower", True, m_untar_nosync,
         "tar -xf of the tree with its data; an untimed sync after"),
        ("untar", "untar the tree into a new dir + sync", "s", "lower", True, m_untar,
         "tar -xf then sync (the cells' extra: the two phases)"),
    )]


def make_tree():
    """The legacy root holding the real-sized tree as an image layer, a big
    file in that layer, and a tar of the tree for the untar measure."""
    root = os.path.join(WORK, "root")
    found = debian_tree(root) if TREE in ("auto", "debian") else None
    if found:
        desc, layer_id = found
    elif TREE == "debian":
        raise SystemExit("bench: TREE=debian but no Debian base could be built")
    else:
        info = gen(root, "--seed", "6", "--images", "1", "--containers", "0", "--entries-per-layer", "0")
        layer_id = info["images"][0]
        generate_files(Tree(root, layer_id).layer(), SIZES["gen_entries"], SIZES["gen_mib"])
        desc = f"generated ({SIZES['gen_entries']} entries, {SIZES['gen_mib']} MiB of files)"
    tree = Tree(root, layer_id)
    layer = tree.layer()
    sh("tar", "-cf", os.path.join(WORK, "tree.tar"), "-C", layer, ".")
    empty_tar(os.path.join(WORK, "tree.tar"), os.path.join(WORK, "tree-empty.tar"))
    entries, size = 0, 0
    for d, dirs, files in os.walk(layer):
        entries += len(dirs) + len(files)
        size += sum(os.lstat(os.path.join(d, x)).st_size for x in files)
    with open(os.path.join(layer, BIGFILE), "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(SIZES["file_mib"]):
            f.write(chunk)
    os.sync()
    # entries as find counts them: the layer itself and the big file too
    return tree, {"description": desc, "entries": entries + 2, "bytes_without_bigfile": size,
                  "bigfile_mib": SIZES["file_mib"], "layer": f"graph/{tree.id}/layer (view: aufs/diff/{tree.id})"}


def empty_tar(src, dest):
    """`src` with every regular file emptied: the same entries, owners,
    modes, times, links and device nodes (metadata alone)."""
    import tarfile
    with tarfile.open(src) as i, tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as o:
        for m in i:
            if m.isreg():
                m.size = 0
            o.addfile(m)


def debian_tree(root):
    """(description, layer id) of a root with the Debian base as a layer, or
    None when scripts/debian-base cannot make one."""
    finished = lambda: os.path.isfile(os.path.join(DEBIAN, "etc", "debian_version")) and not os.path.exists(
        os.path.join(DEBIAN, "debootstrap"))
    if not finished():
        log(f"building the Debian base in {DEBIAN} (scripts/debian-base, a few minutes, once)")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "debian-base")
        try:
            ok = subprocess.run([script, DEBIAN], timeout=int(os.environ.get("DEBIAN_TIMEOUT", "480"))).returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        if not ok or not finished():
            log("no Debian base: using a generated tree")
            return None
    info = gen(root, "--seed", "5", "--images", "2", "--containers", "0", "--debian-base", DEBIAN)
    with open(os.path.join(DEBIAN, "etc", "debian_version")) as f:
        version = f.read().strip()
    return f"Debian {version} minbase (debootstrap)", info["landmarks"]["debian"]


def generate_files(dest, entries, mib, seed=6):
    """A deterministic tree of about `entries` entries: a tenth directories,
    a few symlinks, the rest files whose sizes (long-tailed) add up to `mib`."""
    rng = random.Random(seed)
    ndirs, nlinks = entries // 10, entries // 50
    dirs = [dest]
    for i in range(ndirs):
        d = os.path.join(rng.choice(dirs[-40:]), f"dir{i}")
        os.mkdir(d)
        dirs.append(d)
    weights = [rng.lognormvariate(0, 2) for _ in range(entries - ndirs - nlinks)]
    scale = mib * 2**20 / sum(weights)
    blob = os.urandom(1 << 20)
    files = []
    for i, w in enumerate(weights):
        path = os.path.join(rng.choice(dirs), f"file{i}")
        size = int(w * scale)
        with open(path, "wb") as f:
            while size > 0:
                f.write(blob[:min(size, len(blob))])
                size -= len(blob)
        files.append(path)
    for i in range(nlinks):
        path = os.path.join(rng.choice(dirs), f"link{i}")
        os.symlink(os.path.relpath(rng.choice(files), os.path.dirname(path)), path)


def tree_part():
    tree, info = make_tree()
    results_meta["tree"] = info
    mp = os.path.join(WORK, "mp")
    specs = tree_measures()
    for s in specs:
        measure(s.id, s.label, s.unit, s.better, s.note)
    measure("peak_mem", "server peak memory (VmHWM) after the tree work", "MiB", "lower")
    for run in range(RUNS):
        for c in ROUND_ORDER:
            if "tree" not in c.parts:
                continue
            log(f"tree run {run + 1}/{RUNS}: {c.name}")
            tree_round(c, tree, mp, specs)
    for c in CONTENDERS:
        for s in specs:
            if "tree" not in c.parts:
                record(s.id, c.name, na="not run")
            elif s.writes and not c.writable:
                record(s.id, c.name, na="read-only")
    record("peak_mem", "native", na="no server")


def tree_round(c, tree, mp, specs):
    try:
        target = c.mount(tree, mp)
    except Unavailable:
        return
    try:
        for s in specs:
            if s.writes and not c.writable:
                continue
            try:
                out = s.fn(target, tree)
                value, extra = out if isinstance(out, tuple) else (out, None)
                record(s.id, c.name, value=value, extra=extra)
            except MeasureError as e:
                record(s.id, c.name, error=str(e))
        if c.proc:
            record("peak_mem", c.name, value=proc_status(c.proc.pid)["VmHWM"] / 1024)
    finally:
        c.unmount(tree)
        for name in os.listdir(tree.layer()):
            if name.startswith(SCRATCH):
                rm_tree(os.path.join(tree.layer(), name))


# ---------------------------------------------------------------- usable view of 10,000 layers

def usable_part():
    """Time to a usable view of a root of `layers` legacy layers, against an
    offline migrate of a copy of that root. The copy is made once and rolled
    back (untimed) after each migrate and each read-write view (which
    migrates it too): far cheaper than a copy per run."""
    n = SIZES["layers"]
    big, copy = os.path.join(WORK, "layers"), os.path.join(WORK, "layers-copy")
    gen(big, "--seed", "3", "--images", str(n), "--containers", "0", "--entries-per-layer", "0",
        "--max-chain", "12")
    ids = [i for i in os.listdir(os.path.join(big, "graph")) if len(i) == 64]
    sh("cp", "-a", big, copy)
    mid = "usable"
    measure(mid, f"mount to first stat of aufs/layers/<id>, {n} layers", "s", "lower",
            "ROOT's metadata warm; the native column is an offline `graph2aufs migrate` of a copy of the "
            "same root (what the view saves), rolled back untimed between runs; "
            "ratio = migrate time / time to a usable view")
    mp = os.path.join(WORK, "mp")

    def settle(root):
        """Inode tables written out (see drop_caches), then ROOT's metadata
        warm again: every entry and every (small) file's contents."""
        drop_caches()
        sh("sh", "-c", 'find "$1" -type f -exec cat {} + >/dev/null', "settle", root)

    for run in range(RUNS):
        log(f"usable run {run + 1}/{RUNS}: offline migrate of a copy")
        settle(copy)
        t = time.perf_counter()
        rc = subprocess.run([f"{BIN}/graph2aufs", "migrate", copy, "--json"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode
        record(mid, "native", value=time.perf_counter() - t, error=f"migrate exit {rc}" if rc else None)
        err = restore_legacy(Tree(copy, ids[0]))
        if err:  # a fresh copy then
            problems.setdefault("migrate", []).append(err)
            rm_tree(copy)
            sh("cp", "-a", big, copy)
    for c in CONTENDERS:
        if not isinstance(c, G2aView):
            if not isinstance(c, Native):
                record(mid, c.name, na="not a layout view")
            continue
        root = copy if c.writable else big
        for run in range(RUNS):
            log(f"usable run {run + 1}/{RUNS}: {c.name}")
            if run == 0 or c.writable:  # (a read-only view changes nothing)
                settle(root)
            tree = Tree(root, random.choice(ids))
            try:
                c.mount(tree, mp, probe=os.path.join(mp, "aufs", "layers", tree.id))
            except Unavailable:
                break
            record(mid, c.name, value=c.mount_seconds)
            c.unmount(tree)  # a read-write view's root is rolled back
    rm_tree(copy, depth=2)
    rm_tree(big, depth=2)


# ---------------------------------------------------------------- memory per looked-up entry

def fill_dirs(base, dirs, nfiles):
    fd = os.open(base, os.O_PATH)
    for d in dirs:
        name = f"d{d:04d}"
        os.mkdir(name, dir_fd=fd)
        dfd = os.open(name, os.O_PATH, dir_fd=fd)
        for i in range(nfiles):
            os.close(os.open(f"f{i:04d}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dfd))
        os.close(dfd)
    os.close(fd)


def memory_part():
    """A stat walk of a layer of mem_dirs x mem_files empty files through
    each fresh mount (the backing metadata warm): the server's memory
    before and after, per entry, and its peak."""
    ndirs, nfiles = SIZES["mem_dirs"], SIZES["mem_files"]
    root = os.path.join(WORK, "mem")
    info = gen(root, "--seed", "7", "--images", "1", "--containers", "0", "--entries-per-layer", "0")
    tree = Tree(root, info["images"][0])
    base = os.path.join(tree.layer(), "walk")
    os.mkdir(base)
    log(f"memory: creating {ndirs * nfiles} files")
    # (Workers end with SIGTERM when the pool closes: not the run's handler.)
    with Pool(2, initializer=signal.signal, initargs=(signal.SIGTERM, signal.SIG_DFL)) as pool:
        pool.starmap(fill_dirs, [(base, range(i, ndirs, 2), nfiles) for i in range(2)])
    n = ndirs * (nfiles + 1) + 1
    walk_id, per_id, peak_id = "walk_big", "mem_per_entry", "mem_peak_walk"
    measure(walk_id, f"stat walk of {n:,} entries, fresh mount", "s", "lower",
            "find -printf through a fresh mount, backing metadata warm; native: the warm walk. "
            "One run per server (the native value is the median of RUNS)")
    measure(per_id, f"server memory per looked-up entry ({n:,} walked)", "B", "lower",
            "(VmRSS after the walk - VmRSS after mounting) / entries walked")
    measure(peak_id, f"server peak memory (VmHWM) after the {n:,}-entry walk", "MiB", "lower")
    walk(base)  # backing metadata warm
    for _ in range(RUNS):
        dt, entries, err = walk(base)
        record(walk_id, "native", value=dt, error=err)
    record(per_id, "native", na="no server")
    record(peak_id, "native", na="no server")
    mp = os.path.join(WORK, "mp")
    for c in ROUND_ORDER:
        if isinstance(c, Native) or "memory" not in c.parts:
            continue
        log(f"memory: {n:,}-entry walk through {c.name}")
        try:
            target = c.mount(tree, mp)
        except Unavailable:
            continue
        try:
            pid = c.proc.pid
            before = proc_status(pid)["VmRSS"]
            dt, entries, err = walk(os.path.join(target, "walk"))
            after = proc_status(pid)
            extra = {"entries": entries, "rss_before_kib": before, "rss_after_kib": after["VmRSS"],
                     "open_fds": len(os.listdir(f"/proc/{pid}/fd"))}
            record(walk_id, c.name, value=dt, error=err, extra=extra)
            record(per_id, c.name, value=(after["VmRSS"] - before) * 1024 / max(entries, 1))
            record(peak_id, c.name, value=after["VmHWM"] / 1024)
        finally:
            c.unmount(tree)
    rm_tree(base, depth=1)
    rm_tree(root)


# ---------------------------------------------------------------- ops: per-operation latency

def small_tree(name, seed):
    """A legacy root of one empty image layer (where the ops part works)."""
    root = os.path.join(WORK, name)
    info = gen(root, "--seed", str(seed), "--images", "1", "--containers", "0", "--entries-per-layer", "0")
    return Tree(root, info["images"][0])


def ops_part():
    """`g2a-bench ops` on every writable contender and the bare FUSE server
    (fuse-null): the latency of each change, each system call timed alone,
    ops_count entries per operation, in a new directory of the layer."""
    n = SIZES["ops_count"]
    tree = small_tree("ops-root", 8)
    for op in bench_ops.OPS:
        measure(f"op_{op}", f"{bench_ops.OP_LABELS[op]}, per op ({n:,})", "us", "lower",
                "median latency of the system call (g2a-bench ops); the cell's extra has mean, p90, p99")
    mp = os.path.join(WORK, "mp")
    for run in range(RUNS):
        for c in ROUND_ORDER:
            if "ops" not in c.parts:
                continue
            log(f"ops run {run + 1}/{RUNS}: {c.name}")
            try:
                target = c.mount(tree, mp)
            except Unavailable:
                continue
            try:
                for op, st in bench_ops.run_ops(BIN, target, n).items():
                    record(f"op_{op}", c.name, value=st["p50_us"], extra=st)
            except RuntimeError as e:
                for op in bench_ops.OPS:
                    record(f"op_{op}", c.name, error=str(e))
            finally:
                c.unmount(tree)
            drop_caches()  # inode tables written out: the next contender's creates as fast
    for c in CONTENDERS:
        if "ops" not in c.parts:
            for op in bench_ops.OPS:
                record(f"op_{op}", c.name, na="read-only" if not c.writable else "not run")
    rm_tree(tree.root)


def op_targets():
    """Issue 16's per-operation target: the view's median within twice
    native's plus the bare round trip's (fuse-null's), per operation."""
    rows = []
    for op in bench_ops.TARGET_OPS:
        cells = results.get(f"op_{op}", {}).get("cells", {})
        med = {k: statistics.median(v["runs"]) for k, v in cells.items() if v.get("runs")}
        if not {"native", "fuse-null", "graph2aufs-rw"} <= med.keys():
            continue
        budget = 2 * med["native"] + med["fuse-null"]
        rows.append({"op": op, "native_us": med["native"], "null_us": med["fuse-null"], "budget_us": budget,
                     "graph2aufs_rw_us": med["graph2aufs-rw"], "met": med["graph2aufs-rw"] <= budget,
                     "overhead_us": med["graph2aufs-rw"] - med["native"] - med["fuse-null"]})
    return rows


# ---------------------------------------------------------------- breakdown of a round trip

def breakdown_variants():
    """(label, contender, extra arguments, CPU of the server, CPU of the
    client): the bare server and graph2aufs's read-write view, each with
    its default threads and with one; the bare server with client and
    server on one CPU and on two."""
    by = {c.name: c for c in CONTENDERS}
    null, rw = by.get("fuse-null"), by.get("graph2aufs-rw")
    out = []
    if null:
        out += [("fuse-null", null, [], None, None), ("fuse-null, 1 thread", null, ["--threads", "1"], None, None),
                ("fuse-null, 1 thread, client and server on CPU 0", null, ["--threads", "1"], 0, 0),
                ("fuse-null, 1 thread, server on CPU 1, client on CPU 0", null, ["--threads", "1"], 1, 0)]
    if rw:
        out += [("graph2aufs-rw", rw, [], None, None), ("graph2aufs-rw, 1 thread", rw, ["--threads", "1"], None, None),
                ("graph2aufs-rw, 1 thread, client and server on CPU 0", rw, ["--threads", "1"], 0, 0),
                ("graph2aufs-rw, 1 thread, server on CPU 1, client on CPU 0", rw, ["--threads", "1"], 1, 0)]
    return out


def breakdown_tar():
    """An all-metadata tar for the request mix of an untar: the tree part's
    (the Debian tree emptied), else the Debian base's, else a generated one."""
    path = os.path.join(WORK, "tree-empty.tar")
    if os.path.exists(path):
        return path
    if os.path.isfile(os.path.join(DEBIAN, "etc", "debian_version")):
        full = os.path.join(WORK, "breakdown-full.tar")
        sh("tar", "-cf", full, "-C", DEBIAN, ".")
        empty_tar(full, path)
        os.remove(full)
    else:
        src = os.path.join(WORK, "breakdown-src")
        os.makedirs(src)
        generate_files(src, SIZES["gen_entries"], 0)
        sh("tar", "-cf", path, "-C", src, ".")
        rm_tree(src)
    return path


def tar_entries(path):
    r = subprocess.run(["tar", "-tf", path], capture_output=True, text=True, check=True)
    return len([l for l in r.stdout.splitlines() if l.strip() not in ("", "./")])


def breakdown_part():
    """Each request of the change path, traced with bpftrace on one FUSE
    connection: from the kernel queueing it to a server thread picking it
    up, the server's own work (and its system calls), and the answer back,
    for the bare server (fuse-null) and graph2aufs's read-write view, with
    their default threads and with one; plus the request mix of an untar.
    The per-operation latency of the same run untraced comes along."""
    if not shutil_which("bpftrace"):
        log("breakdown: no bpftrace (apt-get install bpftrace): skipped")
        results_meta["breakdown"] = {"skipped": "no bpftrace"}
        return
    n = SIZES["breakdown_count"]
    tree = small_tree("breakdown-root", 9)
    tar = breakdown_tar()
    entries = tar_entries(tar)
    mp = os.path.join(WORK, "mp")
    out = {}
    try:
        for label, c, args, server_cpu, client_cpu in breakdown_variants():
            log(f"breakdown: {label}")
            c.extra_args = args
            c.wrap = ["taskset", "-c", str(server_cpu)] if server_cpu is not None else []
            try:
                target = c.mount(tree, mp)
            except Unavailable as e:
                out[label] = {"unavailable": str(e)}
                continue
            try:
                v = {"load": loadavg(), "threads": args[1] if args else "default",
                     "server_cpu": server_cpu, "client_cpu": client_cpu}
                v["ops_untraced"] = bench_ops.run_ops(BIN, target, n, taskset=client_cpu)
                tracer = bench_ops.Tracer(c.proc.pid, mp, WORK)
                try:
                    v["ops_traced"] = bench_ops.run_ops(BIN, target, n, taskset=client_cpu)
                finally:
                    reqs, wake = tracer.stop()
                v["requests"] = bench_ops.summarize_requests(reqs, wake)
                out[label] = v
                # The all-metadata untar, untraced, against native's in the
                # same place (the layer on the disk) right before each; each
                # removed after it and the inode tables written out
                # (drop_caches: see m_untar_meta_after_rm), the tar cached.
                pin = ["taskset", "-c", str(client_cpu)] if client_cpu is not None else []
                layer = tree.layer() if isinstance(c, G2aView) else None
                v["untar_meta_s"], v["untar_meta_native_s"] = [], []
                for i in range(UNTAR_RUNS):
                    if layer:
                        dest = scratch(layer, f"breakdown-native-{i}")
                        os.mkdir(dest)
                        sh("cat", tar, stdout=subprocess.DEVNULL)
                        v["untar_meta_native_s"].append(timed(lambda: run_checked([*pin, "tar", "-xf", tar, "-C", dest])))
                        rm_tree(dest)
                        drop_caches()
                    dest = scratch(target, f"breakdown-untar-{i}")
                    os.mkdir(dest)
                    sh("cat", tar, stdout=subprocess.DEVNULL)
                    v["untar_meta_s"].append(timed(lambda: run_checked([*pin, "tar", "-xf", tar, "-C", dest])))
                    rm_tree(dest)
                    drop_caches()
                dest = scratch(target, "breakdown-untar")
                os.mkdir(dest)
                tracer = bench_ops.Tracer(c.proc.pid, mp, WORK)
                try:
                    t = timed(lambda: run_checked([*pin, "tar", "-xf", tar, "-C", dest]))
                finally:
                    reqs, wake = tracer.stop()
                mix = bench_ops.request_mix(reqs)
                v["untar_meta"] = {"entries": entries, "seconds_traced": t,
                                   "requests_per_entry": {k: round(x / entries, 2) for k, x in mix.items()},
                                   "requests": bench_ops.summarize_requests(reqs, wake)}
                rm_tree(dest)
            except (RuntimeError, MeasureError) as e:
                out.setdefault(label, {})["error"] = str(e)
                log(f"breakdown: {label}: {e}")
            finally:
                c.unmount(tree)
                c.extra_args, c.wrap = [], []
    finally:
        bench_ops.release_tracefs()
    results_meta["breakdown"] = out
    rm_tree(tree.root)


def shutil_which(cmd):
    import shutil
    return shutil.which(cmd)


def breakdown_lines():
    """The breakdown as table lines."""
    b = results_meta.get("breakdown") or {}
    if not b or "skipped" in b:
        return []
    lines = ["", "Round trips, request by request (bpftrace; medians in us): queued -> picked up by a server thread "
             "-> answered (writev) -> the kernel has the answer; `sys` = the server's system calls inside its part",
             "", "| server | request | count | round trip | to server | server | of which sys | syscalls/req "
             "| to kernel | same CPU |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, v in b.items():
        reqs = v.get("requests", {}).get("opcodes", {})
        for op, r in reqs.items():
            if r["count"] < 20:
                continue
            lines.append(f"| {label} | {op} | {r['count']} | {r['rtt_p50_us']} | {r['to_server_p50_us']} | "
                         f"{r['server_p50_us']} | {r['server_syscalls_p50_us']} | {r['syscalls_per_request']} | "
                         f"{r['to_kernel_p50_us']} | {r['same_cpu']} |")
    lines += ["", "| server | thread hand-offs (share of requests served by another thread than the one before) "
              "| server wake-ups per request | load |", "|---|---|---|---|"]
    for label, v in b.items():
        r = v.get("requests", {})
        if r:
            lines.append(f"| {label} | {r.get('thread_handoffs')} | {r.get('server_wakeups_per_request')} | "
                         f"{v.get('load')} |")
    lines += ["", "Per-operation latency, untraced, median us (" + ", ".join(bench_ops.OPS) + "):"]
    for label, v in b.items():
        o = v.get("ops_untraced")
        if o:
            lines.append(f"- {label}: " + ", ".join(f"{op} {o[op]['p50_us']}" for op in bench_ops.OPS if op in o))
    for label, v in b.items():
        u = v.get("untar_meta")
        if u:
            lines.append(f"- requests per entry of an all-metadata untar ({u['entries']:,} entries), {label}: " +
                         ", ".join(f"{k} {x}" for k, x in u["requests_per_entry"].items()))
    lines += ["", "All-metadata untar (the Debian tree emptied), untraced, seconds, each run right after native's "
              "in the layer on the disk:", ""]
    for label, v in b.items():
        view, nat = v.get("untar_meta_s"), v.get("untar_meta_native_s")
        if view:
            t = f"- {label}: " + ", ".join(f"{x:.2f}" for x in view)
            if nat:
                t += " (native " + ", ".join(f"{x:.2f}" for x in nat) + f"; ratio of medians " \
                     f"{statistics.median(nat) / statistics.median(view):.2f})"
            lines.append(t)
    return lines


# ---------------------------------------------------------------- cross-device copy

def copy_part():
    """scripts/bench-copy's driver, its figures as rows: `graph2aufs
    migrate` with aufs/ on another file system against `cp -a` + `sync`
    (and against a move by hand)."""
    out = os.path.join(WORK, "copy.json")
    env = {**os.environ, "BENCH_DIR": os.path.join(WORK, "copy"), "BENCH_OUT": out, "RUNS": str(RUNS),
           "SIZE_MB": str(SIZES["copy_mib"]), "DEBIAN_BASE": DEBIAN}
    r = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_copy.py")],
                       env=env, stdout=subprocess.PIPE, text=True)
    measure("copy", "cross-device copy of the layers (Debian + a big file)", "s", "lower",
            "native: cp -a of every layer to ext4 on a loop image, then sync; graph2aufs-rw: graph2aufs migrate "
            "with aufs/ on that file system (durable, compared, recorded, sources removed)")
    measure("copy_move", "the same against a move by hand (cp -a, sync, rm -rf)", "s", "lower", None)
    if r.returncode != 0 or not os.path.exists(out):
        record("copy", "graph2aufs-rw", error=f"bench_copy.py exit {r.returncode}")
        return
    with open(out) as f:
        doc = json.load(f)
    results_meta["copy"] = doc
    for v in doc["cp_a_s"]:
        record("copy", "native", value=v)
    for v in doc["cp_a_sync_rm_s"]:
        record("copy_move", "native", value=v)
    for v in doc["graph2aufs_migrate_s"]:
        record("copy", "graph2aufs-rw", value=v)
        record("copy_move", "graph2aufs-rw", value=v)


# ---------------------------------------------------------------- report

def summarize():
    for m in results.values():
        nat = m["cells"].get("native", {}).get("runs")
        nat_med = statistics.median(nat) if nat else None
        for cell in m["cells"].values():
            runs = cell["runs"]
            if not runs:
                continue
            cell["median"], cell["min"], cell["max"] = statistics.median(runs), min(runs), max(runs)
            if nat_med and cell["median"]:
                r = cell["median"] / nat_med
                cell["ratio"] = r if m["better"] == "higher" else 1 / r


def fmt(v, unit):
    if unit == "s":
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    if unit == "MiB":
        return f"{v:.1f}"
    return f"{v:,.0f}"


def cell_text(m, name):
    c = next(x for x in CONTENDERS if x.name == name)
    cell = m["cells"].get(name)
    if cell is None or not cell["runs"]:
        if cell and cell.get("na"):
            return f"n/a ({cell['na']})"
        if c.unavailable:
            return "unavailable"
        if cell and cell["errors"]:
            return "error (see below)"
        return "-"
    t = fmt(cell["median"], m["unit"])
    if len(cell["runs"]) > 1:
        t += f" ({fmt(cell['min'], m['unit'])}–{fmt(cell['max'], m['unit'])})"
    if "ratio" in cell and name != "native":
        t += f" ×{cell['ratio']:.2f}"
    if cell["errors"]:
        t += " !"
    return t


def o_direct_summary():
    out = {}
    cells = results.get("rand_read_direct", {}).get("cells", {})
    for name, cell in cells.items():
        if cell.get("extra"):
            out[name] = cell["extra"][-1]["o_direct"]
        elif cell["errors"]:
            out[name] = "rejected: " + cell["errors"][-1]
    return out


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    fs = subprocess.run(["findmnt", "-no", "FSTYPE,OPTIONS", "-T", WORK], capture_output=True, text=True).stdout
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem / 2**20, 1), "kernel": platform.release(),
            "bench_dir": WORK, "bench_dir_fs": fs.strip(),
            "rlimit_nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)), "loadavg_start": loadavg()}


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def report(wall, mach):
    summarize()
    names = [c.name for c in CONTENDERS]
    lines = [f"Machine: {mach['cores']} CPUs ({mach['cpu']}), {mach['ram_gib']} GiB, Linux {mach['kernel']}, "
             f"{mach['bench_dir']} on {mach['bench_dir_fs']}",
             f"graph2aufs {git_describe()}; median of {RUNS} runs (min–max); ×ratio to native in the same run "
             "(speed relative to native: above 1 is faster, below 1 slower)"]
    if "tree" in results_meta:
        t = results_meta["tree"]
        lines.append(f"Tree: {t['description']}, {t['entries']:,} entries, "
                     f"{t['bytes_without_bigfile'] / 2**20:.0f} MiB + a {t['bigfile_mib']} MiB file")
    lines += ["", "| measure | unit | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for m in results.values():
        lines.append(f"| {m['label']} | {m['unit']} | " + " | ".join(cell_text(m, n) for n in names) + " |")
    lines.append("")
    mach["loadavg_end"] = loadavg()
    lines.append(f"Load average (1, 5, 15 min) at start {mach['loadavg_start']}, at end {mach['loadavg_end']}")
    for c in CONTENDERS:
        lines.append(f"{c.name}: " + (f"unavailable: {c.unavailable}" if c.unavailable else c.options))
    for m in results.values():
        if m["note"]:
            lines.append(f"{m['label']}: {m['note']}")
    for name, verdict in o_direct_summary().items():
        lines.append(f"O_DIRECT on {name}: {verdict}")
    for mid, m in results.items():
        for name, cell in m["cells"].items():
            for e in dict.fromkeys(cell["errors"]):
                lines.append(f"error: {m['label']} on {name}: {e}")
    for name, ls in problems.items():
        for l in ls:
            lines.append(f"server log, {name}: {l}")
    for part, load in results_meta.get("parts", {}).items():
        lines.append(f"part {part}: {load['seconds']} s, load average {load['start']} -> {load['end']}")
    targets = op_targets()
    if targets:
        results_meta["op_targets"] = targets
        lines += ["", "Per-operation target (issue 16): graph2aufs-rw's median within 2x native's + the bare "
                  "round trip's (fuse-null), us", "", "| operation | native | fuse-null | budget | graph2aufs-rw "
                  "| graph2aufs's own share (rw - native - null) | met |", "|---|---|---|---|---|---|---|"]
        for t in targets:
            lines.append(f"| {t['op']} | {t['native_us']:.1f} | {t['null_us']:.1f} | {t['budget_us']:.1f} | "
                         f"{t['graph2aufs_rw_us']:.1f} | {t['overhead_us']:.1f} | {'yes' if t['met'] else 'no'} |")
    lines += breakdown_lines()
    print("\n".join(lines))
    doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "wall_seconds": round(wall, 1), "machine": mach,
           "graph2aufs": git_describe(), "runs": RUNS, "quick": QUICK, "sizes": SIZES, **results_meta,
           "contenders": {c.name: c.describe() for c in CONTENDERS},
           "ratio": "speed relative to native measured in the same run: value/native for higher-is-better "
                    "units, native/value for times; above 1 is faster than native",
           "measures": results, "o_direct": o_direct_summary(), "server_log_problems": problems,
           "table": lines}
    os.makedirs(os.path.dirname(os.path.abspath(OUT)), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    log(f"wrote {OUT}")


# ---------------------------------------------------------------- main

results_meta = {}


def clean_work():
    """Starts from an empty BENCH_DIR, unmounting what a killed run left."""
    for m in sorted(mounts_under(WORK), reverse=True):
        log(f"left over from an earlier run: unmounting {m}")
        umount(m)
    if mounts_under(WORK):
        raise SystemExit(f"bench: cannot unmount {mounts_under(WORK)}")
    rm_tree(WORK)
    os.makedirs(os.path.join(WORK, "logs"))


def cleanup():
    for p, _, _ in reversed(list(daemons)):
        stop_fuse(p)
    for m in sorted(mounts_under(WORK), reverse=True):
        umount(m)
    left = mounts_under(WORK)
    if left:
        log(f"still mounted: {left}; {WORK} kept")
    elif not KEEP:
        rm_tree(WORK)


def on_sigterm(*_):
    log("terminated (SIGTERM): unmounting everything, no report written")
    sys.exit(143)


def main():
    signal.signal(signal.SIGTERM, on_sigterm)
    t0 = time.monotonic()
    clean_work()
    mach = machine()
    parts = {"tree": tree_part, "ops": ops_part, "breakdown": breakdown_part, "usable": usable_part,
             "memory": memory_part, "copy": copy_part}
    uring_found = uring_on()
    try:
        for part in ALL_PARTS:
            if part in PARTS:
                drop_caches()
                load = {"start": loadavg()}
                t = time.monotonic()
                parts[part]()
                load.update(end=loadavg(), seconds=round(time.monotonic() - t, 1))
                results_meta.setdefault("parts", {})[part] = load
                log(f"{part} done in {load['seconds']} s, load {load['start']} -> {load['end']}")
    finally:
        cleanup()
        uring_restore(uring_found)
    report(time.monotonic() - t0, mach)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted (everything it mounted is unmounted)")
        sys.exit(130)
