package inline

import (
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/ike"
)

func TestRegistrarKnownSAs(t *testing.T) {
	c, err := flowcache.New(heuristics.New(heuristics.Config{}), flowcache.Config{Capacity: 64, PendingCapacity: 64})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRegistrar(c, nil)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	sas := []ike.SAInfo{
		{Src: a, Dst: b, SPI: 0xc0010001, Null: true, ICVLen: 16, IVLen: 0, Mode: ike.ModeTunnel},
		{Src: b, Dst: a, SPI: 0xc0010002, Null: true, ICVLen: 16, IVLen: 8, Encap: ike.EncapUDP, SrcPort: 4500, DstPort: 4500},
		{Src: a, Dst: b, SPI: 0xc0010003, ICVLen: 16},
	}
	for _, sa := range sas {
		if err := r.RegisterSA(sa); err != nil {
			t.Fatal(err)
		}
		f, ok := c.Lookup(flowcache.NewKey(sa.Src, sa.Dst, sa.SPI))
		want := knownVerdict(sa.Null, uint8(sa.ICVLen), uint8(sa.IVLen))
		if !ok || f.Verdict.Class != want.Class || f.Verdict.Source != heuristics.SourceKnown ||
			f.Verdict.ICVLen != want.ICVLen || f.Verdict.IVLen != want.IVLen {
			t.Errorf("SA %#x: flow %+v, want %+v", sa.SPI, f.Verdict, want)
		}
	}
	r.UnregisterSA(sas[0])
	if _, ok := c.Lookup(flowcache.NewKey(a, b, sas[0].SPI)); ok {
		t.Error("unregistered SA still in the flow cache")
	}
	if err := r.RegisterSA(ike.SAInfo{Src: a, Dst: b, SPI: 0x1000, ICVLen: 300}); err == nil {
		t.Error("an ICV of 300 bytes was accepted")
	}
}

// knownVerdict is what the flow cache reports for a registered SA.
func knownVerdict(null bool, icv, iv uint8) heuristics.Verdict {
	if null {
		return heuristics.Verdict{Class: heuristics.Null, Source: heuristics.SourceKnown, ICVLen: icv, IVLen: iv}
	}
	return heuristics.Verdict{Class: heuristics.Encrypted, Source: heuristics.SourceKnown}
}
