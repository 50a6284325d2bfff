package ikets

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/policytest"
)

const spd = `
policy:
  mode: ordered
  rules:
    - name: no-telnet
      src: 192.0.2.0/24
      dst: 198.51.100.0/24
      protocol: tcp
      dst_port: 23
      action: discard
    - name: mgmt-bypass
      src: 192.0.2.10
      dst: 198.51.100.0/24
      action: bypass
    - name: dc
      src: 192.0.2.0/24
      dst: 198.51.100.0/24
      action: protect
      sa: tunnel-dc
    - name: web
      src: 192.0.2.0/23
      dst: 203.0.113.0/24
      protocol: tcp
      dst_port: 443
      action: protect
      sa: tunnel-web
`

func load(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("spd.yaml", []byte(spd))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ts(t *testing.T, lo, hi string, proto uint8, plo, phi uint16) TS {
	t.Helper()
	a, b := netip.MustParseAddr(lo), netip.MustParseAddr(hi)
	typ := IPv4AddrRange
	if a.Is6() {
		typ = IPv6AddrRange
	}
	return TS{Type: typ, Protocol: proto, StartPort: plo, EndPort: phi, Start: a, End: b}
}

func sel(list ...TS) Selectors { return Selectors{TS: list} }

func TestNarrow(t *testing.T) {
	p := load(t)
	for _, tc := range []struct {
		name     string
		tsi, tsr Selectors // tsi: remote side, tsr: local side
		wantErr  error
		wantRule string
		narrowed bool
		wantTSr  string
		wantTSi  string
	}{
		{
			name:     "exact web rule accepted unchanged",
			tsi:      sel(ts(t, "203.0.113.0", "203.0.113.255", 6, 443, 443)),
			tsr:      sel(ts(t, "192.0.2.0", "192.0.3.255", 6, 0, 65535)),
			wantRule: "web", wantTSr: "192.0.2.0-192.0.3.255 proto 6 ports 0-65535", wantTSi: "203.0.113.0-203.0.113.255 proto 6 ports 443-443",
		},
		{
			name:     "wider proposal narrowed to the rule",
			tsi:      sel(ts(t, "203.0.113.0", "203.0.113.255", 6, 0, 65535)),
			tsr:      sel(ts(t, "192.0.0.0", "192.0.255.255", 6, 0, 65535)),
			wantRule: "web", narrowed: true,
			wantTSr: "192.0.2.0-192.0.3.255 proto 6 ports 0-65535", wantTSi: "203.0.113.0-203.0.113.255 proto 6 ports 443-443",
		},
		{
			name: "trigger packet picks its rule; holes of earlier rules stay out",
			tsi: sel(ts(t, "198.51.100.7", "198.51.100.7", 17, 53, 53),
				ts(t, "198.51.100.0", "198.51.100.255", 0, 0, 65535)),
			tsr: sel(ts(t, "192.0.2.20", "192.0.2.20", 17, 4000, 4000),
				ts(t, "192.0.2.0", "192.0.2.255", 0, 0, 65535)),
			wantRule: "dc", narrowed: true,
		},
		{
			name:    "trigger in a bypass rule is unacceptable",
			tsi:     sel(ts(t, "198.51.100.7", "198.51.100.7", 17, 53, 53)),
			tsr:     sel(ts(t, "192.0.2.10", "192.0.2.10", 17, 4000, 4000)),
			wantErr: ErrUnacceptable,
		},
		{
			name:    "no protected part",
			tsi:     sel(ts(t, "2001:db8::1", "2001:db8::ff", 0, 0, 65535)),
			tsr:     sel(ts(t, "2001:db8:1::1", "2001:db8:1::ff", 0, 0, 65535)),
			wantErr: ErrUnacceptable,
		},
		{
			name:    "malformed selector",
			tsi:     sel(ts(t, "198.51.100.9", "198.51.100.1", 0, 0, 65535)),
			tsr:     sel(ts(t, "192.0.2.0", "192.0.2.255", 0, 0, 65535)),
			wantErr: ErrBadTS,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Narrow(p.Rules, p.LabelID, tc.tsi, tc.tsr)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Rule != tc.wantRule || res.Narrowed != tc.narrowed {
				t.Errorf("rule %q narrowed %v, want %q %v", res.Rule, res.Narrowed, tc.wantRule, tc.narrowed)
			}
			if tc.wantTSr != "" && (res.TSr.TS[0].String() != tc.wantTSr || res.TSi.TS[0].String() != tc.wantTSi) {
				t.Errorf("TSr %v TSi %v, want %s / %s", res.TSr.TS[0], res.TSi.TS[0], tc.wantTSr, tc.wantTSi)
			}
			checkProtected(t, p.Rules, res.TSi, res.TSr, res.SA)
		})
	}
}

