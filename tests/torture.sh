#!/bin/sh
# torture.sh BUILD [SECONDS] - the long crash-consistency run (make torture).
#
# Runs tests/torture/test_torture.py through the integration harness
# (run.sh: private network namespace, nsd, sinks) for SECONDS (default
# TORTURE_SECONDS or 600): backmxd is kill -9'ed at random moments during
# accept, delivery, checkpoints and backmxctl flush, and every message
# that got 250 must be delivered.  TORTURE_SEED repeats a run.  Then the
# mirror run (test_takeover_lost.py) with MIRROR_MESSAGES (500).  The one
# line report is also written to BUILD/torture-report.  Needs root.
build=${1:-build}
TORTURE_SECONDS=${2:-${TORTURE_SECONDS:-600}}
export TORTURE_SECONDS
here=$(cd "$(dirname "$0")" && pwd)
rc=0
sh "$here/integration/run.sh" "$build" "$here/torture/test_torture.py" || rc=1
# issue 18's must-show run at full size: 500 messages to two mirror
# nodes, node A lost with its disk, B delivers all; A back empty, B lost,
# A delivers B's mail (tests/integration/test_takeover_lost.py)
MIRROR_MESSAGES=${MIRROR_MESSAGES:-500} sh "$here/integration/run.sh" \
    "$build" "$here/integration/test_takeover_lost.py" || rc=1
exit $rc
