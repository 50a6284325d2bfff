package ikebench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
)

var loopback = netip.MustParseAddr("127.0.0.1")

const psk = "ikebench-test-psk-not-a-secret"

// peers records the identities of the initiators a responder established
// IKE SAs with.
type peers struct {
	mu  sync.Mutex
	ids map[string]int
}

func (p *peers) established(sa *ike.IKESA) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ids[sa.PeerID().String()]++
}

// distinct waits (the callback runs asynchronously) until n IKE SAs were
// established and returns how many distinct identities they had.
func (p *peers) distinct(t *testing.T, n int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		total := 0
		for _, c := range p.ids {
			total += c
		}
		d := len(p.ids)
		p.mu.Unlock()
		if total >= n || time.Now().After(deadline) {
			return d
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// responder starts an espy responder on loopback that accepts any
// initiator identity with psk, and records them.
func responder(t *testing.T, lc ike.ListenConfig, p string) (*ike.Endpoint, *peers) {
	t.Helper()
	lc.Addr = loopback
	ep, err := ike.Listen(lc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	seen := &peers{ids: map[string]int{}}
	err = ep.Respond(&ike.Config{
		LocalID: ike.FQDN("r.bench.example"), PSK: []byte(p),
		IKE:         []ike.Proposal{ike.MustParseProposal("aes128gcm16-prfsha256-x25519", true)},
		ESP:         []ike.Proposal{ike.MustParseProposal("aes128gcm16", false)},
		Established: seen.established,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ep, seen
}

func benchConfig(target netip.AddrPort, natPort uint16) Config {
	return Config{
		Target: target, TargetNATPort: natPort, Local: loopback, Sockets: 2,
		Count: 40, InitLimit: 8, Timeout: 10 * time.Second,
		IKE:     []ike.Proposal{ike.MustParseProposal("aes128gcm16-prfsha256-x25519", true)},
		ESP:     []ike.Proposal{ike.MustParseProposal("aes128gcm16", false)},
		PSK:     []byte(psk),
		LocalID: "i%d.bench.example", RemoteID: ike.FQDN("r.bench.example"),
		Retransmit: ike.Retransmit{Timeout: 500 * time.Millisecond, Base: 1.8, Tries: 3},
	}
}

// benchHalfOpen is the half-open timeout of TestRun's responder: short, so
// that a half-open SA left by a late IKE_SA_INIT retransmission goes
// within the test, long enough for IKE_AUTH on a loaded machine.
const benchHalfOpen = 3 * time.Second

// waitSAs waits until the responder holds no IKE SA. An IKE_SA_INIT
// retransmitted when the answer was late (500 ms under load) and handled
// after its SA was set up, or deleted, starts a new half-open SA that
// only goes at the half-open timeout: so first every SA past IKE_SA_INIT
// must be gone (deleted), then the half-open ones (expired).
func waitSAs(t *testing.T, ep *ike.Endpoint) {
	t.Helper()
	wait := func(what string, d time.Duration, done func(ike.Stats) bool) {
		deadline := time.Now().Add(d)
		for st := ep.Stats(); !done(st); st = ep.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("responder holds %d IKE SAs (%d half-open), want %s", st.SAs, st.HalfOpen, what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait("no established one", 5*time.Second, func(st ike.Stats) bool { return st.SAs == st.HalfOpen })
	// expireScan (1 s) after the timeout at most, with slack for load.
	wait("0", benchHalfOpen+5*time.Second, func(st ike.Stats) bool { return st.SAs == 0 })
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    DeleteMode
		encap   bool
		deleted int
		reuse   int
	}{
		{"each", DeleteEach, false, 40, 0},
		{"end", DeleteAtEnd, true, 40, 0},
		{"reuse", DeleteEach, false, 40, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep, seen := responder(t, ike.ListenConfig{HalfOpenTimeout: benchHalfOpen}, psk)
			ikeAddr, natt := ep.Addrs()
			cfg := benchConfig(ikeAddr, natt.Port())
			cfg.Delete, cfg.Encap, cfg.ReuseKE = tc.mode, tc.encap, tc.reuse
			r, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if r.Established != 40 || r.Failed != 0 || len(r.Failures) != 0 {
				t.Fatalf("established %d, failed %d %v; want 40, 0", r.Established, r.Failed, r.Failures)
			}
			if r.Deleted != tc.deleted {
				t.Errorf("deleted %d, want %d", r.Deleted, tc.deleted)
			}
			if r.Elapsed <= 0 || r.Rate() <= 0 || r.P50 <= 0 || r.P99 < r.P50 {
				t.Errorf("elapsed %v rate %v p50 %v p99 %v", r.Elapsed, r.Rate(), r.P50, r.P99)
			}
			waitSAs(t, ep)
			// A distinct identity per SA: no INITIAL_CONTACT made the
			// responder drop an SA it had set up for another one.
			if d := seen.distinct(t, 40); d != 40 {
				t.Errorf("%d distinct initiator identities on the responder, want 40", d)
			}
			if !regexp.MustCompile(`^ikebench: target=127\.0\.0\.1:\d+ established=40 failed=0 retransmits=\d+ seconds=[0-9.]+ rate=[0-9.]+ p50_ms=[0-9.]+ p99_ms=[0-9.]+ cpu_us_per_sa=\d+ reuse_ke=\d+$`).MatchString(r.Line()) {
				t.Errorf("summary line %q", r.Line())
			}
			if want := fmt.Sprintf(" reuse_ke=%d", max(tc.reuse, 1)); !strings.HasSuffix(r.Line(), want) {
				t.Errorf("summary line %q does not end in %q", r.Line(), want)
			}
		})
	}
}

// TestRunFailures checks that failures are counted by reason and do not
// count as established: a wrong PSK fails IKE_AUTH, a silent target
// times out, and retransmits are counted.
func TestRunFailures(t *testing.T) {
	ep, _ := responder(t, ike.ListenConfig{}, "another-psk")
	ikeAddr, natt := ep.Addrs()
	cfg := benchConfig(ikeAddr, natt.Port())
	cfg.Count = 6
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Established != 0 || r.Failed != 6 || r.Failures[message.AUTHENTICATION_FAILED.String()] != 6 {
		t.Fatalf("wrong PSK: established %d failed %d %v", r.Established, r.Failed, r.Failures)
	}

	silent := benchConfig(netip.AddrPortFrom(loopback, 9), 9) // discard port: nobody answers
	silent.Count, silent.InitLimit = 2, 2
	silent.Retransmit = ike.Retransmit{Timeout: 20 * time.Millisecond, Base: 1, Tries: 2}
	r, err = Run(context.Background(), silent)
	if err != nil {
		t.Fatal(err)
	}
	if r.Failures["timeout"] != 2 || r.Retransmits != 4 {
		t.Fatalf("silent target: failures %v retransmits %d, want 2 timeouts and 4 retransmits", r.Failures, r.Retransmits)
	}
}

func TestRunDuration(t *testing.T) {
	ep, _ := responder(t, ike.ListenConfig{}, psk)
	ikeAddr, natt := ep.Addrs()
	cfg := benchConfig(ikeAddr, natt.Port())
	cfg.Count, cfg.Duration, cfg.Delete = 0, 300*time.Millisecond, DeleteEach
	start := time.Now()
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Established == 0 || r.Failed != 0 {
		t.Fatalf("established %d failed %d %v", r.Established, r.Failed, r.Failures)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a 300 ms run took %v", d)
	}
}

func TestConfigErrors(t *testing.T) {
	good := benchConfig(netip.AddrPortFrom(loopback, 500), 4500)
	for name, mod := range map[string]func(*Config){
		"no target":       func(c *Config) { c.Target = netip.AddrPort{} },
		"port 0":          func(c *Config) { c.Target = netip.AddrPortFrom(loopback, 0) },
		"no count":        func(c *Config) { c.Count, c.Duration = 0, 0 },
		"negative limit":  func(c *Config) { c.InitLimit = -1 },
		"no PSK":          func(c *Config) { c.PSK = nil },
		"no identity":     func(c *Config) { c.LocalID = "" },
		"no ESP proposal": func(c *Config) { c.ESP = nil },
		"ports overflow":  func(c *Config) { c.BasePort, c.Sockets = 65530, 4 },
	} {
		c := good
		mod(&c)
		if _, err := Run(context.Background(), c); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
}

func TestLocalID(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		n       int64
		want    ike.Identity
	}{
		{"i%d.bench.example", 7, ike.FQDN("i7.bench.example")},
		{"bench.example", 7, ike.FQDN("bench.example")},
		{"%d", 12, ike.FQDN("12")},
		{"192.0.2.1", 3, ike.AddrIdentity(netip.MustParseAddr("192.0.2.1"))},
		{"100%", 1, ike.FQDN("100%")},
	} {
		got := localID(tc.pattern, tc.n)
		if got.String() != tc.want.String() || got.Type != tc.want.Type {
			t.Errorf("localID(%q, %d) = %v, want %v", tc.pattern, tc.n, got, tc.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tc := range []struct{ p, want int }{{50, 100}, {99, 198}, {100, 200}} {
		if got := percentile(d, tc.p); got != time.Duration(tc.want) {
			t.Errorf("p%d = %d, want %d", tc.p, got, tc.want)
		}
	}
	if percentile(nil, 50) != 0 || percentile(d[:1], 99) != 1 {
		t.Error("percentile of short samples")
	}
}

func TestParseDeleteMode(t *testing.T) {
	for s, want := range map[string]DeleteMode{"each": DeleteEach, "end": DeleteAtEnd} {
		if m, err := ParseDeleteMode(s); err != nil || m != want {
			t.Errorf("%s: %v %v", s, m, err)
		}
	}
	for _, s := range []string{"sometimes", "never", ""} {
		if _, err := ParseDeleteMode(s); err == nil {
			t.Errorf("accepted %q", s)
		}
	}
}

func TestReason(t *testing.T) {
	for err, want := range map[error]string{
		&ike.NotifyError{Type: message.NO_PROPOSAL_CHOSEN}:      message.NO_PROPOSAL_CHOSEN.String(),
		fmt.Errorf("x: %w", ike.ErrTimeout):                     "timeout",
		fmt.Errorf("x: %w", context.DeadlineExceeded):           "deadline",
		fmt.Errorf("%w: responder is y", ike.ErrAuthentication): "authentication",
		errors.New("boom"): "other",
	} {
		if got := reason(err); got != want {
			t.Errorf("reason(%v) = %q, want %q", err, got, want)
		}
	}
}

// BenchmarkRun measures the load generator against an in-process espy
// responder: cpu-us/SA is both sides' CPU per SA. "reuse" is espy ike
// bench's default key-share reuse, "fresh" a key pair per SA
// (-reuse-ke=false); their difference is the initiator's key generation.
func BenchmarkRun(b *testing.B) {
	b.Run("reuse", func(b *testing.B) { benchmarkRun(b, 1000) })
	b.Run("fresh", func(b *testing.B) { benchmarkRun(b, 0) })
}

func benchmarkRun(b *testing.B, reuse int) {
	ep, err := ike.Listen(ike.ListenConfig{Addr: loopback, CookieThreshold: 1 << 20, MaxHalfOpen: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer ep.Close()
	err = ep.Respond(&ike.Config{
		LocalID: ike.FQDN("r.bench.example"), PSK: []byte(psk),
		IKE: []ike.Proposal{ike.MustParseProposal("aes128gcm16-prfsha256-x25519", true)},
		ESP: []ike.Proposal{ike.MustParseProposal("aes128gcm16", false)},
	})
	if err != nil {
		b.Fatal(err)
	}
	ikeAddr, natt := ep.Addrs()
	cfg := benchConfig(ikeAddr, natt.Port())
	cfg.Count, cfg.InitLimit, cfg.Delete, cfg.Encap, cfg.ReuseKE = b.N, 32, DeleteEach, true, reuse
	b.ResetTimer()
	r, err := Run(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	if r.Failed != 0 {
		b.Fatalf("%d failed: %v", r.Failed, r.Failures)
	}
	b.ReportMetric(r.Rate(), "SAs/s")
	b.ReportMetric(float64(r.CPUPerSA().Microseconds()), "cpu-us/SA")
}

// TestInitiatorConfig checks what every handshake of a run starts from.
func TestInitiatorConfig(t *testing.T) {
	target := netip.MustParseAddrPort("192.0.2.2:500")
	tests := []struct {
		name       string
		mod        func(*Config)
		natPort    uint16
		reuse      bool
		retransmit ike.Retransmit
	}{
		{"defaults", func(*Config) {}, ike.DefaultNATPort, false, ike.DefaultRetransmit},
		{"NAT-T port", func(c *Config) { c.TargetNATPort = 4501 }, 4501, false, ike.DefaultRetransmit},
		{"key reuse", func(c *Config) { c.ReuseKE = 100 }, ike.DefaultNATPort, true, ike.DefaultRetransmit},
		{"no key reuse at 1", func(c *Config) { c.ReuseKE = 1 }, ike.DefaultNATPort, false, ike.DefaultRetransmit},
		{"schedule", func(c *Config) { c.Retransmit = ike.Retransmit{Tries: 1, Timeout: time.Second} }, ike.DefaultNATPort, false, ike.Retransmit{Tries: 1, Timeout: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := benchConfig(target, 0)
			c.Encap, c.Retransmit = true, ike.Retransmit{}
			tt.mod(&c)
			base := c.initiator()
			if base.NATKeepalive >= 0 || base.IKERekeyTime >= 0 || base.ChildRekeyTime >= 0 || base.ChildLifeTime >= 0 {
				t.Errorf("NATKeepalive %v, IKERekeyTime %v, ChildRekeyTime %v, ChildLifeTime %v: want all off (negative)",
					base.NATKeepalive, base.IKERekeyTime, base.ChildRekeyTime, base.ChildLifeTime)
			}
			if !base.ForceEncap || base.RemoteNATPort != tt.natPort || (base.ReuseKE != nil) != tt.reuse || base.Retransmit != tt.retransmit {
				t.Errorf("ForceEncap %v, RemoteNATPort %d, ReuseKE %v, Retransmit %+v; want true, %d, reuse %v, %+v",
					base.ForceEncap, base.RemoteNATPort, base.ReuseKE, base.Retransmit, tt.natPort, tt.reuse, tt.retransmit)
			}
		})
	}
}
