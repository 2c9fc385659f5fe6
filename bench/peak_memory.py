"""Peak resident memory of the running process, for the fresh-process benchmarks."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """The largest resident set size this process has had, in MiB (2**20 bytes).

    Read from ``VmHWM`` in ``/proc/self/status`` (the peak of this process's own address space). Not
    ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries that figure over ``exec`` from the process that
    spawned this one, so a benchmark started by a parent holding a large recording in memory reported the
    parent's size (1919 MB for a session whose analysis peaked at 1239 MB). ``ru_maxrss`` remains the
    fallback where ``/proc`` is missing.

    Returns
    -------
    float
        Peak resident memory in MiB.

    References
    ----------
    proc(5), ``VmHWM``: "Peak resident set size ("high water mark")"; getrusage(2), ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
