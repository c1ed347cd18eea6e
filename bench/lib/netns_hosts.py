"""Fleet hosts for the bench: network namespaces on a bridge, each running
Debian's OpenSSH sshd (key only) with its own hostname and its own /etc,
/usr/local/bin and /var/lib/roster, plus a client namespace the commands
under measure run in. The same approach as the integration tests' fixture
(crates/roster/tests/integration/fleet_hosts.rs), in Python.

Layout: namespace `rbPID-br` holds the bridge `br0`; each host `rbPID-hI`
and the client `rbPID-c` has an `eth0` on it, with an address in
10.78.0.0/24 (.2 the client, .11 and up the hosts) that exists only inside
these namespaces. A host's processes run under `unshare --uts --mount`
with per-host directories bind-mounted over /etc, /usr/local/bin,
/var/lib/roster and /root (an empty home: root's logins on a host do not
run this machine's shell start-up files, e.g. a pyenv rehash that takes a
machine-wide lock, and a host killed at teardown leaves no stale lock
behind); its /etc is a hard-linked copy of one copy of the real
/etc (files a host changes are replaced, never written through).

Made as root; `close()` (registered as a cleanup: also on Ctrl-C, SIGTERM
and the bench's timeout) kills every process in every namespace, then
removes the namespaces. Every directory lives under the measure's temp dir
in /tmp, so the bench's sweep finds whatever is left.
"""

import os
import shutil
import subprocess
import time

from common import log, on_cleanup, remove_cleanup

CLIENT_ADDRESS = "10.78.0.2"
MAX_HOSTS = 200
SSHD_CONFIG = """# roster's fleet bench host
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
UsePAM no
PidFile none
UseDNS no
MaxStartups 100
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def available():
    """(ok, why not) for building hosts here."""
    if os.geteuid() != 0:
        return False, "fleet hosts need root (network namespaces with sshd)"
    for program, package in (("/usr/sbin/sshd", "openssh-server"), ("/usr/bin/ssh", "openssh-client"),
                             ("/usr/bin/ssh-keygen", "openssh-client"),
                             ("/usr/bin/unshare", "util-linux")):
        if not os.path.exists(program):
            return False, "%s is missing (install %s)" % (program, package)
    probe = subprocess.run(["ip", "netns", "list"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    if probe.returncode != 0:
        return False, "`ip netns` does not work here (install iproute2)"
    return True, None


def sh(*argv):
    r = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(argv), r.stderr.strip()[-500:]))
    return r.stdout


def keygen(path):
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", path)


def replace(path, text):
    """A file of the host's own (its /etc is hard-linked to the template)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    with open(path, "w") as f:
        f.write(text)


class Host:
    def __init__(self, name, netns, address, directory):
        self.name = name
        self.netns = netns
        self.address = address
        self.dir = directory
        self.sshd = None

    @property
    def home(self):
        """Its /var/lib/roster as the bench sees it."""
        return os.path.join(self.dir, "roster")

    @property
    def bin(self):
        """Its /usr/local/bin as the bench sees it."""
        return os.path.join(self.dir, "bin")


