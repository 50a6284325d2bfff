#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine. Idempotent and quick
# when everything is already there. Without root it only reports what is missing
# (the tests that need those tools then skip with a message).
set -euo pipefail

pkgs=(clang llvm libbpf-dev tshark tcpdump wireshark-common iproute2 python3 python3-jsonschema hyperfine tcpreplay ethtool strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins strongswan-pki iputils-ping user-mode-linux kmod)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: not root; missing Debian packages: ${missing[*]}" >&2
	else
		echo "install-deps: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
fi

go mod download
# staticcheck is a lint tool, installed into GOBIN only for `make lint`.
