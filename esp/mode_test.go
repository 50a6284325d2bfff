package esp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/packet"
)

func ipv4Packet(proto uint8, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0], h[8], h[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	copy(h[12:], []byte{192, 0, 2, 1})
	copy(h[16:], []byte{192, 0, 2, 2})
	binary.BigEndian.PutUint16(h[10:], ^packet.Fold(packet.Sum(h, 0)))
	return append(h, payload...)
}

func TestModes(t *testing.T) {
	src, dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	ip := ipv4Packet(17, []byte("udp-ish payload"))
	// Tunnel: the whole packet, TFC padding trimmed on the way back.
	p, nh, err := Payload(Tunnel, append(bytes.Clone(ip), 0, 0, 0))
	if err != nil || nh != ProtoIPv4 || !bytes.Equal(p, ip) {
		t.Fatalf("tunnel payload %x %d %v", p, nh, err)
	}
	back, err := Inner(Tunnel, nil, append(bytes.Clone(ip), 0, 0), ProtoIPv4, netip.Addr{}, netip.Addr{})
	if err != nil || !bytes.Equal(back, ip) {
		t.Fatalf("tunnel inner %x %v", back, err)
	}
	if _, err := Inner(Tunnel, nil, ip, ProtoIPv6, netip.Addr{}, netip.Addr{}); !errors.Is(err, ErrInner) {
		t.Fatalf("tunnel with wrong next header: %v", err)
	}
	// Transport: header rebuilt from the outer addresses, TTL 64.
	p, nh, err = Payload(Transport, ip)
	if err != nil || nh != 17 || string(p) != "udp-ish payload" {
		t.Fatalf("transport payload %q %d %v", p, nh, err)
	}
	back, err = Inner(Transport, make([]byte, 0, 100), p, nh, src, dst)
	if err != nil || !bytes.Equal(back, ip) {
		t.Fatalf("transport inner\n%x, want\n%x (%v)", back, ip, err)
	}
	v6 := make([]byte, 40, 48)
	v6[0], v6[6], v6[7] = 0x60, 58, 64
	binary.BigEndian.PutUint16(v6[4:], 8)
	s6, d6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	copy(v6[8:], s6.AsSlice())
	copy(v6[24:], d6.AsSlice())
	v6 = append(v6, 128, 0, 1, 2, 3, 4, 5, 6)
	p, nh, err = Payload(Transport, v6)
	if err != nil || nh != 58 || len(p) != 8 {
		t.Fatalf("v6 transport payload %x %d %v", p, nh, err)
	}
	back, err = Inner(Transport, nil, p, nh, s6, d6)
	if err != nil || !bytes.Equal(back, v6) {
		t.Fatalf("v6 inner\n%x, want\n%x (%v)", back, v6, err)
	}
	for _, bad := range [][]byte{nil, ip[:19], append([]byte{0x55}, ip[1:]...), ip[:30], v6[:45]} {
		if _, _, err := Payload(Transport, bad); !errors.Is(err, ErrInner) {
			t.Errorf("Payload(%x): %v", bad, err)
		}
	}
	if _, err := Inner(Transport, nil, p, nh, src, d6); !errors.Is(err, ErrInner) {
		t.Errorf("mixed families: %v", err)
	}
}
