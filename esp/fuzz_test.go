package esp

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary packets to an inbound SA of every algorithm:
// Open must return a clear error or a payload inside the packet, never
// panic. Seeds under testdata/fuzz/FuzzOpen are real packets sealed with
// the keys of pair (regenerate with ESPY_FUZZ_SEEDS=1).
func FuzzOpen(f *testing.F) {
	f.Add(uint8(0), []byte{1, 2, 3, 4, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, alg uint8, pkt []byte) {
		s := suites[int(alg)%len(suites)]
		_, in := pair(t, s, alg&0x80 != 0)
		payload, _, _, err := in.Open(pkt)
		if err != nil {
			var se *SAError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not an SAError", err)
			}
			return
		}
		if len(payload) > len(pkt) {
			t.Fatalf("payload of %d bytes from a %d-byte packet", len(payload), len(pkt))
		}
	})
}

// TestWriteFuzzSeeds regenerates the seed corpus when ESPY_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("ESPY_FUZZ_SEEDS") == "" {
		t.Skip("set ESPY_FUZZ_SEEDS=1 to rewrite testdata/fuzz/FuzzOpen")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range suites {
		for _, esn := range []bool{false, true} {
			o, _ := pair(t, s, esn)
			pkt, err := o.Seal(nil, []byte("\x45\x00\x00\x14seed packet of espy"), 4)
			if err != nil {
				t.Fatal(err)
			}
			alg := uint8(i)
			if esn {
				alg |= 0x80
			}
			body := "go test fuzz v1\nbyte(" + itoa(int(alg)) + ")\n[]byte(" + quote(pkt) + ")\n"
			name := filepath.Join(dir, s.name+map[bool]string{false: "", true: "-esn"}[esn])
			if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func quote(b []byte) string {
	const hexd = "0123456789abcdef"
	out := []byte{'"'}
	for _, c := range b {
		out = append(out, '\\', 'x', hexd[c>>4], hexd[c&15])
	}
	return string(append(out, '"'))
}

// FuzzInner feeds arbitrary decrypted payloads to the mode code: Inner
// and Payload must return an error or a packet, never panic, and a tunnel
// packet Inner accepts must round-trip through Payload.
func FuzzInner(f *testing.F) {
	f.Add([]byte("\x45\x00\x00\x14\x00\x00\x00\x00\x40\x11\x00\x00\xc0\x00\x02\x01\xc0\x00\x02\x02"), uint8(4))
	f.Add([]byte("\x60\x00\x00\x00\x00\x00\x3b\x40"+string(make([]byte, 32))), uint8(41))
	f.Add([]byte("udp payload"), uint8(17))
	f.Fuzz(func(t *testing.T, payload []byte, nh uint8) {
		src, dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
		if ip, err := Inner(Tunnel, nil, payload, nh, src, dst); err == nil {
			p, pnh, err := Payload(Tunnel, ip)
			if err != nil || pnh != nh || len(p) != len(ip) {
				t.Fatalf("tunnel packet %x does not round-trip: %v", ip, err)
			}
		}
		if ip, err := Inner(Transport, nil, payload, nh, src, dst); err == nil {
			p, pnh, err := Payload(Transport, ip)
			if err != nil || pnh != nh || string(p) != string(payload) {
				t.Fatalf("transport packet %x does not round-trip: %v", ip, err)
			}
		}
		Payload(Transport, payload)
	})
}
