"""Driver of scripts/bench-view: see that script for what is measured."""
import json, os, platform, random, shutil, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from bench_common import drop_caches, is_mounted, sh, timed, umount  # noqa: E402,F401

BIN = os.environ["G2A_BIN"]
WORK = os.environ["BENCH_DIR"]
OUT = os.environ["BENCH_OUT"]
RUNS = int(os.environ["RUNS"])
DEBIAN = os.environ.get("DEBIAN_BASE", "/var/tmp/g2a-debian")
mounts = []


def mount_view(root, mp, extra=(), probe=None):
    """Starts a read-only view; returns (process, seconds until a stat of
    `probe` (default: the mount point) through it succeeds)."""
    os.makedirs(mp, exist_ok=True)
    t0 = time.perf_counter()
    p = subprocess.Popen([f"{BIN}/graph2aufs", "mount", root, mp, "--read-only", *extra],
                         stderr=subprocess.DEVNULL)
    mounts.append(mp)
    target = os.path.join(mp, probe) if probe else mp
    while True:
        try:
            if is_mounted(mp):
                os.stat(target)
                break
        except FileNotFoundError:
            pass
        if p.poll() is not None:
            raise SystemExit(f"graph2aufs mount exited with {p.returncode}")
        time.sleep(0.0005)
    return p, time.perf_counter() - t0


def stop(p, mp):
    umount(mp)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()


def gen(root, *args):
    sh(f"{BIN}/g2a-genroot", root, *args, stdout=subprocess.DEVNULL)


def walk(path):
    sh("find", path, "-printf", "%s %m\n", stdout=subprocess.DEVNULL)


def fio(path, rw, bs, runtime=None, size="1g"):
    args = ["fio", "--name=b", f"--filename={path}", f"--rw={rw}", f"--bs={bs}", f"--size={size}",
            "--ioengine=psync", "--iodepth=1", "--readonly", "--output-format=json",
            # fio drops the file's cached pages before a job by default:
            # cold runs come from drop_caches instead, warm ones keep them.
            "--invalidate=0"]
    if runtime:
        args += [f"--runtime={runtime}", "--time_based"]
    r = json.loads(subprocess.run(args, check=True, capture_output=True).stdout)
    return r["jobs"][0]["read"]["bw_bytes"] / 2**20  # MiB/s


def med(xs):
    return statistics.median(xs)


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    results = {}
    mp = os.path.join(WORK, "mp")

    parts = os.environ.get("PARTS", "usable,tree").split(",")
    # 1. Time to a usable view of 10,000 layers, against offline migrate.
    if "usable" in parts:
        usable_part(results, mp)
    if "tree" in parts:
        tree_part(results, mp)
    report(results)


def usable_part(results, mp):
    big = os.path.join(WORK, "big")
    gen(big, "--seed", "3", "--images", "10000", "--containers", "0", "--entries-per-layer", "0", "--max-chain", "12")
    ids = [i for i in os.listdir(os.path.join(big, "graph")) if len(i) == 64]
    sh("find", big, "-printf", "", stdout=subprocess.DEVNULL)  # metadata warm
    usable = []
    for _ in range(RUNS):
        probe = os.path.join("aufs", "layers", random.choice(ids))
        p, t = mount_view(big, mp, probe=probe)
        usable.append(t)
        stop(p, mp)
    copy = os.path.join(WORK, "big-copy")
    migrate = []
    for _ in range(RUNS):
        shutil.rmtree(copy, ignore_errors=True)
        sh("cp", "-a", big, copy)
        os.sync()
        migrate.append(timed(lambda: subprocess.run([f"{BIN}/graph2aufs", "migrate", copy, "--json"],
                                                    stdout=subprocess.DEVNULL)))
    shutil.rmtree(copy)
    shutil.rmtree(big)
    results["usable_10000_layers_s"] = usable
    results["offline_migrate_10000_layers_s"] = migrate


