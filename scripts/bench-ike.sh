#!/usr/bin/env bash
# IKE SAs per second with espy as responder against strongSwan's charon
# 5.9.8 as responder, on this machine, in one run, under the same load from
# the same initiator (espy ike bench), and prints the ratio espy/charon.
#
# usage: scripts/bench-ike.sh [--count N] [--init-limit L] [--rounds R]
#                             [--sockets S] [--delete each|end]
#                             [--cookies] [--no-pin] [--nice N] [--shares S]
#                             [--no-reuse-ke]
#
#   --count N       IKE SAs per measured run (default 5000)
#   --init-limit L  handshakes in flight (load-tester's init_limit; default 64)
#   --rounds R      measured runs per responder, alternating charon, espy
#                   (default 4, so that both see the machine's other load
#                   alike); the rates are averaged over the rounds
#   --sockets S     initiator socket pairs (default 4)
#   --delete M      espy ike bench -delete (default each: every SA is
#                   deleted as soon as it is up, inside the measured time)
#   --cookies       both responders demand cookies from 10 half-open SAs on
#                   (charon's default cookie_threshold) instead of never;
#                   with -init-limit above that, most handshakes then take
#                   the extra round trip
#   --no-pin        let initiator and responder share both CPUs; by default
#                   (taskset) the initiator runs on CPU 0 and the responder
#                   on CPU 1, so each responder gets exactly one CPU (charon's
#                   16 threads as espy's GOMAXPROCS=1) and the initiator's
#                   work, the same for both, does not dilute the comparison
#   --nice N        run initiator and responder at this niceness (default
#                   0; both alike)
#   --shares S      CPU weight of the initiator's and of the responder's
#                   cgroup (default 4096, four plain processes' worth)
#   --no-reuse-ke   the initiator makes a fresh X25519 key pair per SA; by
#                   default it reuses one for up to 1000 SAs (espy ike bench
#                   -reuse-ke, RFC 7296 2.12) so that the measurement is
#                   bound by the responder, not by the initiator's own key
#                   generation; the responders make a key pair per SA anyway
#
# Two network namespaces (random suffix, removed on exit) joined by a veth
# pair: the initiator on 192.0.2.1, the responder on 192.0.2.2. charon runs
# with kernel-libipsec and a private /run, as in ike/interop_test.go; espy
# as `espy ike respond`. Suite for both: IKE aes128gcm16-prfsha256-x25519,
# ESP aes128gcm16, PSK, tunnel mode, one Child SA per IKE SA.
#
# Scheduling: the initiator and the responder each run in a cgroup of their
# own with the same CPU weight (--shares; cgroup v1 cpu.shares or v2
# cpu.weight), so that on a machine shared with other work a responder is
# one scheduling entity whatever its thread count (charon has 16 threads,
# espy GOMAXPROCS), and other work disturbs both alike. Without a writable
# cpu cgroup hierarchy the script says so and runs without.
#
# Fairness (charon knobs, all in the generated strongswan.conf):
#   * threads = 16 (charon's default), ikesa_table_size = 4096 and
#     ikesa_table_segments = 16 (the default, 1, is one locked list);
#   * half-open limits off: init_limit_half_open = 0, block_threshold and
#     cookie_threshold raised to 1000000 (espy: -cookie-threshold and
#     -max-half-open 1000000), unless --cookies;
#   * logging off: no filelog, syslog at level -1; espy respond -quiet
#     (no JSON line per SA);
#   * no routes or policies (install_routes = no, policies = no): espy only
#     registers its Child SAs, charon still installs both SAs in libipsec;
#   * the initiator forces UDP encapsulation (-encap): charon's libipsec
#     needs it and fakes a NAT otherwise, so IKE_AUTH goes to port 4500 for
#     both responders.
# Needs root, iproute2, charon (strongswan-charon, strongswan-swanctl,
# libcharon-extra-plugins, libstrongswan-extra-plugins) and bin/espy
# (make build).
set -euo pipefail

cd "$(dirname "$0")/.."

count=5000 init_limit=64 rounds=4 sockets=4 delete=each cookies=0 pin=1 nice=0 shares=4096 reuse_ke=true
while [ $# -gt 0 ]; do
	case "$1" in
	--count) count=$2; shift ;;
	--init-limit) init_limit=$2; shift ;;
	--rounds) rounds=$2; shift ;;
	--sockets) sockets=$2; shift ;;
	--delete) delete=$2; shift ;;
	--cookies) cookies=1 ;;
	--no-pin) pin=0 ;;
	--no-reuse-ke) reuse_ke=false ;;
	--nice) nice=$2; shift ;;
	--shares) shares=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench-ike: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done

die() { echo "bench-ike: $*" >&2; exit 1; }

