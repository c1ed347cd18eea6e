"""What the fleet measure writes: the agent (a tiny python3 HTTP server
with a /health), the fleet file, each host's roster.toml (as `roster fleet
apply` would render it), Ansible's inventory and playbooks."""

import os

# Serves GET /health (and /) on the socket roster hands over (LISTEN_FDS)
# or on $PORT; answers its release (ROSTER_RELEASE, else the VERSION file
# beside it) and its tenant.
APP = r'''
import json, os, socket, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
if "--self-test" in sys.argv[1:]:
    sys.exit(0)
HERE = os.path.dirname(os.path.abspath(__file__))
try:
    RELEASE = os.environ.get("ROSTER_RELEASE") or open(os.path.join(HERE, "VERSION")).read().strip()
except OSError:
    RELEASE = None

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path in ("/", "/health")
        body = json.dumps({"release": RELEASE, "customer": os.environ.get("CUSTOMER")}).encode()
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

if os.environ.get("LISTEN_PID") == str(os.getpid()):
    server = HTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=3)
else:
    HTTPServer.allow_reuse_address = True
    server = HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.serve_forever()
'''

REMOTE_HOME = "/var/lib/roster"
REMOTE_ROSTER = "/usr/local/bin/roster"
REMOTE_APP = REMOTE_HOME + "/app"
BASE_PORT = 8100


def write_release(directory, version):
    """A release directory: app.py and VERSION."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "app.py"), "w") as f:
        f.write(APP)
    with open(os.path.join(directory, "VERSION"), "w") as f:
        f.write(version + "\n")
    return directory


def placement(hosts, instances):
    """[(tenant, host index, port)]: tenant i on host i mod n, ports from
    8100 up on each host (at most ceil(instances / n) per host)."""
    n = len(hosts)
    return [("c%02d" % (i + 1), i % n, BASE_PORT + i // n) for i in range(instances)]


def fleet_file(fleet, instances, capacity, connect_timeout="5s"):
    """The fleet file: [ssh] and [hosts.*] from the hosts, one template
    `support` (the issue's shape: blue-green with [listen] and a health
    check), tenants pinned as `placement` puts them."""
    text = fleet.fleet_head(connect_timeout=connect_timeout, capacity=capacity)
    text += ('[agents.support]\ncommand = ["/usr/bin/python3", "-u", "app.py"]\n'
             'allow_root = true\nenv = { PORT = "{port}" }\n'
             '[agents.support.listen]\nhttp = "127.0.0.1:{port}"\n'
             '[agents.support.health]\nhttp = "http://127.0.0.1:{port}/health"\n'
             '[agents.support.deploy]\nstrategy = "blue-green"\n\n')
    for tenant, host, _ in placement(fleet.hosts, instances):
        text += ('[tenants.%s]\nagents = ["support"]\nenv = { CUSTOMER = "%s" }\nhost = "%s"\n\n'
                 % (tenant, tenant, fleet.hosts[host].name))
    return text


def host_configs(fleet, instances):
    """Each host's roster.toml: its instances of the app in REMOTE_APP
    (no [deploy]: they run at once), binding $PORT, with a health check."""
    configs = ["" for _ in fleet.hosts]
    for tenant, host, port in placement(fleet.hosts, instances):
        name = '"%s.support"' % tenant
        configs[host] += ('[agents.%s]\ncommand = ["/usr/bin/python3", "-u", "%s/app.py"]\n'
                          'allow_root = true\nenv = { PORT = "%d", CUSTOMER = "%s" }\n'
                          '[agents.%s.health]\nhttp = "http://127.0.0.1:%d/health"\n\n'
                          % (name, REMOTE_APP, port, tenant, name, port))
    return configs


BOOT = ("#!/bin/sh\nROSTER_HOME=/var/lib/roster setsid /usr/local/bin/roster --home /var/lib/roster "
        "daemon -f /var/lib/roster/roster.toml </dev/null >/var/lib/roster/daemon.log 2>&1 &\n")


def install_by_hand(fleet, binary, instances, version="v1"):
    """Before the hosts start: the roster binary (hard-linked), the app,
    each host's roster.toml and a boot script that starts the daemon
    when the host starts (what an apply would leave behind)."""
    for host, config in zip(fleet.hosts, host_configs(fleet, instances)):
        target = os.path.join(host.bin, "roster")
        try:
            os.link(binary, target)
        except OSError:
            import shutil
            shutil.copyfile(binary, target)
            os.chmod(target, 0o755)
        write_release(os.path.join(host.home, "app"), version)
        with open(os.path.join(host.home, "roster.toml"), "w") as f:
            f.write(config)
        boot = os.path.join(host.home, "boot")
        with open(boot, "w") as f:
            f.write(BOOT)
        os.chmod(boot, 0o755)


# ---------------------------------------------------------------- Ansible

def inventory(fleet):
    lines = ["[fleet]"]
    for host in fleet.hosts:
        lines.append("%s ansible_host=%s" % (host.name, host.address))
    lines += ["", "[fleet:vars]", "ansible_user=root",
              "ansible_ssh_private_key_file=%s" % fleet.identity,
              "ansible_python_interpreter=/usr/bin/python3",
              "ansible_ssh_common_args='-F /dev/null -o UserKnownHostsFile=%s "
              "-o StrictHostKeyChecking=yes'" % fleet.known_hosts, ""]
    return "\n".join(lines)


def apply_playbook(binary, app_dir, configs_dir):
    """Ansible's closest equivalent of `roster fleet apply`: upload the
    roster binary, the app and the host's roster.toml; `roster up` (starts
    the daemon if needed, applies, waits)."""
    return """- hosts: all
  gather_facts: false
  tasks:
    - name: roster binary
      copy: {{src: "{binary}", dest: "{roster}", mode: "0755"}}
    - name: the app
      copy: {{src: "{app}/", dest: "{remote_app}/"}}
    - name: roster.toml
      copy: {{src: "{configs}/{{{{ inventory_hostname }}}}.toml", dest: "{home}/roster.toml"}}
    - name: roster up
      command: "{roster} --home {home} up -f {home}/roster.toml"
""".format(binary=binary, roster=REMOTE_ROSTER, app=app_dir, remote_app=REMOTE_APP,
           configs=configs_dir, home=REMOTE_HOME)


def deploy_playbook(release_dir):
    """Ansible's closest equivalent of `roster fleet deploy`: upload the
    release directory over the app's, restart the host's agents."""
    return """- hosts: all
  gather_facts: false
  tasks:
    - name: the release
      copy: {{src: "{release}/", dest: "{remote_app}/"}}
    - name: restart
      command: "{roster} --home {home} restart all"
""".format(release=release_dir, remote_app=REMOTE_APP, roster=REMOTE_ROSTER, home=REMOTE_HOME)
