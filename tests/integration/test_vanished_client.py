"""A client that vanishes without a FIN (its machine off, its network gone)
acknowledges nothing more; the stream's heartbeats stay unacknowledged and
TCP_USER_TIMEOUT, set on every connection, ends the stream within that bound
instead of after the kernel's ~15 minutes of retransmissions.

Real packet loss needs a network of its own: the stream and its client run
in a child process in a new network namespace (``unshare --net``, root),
where every packet on loopback is then dropped. Nothing outside it changes.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEARTBEAT = 0.5


def seconds_to_detect(unacked: float) -> float | None:
    command = ["unshare", "--net", sys.executable, "-m", "tests.support.vanish", "--unacked", str(unacked),
               "--heartbeat", str(HEARTBEAT), "--wait", "20"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    detected: float | None = json.loads(done.stdout)["detected_after"]
    return detected


def test_a_client_that_vanishes_is_detected_within_the_unacknowledged_bound() -> None:
    short, longer = seconds_to_detect(2), seconds_to_detect(5)
    assert short is not None
    assert longer is not None
    # within the bound plus one heartbeat (the first unacknowledged write) and the kernel's retransmit timer
    assert short < 2 + HEARTBEAT + 1.5, short
    # and it is the bound that ends it: a longer bound, a later end
    assert 5 <= longer < 5 + HEARTBEAT + 1.5, longer