class NetnsHosts:
    """`count` hosts and a client; `start()` starts every sshd."""

    _made = 0

    def __init__(self, count, directory):
        if count > MAX_HOSTS:
            raise ValueError("at most %d hosts" % MAX_HOSTS)
        NetnsHosts._made += 1
        self.prefix = "rb%d%s" % (os.getpid(), "" if NetnsHosts._made == 1 else "-%d" % NetnsHosts._made)
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.client = self.prefix + "-c"
        self.bridge = self.prefix + "-br"
        self.hosts = []
        self.namespaces = []
        self.identity = os.path.join(directory, "client_ed25519")
        self.known_hosts = os.path.join(directory, "known_hosts")
        on_cleanup(self.close)
        t0 = time.monotonic()
        self._build(count)
        self.build_s = time.monotonic() - t0

    # ------------------------------------------------------------ building

    def _build(self, count):
        keygen(self.identity)
        with open(self.identity + ".pub") as f:
            public_key = f.read()
        os.makedirs("/run/sshd", exist_ok=True)
        os.makedirs("/var/lib/roster", exist_ok=True)
        template = os.path.join(self.dir, "etc")
        sh("cp", "-a", "/etc", template)
        self._netns_add(self.bridge)
        sh("ip", "-n", self.bridge, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.bridge, "link", "set", "br0", "up")
        self._plug(self.client, 0, CLIENT_ADDRESS)
        known = []
        for i in range(count):
            name = "h%d" % (i + 1)
            host = Host(name, "%s-%s" % (self.prefix, name), "10.78.0.%d" % (11 + i),
                        os.path.join(self.dir, name))
            self._plug(host.netns, i + 1, host.address)
            self._host_dirs(template, host, public_key)
            with open(os.path.join(host.dir, "etc/ssh/ssh_host_ed25519_key.pub")) as f:
                known.append("%s %s\n" % (host.address, " ".join(f.read().split()[:2])))
            self.hosts.append(host)
        with open(self.known_hosts, "w") as f:
            f.writelines(known)

    def _netns_add(self, netns):
        sh("ip", "netns", "add", netns)
        self.namespaces.append(netns)

    def _plug(self, netns, index, address):
        """Namespace `netns` with eth0 at `address` on the bridge; the
        client learns a host's MAC for good, so a black-holed host's
        packets are really dropped (not refused for want of ARP)."""
        port = "p%d" % index
        self._netns_add(netns)
        sh("ip", "-n", self.bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0",
           "netns", netns)
        sh("ip", "-n", self.bridge, "link", "set", port, "master", "br0", "up")
        sh("ip", "-n", netns, "addr", "add", address + "/24", "dev", "eth0")
        sh("ip", "-n", netns, "link", "set", "eth0", "up")
        sh("ip", "-n", netns, "link", "set", "lo", "up")
        if netns != self.client:
            words = sh("ip", "-n", netns, "-o", "link", "show", "eth0").split()
            mac = words[words.index("link/ether") + 1]
            sh("ip", "-n", self.client, "neigh", "replace", address, "lladdr", mac, "dev", "eth0",
               "nud", "permanent")

    def _host_dirs(self, template, host, public_key):
        os.makedirs(host.bin)
        os.makedirs(host.home)
        os.makedirs(os.path.join(host.dir, "home"), mode=0o700)
        etc = os.path.join(host.dir, "etc")
        sh("cp", "-al", template, etc)
        ssh = os.path.join(etc, "ssh")
        for entry in os.listdir(ssh):
            if entry.startswith("ssh_host_"):
                os.unlink(os.path.join(ssh, entry))
        keygen(os.path.join(ssh, "ssh_host_ed25519_key"))
        shutil.rmtree(os.path.join(ssh, "sshd_config.d"), ignore_errors=True)
        replace(os.path.join(ssh, "sshd_config"), SSHD_CONFIG)
        os.makedirs(os.path.join(ssh, "authorized_keys"), exist_ok=True)
        replace(os.path.join(ssh, "authorized_keys", "root"), public_key)
        replace(os.path.join(etc, "hostname"), host.name + "\n")

    # ------------------------------------------------------------ running

    def start(self, timeout=60.0):
        """Starts every host's sshd (and the `boot` script its
        /var/lib/roster holds, if any), then waits until each listens."""
        for host in self.hosts:
            self._spawn_sshd(host)
        deadline = time.monotonic() + timeout
        for host in self.hosts:
            log_path = os.path.join(host.dir, "sshd.log")
            while True:
                try:
                    with open(log_path) as f:
                        if "Server listening on" in f.read():
                            break
                except OSError:
                    pass
                if host.sshd.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("sshd of %s did not start" % host.name)
                time.sleep(0.02)

    def _spawn_sshd(self, host):
        log_path = os.path.join(host.dir, "sshd.log")
        script = ("set -e; hostname {name}; "
                  "mount --bind {dir}/etc /etc; "
                  "mount --bind {dir}/bin /usr/local/bin; "
                  "mount --bind {dir}/roster /var/lib/roster; "
                  "mount --bind {dir}/home /root; "
                  "if [ -x /var/lib/roster/boot ]; then /var/lib/roster/boot; fi; "
                  "exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config 2>{log}"
                  ).format(name=host.name, dir=host.dir, log=log_path)
        host.sshd = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--uts", "--mount", "--propagation",
             "private", "sh", "-c", script], stdin=subprocess.DEVNULL)

    def black_hole(self, index):
        """Drops every packet of host `index` (its link goes down; the
        client still knows its MAC, so connecting waits for nothing)."""
        sh("ip", "-n", self.hosts[index].netns, "link", "set", "eth0", "down")

    def restore(self, index):
        sh("ip", "-n", self.hosts[index].netns, "link", "set", "eth0", "up")

    def in_client(self, argv):
        """argv run in the client namespace."""
        return ["ip", "netns", "exec", self.client] + list(argv)

    def ssh_argv(self, host, command, control=False):
        """`ssh` to `host` as root with the bench's key and known hosts;
        without a ControlMaster unless `control`."""
        argv = ["ssh", "-i", self.identity, "-o", "UserKnownHostsFile=" + self.known_hosts,
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=5", "-F", "/dev/null"]
        if not control:
            argv += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        return argv + ["root@" + host.address, command]

    def fleet_head(self, connect_timeout="5s", max_parallel=None, capacity=3):
        """A fleet file's [fleet], [ssh] and [hosts.*] for these hosts."""
        text = ('[fleet]\nname = "bench"\nports = "8100-8199"\n\n[ssh]\nuser = "root"\n'
                'identity = "%s"\nknown_hosts = "%s"\nconnect_timeout = "%s"\nmax_parallel = %d\n\n'
                % (self.identity, self.known_hosts, connect_timeout,
                   max_parallel or len(self.hosts)))
        for host in self.hosts:
            text += '[hosts.%s]\naddress = "%s"\ncapacity = %d\n\n' % (host.name, host.address,
                                                                        capacity)
        return text

    # ------------------------------------------------------------ teardown

    def close(self):
        """Kills every process in every namespace, removes the namespaces."""
        remove_cleanup(self.close)
        for host in self.hosts:
            if host.sshd and host.sshd.poll() is None:
                host.sshd.kill()
        for netns in self.namespaces:
            for _ in range(50):
                r = subprocess.run(["ip", "netns", "pids", netns], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
                pids = [int(p) for p in r.stdout.split() if p.isdigit()]
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, 9)
                    except OSError:
                        pass
                time.sleep(0.02)
        for host in self.hosts:
            if host.sshd:
                try:
                    host.sshd.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        for netns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", netns], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        self.namespaces = []
        log("fleet hosts %s removed" % self.prefix)
