"""Driver of scripts/bench-copy: see that script for what is measured."""
import json, os, re, shutil, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from bench_view import drop_caches, gen, is_mounted, med, sh, timed, umount  # noqa: E402

BIN = os.environ["G2A_BIN"]
WORK = os.environ["BENCH_DIR"]
OUT = os.environ["BENCH_OUT"]
RUNS = int(os.environ["RUNS"])
SIZE_MB = int(os.environ["SIZE_MB"])
DEBIAN = os.environ.get("DEBIAN_BASE", "/var/tmp/g2a-debian")
mounts = []


def mount_dest(at, image):
    """A fresh ext4 file system (loop image) mounted at `at`."""
    if os.path.exists(image):
        os.remove(image)
    with open(image, "wb") as f:
        f.truncate((SIZE_MB * 3 + 2048) << 20)
    sh("mkfs.ext4", "-q", "-F", image)
    os.makedirs(at, exist_ok=True)
    sh("mount", "-o", "loop", image, at)
    mounts.append(at)


def make_root(root):
    if os.path.isdir(os.path.join(DEBIAN, "usr")):
        gen(root, "--seed", "5", "--images", "2", "--containers", "2", "--debian-base", DEBIAN)
    else:
        gen(root, "--seed", "5", "--images", "40", "--containers", "2", "--entries-per-layer", "180")
    graph = os.path.join(root, "graph")
    first = sorted(i for i in os.listdir(graph) if os.path.isdir(os.path.join(graph, i, "layer")))[0]
    with open(os.path.join(graph, first, "layer", "big.bin"), "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(SIZE_MB):
            f.write(chunk)
    os.sync()


def fio_write_latency(path):
    r = json.loads(subprocess.run(
        ["fio", "--name=w", f"--filename={path}", "--rw=randwrite", "--bs=4k", "--size=64m", "--ioengine=psync",
         "--fsync=1", "--runtime=5", "--time_based", "--output-format=json"],
        check=True, capture_output=True).stdout)
    clat = r["jobs"][0]["write"]["clat_ns"]["percentile"]
    return clat["50.000000"] / 1e3, clat["99.000000"] / 1e3  # microseconds


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    src = os.path.join(WORK, "src")
    make_root(src)
    data = int(subprocess.run(["du", "-sb", os.path.join(src, "graph")], capture_output=True, text=True,
                              check=True).stdout.split()[0])
    dest, image = os.path.join(WORK, "dest"), os.path.join(WORK, "dest.img")
    cp, mv, g2a = [], [], []
    root = os.path.join(WORK, "root")
    try:
        for _ in range(RUNS):
            # cp -a of every layer to the other file system.
            mount_dest(dest, image)
            drop_caches()
            ids = [i for i in os.listdir(os.path.join(src, "graph")) if os.path.isdir(os.path.join(src, "graph", i, "layer"))]

            def cp_all():
                for i in ids:
                    sh("cp", "-a", os.path.join(src, "graph", i, "layer"), os.path.join(dest, i))
                os.sync()
            cp.append(timed(cp_all))
            umount(dest)
            # What an operator moving the layers by hand does: cp -a, sync,
            # then rm -rf of the sources (of a copy of the root, like
            # graph2aufs's).
            shutil.rmtree(root, ignore_errors=True)
            sh("cp", "-a", src, root)
            mount_dest(dest, image)
            drop_caches()

            def move_all():
                for i in ids:
                    sh("cp", "-a", os.path.join(root, "graph", i, "layer"), os.path.join(dest, i))
                os.sync()
                for i in ids:
                    sh("rm", "-rf", os.path.join(root, "graph", i, "layer"))
            mv.append(timed(move_all))
            umount(dest)
            # graph2aufs migrate with aufs/ on the other file system.
            shutil.rmtree(root, ignore_errors=True)
            sh("cp", "-a", src, root)
            mount_dest(os.path.join(root, "aufs"), image)
            drop_caches()
            g2a.append(timed(lambda: subprocess.run([f"{BIN}/graph2aufs", "migrate", root, "--json"],
                                                    stdout=subprocess.DEVNULL, check=False)))
            umount(os.path.join(root, "aufs"))
        # Write latency through the view: during a copy, then with none.
        shutil.rmtree(root, ignore_errors=True)
        sh("cp", "-a", src, root)
        mount_dest(os.path.join(root, "aufs"), image)
        log_path = os.path.join(WORK, "view.log")
        log = open(log_path, "w")
        p = subprocess.Popen([f"{BIN}/graph2aufs", "mount", root, "--foreground"], stderr=log,
                             env={**os.environ, "RUST_LOG": "info"})
        while not (is_mounted(root) and os.path.isdir(os.path.join(root, "aufs", "diff"))):
            time.sleep(0.01)
        containers = sorted(os.listdir(os.path.join(root, "containers")))
        target = os.path.join(root, "aufs", "diff", containers[0], "fio.dat")
        during = fio_write_latency(target)
        deadline = time.time() + 900
        while time.time() < deadline:
            st = subprocess.run([f"{BIN}/graph2aufs", "status", root, "--json"], capture_output=True, text=True)
            if st.returncode in (0, 1) and json.loads(st.stdout).get("live", {}).get("finished"):
                break
            time.sleep(0.5)
        idle = fio_write_latency(target)
        umount(root)
        p.wait(timeout=60)
        log.close()
        umount(os.path.join(root, "aufs"))
        # Each layer's switch to its copy: how long its changes paused.
        pauses = {}
        for line in open(log_path):
            m = re.search(r"(\S+) switched to its copy in ([0-9.]+) ms", line)
            if m:
                pauses[m.group(1)] = float(m.group(2))
    finally:
        for m in reversed(mounts):
            if is_mounted(m):
                umount(m)
    shutil.rmtree(WORK)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    results = {
        "machine": f"{os.cpu_count()} CPUs ({cpu}), kernel {os.uname().release}; source ext4 (host disk), "
                   f"destination ext4 on a loop image on the same disk",
        "data_bytes": data,
        "cp_a_s": cp,
        "cp_a_sync_rm_s": mv,
        "graph2aufs_migrate_s": g2a,
        "throughput_ratio": med(cp) / med(g2a),
        "move_ratio": med(mv) / med(g2a),
        "write_latency_us_during_copy_p50_p99": during,
        "write_latency_us_no_copy_p50_p99": idle,
        "switch_pause_ms": pauses,
    }
    with open(OUT, "w") as f:
        json.dump(results, f, indent=2)
    spread = lambda xs: f"{med(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f})"
    mib = data / 2**20
    print(f"Machine: {results['machine']}; median of {RUNS} runs (spread min-max); {mib:,.0f} MiB of layers")
    print(f"| cp -a of the layers | {spread(cp)} | {mib / med(cp):,.0f} MiB/s |")
    print(f"| cp -a of the layers, sync, rm -rf of their sources | {spread(mv)} | {mib / med(mv):,.0f} MiB/s |")
    print(f"| graph2aufs migrate across file systems | {spread(g2a)} | {mib / med(g2a):,.0f} MiB/s |")
    print(f"| ratio (cp -a time / graph2aufs time) | {results['throughput_ratio']:.2f} | target >= 0.9 |")
    print(f"| ratio (cp -a + rm -rf time / graph2aufs time) | {results['move_ratio']:.2f} | for a move |")
    print(f"| 4 KiB write+fsync latency through the view, p50 / p99 | during a copy {during[0]:.0f} / {during[1]:.0f} us "
          f"| no copy {idle[0]:.0f} / {idle[1]:.0f} us |")
    if pauses:
        ps = sorted(pauses.values())
        print(f"| changes to a layer paused while it switches to its copy (view, {len(ps)} layers) "
              f"| median {med(ps):.1f} ms | max {ps[-1]:.1f} ms |")


if __name__ == "__main__":
    main()
