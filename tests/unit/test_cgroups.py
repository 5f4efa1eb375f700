"""host.cgroups without a kernel: mountinfo, paths given to --cgroup
(against a fake cgroup tree), a subtree's threads, /proc/PID/cgroup and
NSpid lines, and the short names of container and unit cgroups."""

import os

import pytest

from ftracetools.errors import ToolError, UsageError
from ftracetools.host import cgroups

# this host's, hybrid: v1 controllers under a tmpfs, cgroup2 beside them
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# a unified host (optional fields before the "-"), and a mount point with a space
UNIFIED = """\
25 1 0:22 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate
26 1 0:23 / /mnt/my\\040cg rw master:2 - cgroup2 none rw
"""


def test_mountinfo_fields():
    ms = cgroups.parse_mountinfo(HYBRID)
    assert [m.point for m in ms][-1] == "/sys/fs/cgroup/unified"
    assert cgroups.cgroup2_mount(HYBRID).point == "/sys/fs/cgroup/unified"
    assert [m.opts for m in cgroups.v1_mounts(HYBRID)] == ["rw,cpu", "rw,memory",
                                                           "rw,name=systemd"]
    u = cgroups.parse_mountinfo(UNIFIED)
    assert cgroups.cgroup2_mount(UNIFIED).point == "/sys/fs/cgroup"
    assert u[1].point == "/mnt/my cg" and u[1].fstype == "cgroup2"
    assert cgroups.cgroup2_mount(HYBRID.replace("cgroup2 cgroup2", "tmpfs tmpfs")) is None
    assert cgroups.parse_mountinfo("garbage\n\n1 2 3\n") == []


@pytest.fixture
def tree(tmp_path):
    """A fake hybrid tree: cgroup2 at tmp/unified (with a/b below), a v1
    hierarchy at tmp/cpu with a group only there."""
    u, cpu = tmp_path / "unified", tmp_path / "cpu"
    for d, tids in ((u, "1\n"), (u / "a", "10\n11\n"), (u / "a" / "b", "12\n"),
                    (u / "c", "")):
        d.mkdir(parents=True)
        (d / "cgroup.threads").write_text(tids)
        (d / "cgroup.procs").write_text(tids)
    (cpu / "only-v1").mkdir(parents=True)
    (tmp_path / "plain").mkdir()
    text = ("41 31 0:38 / %s rw - cgroup2 cgroup2 rw\n"
            "32 31 0:29 / %s rw - cgroup cgroup rw,cpu\n" % (u, cpu))
    return tmp_path, text


def test_paths_relative_and_absolute(tree):
    root, text = tree
    u = str(root / "unified")
    assert cgroups.resolve("a/b", text=text) == os.path.join(u, "a", "b")
    assert cgroups.resolve("/a/b", text=text) == os.path.join(u, "a", "b")  # /proc's form
    assert cgroups.resolve(os.path.join(u, "a"), text=text) == os.path.join(u, "a")
    assert cgroups.resolve(u + "/a/../a/", text=text) == os.path.join(u, "a")
    assert cgroups.resolve(".", text=text) == u


@pytest.mark.parametrize("path,words", [
    ("nope", "no such cgroup"), ("../x", "leaves the cgroup2 mount"),
    ("only-v1", "only in cgroup v1 hierarchies (cpu)"), ("", "empty path"),
    ("a/cgroup.procs", "not a cgroup (not a directory)"),
])
def test_bad_relative_paths(tree, path, words):
    with pytest.raises(UsageError) as e:
        cgroups.resolve(path, text=tree[1])
    assert words in str(e.value) and e.value.hint


def test_messages_stay_on_one_line(tree):
    with pytest.raises(UsageError) as e:
        cgroups.resolve("a\nb\x1b", text=tree[1])
    assert "\n" not in str(e.value) and "--cgroup a\\nb\\x1b: no such cgroup" in str(e.value)


