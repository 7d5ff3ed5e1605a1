"""Small file systems for the disk tests (test_faults, test_exhaustion).

mount_tmpfs(path, size) mounts a tmpfs of SIZE ("20m") at path (the run's
network namespace shares the host's mount namespace, so every caller
unmounts in a finally); fill(path, leave) writes a filler file until about
`leave` bytes stay free and returns what is free then.
"""
import os
import subprocess


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s' % size,
                        'tmpfs', path], capture_output=True, text=True)
    assert r.returncode == 0, 'mount tmpfs %s: %s' % (path, r.stderr.strip())


def umount(path):
    subprocess.run(['umount', '-l', path], capture_output=True)


def free(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, leave):
    """Write a filler file so that about `leave` bytes stay free."""
    want = free(os.path.dirname(path)) - leave
    with open(path, 'ab', buffering=0) as f:
        chunk = b'\0' * (1 << 20)
        while want > 0:
            try:
                n = f.write(chunk[:min(len(chunk), want)])
            except OSError:
                break
            want -= n
    return free(os.path.dirname(path))
