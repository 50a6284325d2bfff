package esptun

import (
	"log/slog"
	"testing"
	"time"

	"github.com/espy-dpi/espy/esp"
	"github.com/espy-dpi/espy/ike"
)

// TestRetireGrace checks that an inbound SA removed after a rekey still
// opens late packets, with its ICV and replay checks, until its grace
// ends, while Status no longer lists it; that an SA removed without a
// successor or past its hard limit goes at once; and that SPI reuse and
// Close end a grace early.
func TestRetireGrace(t *testing.T) {
	const grace = 200 * time.Millisecond
	newDP := func() *DataPlane {
		d := &DataPlane{log: slog.New(slog.DiscardHandler), grace: grace}
		d.sas.Store(&tables{in: map[uint32]*inSA{}})
		return d
	}
	oldK := limitSA(true, false, ike.Limits{})
	newK := limitSA(true, false, ike.Limits{})
	newK.SPI = 0x4343
	peer, err := esp.NewOutbound(espConfig(oldK, 0))
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 100)
	seal := func() []byte {
		pkt, err := peer.Seal(nil, payload, esp.ProtoIPv4)
		if err != nil {
			t.Fatal(err)
		}
		return pkt
	}
	install := func(d *DataPlane, ks ...ike.KeyedSA) {
		for _, k := range ks {
			if err := d.InstallSA(k); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("rekeyed", func(t *testing.T) {
		d := newDP()
		install(d, oldK, newK)
		early, late := seal(), seal()
		if _, _, err := d.open(d.sas.Load().lookupIn(oldK.SPI), early); err != nil {
			t.Fatal(err)
		}
		d.RemoveSA(oldK.SAInfo)
		st := d.Status()
		if len(st.SAs) != 1 || st.SAs[0].SPI != newK.SPI {
			t.Fatalf("Status lists %+v, want only %08x", st.SAs, newK.SPI)
		}
		sa := d.sas.Load().lookupIn(oldK.SPI)
		if sa == nil {
			t.Fatal("the rekeyed SA is gone before its grace ended")
		}
		if _, _, err := d.open(sa, late); err != nil {
			t.Fatalf("late packet within the grace: %v", err)
		}
		if _, _, err := d.open(sa, late); err == nil {
			t.Fatal("a replayed late packet was accepted")
		}
		bad := seal()
		bad[len(bad)-1] ^= 1
		if _, _, err := d.open(sa, bad); err == nil {
			t.Fatal("a late packet with a bad ICV was accepted")
		}
		deadline := time.Now().Add(5 * time.Second)
		for d.sas.Load().lookupIn(oldK.SPI) != nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if d.sas.Load().lookupIn(oldK.SPI) != nil {
			t.Fatal("the rekeyed SA outlived its grace") // input would still open its packets
		}
		if d.sas.Load().lookupIn(newK.SPI) == nil {
			t.Fatal("the successor went with the retired SA")
		}
		st = d.Status()
		want := esp.Counters{Packets: 2, Bytes: 2 * uint64(len(payload)), ReplayDrops: 1, AuthFailures: 1}
		if st.RemovedIn != want {
			t.Fatalf("RemovedIn %+v, want %+v", st.RemovedIn, want)
		}
	})

	t.Run("deleted", func(t *testing.T) {
		d := newDP()
		install(d, oldK)
		d.RemoveSA(oldK.SAInfo)
		if d.sas.Load().lookupIn(oldK.SPI) != nil {
			t.Fatal("an SA deleted without a successor is kept")
		}
	})

	t.Run("expired", func(t *testing.T) {
		d := newDP()
		k := limitSA(true, false, ike.Limits{HardPackets: 1})
		install(d, k, newK)
		if _, _, err := d.open(d.sas.Load().lookupIn(k.SPI), seal()); err != nil {
			t.Fatal(err)
		}
		d.RemoveSA(k.SAInfo)
		if d.sas.Load().lookupIn(k.SPI) != nil {
			t.Fatal("an SA past its hard limit is kept")
		}
	})

	t.Run("spi reuse", func(t *testing.T) {
		d := newDP()
		install(d, oldK, newK)
		d.RemoveSA(oldK.SAInfo)
		retiring := d.sas.Load().lookupIn(oldK.SPI)
		install(d, oldK)
		reused := d.sas.Load().lookupIn(oldK.SPI)
		if reused == nil || reused == retiring {
			t.Fatal("the new SA does not own the reused SPI")
		}
		time.Sleep(2 * grace)
		if d.sas.Load().lookupIn(oldK.SPI) != reused {
			t.Fatal("the end of the old grace removed the SA reusing its SPI")
		}
		if len(d.Status().SAs) != 2 {
			t.Fatalf("Status lists %+v", d.Status().SAs)
		}
	})

	t.Run("close", func(t *testing.T) {
		d := newDP()
		install(d, oldK, newK)
		d.RemoveSA(oldK.SAInfo)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if d.sas.Load().lookupIn(oldK.SPI) != nil {
			t.Fatal("a retiring SA outlived Close")
		}
	})
}