def test_bad_absolute_paths(tree):
    root, text = tree
    for p, words in ((root / "cpu", "a cgroup v1 hierarchy (cpu)"),
                     (root / "cpu" / "only-v1", "a cgroup v1 hierarchy (cpu)"),
                     (root / "plain", "not a cgroup (not under the cgroup2 mount")):
        with pytest.raises(UsageError) as e:
            cgroups.resolve(str(p), text=text)
        assert str(e.value).startswith("--cgroup %s: %s" % (p, words)), str(e.value)
    (root / "unified" / "notcg").mkdir()    # a directory without cgroup.threads
    with pytest.raises(UsageError, match="no cgroup.threads"):
        cgroups.resolve("notcg", text=text)


def test_no_cgroup2_mounted(tree):
    root, text = tree
    with pytest.raises(ToolError) as e:
        cgroups.resolve("a", text=text.replace("cgroup2 cgroup2", "tmpfs tmpfs"))
    assert not isinstance(e.value, UsageError) and "no cgroup2" in str(e.value)


def test_subtree_threads(tree):
    u = str(tree[0] / "unified")
    got = cgroups.subtree_threads(os.path.join(u, "a"))
    assert got == {10: os.path.join(u, "a"), 11: os.path.join(u, "a"),
                   12: os.path.join(u, "a", "b")}
    assert set(cgroups.subtree_threads(u)) == {1, 10, 11, 12}
    assert cgroups.subtree_threads(os.path.join(u, "gone")) is None


def test_proc_cgroup_line():
    text = "9:name=systemd:/user.slice\n4:memory:/x\n0::/system.slice/nginx.service\n"
    assert cgroups.parse_proc_cgroup(text) == "/system.slice/nginx.service"
    assert cgroups.parse_proc_cgroup("4:memory:/x\n") is None
    assert cgroups.parse_proc_cgroup("0::/\n") == "/"


D = "0123456789abcdef" * 4


@pytest.mark.parametrize("path,name", [
    (None, "?"), ("/", "/"), ("/ftt-a", "ftt-a"),
    ("/system.slice/nginx.service", "nginx.service"),
    ("/user.slice/user-1000.slice/session-2.scope", "session-2.scope"),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service", "foo.service"),
    ("/system.slice/docker-%s.scope" % D, "docker-0123456789ab"),
    ("/docker/%s" % D, "docker-0123456789ab"),
    ("/system.slice/crio-%s.scope" % D, "crio-0123456789ab"),
    ("/machine.slice/libpod-%s.scope/container" % D, "libpod-0123456789ab"),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_5e6f_7a8b"
     "_9c0d_1e2f3a4b5c6d.slice/cri-containerd-%s.scope" % D,
     "pod1a2b3c4d/containerd-0123456789ab"),
    ("/kubepods.slice/kubepods-pod1a2b3c4d_5e6f.slice", "pod1a2b3c4d"),
    ("/kubepods/besteffort/pod1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d/%s" % D,
     "pod1a2b3c4d/0123456789ab"),
])
def test_short_names(path, name):
    assert cgroups.short_name(path) == name


def test_nspid_line():
    st = "Name:\tsleep\nTgid:\t4242\nNSpid:\t4242\t7\t1\nNStgid:\t4242\t7\t1\n"
    assert cgroups.parse_nspid(st) == [4242, 7, 1]
    assert cgroups.parse_nspid("Name:\tx\n") is None


def test_lookup_reads_once_until_kept(monkeypatch):
    reads = []
    monkeypatch.setattr(cgroups, "task_cgroup", lambda p: reads.append(p) or "/c%d" % p)
    lk = cgroups.Lookup()
    lk.see([1, 2])
    lk.see([2, 3])
    assert lk.of(2) == "/c2" and lk.of(4) == "/c4" and reads == [1, 2, 3, 4]
    lk.keep([1])
    lk.of(2)
    assert reads[-1] == 2 and set(lk.paths) == {1, 2}


def test_lookup_child_takes_its_parents_cgroup(monkeypatch):
    live = {1: "/a", 2: "/b"}
    monkeypatch.setattr(cgroups, "task_cgroup", lambda p: live.get(p))
    lk = cgroups.Lookup()
    lk.inherit(1, 5)            # the child is gone: its parent's
    lk.inherit(1, 2)            # alive: its own (moved, or CLONE_INTO_CGROUP)
    assert lk.of(5) == "/a" and lk.of(2) == "/b"
    lk.inherit(9, 5)            # known already: kept
    assert lk.of(5) == "/a"
