// Package charonlab is test support for interop tests against strongSwan's
// charon: two network namespaces joined by a veth pair on 192.0.2.0/24
// (A, espy's side, on 192.0.2.1; B, the peer's side, on 192.0.2.2), and a
// charon with its own configuration, vici socket, log and private /run
// running in namespace B. Everything is removed with the test's Cleanup,
// also when the test fails.
//
// charonlab must not import package ike: ike's internal tests use it.
package charonlab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/espy-dpi/espy/tun/netns"
)

// CharonBin is the charon daemon the lab runs (Debian: strongswan-charon).
const CharonBin = "/usr/lib/ipsec/charon"

// PSK is the pre-shared key of the lab's swanctl configurations.
const PSK = "sswlab-test-psk-not-a-secret"

// Addresses of the two ends of the veth pair.
const (
	AddrA = "192.0.2.1"
	AddrB = "192.0.2.2"
)

// debianPackages names the packages that provide the binaries a lab can
// need, for skip messages.
const debianPackages = "Debian: strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins iproute2 iputils-ping"

// Options configure New.
type Options struct {
	// Name goes into the namespaces' names, espy-NAME-a-TAG and
	// espy-NAME-b-TAG, TAG random.
	Name string
	// Dev prefixes the veth devices' names, DEVaTAG in A and DEVbTAG in B;
	// at most 5 bytes.
	Dev string
	// Charon skips the test unless charon and swanctl are installed.
	Charon bool
	// TUN skips the test unless /dev/net/tun exists.
	TUN bool
	// Needs are further binaries (besides ip) without which the test is
	// skipped, such as ping.
	Needs []string
}

// Lab is two network namespaces joined by a veth pair, and at most one
// charon in namespace B.
type Lab struct {
	// A and B are the namespaces' names.
	A, B string
	// DevA and DevB are the veth pair's ends in A and B.
	DevA, DevB string
	// Tag is the random part of the names.
	Tag string
	// Dir is a temporary directory for the test: charon's configuration
	// (strongswan.conf, swanctl.conf and the swanctl credential
	// directories), its vici socket and log charon.log.
	Dir string
	// URI is charon's vici socket, for swanctl --uri.
	URI string
	// Conf is the path of swanctl.conf once StartCharon wrote it.
	Conf string
}

// Skip skips the test unless it runs as root and finds the binaries the
// options ask for. New calls it.
func Skip(tb testing.TB, o Options) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root (network namespaces, charon, TUN, raw sockets)")
	}
	bins := append([]string{"ip"}, o.Needs...)
	if o.Charon {
		bins = append(bins, CharonBin, "swanctl")
	}
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Skipf("needs %s (%s): %v", bin, debianPackages, err)
		}
	}
	if o.TUN {
		if _, err := os.Stat("/dev/net/tun"); err != nil {
			tb.Skipf("needs /dev/net/tun: %v", err)
		}
	}
}

// New creates the namespaces and the veth pair, addresses 192.0.2.1/24 in A
// and 192.0.2.2/24 in B, with every device (loopback too) up. It skips the
// test as Skip does, and when namespaces cannot be created.
func New(tb testing.TB, o Options) *Lab {
	tb.Helper()
	Skip(tb, o)
	suffix := make([]byte, 3)
	rand.Read(suffix)
	l := &Lab{Tag: hex.EncodeToString(suffix), Dir: tb.TempDir()}
	l.A, l.B = "espy-"+o.Name+"-a-"+l.Tag, "espy-"+o.Name+"-b-"+l.Tag
	l.DevA, l.DevB = o.Dev+"a"+l.Tag, o.Dev+"b"+l.Tag
	l.URI = "unix://" + filepath.Join(l.Dir, "charon.vici")
	for _, ns := range []string{l.A, l.B} {
		if err := netns.Add(ns); err != nil {
			tb.Skipf("cannot create network namespaces: %v", err)
		}
		tb.Cleanup(func() {
			if err := netns.Del(ns); err != nil {
				tb.Errorf("delete namespace %s: %v", ns, err)
			}
		})
	}
	Run(tb, "ip", "link", "add", l.DevA, "netns", l.A, "type", "veth", "peer", "name", l.DevB, "netns", l.B)
	for _, c := range []struct{ ns, dev, addr string }{{l.A, l.DevA, AddrA + "/24"}, {l.B, l.DevB, AddrB + "/24"}} {
		Run(tb, "ip", "-n", c.ns, "addr", "add", c.addr, "dev", c.dev)
		Run(tb, "ip", "-n", c.ns, "link", "set", c.dev, "up")
	}
	return l
}

// Run runs a command and returns its combined output; it fails the test
// if the command fails.
func Run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// CharonInner gives namespace B the inner addresses (prefixes on lo) and
// a route to espy's inner network 198.51.100.0/24 via 192.0.2.1, which
// charon's kernel-libipsec needs to route its traffic selectors through
// its TUN device.
func (l *Lab) CharonInner(tb testing.TB, addrs ...string) {
	tb.Helper()
	for _, a := range addrs {
		Run(tb, "ip", "-n", l.B, "addr", "add", a, "dev", "lo")
	}
	Run(tb, "ip", "-n", l.B, "route", "add", "198.51.100.0/24", "via", AddrA)
}

