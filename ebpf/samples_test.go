package ebpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

func readSample(t testing.TB, r *SampleReader, s *Sample) {
	t.Helper()
	r.SetDeadline(time.Now().Add(2 * time.Second))
	if err := r.Read(s); err != nil {
		t.Fatalf("read sample: %v", err)
	}
}

func TestSamplePath(t *testing.T) {
	pinCPU(t)
	p := loadTest(t, smallMaps(Config{SampleCount: 2}))
	r := sampleReader(t, p)
	const spi = 0xbeef
	frame := nullTunnel4(spi, 1000, 53)
	k := key4(t, spi, EncapNone, 0, 0)

	for i, want := range []ExitReason{ExitPendingSampled, ExitPendingSampled, ExitPendingOverLimit, ExitPendingOverLimit} {
		ret, _, d := run(t, p, frame)
		if got := onlyReason(t, d); got != want || ret != xdpPass {
			t.Fatalf("packet %d: %v/%d, want %v/pass", i, got, ret, want)
		}
	}
	var s Sample
	for i := range 2 {
		readSample(t, r, &s)
		if !bytes.Equal(s.Frame, frame) {
			t.Fatalf("sample %d: frame differs:\n got %x\nwant %x", i, s.Frame, frame)
		}
		if s.Key != k || s.OrigLen != uint32(len(frame)) || s.Ifindex != loIfindex || s.L3Off != 14 || s.ESPOff != 34 {
			t.Fatalf("sample %d: key %v origlen %d ifindex %d l3 %d esp %d", i, s.Key, s.OrigLen, s.Ifindex, s.L3Off, s.ESPOff)
		}
	}
	r.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if err := r.Read(&s); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("third read: %v, want deadline (only two samples sent)", err)
	}

	// A verdict clears the pending count; deleting it makes the flow
	// unknown and sampled again.
	mustVerdict(t, p, k, encV)
	if err := p.DeleteVerdict(k); err != nil {
		t.Fatal(err)
	}
	if _, _, d := run(t, p, frame); onlyReason(t, d) != ExitPendingSampled {
		t.Fatalf("after delete: %v, want pending-sampled", d)
	}
	readSample(t, r, &s)
	if err := p.DeleteVerdict(k); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
}

func TestSampleSnapLen(t *testing.T) {
	p := loadTest(t, smallMaps(Config{SnapLen: 2048}))
	r := sampleReader(t, p)
	big := cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espEncrypted(0x77, 1, 2900), ip4opts{}))
	if _, _, d := run(t, p, big); onlyReason(t, d) != ExitPendingSampled {
		t.Fatalf("%v", d)
	}
	var s Sample
	readSample(t, r, &s)
	if s.OrigLen != uint32(len(big)) || len(s.Frame) != 2048 || !bytes.Equal(s.Frame, big[:2048]) {
		t.Fatalf("origlen %d (want %d), captured %d (want 2048)", s.OrigLen, len(big), len(s.Frame))
	}
}

func TestSampleRateLimit(t *testing.T) {
	pinCPU(t)
	// One sample a second after a burst of three: six different flows in a
	// few milliseconds get three samples.
	p := loadTest(t, smallMaps(Config{SampleRate: 1, SampleBurst: 3, SampleCount: 100}))
	r := sampleReader(t, p)
	var sampled, limited int
	for i := range 6 {
		_, _, d := run(t, p, nullTunnel4(uint32(0x100+i), 1, 2))
		switch onlyReason(t, d) {
		case ExitPendingSampled:
			sampled++
		case ExitSampleRateLimited:
			limited++
		default:
			t.Fatalf("packet %d: %v", i, d)
		}
	}
	if sampled != 3 || limited != 3 {
		t.Fatalf("sampled %d, rate-limited %d; want 3 and 3", sampled, limited)
	}
	var s Sample
	for range 3 {
		readSample(t, r, &s)
	}
	// Fail-closed drops what the limiter refuses.
	if err := p.Reconfigure(smallMaps(Config{SampleRate: 1, SampleBurst: 3, SampleCount: 100, FailClosed: true})); err != nil {
		t.Fatal(err)
	}
	ret, _, d := run(t, p, nullTunnel4(0x200, 1, 2))
	if onlyReason(t, d) != ExitSampleRateLimited || ret != xdpDrop {
		t.Fatalf("fail-closed over limit: %v/%d", d, ret)
	}
}

