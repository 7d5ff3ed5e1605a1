#!/bin/sh
# torture.sh BUILD [SECONDS] - the long crash-consistency run (make torture).
#
# Runs tests/torture/test_torture.py through the integration harness
# (run.sh: private network namespace, nsd, sinks) for SECONDS (default
# TORTURE_SECONDS or 600): backmxd is kill -9'ed at random moments during
# accept, delivery, checkpoints and backmxctl flush, and every message
# that got 250 must be delivered.  TORTURE_SEED repeats a run.  The one
# line report is also written to BUILD/torture-report.  Needs root.
build=${1:-build}
TORTURE_SECONDS=${2:-${TORTURE_SECONDS:-600}}
export TORTURE_SECONDS
here=$(cd "$(dirname "$0")" && pwd)
exec sh "$here/integration/run.sh" "$build" "$here/torture/test_torture.py"