// Do runs f on a thread in namespace A; sockets and devices f creates stay
// there.
func (l *Lab) Do(f func() error) error { return netns.Do(l.A, f) }

// Charon configures StartCharon.
type Charon struct {
	// Swanctl is swanctl.conf, loaded with swanctl --load-all.
	Swanctl string
	// Settings are more lines inside strongswan.conf's charon section,
	// e.g. "delete_rekeyed_delay = 1".
	Settings string
	// LogLevels are the filelog subsystem levels, one "subsys = level" a
	// line; "ike = 2" when empty.
	LogLevels string
	// KernelESP makes charon use the kernel's ESP (kernel-netlink alone,
	// as in a UML guest) instead of kernel-libipsec.
	KernelESP bool
}

// strongswanConf runs charon with the IPsec backends %[4]s (the first
// registered wins), its vici socket and log in the lab's directory.
const strongswanConf = `charon {
  load_modular = no
  load = random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey curve25519 aes sha1 sha2 hmac xcbc cmac gcm ctr chapoly kdf %[4]s socket-default vici updown
  retransmit_timeout = 1.0
  retransmit_tries = 2
%[2]s  plugins {
    vici {
      socket = unix://%[1]s/charon.vici
    }
  }
  filelog {
    log {
      path = %[1]s/charon.log
      flush_line = yes
      default = 1
%[3]s    }
  }
}
`

// indent puts n spaces before each non-empty line of s.
func indent(s string, n int) string {
	var b strings.Builder
	for _, ln := range strings.Split(strings.TrimSpace(s), "\n") {
		if ln = strings.TrimSpace(ln); ln != "" {
			b.WriteString(strings.Repeat(" ", n) + ln + "\n")
		}
	}
	return b.String()
}

// StrongswanConf is the path of charon's strongswan.conf, which a test
// may rewrite before swanctl --reload-settings.
func (l *Lab) StrongswanConf() string { return filepath.Join(l.Dir, "strongswan.conf") }

// StartCharon writes strongswan.conf and swanctl.conf into l.Dir, runs
// charon in namespace B with a private /run (its pid file path is
// compiled in), waits for its vici socket and loads the configuration.
// Cleanup stops charon and logs its output and log if the test failed.
func (l *Lab) StartCharon(tb testing.TB, c Charon) {
	tb.Helper()
	Skip(tb, Options{Charon: true})
	piddir := filepath.Join(l.Dir, "run")
	if err := os.MkdirAll(piddir, 0o755); err != nil {
		tb.Fatal(err)
	}
	levels := c.LogLevels
	if levels == "" {
		levels = "ike = 2"
	}
	// Without KernelESP: the userspace ESP backend, no kernel ESP needed.
	backends := "kernel-libipsec kernel-netlink"
	if c.KernelESP {
		backends = "kernel-netlink"
	}
	sconf := l.StrongswanConf()
	l.Conf = filepath.Join(l.Dir, "swanctl.conf")
	if err := os.WriteFile(sconf, fmt.Appendf(nil, strongswanConf, l.Dir, indent(c.Settings, 2), indent(levels, 6), backends), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(l.Conf, []byte(c.Swanctl), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.B, "sh", "-c", "mount --bind "+piddir+" /run && exec "+CharonBin)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+sconf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if tb.Failed() {
			tb.Logf("charon output:\n%s\ncharon log:\n%s", out.String(), l.Log())
		}
	})
	sock := filepath.Join(l.Dir, "charon.vici")
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-done:
			tb.Fatalf("charon exited: %s", out.String())
		default:
		}
		if i > 200 {
			tb.Fatal("charon's vici socket did not appear in 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.Swanctl(tb, "--load-all", "--file", l.Conf)
}

// Swanctl runs swanctl with args against the lab's charon and returns its
// output; it fails the test if swanctl fails.
func (l *Lab) Swanctl(tb testing.TB, args ...string) string {
	tb.Helper()
	return Run(tb, "swanctl", append(args, "--uri", l.URI)...)
}

// ListSAs returns swanctl --list-sas.
func (l *Lab) ListSAs(tb testing.TB) string {
	tb.Helper()
	return l.Swanctl(tb, "--list-sas")
}

// AwaitSAs polls swanctl --list-sas until cond holds for its output, for
// up to limit, and returns that output; it fails the test naming what
// otherwise.
func (l *Lab) AwaitSAs(tb testing.TB, what string, limit time.Duration, cond func(string) bool) string {
	tb.Helper()
	var out string
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if out = l.ListSAs(tb); cond(out) {
			return out
		}
	}
	tb.Fatalf("swanctl --list-sas: %s not reached in %v:\n%s", what, limit, out)
	return ""
}

// Log returns charon's log so far (empty if there is none yet).
func (l *Lab) Log() string {
	b, _ := os.ReadFile(filepath.Join(l.Dir, "charon.log"))
	return string(b)
}
