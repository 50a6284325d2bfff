package policy

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func TestParseExample(t *testing.T) {
	p, err := LoadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeDecorrelated || p.MaxEntries != 100000 || len(p.Rules) != 7 {
		t.Fatalf("mode %v max %d rules %d", p.Mode, p.MaxEntries, len(p.Rules))
	}
	id, ok := p.LabelID("system_u:object_r:web_t:s0")
	if !ok || id != 1 {
		t.Fatalf("label id %d %v", id, ok)
	}
	pk := func(src, dst string, proto uint8, sp, dp uint16) *Packet {
		x := NewPacket(netip.MustParseAddr(src), netip.MustParseAddr(dst), proto, sp, dp)
		return &x
	}
	labelled := pk("2001:db8:1::5", "2001:db8:2::9", ProtoTCP, 40000, 443)
	labelled.Label = id
	for _, tc := range []struct {
		p    *Packet
		want string
	}{
		{pk("192.0.2.5", "203.0.113.1", ProtoTCP, 5000, 23), "no-telnet"},
		{pk("192.0.2.5", "198.51.100.1", ProtoUDP, 500, 500), "ike"},
		{pk("192.0.2.5", "198.51.100.1", ProtoICMP, 8<<8, 0), "ping-dc"},
		{pk("192.0.2.5", "198.51.100.1", ProtoICMP, 0<<8, 0), "dc"},
		{pk("192.0.2.5", "198.51.100.1", ProtoTCP, 5000, 22), "dc"},
		{labelled, "dc-v6"},
		{pk("2001:db8:1::5", "2001:db8:2::9", ProtoTCP, 40000, 443), ""}, // unlabelled
		{pk("203.0.113.40", "198.51.100.200", ProtoUDP, 1, 2), "lab-range"},
		{pk("203.0.113.41", "198.51.100.200", ProtoUDP, 1, 2), "default-v4"},
	} {
		v := p.Lookup(tc.p)
		if v.Name != tc.want {
			t.Errorf("%v: rule %q, want %q", tc.p, v.Name, tc.want)
		}
	}
	if r := p.Rules[3]; r.Action != ActionProtect || r.SA != "tunnel-dc" || r.Line != 30 {
		t.Errorf("rule dc: %+v", r)
	}
}

