package ebpf

import (
	"errors"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
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
	// Root in a container may still lack CAP_BPF or the bpf syscall.
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) || errors.Is(err, ebpf.ErrNotSupported) {
			tb.Skipf("BPF is not available to this process: %v", err)
		}
		tb.Fatalf("probe BPF: %v", err)
	}
	m.Close()
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

// TestVerifierBudget keeps the program far from the verifier's limit of one
// million processed instructions: the parser's paths multiply quickly (see
// bound_off in espy.c), and other kernels verify less cleverly than this one.
func TestVerifierBudget(t *testing.T) {
	requireBPF(t)
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	var objs bpfObjects
	opts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}}
	if err := spec.LoadAndAssign(&objs, opts); err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	m := regexp.MustCompile(`processed (\d+) insns`).FindStringSubmatch(objs.EspyXdp.VerifierLog)
	if m == nil {
		t.Skipf("no statistics in the verifier log: %q", objs.EspyXdp.VerifierLog)
	}
	n, _ := strconv.Atoi(m[1])
	t.Logf("verifier processed %d instructions", n)
	if n > 250_000 {
		t.Errorf("verifier processed %d instructions, budget 250000", n)
	}
}
