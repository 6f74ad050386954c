#!/usr/bin/env bash
# What the test suite needs from the system, installed when run as root (`make test` runs this first):
# the real counterparts the tests start themselves. Without root it names what is missing and goes
# on: the tests that need a missing counterpart fail saying which.
set -euo pipefail

# System packages: the mosquitto broker the tests start themselves, and Debian's GStreamer RTSP
# server (run with Debian's python3 + gi) for the camera stream tests; Debian's OpenCV with GStreamer
# and gst-inspect-1.0 for the board install test (tests/integration/test_system_opencv.py).
apt_pkgs=(mosquitto faketime gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-base systemd
          python3-opencv python3-venv gstreamer1.0-tools)
# The other MQTT engines the broker tests start privately (tests/plugins/brokers.py): NATS, RabbitMQ.
apt_pkgs+=(nats-server rabbitmq-server)
# edge view's fleet store (a private PostgreSQL, tests/plugins/postgres.py) and its browser test.
apt_pkgs+=(postgresql chromium chromium-driver)
# a booted Debian 12 for the service test (tests/integration/test_systemd_service.py)
apt_pkgs+=(systemd-container mmdebstrap)
# An arm64 Debian userland under emulation (tests/integration/test_arm64_rig.py, tools/arm64_rig.py).
apt_pkgs+=(qemu-user-static binfmt-support)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "test-deps: missing apt packages (need root to install): ${missing[*]}" >&2
  fi
fi

# binfmt-support registers aarch64 from a service that may not have run yet right after the install.
if [ "$(id -u)" = 0 ] && [ -d /proc/sys/fs/binfmt_misc ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 || true
fi
