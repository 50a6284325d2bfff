package ikets

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/policy"
)

// prefixTS is the any-protocol selector of prefix s.
func prefixTS(t *testing.T, s string) TS {
	t.Helper()
	p := netip.MustParsePrefix(s).Masked()
	lo := p.Addr()
	hi := lo.AsSlice()
	for i := p.Bits(); i < len(hi)*8; i++ {
		hi[i/8] |= 0x80 >> (i % 8)
	}
	end, _ := netip.AddrFromSlice(hi)
	typ := IPv4AddrRange
	if lo.Is6() {
		typ = IPv6AddrRange
	}
	return TS{Type: typ, EndPort: 65535, Start: lo, End: end}
}

func TestPropose(t *testing.T) {
	const lab = `
policy:
  rules:
    - {name: lab, src: 198.51.100.0/24, dst: 203.0.113.0/24, action: protect, sa: lab}
`
	const cut = `
policy:
  rules:
    - {name: upper-bypass, src: 198.51.100.0/24, dst: 203.0.113.128/25, action: bypass}
    - {name: lab, src: 198.51.100.0/24, dst: 203.0.113.0/24, action: protect, sa: lab}
`
	const web = `
policy:
  rules:
    - {name: web, src: 198.51.100.0/24, dst: 203.0.113.0/24, protocol: tcp, dst_port: 443, action: protect, sa: lab}
`
	for _, tc := range []struct {
		name, spd, sa string
		local, remote []string // nil: AnyTS
		wantL, wantR  string   // TS.String of the proposal
		narrowed      bool
		wantErr       error
	}{
		{name: "rule from any", spd: lab, sa: "lab",
			wantL: "198.51.100.0-198.51.100.255 proto 0 ports 0-65535", wantR: "203.0.113.0-203.0.113.255 proto 0 ports 0-65535", narrowed: true},
		{name: "configured equals rule", spd: lab, sa: "lab", local: []string{"198.51.100.0/24"}, remote: []string{"203.0.113.0/24"},
			wantL: "198.51.100.0-198.51.100.255 proto 0 ports 0-65535", wantR: "203.0.113.0-203.0.113.255 proto 0 ports 0-65535"},
		{name: "intersected with local_ts", spd: lab, sa: "lab", local: []string{"198.51.100.0/25"}, remote: []string{"203.0.113.0/16"},
			wantL: "198.51.100.0-198.51.100.127 proto 0 ports 0-65535", wantR: "203.0.113.0-203.0.113.255 proto 0 ports 0-65535", narrowed: true},
		{name: "higher bypass cuts", spd: cut, sa: "lab", local: []string{"198.51.100.0/24"}, remote: []string{"203.0.113.0/24"},
			wantL: "198.51.100.0-198.51.100.255 proto 0 ports 0-65535", wantR: "203.0.113.0-203.0.113.127 proto 0 ports 0-65535", narrowed: true},
		{name: "protocol and port", spd: web, sa: "lab",
			wantL: "198.51.100.0-198.51.100.255 proto 6 ports 0-65535", wantR: "203.0.113.0-203.0.113.255 proto 6 ports 443-443", narrowed: true},
		{name: "other tunnel", spd: lab, sa: "other", wantErr: ErrUnacceptable},
		{name: "disjoint local_ts", spd: lab, sa: "lab", local: []string{"192.0.2.0/24"}, remote: []string{"203.0.113.0/24"}, wantErr: ErrUnacceptable},
		{name: "family mismatch", spd: lab, sa: "lab", local: []string{"2001:db8::/32"}, remote: []string{"203.0.113.0/24"}, wantErr: ErrUnacceptable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policy.Parse("spd.yaml", []byte(tc.spd))
			if err != nil {
				t.Fatal(err)
			}
			side := func(ps []string) Selectors {
				if ps == nil {
					return AnyTS()
				}
				var s Selectors
				for _, x := range ps {
					s.TS = append(s.TS, prefixTS(t, x))
				}
				return s
			}
			res, err := Propose(p.Rules, p.LabelID, side(tc.local), side(tc.remote), tc.sa)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := res.TSi.TS[0].String(); got != tc.wantL || len(res.TSi.TS) != 1 {
				t.Errorf("local %v, want %s", res.TSi.TS, tc.wantL)
			}
			if got := res.TSr.TS[0].String(); got != tc.wantR || len(res.TSr.TS) != 1 {
				t.Errorf("remote %v, want %s", res.TSr.TS, tc.wantR)
			}
			if res.Narrowed != tc.narrowed || res.SA != tc.sa {
				t.Errorf("narrowed %v SA %q, want %v %q", res.Narrowed, res.SA, tc.narrowed, tc.sa)
			}
		})
	}
}

func TestProposeBadTS(t *testing.T) {
	bad := Selectors{TS: []TS{{Type: IPv4AddrRange, Start: netip.MustParseAddr("203.0.113.9"), End: netip.MustParseAddr("203.0.113.1")}}}
	if _, err := Propose(nil, nil, bad, AnyTS(), "lab"); !errors.Is(err, ErrBadTS) {
		t.Errorf("empty range: %v", err)
	}
	if _, err := Propose(nil, nil, Selectors{}, AnyTS(), "lab"); !errors.Is(err, ErrBadTS) {
		t.Errorf("empty list: %v", err)
	}
}
