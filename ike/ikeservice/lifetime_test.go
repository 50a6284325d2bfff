package ikeservice_test

import (
	"testing"
	"time"
)

// TestLifetimesFromYAML: short lifetimes in A's tunnel keys rekey within
// seconds (the defaults are hours), seen in status on both ends: a Child SA
// rekey gives new ESP SPIs under the same IKE SA, an IKE SA rekey new IKE
// SPIs with the Child SA moved over untouched.
func TestLifetimesFromYAML(t *testing.T) {
	for _, tt := range []struct {
		name, keys string
		child      bool // the Child SA is rekeyed, else the IKE SA
	}{
		{"child", "    rekey_time: 1s\n    life_time: 20s\n    rand_time: 0\n", true},
		{"ike", "    ike_rekey_time: 1s\n    over_time: 20s\n    ike_rand_time: 0\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			b := startPeer(t, dir, "b", peerYAML(t, dir, "b", "a", "respond", 1, 1))
			bIKE, bNAT := natPort(t, b.svc.Addrs()[0])
			a := startPeer(t, dir, "a", append(peerYAML(t, dir, "a", "b", "start", bIKE, bNAT), tt.keys...))
			first := a.waitSAs(t, 1).IKESAs[0]
			deadline := time.Now().Add(10 * time.Second)
			for {
				ts := a.status(t).Tunnels[0]
				if len(ts.IKESAs) == 1 && len(ts.IKESAs[0].ChildSAs) == 1 {
					sa, c := ts.IKESAs[0], ts.IKESAs[0].ChildSAs[0]
					sameIKE, sameChild := sa.SPIi == first.SPIi && sa.SPIr == first.SPIr, c.SPIIn == first.ChildSAs[0].SPIIn
					if tt.child && sameIKE && !sameChild || !tt.child && !sameIKE && sameChild {
						b.waitPeerOf(t, sa.SPIi, c.SPIIn)
						return
					}
					if tt.child && !sameIKE || !tt.child && !sameChild {
						t.Fatalf("the wrong SA changed: first %+v, now %+v", first, sa)
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("no %s rekey within 10 s: first %+v, now %+v", tt.name, first, ts)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// waitPeerOf polls until p holds IKE SA spiI with a Child SA whose
// outbound SPI is out: it has processed the exchange that made them.
func (p *peer) waitPeerOf(t *testing.T, spiI, out string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, sa := range p.status(t).Tunnels[0].IKESAs {
			for _, c := range sa.ChildSAs {
				if sa.SPIi == spiI && c.SPIOut == out {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peer never held IKE SA %s with Child SA out %s: %+v", spiI, out, p.status(t).Tunnels[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
