package ikecmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/tun/netns"
)

// TestDataPlaneFlag runs "espy ike respond" and "espy ike initiate" with
// -dataplane tun and auto in two network namespaces and pings through the
// tunnel both ways; each must report its data plane at start and its
// counters at exit.
func TestDataPlaneFlag(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, TUN)")
	}
	for _, bin := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (Debian: iproute2 iputils-ping)", bin)
		}
	}
	b := make([]byte, 3)
	rand.Read(b)
	tag := hex.EncodeToString(b)
	nsA, nsB := "espy-ikecmd-a-"+tag, "espy-ikecmd-b-"+tag
	for _, ns := range []string{nsA, nsB} {
		if err := netns.Add(ns); err != nil {
			t.Skipf("cannot create network namespaces: %v", err)
		}
		t.Cleanup(func() { netns.Del(ns) })
	}
	sh := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	sh("link", "add", "eica"+tag, "netns", nsA, "type", "veth", "peer", "name", "eicb"+tag, "netns", nsB)
	sh("-n", nsA, "addr", "add", "192.0.2.1/24", "dev", "eica"+tag)
	sh("-n", nsB, "addr", "add", "192.0.2.2/24", "dev", "eicb"+tag)
	sh("-n", nsA, "link", "set", "eica"+tag, "up")
	sh("-n", nsB, "link", "set", "eicb"+tag, "up")
	t.Setenv("ESPY_IKE_PSK", "espy-cli-test-psk-not-a-secret")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(ns string, args []string) (chan map[string]any, chan int) {
		return runIn(ctx, ns, args, io.Discard)
	}
	rch, rdone := start(nsB, []string{"respond", "-listen", "192.0.2.2", "-local-id", "b.lab.example", "-esp", "chacha20poly1305",
		"-local-ts", "203.0.113.1/32", "-remote-ts", "198.51.100.1/32", "-dataplane", "tun", "-tun-addr", "203.0.113.1/32"})
	dp := next(t, rch, "dataplane")
	if dp["kind"] != "tun" || dp["device"] != "espy0" || dp["mtu"].(float64) != 1379 {
		t.Fatalf("responder reported %v", dp)
	}
	ich, idone := start(nsA, []string{"initiate", "-listen", "192.0.2.1", "-local-id", "a.lab.example", "-esp", "chacha20poly1305",
		"-local-ts", "198.51.100.1/32", "-remote-ts", "203.0.113.1/32", "-dataplane", "auto", "-tun-name", "espyt", "-tun-addr", "198.51.100.1/32", "192.0.2.2"})
	dp = next(t, ich, "dataplane")
	if dp["kind"] != "tun" || dp["device"] != "espyt" || !strings.Contains(dp["reason"].(string), "ESP") && !strings.Contains(dp["reason"].(string), "XFRM") {
		t.Fatalf("initiator reported %v", dp)
	}
	next(t, ich, "established")
	for _, c := range []struct{ ns, dst string }{{nsA, "203.0.113.1"}, {nsB, "198.51.100.1"}} {
		out, err := exec.Command("ip", "netns", "exec", c.ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", c.dst).CombinedOutput()
		if err != nil {
			t.Fatalf("ping %s: %v\n%s", c.dst, err, out)
		}
	}
	cancel()
	for _, c := range []struct {
		ch   chan map[string]any
		done chan int
	}{{ich, idone}, {rch, rdone}} {
		st := next(t, c.ch, "dataplane_status")
		if st["packets_in"].(float64) < 4 || st["packets_out"].(float64) < 4 || st["auth_failures"].(float64) != 0 {
			t.Errorf("status %v", st)
		}
		select {
		case code := <-c.done:
			if code != 0 {
				t.Errorf("exit %d", code)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("command did not exit")
		}
	}
}

// TestDataPlaneFlagInvalid checks that an unknown -dataplane is refused.
func TestDataPlaneFlagInvalid(t *testing.T) {
	t.Setenv("ESPY_IKE_PSK", "x")
	var out strings.Builder
	code := run(context.Background(), []string{"respond", "-listen", "127.0.0.1", "-port", "0", "-nat-port", "0", "-local-id", "b", "-dataplane", "xfrm2"}, &out, io.Discard)
	if code != 1 || !strings.Contains(out.String(), "-dataplane") {
		t.Fatalf("exit %d, output %s", code, out.String())
	}
}

// runIn runs the command with args in network namespace ns: the whole
// command runs on a thread there, so its sockets, TUN device and XFRM
// state are created in ns. It returns the command's JSON lines and, when
// it ends, its exit code.
func runIn(ctx context.Context, ns string, args []string, stderr io.Writer) (chan map[string]any, chan int) {
	w := &lineWriter{ch: make(chan map[string]any, 64)}
	done := make(chan int, 1)
	go func() {
		code := 99
		netns.Do(ns, func() error { code = run(ctx, args, w, stderr); return nil })
		done <- code
	}()
	return w.ch, done
}
