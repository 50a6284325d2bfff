package ebpf

import (
	"encoding/binary"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
)

// decided reports exit reasons that act on a verdict.
func decided(r ExitReason) bool {
	switch r {
	case ExitNullAllow, ExitNullDrop, ExitNullCount, ExitEncryptedPass, ExitEncryptedDrop, ExitEncryptedCount:
		return true
	}
	return false
}

// robustFrames are valid frames of decided flows, one per parser path.
func robustFrames(t testing.TB, p *Program) map[string][]byte {
	const spi = 0x2002
	mustVerdict(t, p, key4(t, spi, EncapNone, 0, 0), nullV)
	mustVerdict(t, p, key4(t, spi, EncapUDP, 4500, 4500), nullV)
	mustVerdict(t, p, key6(t, spi), Verdict{Kind: VerdictNull, IcvLen: 16})
	mustVerdict(t, p, key4(t, spi+1, EncapNone, 0, 0), encV)
	return map[string][]byte{
		"esp-null-v4-vlan": cat(eth(etherIPv4, ether8021AD, ether8021Q), ipv4(50, outerSrc4, outerDst4,
			espNull(spi, 1, 0, innerUDP4(1000, 53), 4, 12), ip4opts{options: []byte{1, 1, 1, 0}})),
		"esp-null-udp": cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4,
			udp(4500, 4500, espNull(spi, 1, 0, innerUDP4(1000, 53), 4, 12)), ip4opts{})),
		"esp-null-v6-ext": cat(eth(etherIPv6), ipv6(50, outerSrc6, outerDst6,
			espNull(spi, 1, 0, innerTCP6(1, 2), 41, 16), optsExt(0, 0), optsExt(60, 1), fragExt(0, false))),
		"esp-encrypted": cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espEncrypted(spi+1, 1, 64), ip4opts{})),
		"wesp-null": cat(eth(etherIPv4), ipv4(141, outerSrc4, outerDst4,
			wesp(4, 12, 12, 0, espNull(spi, 1, 0, innerUDP4(1000, 53), 4, 12)), ip4opts{})),
		// Cuts through a 255-byte pad: every window of the pad check
		// starts and ends at some cut.
		"esp-null-pad-255": cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4,
			espNullPadWith(spi, 0, innerUDP4(1000, 53), 4, 12, defaultPad(255)), ip4opts{})),
	}
}

// TestTruncatedFrames cuts valid frames at every length: the program must
// return pass or drop, move exactly one counter, and never act on a verdict
// for a frame whose IP header claims more bytes than there are.
func TestTruncatedFrames(t *testing.T) {
	p := loadTest(t, smallMaps(Config{}))
	sampleReader(t, p)
	for name, frame := range robustFrames(t, p) {
		t.Run(name, func(t *testing.T) {
			ret, _, d := run(t, p, frame)
			if r := onlyReason(t, d); !decided(r) {
				t.Fatalf("whole frame: %v (%d), want a decided flow", r, ret)
			}
			for n := 14; n < len(frame); n++ {
				ret, _, d := run(t, p, frame[:n])
				r := onlyReason(t, d)
				if decided(r) || (ret != xdpPass && ret != xdpDrop) {
					t.Fatalf("cut at %d of %d: %v, action %d", n, len(frame), r, ret)
				}
			}
		})
	}
}

// TestShortenedPackets shortens the IP packet at every length and fixes the
// IP (and UDP) lengths, so headers are consistent but the ESP packet is too
// short: the program must still answer with exactly one reason.
func TestShortenedPackets(t *testing.T) {
	p := loadTest(t, smallMaps(Config{}))
	sampleReader(t, p)
	for name, frame := range robustFrames(t, p) {
		t.Run(name, func(t *testing.T) {
			l3 := 14
			for binary.BigEndian.Uint16(frame[l3-2:]) != etherIPv4 && binary.BigEndian.Uint16(frame[l3-2:]) != etherIPv6 {
				l3 += 4
			}
			for n := l3 + 10; n < len(frame); n++ {
				f := append([]byte{}, frame[:n]...)
				if f[l3]>>4 == 4 {
					binary.BigEndian.PutUint16(f[l3+2:], uint16(n-l3))
					if ihl := int(f[l3]&0xf) * 4; f[l3+9] == 17 && n >= l3+ihl+8 {
						binary.BigEndian.PutUint16(f[l3+ihl+4:], uint16(n-l3-ihl))
					}
				} else {
					binary.BigEndian.PutUint16(f[l3+4:], uint16(max(n-l3-40, 0)))
				}
				ret, _, d := run(t, p, f)
				onlyReason(t, d)
				if ret != xdpPass && ret != xdpDrop {
					t.Fatalf("length %d: action %d", n, ret)
				}
			}
		})
	}
}