espy=$PWD/bin/espy
charon=/usr/lib/ipsec/charon
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, charon)"
[ -x "$espy" ] || die "$espy is missing: make build"
[ -x "$charon" ] || die "$charon is missing (Debian: strongswan-charon)"
command -v swanctl >/dev/null || die "swanctl is missing (Debian: strongswan-swanctl)"
command -v ip >/dev/null || die "ip is missing (Debian: iproute2)"
if [ "$pin" -eq 1 ]; then
	command -v taskset >/dev/null || die "taskset is missing (Debian: util-linux)"
	[ "$(nproc)" -ge 2 ] || die "pinning needs two CPUs (use --no-pin)"
fi

tag=$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')
nsi=ikeb-i-$tag nsr=ikeb-r-$tag
dir=$(mktemp -d /tmp/bench-ike.XXXXXX)
resp_pid=""
cg_ini="" cg_resp=""
cleanup() {
	if [ -n "$resp_pid" ]; then kill "$resp_pid" 2>/dev/null || true; wait "$resp_pid" 2>/dev/null || true; fi
	for g in "$cg_ini" "$cg_resp"; do [ -n "$g" ] && rmdir "$g" 2>/dev/null || true; done
	ip netns del "$nsi" 2>/dev/null || true
	ip netns del "$nsr" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

ip netns add "$nsi"
ip netns add "$nsr"
ip link add "ikbi$tag" netns "$nsi" type veth peer name "ikbr$tag" netns "$nsr"
ip -n "$nsi" addr add 192.0.2.1/24 dev "ikbi$tag"
ip -n "$nsr" addr add 192.0.2.2/24 dev "ikbr$tag"
for ns in "$nsi" "$nsr"; do ip -n "$ns" link set lo up; done
ip -n "$nsi" link set "ikbi$tag" up
ip -n "$nsr" link set "ikbr$tag" up

psk=bench-ike-psk-not-a-secret
if [ "$cookies" -eq 1 ]; then
	charon_limits="cookie_threshold = 10
  block_threshold = 1000000"
	espy_limits="-cookie-threshold 10 -max-half-open 1000000"
else
	charon_limits="cookie_threshold = 1000000
  block_threshold = 1000000"
	espy_limits="-cookie-threshold 1000000 -max-half-open 1000000"
fi
mkdir -p "$dir/run"
# swanctl --load-all looks for credentials next to swanctl.conf.
for d in x509 x509ca x509ocsp x509aa x509ac x509crl pubkey private rsa ecdsa bliss pkcs8 pkcs12; do mkdir -p "$dir/$d"; done
cat >"$dir/strongswan.conf" <<EOF
charon {
  load_modular = no
  load = random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey curve25519 aes sha1 sha2 hmac gcm kdf kernel-libipsec kernel-netlink socket-default vici
  threads = 16
  ikesa_table_size = 4096
  ikesa_table_segments = 16
  init_limit_half_open = 0
  init_limit_job_load = 0
  $charon_limits
  install_routes = no
  install_virtual_ip = no
  plugins {
    vici {
      socket = unix://$dir/charon.vici
    }
  }
  syslog {
    daemon {
      default = -1
    }
  }
}
EOF
cat >"$dir/swanctl.conf" <<EOF
connections {
  bench {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = %any
    proposals = aes128gcm16-prfsha256-x25519
    local {
      auth = psk
      id = r.bench.example
    }
    remote {
      auth = psk
      id = %any
    }
    children {
      bench {
        esp_proposals = aes128gcm16
        policies = no
      }
    }
  }
}
secrets {
  ike-bench {
    secret = "$psk"
  }
}
EOF

# One cgroup each for initiator and responder (see Scheduling above).
if [ -d /sys/fs/cgroup/cpu ] && [ -w /sys/fs/cgroup/cpu ]; then
	cg_ini=/sys/fs/cgroup/cpu/ikeb-i-$tag cg_resp=/sys/fs/cgroup/cpu/ikeb-r-$tag
	mkdir "$cg_ini" "$cg_resp"
	for g in "$cg_ini" "$cg_resp"; do echo "$shares" >"$g/cpu.shares"; done
elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null && [ -w /sys/fs/cgroup ]; then
	grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control
	cg_ini=/sys/fs/cgroup/ikeb-i-$tag cg_resp=/sys/fs/cgroup/ikeb-r-$tag
	mkdir "$cg_ini" "$cg_resp"
	for g in "$cg_ini" "$cg_resp"; do echo $((shares * 100 / 1024)) >"$g/cpu.weight"; done
else
	echo "bench-ike: no writable cpu cgroup hierarchy: running without (charon's threads weigh more than espy's on a busy machine)" >&2
fi
# incg GROUP CMD... execs CMD inside cgroup GROUP (or plainly without
# one). It replaces the shell it runs in: call it in a subshell (a
# background job or a pipeline), whose PID then is CMD's.
incg() {
	local g=$1
	shift
	if [ -n "$g" ]; then
		exec sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$g" "$@"
	fi
	exec "$@"
}

resp_cpu="nice -n $nice" ini_cpu="nice -n $nice"
if [ "$pin" -eq 1 ]; then resp_cpu="$resp_cpu taskset -c 1" ini_cpu="$ini_cpu taskset -c 0"; fi

start_charon() {
	rm -f "$dir/charon.vici"
	STRONGSWAN_CONF=$dir/strongswan.conf incg "$cg_resp" ip netns exec "$nsr" $resp_cpu sh -c "mount --bind $dir/run /run && exec $charon" >"$dir/charon.out" 2>&1 &
	resp_pid=$!
	for _ in $(seq 100); do [ -S "$dir/charon.vici" ] && break; sleep 0.1; done
	[ -S "$dir/charon.vici" ] || { cat "$dir/charon.out" >&2; die "charon did not start"; }
	swanctl --load-all --noprompt --file "$dir/swanctl.conf" --uri "unix://$dir/charon.vici" >/dev/null
}

start_espy() {
	ESPY_IKE_PSK=$psk incg "$cg_resp" ip netns exec "$nsr" $resp_cpu "$espy" ike respond -listen 192.0.2.2 -local-id r.bench.example \
		-ike aes128gcm16-prfsha256-x25519 -esp aes128gcm16 -quiet $espy_limits >/dev/null 2>"$dir/espy.err" &
	resp_pid=$!
	for _ in $(seq 100); do ip netns exec "$nsr" ss -Hlun 'sport = :500' | grep -q . && break; sleep 0.1; done
}

stop_responder() {
	kill "$resp_pid" 2>/dev/null || true
	wait "$resp_pid" 2>/dev/null || true
	resp_pid=""
}

# bench N prints the summary line of one run of N SAs.
bench() {
	ESPY_IKE_PSK=$psk incg "$cg_ini" ip netns exec "$nsi" $ini_cpu "$espy" ike bench -listen 192.0.2.1 -count "$1" \
		-init-limit "$init_limit" -sockets "$sockets" -delete "$delete" -encap -timeout 60s -reuse-ke="$reuse_ke" \
		-ike aes128gcm16-prfsha256-x25519 -esp aes128gcm16 192.0.2.2 | tee -a "$dir/bench.out" | grep '^ikebench:'
}

rate() { sed -n 's/.* rate=\([0-9.]*\).*/\1/p'; }
# cpu_ticks prints the responder's user+system CPU time in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$resp_pid/stat"; }

declare -A sum=([charon]=0 [espy]=0) cpu=([charon]=0 [espy]=0) icpu=([charon]=0 [espy]=0)
for r in $(seq "$rounds"); do
	for who in charon espy; do
		"start_$who"
		bench $((count / 10 + 1)) >/dev/null # warm-up, not counted
		t0=$(cpu_ticks)
		line=$(bench "$count")
		t1=$(cpu_ticks)
		stop_responder
		cpu_us=$(awk -v a="$t0" -v b="$t1" -v n="$count" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", (b - a) / hz * 1e6 / n }')
		echo "round $r $who: $line responder_cpu_us_per_sa=$cpu_us"
		sum[$who]=$(echo "${sum[$who]} $(echo "$line" | rate)" | awk '{print $1 + $2}')
		cpu[$who]=$((${cpu[$who]} + cpu_us))
		icpu[$who]=$((${icpu[$who]} + $(echo "$line" | sed -n 's/.* cpu_us_per_sa=\([0-9]*\).*/\1/p')))
		if echo "$line" | grep -qv ' failed=0 '; then
			grep '^failed:' "$dir/bench.out" | tail -5 >&2 || true
		fi
	done
done
awk -v c="${sum[charon]}" -v e="${sum[espy]}" -v n="$rounds" \
	-v cc="${cpu[charon]}" -v ce="${cpu[espy]}" -v ic="${icpu[charon]}" -v ie="${icpu[espy]}" 'BEGIN {
	printf "charon: %.1f IKE SAs/s, responder CPU %.0f us/SA (initiator %.0f us/SA)\n", c / n, cc / n, ic / n
	printf "espy:   %.1f IKE SAs/s, responder CPU %.0f us/SA (initiator %.0f us/SA)\n", e / n, ce / n, ie / n
	printf "ratio espy/charon: %.2f (rate); responder CPU per SA charon/espy: %.2f\n", (c > 0 ? e / c : 0), (ce > 0 ? cc / ce : 0)
}'
