#!/usr/bin/env python3
"""Cold socket activation: the time from a first datagram to its reply when hellod.service
is not running, with the shipped unit and with sandbox directives turned off one group at
a time (drop-ins), to see which ones cost start-up time.

    sudo bench/activation.py [runs]        (make build first; needs root, like the e2e tests)

Runs under a real systemd in private namespaces (Tests/system/private_systemd.py):
nothing on the host changes.
"""
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Tests", "system"))
from private_systemd import PrivateSystemd  # noqa: E402

VARIANTS = {
    "shipped unit (full sandbox)": "",
    "without DynamicUser": "DynamicUser=no",
    "without PrivateUsers": "PrivateUsers=no",
    "without PrivateNetwork": "PrivateNetwork=no",
    "without SystemCallFilter": "SystemCallFilter=",
    "without mount namespacing (ProtectSystem, ProtectHome, Private{Tmp,Devices,Mounts}, Protect{Kernel*,ControlGroups,Proc,Clock,Hostname})":
        "ProtectSystem=no\nProtectHome=no\nPrivateTmp=no\nPrivateDevices=no\nPrivateMounts=no\nProtectKernelTunables=no\n"
        "ProtectKernelModules=no\nProtectKernelLogs=no\nProtectControlGroups=no\nProtectProc=default\nProcSubset=all\n"
        "ProtectClock=no\nProtectHostname=no\nPrivateIPC=no",
    "without IPAddressDeny": "IPAddressDeny=",
}
# The mount namespace group again, each directive alone: what does a namespace cost by itself?
MOUNT_OFF = VARIANTS["without mount namespacing (ProtectSystem, ProtectHome, Private{Tmp,Devices,Mounts}, Protect{Kernel*,ControlGroups,Proc,Clock,Hostname})"]
for alone in ("ProtectSystem=strict", "PrivateTmp=yes", "PrivateDevices=yes", "ProtectKernelTunables=yes",
              "ProtectProc=invisible"):
    key = alone.split("=")[0]
    VARIANTS["mount namespacing with %s alone" % alone] = "\n".join(
        l for l in MOUNT_OFF.split("\n") if not l.startswith(key + "=")) + "\n" + alone
VARIANTS.update({
    "no sandbox at all": "DynamicUser=no\nPrivateUsers=no\nPrivateNetwork=no\nSystemCallFilter=\nIPAddressDeny=\n"
        "RestrictAddressFamilies=\nProtectSystem=no\nProtectHome=no\nPrivateTmp=no\nPrivateDevices=no\nPrivateMounts=no\n"
        "ProtectKernelTunables=no\nProtectKernelModules=no\nProtectKernelLogs=no\nProtectControlGroups=no\n"
        "ProtectProc=default\nProcSubset=all\nProtectClock=no\nProtectHostname=no\nPrivateIPC=no\nRestrictNamespaces=no\n"
        "MemoryDenyWriteExecute=no\nLockPersonality=no\nRestrictRealtime=no\nRestrictSUIDSGID=no\nNoNewPrivileges=no\n"
        "CapabilityBoundingSet=~\nSystemCallArchitectures=\nRemoveIPC=no\nKeyringMode=inherit\nDevicePolicy=auto",
})

PROBE = ("import socket,time;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(5);"
         "t=time.monotonic();s.sendto(b'cold',('127.0.0.1',9999));s.recv(100);"
         "print(round((time.monotonic()-t)*1000,2))")


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    with PrivateSystemd(ROOT) as systemd:
        install = systemd.run("make", "-C", ROOT, "install", check=False, timeout=900)
        if install.returncode != 0:
            sys.exit(install.stdout + install.stderr)
        systemd.run("systemctl", "start", "hellod.socket")
        dropin = "/usr/local/lib/systemd/system/hellod.service.d"
        systemd.run("mkdir", "-p", dropin)
        print("cold activation, first datagram to its reply, median of %d (min-max), ms" % runs)
        for name, settings in VARIANTS.items():
            systemd.run("sh", "-c", "cat > %s/bench.conf" % dropin, input="[Service]\n%s\n" % settings)
            systemd.run("systemctl", "daemon-reload")
            samples = []
            for _ in range(runs):
                systemd.run("systemctl", "stop", "hellod.service")
                probe = systemd.run_in_network(sys.executable, "-c", PROBE)
                if probe.returncode != 0:
                    status = systemd.run("systemctl", "status", "hellod.service", "--no-pager", check=False)
                    sys.exit("no reply (%s): %s\n%s" % (name, probe.stderr, status.stdout))
                samples.append(float(probe.stdout))
            print("%7.1f  (%5.1f-%5.1f)  %s" % (statistics.median(samples), min(samples), max(samples), name), flush=True)


if __name__ == "__main__":
    main()