// TestParseErrors feeds malformed policies and checks that each is rejected
// with the right sentinel, the right line and a useful reason.
func TestParseErrors(t *testing.T) {
	long := strings.Repeat("x", MaxLabelLen+1)
	for _, tc := range []struct {
		name, yaml string
		err        error
		line       int
		reason     string
	}{
		{"not yaml", "policy: [\n", ErrSyntax, 0, "syntax"},
		{"no section", "capture: {}\n", ErrSyntax, 1, "no top-level"},
		{"section not mapping", "policy: 3\n", ErrSyntax, 1, "not a mapping"},
		{"unknown key", "policy:\n  modes: x\n  rules: []\n", ErrSyntax, 2, `unknown key "modes"`},
		{"bad mode", "policy:\n  mode: strict\n  rules: []\n", ErrSyntax, 2, "unknown mode"},
		{"bad max", "policy:\n  max_entries: -1\n  rules: []\n", ErrSyntax, 2, "max_entries"},
		{"no rules", "policy:\n  mode: ordered\n", ErrSyntax, 2, "rules"},
		{"rule not mapping", "policy:\n  rules:\n    - 5\n", ErrSyntax, 3, "not a mapping"},
		{"no name", "policy:\n  rules:\n    - action: drop\n", ErrBadRule, 3, "no name"},
		{"no action", "policy:\n  rules:\n    - name: a\n", ErrBadRule, 3, "no action"},
		{"bad action", "policy:\n  rules:\n    - name: a\n      action: reject\n", ErrUnknownAction, 4, "reject"},
		{"protect without sa", "policy:\n  rules:\n    - name: a\n      action: protect\n", ErrBadRule, 3, "needs an sa"},
		{"sa without protect", "policy:\n  rules:\n    - name: a\n      action: drop\n      sa: t\n", ErrBadRule, 5, "only meaningful"},
		{"bad prefix", "policy:\n  rules:\n    - name: a\n      src: 192.0.2.0/33\n      action: drop\n", ErrBadSelector, 4, "src"},
		{"host bits", "policy:\n  rules:\n    - name: a\n      src: 192.0.2.1/24\n      action: drop\n", ErrBadSelector, 4, "host bits"},
		{"empty addr range", "policy:\n  rules:\n    - name: a\n      dst: 192.0.2.9-192.0.2.1\n      action: drop\n", ErrBadSelector, 4, "empty"},
		{"mixed range", "policy:\n  rules:\n    - name: a\n      dst: 192.0.2.9-2001:db8::1\n      action: drop\n", ErrBadSelector, 4, "mixes"},
		{"mixed families", "policy:\n  rules:\n    - name: a\n      src: 192.0.2.0/24\n      dst: 2001:db8::/32\n      action: drop\n", ErrBadSelector, 5, "mixes IPv4 and IPv6"},
		{"unknown protocol", "policy:\n  rules:\n    - name: a\n      protocol: tcpp\n      action: drop\n", ErrUnknownProtocol, 4, "tcpp"},
		{"protocol zero", "policy:\n  rules:\n    - name: a\n      protocol: 0\n      action: drop\n", ErrBadSelector, 4, "out of 1..255"},
		{"ports without tcp", "policy:\n  rules:\n    - name: a\n      dst_port: 80\n      action: drop\n", ErrBadSelector, 4, "ports need"},
		{"impossible port range", "policy:\n  rules:\n    - name: a\n      protocol: tcp\n      dst_port: 90-80\n      action: drop\n", ErrBadSelector, 5, "empty"},
		{"port too big", "policy:\n  rules:\n    - name: a\n      protocol: udp\n      src_port: 70000\n      action: drop\n", ErrBadSelector, 5, "exceeds"},
		{"icmp code needs one type", "policy:\n  rules:\n    - name: a\n      protocol: icmp\n      icmp: {type: 3-5, code: 1}\n      action: drop\n", ErrBadSelector, 5, "single icmp type"},
		{"icmp on tcp", "policy:\n  rules:\n    - name: a\n      protocol: tcp\n      icmp: {type: 3}\n      action: drop\n", ErrBadSelector, 5, "needs protocol icmp"},
		{"icmp with v6", "policy:\n  rules:\n    - name: a\n      src: 2001:db8::/32\n      protocol: icmp\n      action: drop\n", ErrBadSelector, 5, "ipv6-icmp"},
		{"label too long", "policy:\n  rules:\n    - name: a\n      label: " + long + "\n      action: drop\n", ErrLabelTooLong, 4, "octets"},
		{"empty label", "policy:\n  rules:\n    - name: a\n      label: \"\"\n      action: drop\n", ErrBadSelector, 4, "empty security label"},
		{"duplicate name", "policy:\n  rules:\n    - name: a\n      action: drop\n    - name: a\n      action: drop\n", ErrBadRule, 5, "line 3"},
		{"duplicate precedence", "policy:\n  rules:\n    - name: a\n      precedence: 1\n      action: drop\n    - name: b\n      precedence: 1\n      action: drop\n", ErrBadRule, 6, "precedence 1"},
		{"partial precedence", "policy:\n  rules:\n    - name: a\n      precedence: 1\n      action: drop\n    - name: b\n      action: drop\n", ErrBadRule, 3, "either every rule"},
		{"alias", "x: &a {name: a, action: drop}\npolicy:\n  rules:\n    - *a\n", ErrSyntax, 4, "aliases"},
		{"forbid overlap", "policy:\n  mode: forbid\n  rules:\n    - name: a\n      src: 192.0.2.0/24\n      action: drop\n    - name: b\n      src: 192.0.2.128/25\n      action: allow\n", ErrOverlap, 7, `"a" (line 4) and rule "b" (line 7) overlap in family=4 src=192.0.2.128/25`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(tc.yaml))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err %T is not a *ParseError", err)
			}
			if pe.File != "test.yaml" || (tc.line != 0 && pe.Line != tc.line) {
				t.Errorf("at %s:%d, want line %d (%v)", pe.File, pe.Line, tc.line, err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("%q does not say %q", err, tc.reason)
			}
		})
	}
}

func TestParseAction(t *testing.T) {
	for in, want := range map[string]Action{"protect": ActionProtect, "bypass": ActionBypass, "discard": ActionDiscard,
		"allow": ActionAllow, "drop": ActionDrop, "log": ActionLog, "count": ActionLog} {
		if got, err := ParseAction(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"none", "", "PROTECT", "reject"} {
		if _, err := ParseAction(bad); !errors.Is(err, ErrUnknownAction) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestForbidAcceptsDisjoint(t *testing.T) {
	y := "policy:\n  mode: forbid\n  rules:\n    - name: a\n      src: 192.0.2.0/25\n      action: drop\n    - name: b\n      src: 192.0.2.128/25\n      action: allow\n"
	if _, err := Parse("t.yaml", []byte(y)); err != nil {
		t.Fatal(err)
	}
}

func TestLoadFileErrors(t *testing.T) {
	if _, err := LoadFile("testdata/does-not-exist.yaml"); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
