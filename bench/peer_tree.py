"""A copy of the shared peer harness (../shared/bench/peer/) that measures a collector's worker processes too.

    python3 bench/peer_tree.py [DEST]        # default /tmp/peer-tree; then, from the project root:
                                             # (the harness: $PEER_SRC, or ../shared/bench/peer beside the checkout
                                             # or beside the directory of worktrees)
    FORMAT=yujing YUJING_SRC=$PWD PEER_BASE=... <ports> bash /tmp/peer-tree/run_peer.sh

The shared harness is not ours to edit, and it tracks only the PIDs it started: with ``collector.workers``
(the default, one worker per core) its drain phase SIGSTOPs the ``yujing collector`` parent alone, an idle
supervisor, while the workers go on draining, and it reads CPU and peak RSS from that PID alone. This copy
changes ``bench.py`` only, in three places, each found by the text it follows (the copy is refused if the
harness changed there):

- ``descendants(pid)``: every process below a PID, from the ``ppid`` field of ``/proc/*/stat``;
- ``parse_pids()`` adds every descendant of each ``sut*`` PID as ``<sut>~<pid>``, so the SUT's CPU is summed and
  its peak RSS listed over the whole process tree;
- ``cmd_drain()`` SIGSTOPs and SIGCONTs every descendant with its parent.

Phases, counts, timing and the report are the harness's own. The harness's ``YUJING_PROCS=2`` mode (two
``workers: 1`` collectors on a shared subscription, each a PID it starts and stops) measures the same two
processes without a copy; see collector/README.md.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shared() -> Path:
    """Where the shared harness is: $PEER_SRC, or ../shared/bench/peer beside the checkout or its parent."""
    if os.environ.get("PEER_SRC"):
        return Path(os.environ["PEER_SRC"])
    for up in (ROOT.parent, ROOT.parent.parent):
        if (up / "shared" / "bench" / "peer" / "bench.py").exists():
            return up / "shared" / "bench" / "peer"
    raise SystemExit("the shared peer harness is not at ../shared/bench/peer: set PEER_SRC")

DESCENDANTS = '''

def descendants(pid):
    """PATCHED COPY (bench/peer_tree.py): every process below pid (children of children too), from /proc/*/stat"""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return sorted(out)
'''

TREE_PIDS = '''    # PATCHED COPY: the SUT is each sut pid AND its descendants (collector worker processes): their CPU and
    # peak RSS are summed/listed with it (names "<sut>~<pid>", so sut_total counts them)
    for name, pid in list(out.items()):
        if name.startswith("sut"):
            for c in descendants(pid):
                out["%s~%d" % (name, c)] = c
'''

TREE_STOP = ("    sut_pids += [c for p in list(sut_pids) for c in descendants(p)]"
             "  # PATCHED COPY: SIGSTOP/SIGCONT the whole tree\n")


def patch(text: str) -> str:
    def after(anchor: str, insert: str, text: str) -> str:
        if text.count(anchor) != 1:
            raise SystemExit(f"the shared bench.py changed: {anchor.strip()!r} is not there once; patch by hand")
        return text.replace(anchor, anchor + insert)

    text = after("                out[name.strip()] = int(pid)\n", TREE_PIDS, text)
    text = after("def parse_pids(s):\n", "", text).replace("\n\ndef parse_pids(s):\n", DESCENDANTS + "\n\ndef parse_pids(s):\n")
    return after('    sut_pids = [int(p) for p in str(a.sut_pid).split(",") if p.strip()]\n', TREE_STOP, text)


def main() -> None:
    dest = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/peer-tree")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(shared(), dest)
    bench = dest / "bench.py"
    bench.write_text(patch(bench.read_text()))
    print(f"{dest}/run_peer.sh: the shared harness, following each SUT's process tree")


if __name__ == "__main__":
    main()
