"""Driver of scripts/bench-live: see that script for what is measured."""
import json, os, random, re, shutil, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from bench_view import gen, is_mounted, med, sh, timed, umount  # noqa: E402

BIN = os.environ["G2A_BIN"]
WORK = os.environ["BENCH_DIR"]
OUT = os.environ["BENCH_OUT"]
RUNS = int(os.environ["RUNS"])
LAYERS = int(os.environ["LAYERS"])


def fresh_copy(src, dst):
    shutil.rmtree(dst, ignore_errors=True)
    sh("cp", "-a", src, dst)
    sh("find", dst, "-printf", "", stdout=subprocess.DEVNULL)  # metadata warm
    os.sync()


def live_run(root, ids):
    """Mounts the read-write view over `root`; returns (seconds to a usable
    view, seconds the background migration took, items it migrated)."""
    probe = os.path.join(root, "aufs", "layers", random.choice(ids))
    log = open(os.path.join(WORK, "server.log"), "w+")
    t0 = time.perf_counter()
    p = subprocess.Popen([f"{BIN}/graph2aufs", "mount", root, "--foreground"], stderr=log,
                         env={**os.environ, "RUST_LOG": "info"})
    try:
        while True:
            try:
                if is_mounted(root):
                    os.stat(probe)
                    break
            except FileNotFoundError:
                pass
            if p.poll() is not None:
                raise SystemExit(f"graph2aufs mount exited with {p.returncode}")
            time.sleep(0.0005)
        usable = time.perf_counter() - t0
        done = None
        deadline = time.time() + 600
        while done is None and time.time() < deadline:
            time.sleep(0.2)
            log.seek(0)
            m = re.search(r"background migration finished in ([0-9.]+) s: (.*)", log.read())
            if m:
                done = (float(m.group(1)), m.group(2))
        if done is None:
            raise SystemExit("the background migration did not finish within 10 minutes")
    finally:
        umount(root)
        p.wait(timeout=60)
    return usable, done[0], done[1]


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    big = os.path.join(WORK, "big")
    gen(big, "--seed", "3", "--images", str(LAYERS), "--containers", "0", "--entries-per-layer", "0",
        "--max-chain", "12")
    ids = [i for i in os.listdir(os.path.join(big, "graph")) if len(i) == 64]
    copy = os.path.join(WORK, "copy")
    usable, background, migrate, summary = [], [], [], ""
    for _ in range(RUNS):
        fresh_copy(big, copy)
        u, b, summary = live_run(copy, ids)
        usable.append(u)
        background.append(b)
        fresh_copy(big, copy)
        migrate.append(timed(lambda: subprocess.run([f"{BIN}/graph2aufs", "migrate", copy, "--json"],
                                                    stdout=subprocess.DEVNULL)))
    shutil.rmtree(WORK)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    fs = subprocess.run(["findmnt", "-no", "FSTYPE,OPTIONS", "-T", os.path.dirname(WORK)], capture_output=True,
                        text=True).stdout.strip()
    results = {
        "machine": f"{os.cpu_count()} CPUs ({cpu}), kernel {os.uname().release}, {fs}",
        "layers": LAYERS,
        "runs": RUNS,
        "usable_s": usable,
        "offline_migrate_s": migrate,
        "background_s": background,
        "background_result": summary,
    }
    with open(OUT, "w") as f:
        json.dump(results, f, indent=2)
    spread = lambda xs: f"{med(xs):.3f} s ({min(xs):.3f}-{max(xs):.3f})"
    print(f"Machine: {results['machine']}; median of {RUNS} runs (spread min-max), {LAYERS} legacy layers")
    print(f"| mount to a usable read-write view | {spread(usable)} |")
    print(f"| offline migrate (Docker's blocking migration stand-in) | {spread(migrate)} |")
    print(f"| background migration under the view | {spread(background)}, "
          f"{LAYERS / med(background):,.0f} items/s ({summary}) |")


if __name__ == "__main__":
    main()