func TestSampleReadDoesNotAllocate(t *testing.T) {
	pinCPU(t)
	p := loadTest(t, smallMaps(Config{NoRateLimit: true, SampleCount: 1 << 30}))
	r := sampleReader(t, p)
	frame := nullTunnel4(0x55, 1, 2)
	var s Sample
	// Warm the reader's buffer.
	run(t, p, frame)
	readSample(t, r, &s)
	const n = 50
	for range n + 1 {
		if _, err := p.XDP().Run(&ebpf.RunOptions{Data: frame}); err != nil {
			t.Fatal(err)
		}
	}
	r.SetDeadline(time.Time{})
	allocs := testing.AllocsPerRun(n, func() {
		if err := r.Read(&s); err != nil || len(s.Frame) != len(frame) {
			t.Fatalf("read: %v (%d bytes)", err, len(s.Frame))
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per sample", allocs)
	}
}

func TestDecodeSampleErrors(t *testing.T) {
	var s Sample
	for _, raw := range [][]byte{nil, make([]byte, sampleHeaderLen-1)} {
		if err := decodeSample(raw, &s); !errors.Is(err, ErrSampleTruncated) {
			t.Errorf("%d bytes: %v", len(raw), err)
		}
	}
	raw := make([]byte, sampleHeaderLen+4)
	binary.NativeEndian.PutUint32(raw[52:], 5) // cap_len 5, 4 bytes follow
	if err := decodeSample(raw, &s); !errors.Is(err, ErrSampleTruncated) {
		t.Errorf("cap_len beyond the record: %v", err)
	}
	binary.NativeEndian.PutUint32(raw[52:], 4)
	if err := decodeSample(raw, &s); err != nil || len(s.Frame) != 4 {
		t.Errorf("cap_len 4: %v, %d bytes", err, len(s.Frame))
	}
}

func FuzzDecodeSample(f *testing.F) {
	hdr := make([]byte, sampleHeaderLen)
	f.Add(hdr)
	withFrame := append(append([]byte{}, hdr...), 1, 2, 3, 4)
	binary.NativeEndian.PutUint32(withFrame[52:], 4)
	f.Add(withFrame)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var s Sample
		err := decodeSample(raw, &s)
		if err != nil {
			if !errors.Is(err, ErrSampleTruncated) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		if len(s.Frame) > len(raw)-sampleHeaderLen {
			t.Fatalf("frame of %d bytes from %d-byte record", len(s.Frame), len(raw))
		}
	})
}

// TestSampleLostCounted overflows a one-page ring: the program counts
// sample-lost for every sample the ring has no room for, the reader reads
// exactly the ones it had, and once read, the ring takes samples again.
func TestSampleLostCounted(t *testing.T) {
	pinCPU(t)
	p := loadTest(t, smallMaps(Config{NoRateLimit: true, SampleCount: 1 << 20, SampleRingBytes: os.Getpagesize()}))
	r := sampleReader(t, p)
	frame := cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espEncrypted(0x88, 1, 1000), ip4opts{}))
	var sampled, lost uint64
	for range 20 {
		_, _, d := run(t, p, frame)
		sampled += d[ExitPendingSampled]
		lost += d[ExitSampleLost]
	}
	if lost == 0 || sampled == 0 {
		t.Fatalf("sampled %d, lost %d: a page should hold some, not all", sampled, lost)
	}
	var s Sample
	for i := range sampled {
		readSample(t, r, &s)
		if !bytes.Equal(s.Frame, frame) {
			t.Fatalf("sample %d: %d bytes, not the frame", i, len(s.Frame))
		}
	}
	r.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if err := r.Read(&s); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a sample beyond the %d the program wrote: %v", sampled, err)
	}
	if _, _, d := run(t, p, frame); d[ExitPendingSampled] != 1 {
		t.Fatalf("after draining, the ring took no sample: %v", d)
	}
}