// checkProtected samples the narrowed selectors: every packet they cover
// must be protected by sa under first-match semantics.
func checkProtected(t *testing.T, rules []policy.Rule, tsi, tsr Selectors, sa string) {
	t.Helper()
	b, ok := pairBox(tsr.TS[0], tsi.TS[0], 0, false)
	if !ok {
		t.Fatalf("narrowed selectors %v / %v do not form a box", tsr.TS[0], tsi.TS[0])
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 300; i++ {
		pk, ok := policy.PointIn(&b, rng, i == 0)
		if !ok {
			continue
		}
		if v := policy.LinearLookup(rules, &pk); v.Action != policy.ActionProtect || v.SA != sa {
			t.Fatalf("narrowed selectors cover %s, which the SPD gives %q (%s), not SA %q", pk, v.Name, v.Action, sa)
		}
	}
}

func TestNarrowProperty(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 5))
		rules := policytest.Rules(rng, 4+rng.IntN(20), false)
		for _, r := range rules {
			if r.Box[policy.DimLabel] != policy.Span(0, 4294967295) {
				continue
			}
			// Propose a rule's own selectors, widened a little.
			b := r.Box
			if b[policy.DimFamily] != policy.Span(4, 4) {
				continue
			}
			lo := func(iv policy.Interval) netip.Addr { return policy.U128Addr(4, iv.Lo) }
			hi := func(iv policy.Interval) netip.Addr { return policy.U128Addr(4, iv.Hi) }
			proto := uint8(0)
			if b[policy.DimProto].Lo == b[policy.DimProto].Hi {
				proto = uint8(b[policy.DimProto].Lo.Lo)
			}
			if proto == policy.ProtoICMP {
				continue
			}
			tsr := sel(TS{Type: IPv4AddrRange, Protocol: proto, Start: lo(b[policy.DimSrc]), End: hi(b[policy.DimSrc]), EndPort: 65535})
			tsi := sel(TS{Type: IPv4AddrRange, Protocol: proto, Start: lo(b[policy.DimDst]), End: hi(b[policy.DimDst]), EndPort: 65535})
			res, err := Narrow(rules, func(string) (uint32, bool) { return 0, false }, tsi, tsr)
			if errors.Is(err, ErrUnacceptable) {
				continue
			}
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			checkProtected(t, rules, res.TSi, res.TSr, res.SA)
		}
	}
}

func TestCheckChildSA(t *testing.T) {
	p := load(t)
	tsi := sel(ts(t, "198.51.100.0", "198.51.100.255", 0, 0, 65535))
	tsr := sel(ts(t, "192.0.2.128", "192.0.2.255", 0, 0, 65535))
	rk, err := CheckChildSA(p.Rules, p.LabelID, tsi, tsr, "tunnel-dc")
	if err != nil {
		t.Fatal(err)
	}
	// no-telnet already carves TCP/23 out of this SA's selectors.
	if !rk.Needed || len(rk.Lost) != 1 || rk.Lost[0] != "no-telnet" {
		t.Fatalf("got %+v, want a rekey because of no-telnet", rk)
	}
	// Without the telnet rule the SA is consistent...
	rules := append([]policy.Rule(nil), p.Rules[1:]...)
	if rk, err = CheckChildSA(rules, p.LabelID, tsi, tsr, "tunnel-dc"); err != nil || rk.Needed {
		t.Fatalf("got %+v, %v; want no rekey", rk, err)
	}
	// ...until a newer, higher-precedence rule routes part of it elsewhere.
	newer := policy.Rule{Name: "lab", Precedence: -1, Action: policy.ActionProtect, SA: "tunnel-lab", Box: policy.FullBox()}
	newer.Box[policy.DimFamily] = policy.Span(4, 4)
	newer.Box[policy.DimSrc], _, _ = policy.ParseAddrRange("192.0.2.192/26")
	newer.Box[policy.DimDst], _, _ = policy.ParseAddrRange("198.51.100.0/24")
	rules = append([]policy.Rule{newer}, rules...)
	rk, err = CheckChildSA(rules, p.LabelID, tsi, tsr, "tunnel-dc")
	if err != nil {
		t.Fatal(err)
	}
	if !rk.Needed || len(rk.Lost) != 1 || rk.Lost[0] != "lab" {
		t.Fatalf("got %+v, want a rekey because of lab", rk)
	}
	if got := rk.TSr.TS[0].String(); got != "192.0.2.128-192.0.2.191 proto 0 ports 0-65535" {
		t.Errorf("rekey TSr %s", got)
	}
	checkProtected(t, rules, rk.TSi, rk.TSr, "tunnel-dc")
}

func TestRuleRoundTrip(t *testing.T) {
	p := load(t)
	tsi := sel(ts(t, "203.0.113.0", "203.0.113.255", 0, 0, 65535))
	tsr := sel(ts(t, "192.0.2.0", "192.0.3.255", 0, 0, 65535))
	res, err := Narrow(p.Rules, p.LabelID, tsi, tsr)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Rule("child-1", 5, p.LabelID, res.TSi, res.TSr, res.SA)
	if err != nil {
		t.Fatal(err)
	}
	// The installed rule covers exactly what the web rule protects.
	pk := policy.NewPacketFromStrings("192.0.3.7", "203.0.113.9", policy.ProtoTCP, 40000, 443)
	if !r.Box.Contains(&pk) || r.SA != "tunnel-web" {
		t.Errorf("rule %+v does not cover %v", r, pk)
	}
	pk.DPort = 80
	if r.Box.Contains(&pk) {
		t.Errorf("rule %+v covers %v, which the SPD does not protect", r, pk)
	}
	if _, err := Rule("x", 1, p.LabelID, sel(tsi.TS[0], tsi.TS[0]), tsr, "s"); !errors.Is(err, ErrBadTS) {
		t.Errorf("two selectors: %v", err)
	}
}
