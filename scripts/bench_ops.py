"""Per-operation latency of the change path and the round-trip breakdown
(scripts/bench PARTS=ops,breakdown): helpers that run `g2a-bench ops` in a
directory and trace one FUSE connection with bpftrace
(scripts/bench_breakdown.bt). No configuration is read here."""
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# The change path's operations, in the order `g2a-bench ops` runs them
# (`open` also times an fsync of each opened, clean file).
OPS = ["create", "lookup", "open", "fsync", "write", "chmod", "chown", "utimes", "rename", "unlink", "mkdir", "rmdir"]
OP_LABELS = {
    "mkdir": "mkdir",
    "rmdir": "rmdir",
    "create": "create (open O_CREAT|O_EXCL, close)",
    "lookup": "stat after the dentries are dropped (LOOKUP)",
    "open": "open O_WRONLY of an existing file",
    "fsync": "fsync of a clean file",
    "write": "4 KiB pwrite + fsync of an existing file",
    "chmod": "chmod",
    "chown": "chown",
    "utimes": "utimes",
    "rename": "rename within a directory",
    "unlink": "unlink",
}
# The operations issue 16 sets a target for.
TARGET_OPS = ["create", "unlink", "rename", "chmod", "chown", "utimes", "mkdir", "rmdir"]

OPCODES = {1: "LOOKUP", 2: "FORGET", 3: "GETATTR", 4: "SETATTR", 5: "READLINK", 6: "SYMLINK", 8: "MKNOD",
           9: "MKDIR", 10: "UNLINK", 11: "RMDIR", 12: "RENAME", 13: "LINK", 14: "OPEN", 15: "READ", 16: "WRITE",
           17: "STATFS", 18: "RELEASE", 20: "FSYNC", 21: "SETXATTR", 22: "GETXATTR", 23: "LISTXATTR",
           24: "REMOVEXATTR", 25: "FLUSH", 26: "INIT", 27: "OPENDIR", 28: "READDIR", 29: "RELEASEDIR",
           30: "FSYNCDIR", 34: "ACCESS", 35: "CREATE", 42: "BATCH_FORGET", 43: "FALLOCATE", 44: "READDIRPLUS",
           45: "RENAME2", 46: "LSEEK", 50: "SYNCFS", 52: "STATX"}


def run_ops(bin_dir, target, count, ops=None, taskset=None):
    """`g2a-bench ops` in `target`: {op: {count, mean_us, p50_us, ...}}."""
    argv = [f"{bin_dir}/g2a-bench", "ops", target, "--count", str(count)]
    if ops:
        argv += ["--ops", ops]
    if taskset is not None:
        argv = ["taskset", "-c", str(taskset), *argv]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"g2a-bench ops {target}: {r.stderr.strip()[-300:]}")
    return json.loads(r.stdout)["ops"]


def connection_of(mp):
    """The mount's dev_t as the kernel's FUSE tracepoints give it (MKDEV:
    major << 20 | minor)."""
    st = os.stat(mp).st_dev
    return os.major(st) << 20 | os.minor(st)


_tracefs_mounted = False


def ensure_tracefs():
    """bpftrace finds tracepoints through tracefs: mounted here if it is not
    (and unmounted by `release_tracefs`)."""
    global _tracefs_mounted
    if os.path.isdir("/sys/kernel/tracing/events"):
        return
    subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True)
    _tracefs_mounted = True


def release_tracefs():
    global _tracefs_mounted
    if _tracefs_mounted:
        subprocess.run(["umount", "/sys/kernel/tracing"])
        _tracefs_mounted = False


