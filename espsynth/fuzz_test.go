package espsynth_test

import (
	"encoding/binary"
	"testing"

	"github.com/espy-dpi/espy/espsynth"
)

// FuzzFlow builds a session from arbitrary parameters: the generator must
// either reject it with an error or produce packets that decrypt, verify
// and carry well-formed inner traffic.
func FuzzFlow(f *testing.F) {
	f.Add(int64(1), uint8(0), uint8(0), uint8(0), uint8(0), uint8(0), uint8(0), uint8(0), uint8(12), uint8(0))
	f.Add(int64(2), uint8(5), uint8(4), uint8(1), uint8(1), uint8(2), uint8(7), uint8(1), uint8(30), uint8(0xff))
	f.Add(int64(3), uint8(4), uint8(0), uint8(0), uint8(1), uint8(1), uint8(6), uint8(2), uint8(3), uint8(0x10))
	f.Fuzz(func(t *testing.T, seed int64, cipher, auth, encap, mode, padding, traffic, icv, packets, bits uint8) {
		fl := espsynth.Flow{
			Outer:   []espsynth.IPVersion{espsynth.IPv4, espsynth.IPv6}[bits&1],
			Inner:   []espsynth.IPVersion{espsynth.IPv4, espsynth.IPv6}[bits>>1&1],
			Encap:   espsynth.Encap(encap % 3),
			NAT:     bits&4 != 0,
			Mode:    espsynth.Mode(mode % 3),
			Cipher:  espsynth.Cipher(cipher % 9),
			Auth:    espsynth.Auth(auth % 7),
			ICVLen:  []int{0, 8, 12, 16, 10}[icv%5],
			Padding: espsynth.Padding(padding % 4),
			Traffic: espsynth.Traffic(traffic % 10),
			Dummy:   bits&8 != 0,
			OneWay:  bits&16 != 0,
			Packets: int(packets % 48),
		}
		cfg := espsynth.Config{Flows: []espsynth.Flow{fl}, Background: float64(bits>>5) / 10}
		if _, err := espsynth.NewGenerator(seed, cfg); err != nil {
			return // rejected configurations are fine; panics are not
		}
		c := generate(t, seed, cfg)
		labels := map[uint32]espsynth.Label{}
		for _, l := range c.labels {
			labels[l.SPI] = l
		}
		n := 0
		for i, frame := range c.frames {
			e := findESP(t, frame)
			if e == nil {
				continue
			}
			n++
			spi := binary.BigEndian.Uint32(e.esp)
			sa, ok := c.sas[flowKey{e.src, e.dst, spi}]
			if !ok {
				t.Fatalf("frame %d: unknown SA %#x", i, spi)
			}
			l := labels[spi]
			pt, err := openESP(sa, e.esp)
			if err != nil {
				t.Fatalf("frame %d (%+v): %v", i, fl, err)
			}
			payload, nh, err := checkTrailer(sa, pt, l.Padding)
			if err != nil {
				t.Fatalf("frame %d (%+v): %v", i, fl, err)
			}
			switch {
			case nh == 59:
			case l.Mode == "tunnel":
				_, err = checkInner(payload, nh, l.Padding == "tfc")
			default:
				_, err = checkSegment(payload, nh, e.src, e.dst)
			}
			if err != nil {
				t.Fatalf("frame %d (%+v): %v", i, fl, err)
			}
		}
		if n != fl.Packets {
			t.Fatalf("%d ESP packets, flow asked for %d", n, fl.Packets)
		}
	})
}