def tree_part(results, mp):
    """Walks of a real-sized tree, and reads of a 1 GiB file."""
    tree = os.path.join(WORK, "tree")
    if os.path.isdir(os.path.join(DEBIAN, "usr")):
        gen(tree, "--seed", "5", "--images", "2", "--containers", "0", "--debian-base", DEBIAN)
        results["tree"] = "Debian minbase (debootstrap)"
    else:
        gen(tree, "--seed", "5", "--images", "40", "--containers", "0", "--entries-per-layer", "180")
        results["tree"] = "generated (40 layers x 180 entries)"
    layers = {i: os.path.join(tree, "graph", i, "layer") for i in os.listdir(os.path.join(tree, "graph"))
              if os.path.isdir(os.path.join(tree, "graph", i, "layer"))}
    big_id = max(layers, key=lambda i: sum(len(f) for _, _, f in os.walk(layers[i])))
    with open(os.path.join(layers[big_id], "bigfile"), "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(1024):
            f.write(chunk)
    os.sync()
    # The walks go over the largest layer: graph/<id>/layer natively,
    # aufs/diff/<id> through the view (the same directory).
    entries = sum(1 + len(d) + len(f) for _, d, f in os.walk(layers[big_id]))
    results["tree_entries"] = entries
    rows = {}

    def measure(label, view_root, extra=()):
        walk_cold, walk_warm, seq_cold, seq_warm, rand = [], [], [], [], []
        for _ in range(RUNS):
            drop_caches()
            if view_root is None:
                target, big_file = layers[big_id], os.path.join(layers[big_id], "bigfile")
                walk_cold.append(timed(lambda: walk(target)))
            else:
                p, _ = mount_view(view_root, mp, extra)
                target = os.path.join(mp, "aufs", "diff", big_id)
                big_file = os.path.join(target, "bigfile")
                walk_cold.append(timed(lambda: walk(target)))
            walk_warm.append(timed(lambda: walk(target)))
            drop_caches()
            seq_cold.append(fio(big_file, "read", "128k"))
            seq_warm.append(fio(big_file, "read", "128k"))
            rand.append(fio(big_file, "randread", "4k", runtime=5))
            if view_root is not None:
                stop(p, mp)
        rows[label] = {"walk_cold_s": walk_cold, "walk_warm_s": walk_warm, "seq_cold_mib_s": seq_cold,
                       "seq_warm_mib_s": seq_warm, "rand4k_mib_s": rand}

    measure("native", None)
    measure("view of ROOT as it is", tree)
    ro = os.path.join(WORK, "ro")
    os.makedirs(ro)
    sh("mount", "--bind", tree, ro)
    sh("mount", "-o", "remount,bind,ro", ro)
    mounts.append(ro)
    try:
        measure("view on a read-only ROOT (passthrough)", ro)
    finally:
        umount(ro)
    results["rows"] = rows


def report(results):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    fs = subprocess.run(["findmnt", "-no", "FSTYPE,OPTIONS", "-T", WORK], capture_output=True, text=True).stdout.strip()
    results["machine"] = f"{os.cpu_count()} CPUs ({cpu}), kernel {platform.release()}, {fs}"
    print(f"Machine: {results['machine']}; median of {RUNS} runs (spread min-max)")
    print()
    if "usable_10000_layers_s" in results:
        usable, migrate = results["usable_10000_layers_s"], results["offline_migrate_10000_layers_s"]
        print("| measure | value | against |")
        print("|---|---|---|")
        print(f"| usable view, 10,000 layers | {med(usable):.3f} s ({min(usable):.3f}-{max(usable):.3f}) | "
              f"offline migrate {med(migrate):.3f} s |")
        print()
    if "rows" not in results:
        with open(OUT, "w") as f:
            json.dump(results, f, indent=1)
        return
    rows = results["rows"]
    print(f"Tree: {results['tree']}, a layer of {results['tree_entries']} entries and a 1 GiB file. "
          "Ratios to native (1.00 = native speed).")
    print()
    print("| | walk cold | walk warm | seq read cold | seq read warm | 4k rand read |")
    print("|---|---|---|---|---|---|")
    nat = rows["native"]
    for label, r in rows.items():
        cells = []
        for k in ("walk_cold_s", "walk_warm_s"):
            cells.append(f"{med(r[k]):.3f} s ({med(nat[k]) / med(r[k]):.2f})")
        for k in ("seq_cold_mib_s", "seq_warm_mib_s", "rand4k_mib_s"):
            cells.append(f"{med(r[k]):.0f} MiB/s ({med(r[k]) / med(nat[k]):.2f})")
        print(f"| {label} | " + " | ".join(cells) + " |")
    with open(OUT, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    finally:
        for m in reversed(mounts):
            umount(m)
        shutil.rmtree(WORK, ignore_errors=True)
