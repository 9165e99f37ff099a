"""System helpers shared by the benchmark drivers (no configuration read
here: each driver reads its own environment)."""
import os, subprocess, sys, time


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def drop_caches():
    """Also after mass deletions: until the inode tables are written out,
    ext4 skips recently deleted inodes one by one when allocating (its
    `recently_deleted`), which makes the next creates several times slower."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def mounts_under(d):
    with open("/proc/self/mountinfo") as f:
        points = [l.split()[4] for l in f]
    return [m for m in points if m == d or m.startswith(d + "/")]


def is_mounted(mp):
    return os.path.realpath(mp) in mounts_under(os.path.realpath(mp))


def umount(mp):
    """Unmounts `mp`, retrying while busy; lazily as the last resort."""
    for _ in range(50):
        if not is_mounted(mp):
            return
        if subprocess.run(["umount", mp], stderr=subprocess.DEVNULL).returncode != 0:
            time.sleep(0.1)
    if is_mounted(mp):
        print(f"bench: {mp} still busy: lazy unmount", file=sys.stderr, flush=True)
        subprocess.run(["umount", "-l", mp])
