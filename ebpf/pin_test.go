package ebpf

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

const bpffsRoot = "/sys/fs/bpf"

// tempPinDir returns a fresh directory on the bpffs, mounting the bpffs if
// needed, and removes it and everything in it when the test ends.
func tempPinDir(t *testing.T) string {
	t.Helper()
	requireBPF(t)
	var st unix.Statfs_t
	if err := unix.Statfs(bpffsRoot, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", bpffsRoot, "bpf", 0, ""); err != nil {
			t.Skipf("no bpffs at %s and cannot mount one: %v", bpffsRoot, err)
		}
	}
	b := make([]byte, 6)
	rand.Read(b)
	dir := filepath.Join(bpffsRoot, "espy-test-"+hex.EncodeToString(b))
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}

func TestPinnedMapsSurviveReload(t *testing.T) {
	dir := tempPinDir(t)
	cfg := smallMaps(Config{PinPath: dir})
	k := key4(t, 0x600, EncapNone, 0, 0)
	ik := inner(t, 17, innerSrc4, innerDst4, 1000, 53)

	p1, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustVerdict(t, p1, k, Verdict{Kind: VerdictNull, IcvLen: 12, Generation: 9})
	mustRule(t, p1, ik, ActionDrop)
	run(t, p1, nullTunnel4(0x600, 1000, 53))
	slot := func(p *Program) uint32 {
		v, err := p.Verdict(k)
		if err != nil {
			t.Fatal(err)
		}
		return v.Slot
	}
	s1 := slot(p1)
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	for _, m := range pinnedMaps {
		if _, err := os.Stat(filepath.Join(dir, m)); err != nil {
			t.Errorf("pin of %s: %v", m, err)
		}
	}

	p2 := loadTest(t, cfg)
	v, err := p2.Verdict(k)
	if err != nil || v.Kind != VerdictNull || v.Generation != 9 || v.Slot != s1 {
		t.Fatalf("verdict after reload: %+v, %v", v, err)
	}
	if st, err := p2.FlowCounters(k); err != nil || st.Packets != 1 {
		t.Fatalf("counters after reload: %+v, %v", st, err)
	}
	if r, err := p2.InnerRule(ik); err != nil || r.Hits != 1 || r.Action != uint8(ActionDrop) {
		t.Fatalf("rule after reload: %+v, %v", r, err)
	}
	// The slot table was rebuilt: a new flow must not get the same slot.
	k2 := key4(t, 0x601, EncapNone, 0, 0)
	mustVerdict(t, p2, k2, encV)
	if v2, _ := p2.Verdict(k2); v2.Slot == s1 {
		t.Fatalf("slot %d handed out twice after reload", s1)
	}
	ret, _, d := run(t, p2, nullTunnel4(0x600, 1000, 53))
	if onlyReason(t, d) != ExitNullDrop || ret != xdpDrop {
		t.Fatalf("reloaded program: %v/%d", d, ret)
	}

	// Other sizes do not fit the pinned maps.
	bad := cfg
	bad.VerdictEntries *= 2
	if p3, err := Load(bad); !errors.Is(err, ebpf.ErrMapIncompatible) {
		if err == nil {
			p3.Close()
		}
		t.Fatalf("load with a different verdict map size: %v, want ErrMapIncompatible", err)
	}

	if err := p2.Unpin(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin directory after Unpin: %v", err)
	}
}