// FuzzXDP runs the program over arbitrary frames. It needs root and BPF and
// skips without them.
func FuzzXDP(f *testing.F) {
	requireBPF(f)
	p := loadTest(f, smallMaps(Config{}))
	if _, err := p.NewSampleReader(); err != nil {
		f.Fatal(err)
	}
	for _, fr := range robustFrames(f, p) {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 3000 {
			return // the kernel refuses to run XDP on these
		}
		before, err := p.ExitCounters()
		if err != nil {
			t.Fatal(err)
		}
		ret, err := p.XDP().Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatal(err)
		}
		after, err := p.ExitCounters()
		if err != nil {
			t.Fatal(err)
		}
		var moved uint64
		for i := range after {
			moved += after[i] - before[i]
		}
		if moved != 1 || (ret != xdpPass && ret != xdpDrop) {
			t.Fatalf("action %d, %d counters moved", ret, moved)
		}
	})
}

func TestFlowCountersAndIdle(t *testing.T) {
	p := loadTest(t, smallMaps(Config{}))
	a, b := key4(t, 0x300, EncapNone, 0, 0), key4(t, 0x301, EncapNone, 0, 0)
	mustVerdict(t, p, a, encV)
	mustVerdict(t, p, b, nullV)
	fa := cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espEncrypted(0x300, 1, 100), ip4opts{}))
	fb := nullTunnel4(0x301, 1, 2)
	for range 3 {
		run(t, p, fa)
	}
	run(t, p, fb)
	sa, err := p.FlowCounters(a)
	if err != nil {
		t.Fatal(err)
	}
	if sa != (FlowStats{Packets: 3, Bytes: 3 * uint64(len(fa))}) {
		t.Fatalf("flow a: %+v", sa)
	}
	idle, snap, err := p.IdleFlows(nil)
	if err != nil || len(idle) != 0 || len(snap) != 2 || snap[b].Packets != 1 {
		t.Fatalf("first sweep: idle %v, snapshot %v, %v", idle, snap, err)
	}
	run(t, p, fa)
	idle, snap, err = p.IdleFlows(snap)
	if err != nil || len(idle) != 1 || idle[0] != b || snap[a].Packets != 4 {
		t.Fatalf("second sweep: idle %v, snapshot %v, %v", idle, snap, err)
	}
	// A new verdict for the same flow keeps its slot and counters; a
	// deleted and re-added flow starts from zero.
	mustVerdict(t, p, a, nullV)
	if s, _ := p.FlowCounters(a); s.Packets != 4 {
		t.Fatalf("after verdict change: %+v", s)
	}
	if err := p.DeleteVerdict(a); err != nil {
		t.Fatal(err)
	}
	mustVerdict(t, p, a, encV)
	if s, _ := p.FlowCounters(a); s.Packets != 0 {
		t.Fatalf("after re-add: %+v", s)
	}
	n := 0
	it := p.Verdicts()
	for it.Next() {
		n++
	}
	if err := it.Err(); err != nil || n != 2 {
		t.Fatalf("iterated %d verdicts: %v", n, err)
	}
}

func TestSlotsExhausted(t *testing.T) {
	p := loadTest(t, Config{VerdictEntries: 8, PendingEntries: 8, InnerRuleEntries: 8, FlowSlots: 2})
	for i := range 2 {
		mustVerdict(t, p, key4(t, uint32(0x400+i), 0, 0, 0), encV)
	}
	if err := p.SetVerdict(key4(t, 0x500, 0, 0, 0), encV); err == nil {
		t.Fatal("third verdict with two slots accepted")
	}
	if err := p.DeleteVerdict(key4(t, 0x400, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	mustVerdict(t, p, key4(t, 0x500, 0, 0, 0), encV)
}

func TestSlotTable(t *testing.T) {
	var st slotTable
	st.init(130)
	seen := map[uint32]bool{}
	for range 130 {
		s := st.alloc()
		if s == 0 || s > 130 || seen[s] {
			t.Fatalf("alloc gave %d", s)
		}
		seen[s] = true
	}
	if s := st.alloc(); s != 0 {
		t.Fatalf("full table gave %d", s)
	}
	st.release(64)
	if s := st.alloc(); s != 64 {
		t.Fatalf("after release 64: %d", s)
	}
}

// TestConcurrentVerdicts sets and deletes verdicts from several goroutines
// while another sweeps; every flow must end with a distinct slot.
func TestConcurrentVerdicts(t *testing.T) {
	// Room to spare: an LRU map may evict before it is full, as CPUs keep
	// free entries on local lists.
	p := loadTest(t, Config{VerdictEntries: 4096, PendingEntries: 256, InnerRuleEntries: 256})
	const workers, per = 4, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				k := key4(t, uint32(w<<16|i+1), 0, 0, 0)
				if err := p.SetVerdict(k, encV); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					if err := p.DeleteVerdict(k); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	var snap Snapshot
	for range 5 {
		var err error
		if _, snap, err = p.IdleFlows(snap); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	slots := map[uint32]FlowKey{}
	it := p.Verdicts()
	for it.Next() {
		k, v := it.Key(), it.Verdict()
		if other, dup := slots[v.Slot]; dup || v.Slot == 0 {
			t.Fatalf("slot %d of %v also held by %v", v.Slot, k, other)
		}
		slots[v.Slot] = k
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if want := workers * (per - (per+2)/3); len(slots) != want {
		t.Fatalf("%d verdicts, want %d", len(slots), want)
	}
}
