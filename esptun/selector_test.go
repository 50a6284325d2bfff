package esptun

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestRangePrefixes(t *testing.T) {
	cases := []struct {
		start, end string
		want       []netip.Prefix
	}{
		{"203.0.113.1", "203.0.113.1", []netip.Prefix{pfx("203.0.113.1/32")}},
		{"203.0.113.0", "203.0.113.255", []netip.Prefix{pfx("203.0.113.0/24")}},
		{"203.0.113.1", "203.0.113.6", []netip.Prefix{pfx("203.0.113.1/32"), pfx("203.0.113.2/31"), pfx("203.0.113.4/31"), pfx("203.0.113.6/32")}},
		{"0.0.0.0", "255.255.255.255", []netip.Prefix{pfx("0.0.0.0/0")}},
		{"2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", []netip.Prefix{pfx("2001:db8::/64")}},
		{"198.51.100.7", "198.51.100.6", nil},
		{"198.51.100.7", "2001:db8::1", nil},
	}
	for _, c := range cases {
		got, ok := message.RangePrefixes(netip.MustParseAddr(c.start), netip.MustParseAddr(c.end), maxRoutePrefixes)
		if ok != (c.want != nil) || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s-%s: got %v %v, want %v", c.start, c.end, got, ok, c.want)
		}
	}
	// 0.0.0.1 - 255.255.255.254 needs 62 prefixes; ::1 - ffff..fffe 254.
	if _, ok := message.RangePrefixes(netip.MustParseAddr("::1"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), maxRoutePrefixes); ok {
		t.Error("254-prefix range accepted")
	}
}

// ipv4 builds an IPv4 packet with an L4 header carrying ports.
func ipv4(src, dst string, proto uint8, sport, dport uint16) []byte {
	p := make([]byte, 28)
	p[0], p[9] = 0x45, proto
	binary.BigEndian.PutUint16(p[2:], 28)
	copy(p[12:], netip.MustParseAddr(src).AsSlice())
	copy(p[16:], netip.MustParseAddr(dst).AsSlice())
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	return p
}

func TestSelectorMatch(t *testing.T) {
	local := []message.Selector{ike.PrefixSelector(pfx("198.51.100.0/24"))}
	web := ike.PrefixSelector(pfx("203.0.113.0/24"))
	web.IPProto, web.StartPort, web.EndPort = 6, 443, 443
	remote := []message.Selector{web, ike.PrefixSelector(pfx("2001:db8::/32"))}
	cases := []struct {
		name string
		pkt  []byte
		out  bool // direction; inbound packets come from remote
		want bool
	}{
		{"tcp 443 out", ipv4("198.51.100.9", "203.0.113.5", 6, 40000, 443), true, true},
		{"tcp 80 out", ipv4("198.51.100.9", "203.0.113.5", 6, 40000, 80), true, false},
		{"udp 443 out", ipv4("198.51.100.9", "203.0.113.5", 17, 40000, 443), true, false},
		{"wrong source", ipv4("198.51.101.9", "203.0.113.5", 6, 40000, 443), true, false},
		{"tcp 443 in", ipv4("203.0.113.5", "198.51.100.9", 6, 443, 40000), false, true},
		{"tcp in from port 80", ipv4("203.0.113.5", "198.51.100.9", 6, 80, 40000), false, false},
		{"family mismatch", ipv4("198.51.100.9", "203.0.113.5", 1, 0x0800, 0), true, false},
	}
	for _, c := range cases {
		f, ok := parseFlow(c.pkt)
		if !ok {
			t.Fatalf("%s: parseFlow failed", c.name)
		}
		var got bool
		if c.out {
			got = matches(local, remote, f.src, f.dst, &f, true)
		} else {
			got = matches(local, remote, f.dst, f.src, &f, false)
		}
		if got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	for _, bad := range [][]byte{nil, {0x45}, make([]byte, 20), append([]byte{0x4f}, make([]byte, 30)...), append([]byte{0x60}, make([]byte, 30)...)} {
		if _, ok := parseFlow(bad); ok && (len(bad) < 20 || bad[0] != 0x45) {
			t.Errorf("parseFlow(%x) accepted", bad)
		}
	}
}

// FuzzParseFlow: any bytes from the TUN device or a decrypted payload
// must parse or be refused without panicking.
func FuzzParseFlow(f *testing.F) {
	f.Add(ipv4("198.51.100.9", "203.0.113.5", 6, 40000, 443))
	f.Fuzz(func(t *testing.T, p []byte) {
		fl, ok := parseFlow(p)
		if ok && !fl.src.IsValid() {
			t.Fatal("flow without addresses")
		}
		sel := []message.Selector{ike.PrefixSelector(pfx("0.0.0.0/0"))}
		matches(sel, sel, fl.src, fl.dst, &fl, true)
	})
}
