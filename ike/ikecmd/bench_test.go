package ikecmd

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/espy-dpi/espy/ike"
)

// TestBench runs "espy ike bench" against an espy responder on loopback
// and checks the summary line.
func TestBench(t *testing.T) {
	ep, err := ike.Listen(ike.ListenConfig{Addr: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	err = ep.Respond(&ike.Config{
		LocalID: ike.FQDN("r.bench.example"), PSK: []byte("bench-cmd-psk"),
		IKE: []ike.Proposal{ike.MustParseProposal("aes128gcm16-prfsha256-x25519", true)},
		ESP: []ike.Proposal{ike.MustParseProposal("null-sha256", false)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ikeAddr, natt := ep.Addrs()
	t.Setenv("ESPY_IKE_PSK", "bench-cmd-psk")
	var out, errOut bytes.Buffer
	args := []string{"bench", "-listen", "127.0.0.1", "-count", "12", "-init-limit", "3", "-sockets", "2",
		"-esp", "null-sha256", "-remote-id", "r.bench.example", "-timeout", "10s",
		"-remote-port", fmt.Sprint(ikeAddr.Port()), "-remote-nat-port", fmt.Sprint(natt.Port()), "127.0.0.1"}
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	if !regexp.MustCompile(`^ikebench: target=127\.0\.0\.1:\d+ established=12 failed=0 retransmits=0 seconds=[0-9.]+ rate=[0-9.]+ p50_ms=[0-9.]+ p99_ms=[0-9.]+ cpu_us_per_sa=\d+ reuse_ke=1000$`).MatchString(last) {
		t.Fatalf("summary %q in\n%s", last, out.String())
	}
	if !strings.Contains(out.String(), "deleted: 12\n") {
		t.Errorf("the default -delete each did not delete the 12 SAs:\n%s", out.String())
	}

	// -reuse-ke=false: a fresh initiator key pair per SA, and it says so.
	out.Reset()
	if code := run(context.Background(), append([]string{"bench", "-reuse-ke=false"}, args[1:]...), &out, &errOut); code != 0 {
		t.Fatalf("-reuse-ke=false: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), " established=12 failed=0 ") || !strings.HasSuffix(strings.TrimSpace(out.String()), " reuse_ke=1") {
		t.Fatalf("-reuse-ke=false:\n%s", out.String())
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "-delete", "sometimes", "127.0.0.1"},
		{"bench", "-esp", "rot13", "127.0.0.1"},
		{"bench", "not-an-address"},
	} {
		t.Setenv("ESPY_IKE_PSK", "x")
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 1 {
			t.Errorf("%v: exit %d, want 1 (%s)", args, code, errOut.String())
		}
	}
}
