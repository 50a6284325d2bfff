package ike

import "testing"

// TestPeerIndex checks the counts that decide INITIAL_CONTACT against
// the IKE SAs actually established, as SAs come up and are torn down.
func TestPeerIndex(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
	ike, _ := p.resp.Addrs()
	addr := ike.Addr().Unmap()
	first, err := p.initiate(t)
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.initiate(t)
	if err != nil {
		t.Fatal(err)
	}
	type tc struct {
		name   string
		id     Identity
		except *IKESA
		want   bool
	}
	check := func(when string, cases []tc) {
		t.Helper()
		for _, c := range cases {
			if got := p.ini.hasEstablished(addr, c.id, c.except); got != c.want {
				t.Errorf("%s: %s: hasEstablished = %v, want %v", when, c.name, got, c.want)
			}
		}
	}
	check("two SAs", []tc{
		{"any identity", Identity{}, nil, true},
		{"the peer's identity", FQDN("b.lab.example"), nil, true},
		{"another identity", FQDN("c.lab.example"), nil, false},
		{"other than the first", FQDN("b.lab.example"), first, true},
	})
	if n := len(p.ini.established(addr, Identity{}, first)); n != 1 {
		t.Errorf("established other than the first: %d SAs, want 1", n)
	}
	second.teardown()
	check("one SA", []tc{
		{"any identity", Identity{}, nil, true},
		{"other than the first", Identity{}, first, false},
		{"the peer's identity other than the first", FQDN("b.lab.example"), first, false},
	})
	if sas := p.ini.established(addr, Identity{}, nil); len(sas) != 1 || sas[0] != first {
		t.Errorf("established: %v, want the first SA only", sas)
	}
	first.teardown()
	check("none", []tc{{"any identity", Identity{}, nil, false}})
	p.ini.mu.Lock()
	n := len(p.ini.peers)
	p.ini.mu.Unlock()
	if n != 0 {
		t.Errorf("%d peer counts left after the last SA, want none", n)
	}
}
