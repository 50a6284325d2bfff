package ebpf

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf/rlimit"
)

// requireBPF skips the test unless the process may load BPF programs.
func requireBPF(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root (CAP_BPF, CAP_NET_ADMIN) to load the XDP program")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		tb.Skipf("cannot lift RLIMIT_MEMLOCK: %v", err)
	}
}

func loadTest(tb testing.TB, cfg Config) *Program {
	tb.Helper()
	requireBPF(tb)
	p, err := Load(cfg)
	if err != nil {
		var perr *os.PathError
		if errors.As(err, &perr) {
			tb.Skipf("cannot load BPF: %v", err)
		}
		tb.Fatalf("Load: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

func TestLoad(t *testing.T) {
	p := loadTest(t, Config{})
	c, err := p.ExitCounters()
	if err != nil {
		t.Fatal(err)
	}
	for r, n := range c {
		if n != 0 {
			t.Errorf("fresh counter %v = %d", ExitReason(r), n)
		}
	}
}