class Tracer:
    """bpftrace on the requests of the FUSE connection at `mp` served by
    process `pid`; `stop()` returns the per-request records."""

    def __init__(self, pid, mp, work):
        ensure_tracefs()
        with open(os.path.join(HERE, "bench_breakdown.bt")) as f:
            prog = f.read().replace("SERVER_PID", str(pid)).replace("CONNECTION", str(connection_of(mp)))
        fd, self.prog = tempfile.mkstemp(suffix=".bt", dir=work)
        with os.fdopen(fd, "w") as f:
            f.write(prog)
        self.out_path = self.prog + ".out"
        self.out = open(self.out_path, "w")
        self.err = open(self.prog + ".err", "w")
        self.p = subprocess.Popen(["bpftrace", self.prog], stdout=self.out, stderr=self.err,
                                  start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open(self.out_path) as f:
                if "Attaching" in f.read():
                    break
            if self.p.poll() is not None:
                raise RuntimeError(f"bpftrace exited {self.p.returncode}: {open(self.prog + '.err').read()[-400:]}")
            time.sleep(0.05)
        time.sleep(0.5)  # attached to every probe

    def stop(self):
        time.sleep(0.2)  # asynchronous RELEASEs answered
        self.p.send_signal(signal.SIGINT)
        try:
            self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.out.close()
        self.err.close()
        reqs, wake = [], None
        with open(self.out_path) as f:
            for line in f:
                x = line.split()
                if not x:
                    continue
                if x[0] == "R" and len(x) == 12:
                    reqs.append(tuple(int(v) for v in x[1:]))
                elif x[0] == "W" and len(x) == 3:
                    wake = (int(x[1]), int(x[2]))
        for p in (self.prog, self.out_path, self.prog + ".err"):
            os.remove(p)
        return reqs, wake


def summarize_requests(reqs, wake=None):
    """Per opcode: count and the medians (microseconds) of each segment of
    a round trip. Segments: `rtt` queued to answered (the kernel's view);
    `to_server` queued until a server thread's read returns it (wake-up,
    scheduling, copy); `server` that read's return to the answer's writev
    (the server's own work), of which `server_syscalls` in system calls;
    `to_kernel` writev entered to the kernel having the answer."""
    by_op = {}
    for op, _u, send, pick, reply, end, sys_ns, sys_n, tid, ccpu, scpu in reqs:
        by_op.setdefault(op, []).append((send, pick, reply, end, sys_ns, sys_n, tid, ccpu, scpu))
    out = {}
    order = sorted((r[2], r[3], r[8]) for r in reqs if r[3] and r[8])  # (send, pick, tid) in queue order
    handoffs = sum(1 for a, b in zip(order, order[1:]) if a[2] != b[2])
    med = lambda xs: round(statistics.median(xs) / 1000, 2) if xs else None
    mean = lambda xs: round(sum(xs) / len(xs) / 1000, 2) if xs else None
    for op, rs in sorted(by_op.items()):
        full = [r for r in rs if r[1] and r[2]]
        out[OPCODES.get(op, str(op))] = {
            "count": len(rs),
            "rtt_p50_us": med([r[3] - r[0] for r in rs]),
            "rtt_mean_us": mean([r[3] - r[0] for r in rs]),
            "to_server_p50_us": med([r[1] - r[0] for r in full]),
            "server_p50_us": med([r[2] - r[1] for r in full]),
            "server_mean_us": mean([r[2] - r[1] for r in full]),
            "server_syscalls_p50_us": med([r[4] for r in full]),
            "syscalls_per_request": round(sum(r[5] for r in full) / len(full), 2) if full else None,
            "to_kernel_p50_us": med([r[3] - r[2] for r in full]),
            "same_cpu": round(sum(1 for r in full if r[7] == r[8]) / len(full), 3) if full else None,
        }
    return {"opcodes": out, "requests": len(reqs),
            "thread_handoffs": round(handoffs / max(len(order) - 1, 1), 3),
            "server_wakeups_per_request": round(wake[0] / max(len(reqs), 1), 2) if wake else None,
            "server_switches_per_request": round(wake[1] / max(len(reqs), 1), 2) if wake else None}


def request_mix(reqs):
    """Requests per opcode (name -> count)."""
    mix = {}
    for r in reqs:
        name = OPCODES.get(r[0], str(r[0]))
        mix[name] = mix.get(name, 0) + 1
    return dict(sorted(mix.items(), key=lambda kv: -kv[1]))
